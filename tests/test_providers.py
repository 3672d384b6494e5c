"""Golden tests: the packets and events printed in the Firefly and Helium API references,
parsed to the normalized columns of docs/schema.md; plus the vectorized
helpers (float32 -> shortest decimal, data rates, best gateway, timestamps).

The Firefly "List Packets" response is used exactly as printed (it is valid
JSON, trailing blanks included). The Helium Console samples are not valid
JSON as printed; ``repair_helium`` below applies the minimal repairs, each
listed there, and the test checks that nothing else changed.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pyarrow as pa

from decoder.ingest import normalize_values, read_chunks
from decoder.ingest.radio import best_reception, float32_shortest, parse_datr
from decoder.ingest.schema import RECEPTION_SCHEMA, UPLINK_SCHEMA
from decoder.ingest.timestamps import iso_to_ts

UTC = dt.UTC

# --------------------------------------------------------------------------- seeds, as printed

# Firefly API v1, "List Packets", Sample Response (verbatim, trailing blanks included).
FIREFLY_LIST_PACKETS = """\
{
  "more": true,
  "packets": [
    {
      "ack": false,
      "bandwidth": 125,
      "codr": "4/6",
      "device_eui": "2564927382738492",
      "fopts": "",
      "fcnt": 12882,
      "freq": 866.349812,
      "gwrx": [
          {
            "tmst": 3977700196,
            "time": "2016-06-22T07:35:34.774224Z",
            "rssi": 2,
            "lsnr": 8.5,
            "gweui": "0000024B080E006D"
          }
        ],
      "modu": "LORA",
      "mtype": "unconfirmed_data_up",
      "payload_encrypted": false,
      "payload": "415141414277673D",
      "port": 2,
      "received_at": "2016-06-22T09:35:35",
      "size": 28,
      "spreading_factor": 7,
      "uid": "8a569133-ba44-4d7e-5555-af62faf9f722"
    },
    {
      "ack": true,
      "bandwidth": 100,
      "codr": "4/6",
      "device_eui": "2564927382738492",
      "fopts": "",
      "fcnt": 12883,
      "freq": 866.347719,
      "gwrx": [
          {
            "tmst": 1468815219,
            "time": "2016-07-18T04:13:39.573216Z",
            "rssi": -35,
            "lsnr": 5.1,
            "gweui": "0102030205060708"
          }
        ],
      "modu": "LORA",
      "mtype": "confirmed_data_up",
      "payload_encrypted": false,
      "payload": "415141414277673A",
      "port": 2,
      "received_at": "2016-06-22T09:39:16",
      "size": 28,
      "spreading_factor": 7,
      "uid": "8a569133-7752-4d7e-810d-af62faf9f722"
    }
  ]
}"""

# Helium Console API, "Device Events", Response (verbatim).
HELIUM_DEVICE_EVENT = """\
Device {
"category": "uplink",
"data": {
"dc": {
"balance": 7944423,
"nonce": 2,
"used": 2
},
"devaddr": (devaddr),
"fcnt": 33032,
"hold_time": 30,
"hotspot": {
"channel": 15,
"frequency": 905.2999877929688,
"id": ("hotspot_id"),
"lat": (lat),
"long": (long),
"name": ("hotspot_name"),
"rssi": -57.0,
"snr": 12.800000190734863,
"spreading": "SF9BW125"
},
"mac": [],
"payload": ("payload"),
"payload_size": 27,
"port": 1
},
"description": "Confirmed data up received",
"device_id": ("device_id"),
"frame_down": null,
"frame_up": 33032,
"organization_id": ("org_id"),
"reported_at": "1632352528562",
"router_uuid": ("router_id"),
"sub_category": "uplink_confirmed"
}"""

# Helium Console API, "Device Integration Events", Response (verbatim).
HELIUM_INTEGRATION_EVENT = """\
Device {
"category": "uplink",
"data": {
"integration": {
"id": ("integration_id"),
"name": "azure-int",
"status": "success"
},
"req": {
"body": {
"app_eui": ("app_eui)",
"dev_eui": ("dev_eui",
"devaddr": ("devaddr"),
"fcnt": 33072,
"hotspots": [
{
"channel": 12,
"frequency": 904.7000122070313,
"hold_time": 31,
"id": ("hotspot_id)",
"lat": ("lat"),
"long": ("long",
"name": ("hotspot_name"),
"reported_at": 1632353389723,
"rssi": -57.0,
"snr": 12.5,
"spreading": "SF9BW125",
"status": "success"
},
],
"id": ("device_id"),
"metadata": {
"adr_allowed": false,
"cf_list_enabled": false,
"multi_buy": 1,
"organization_id": ("org_id")
},
"name": ("device_name"),
"payload": ("device_payload"),
"payload_size": 27,
"port": 1,
"reported_at": 1632353389723,
"uuid": ("device_id")
},
"qos": 0
}
},
"description": "Request sent to <<\\"azure-int\\">>",
"device_id": ("device_id"),
"frame_down": null,
"frame_up": null,
"organization_id": ("org_id"),
"reported_at": "1632353390125",
"router_uuid": ("router_id"),
"sub_category": "uplink_integration_req"
},
}"""


def repair_helium(text: str) -> str:
    """The minimal repairs that make a Helium sample valid JSON:

    1. the leading ``Device `` before the opening brace is dropped;
    2. a placeholder in parentheses becomes a JSON string of its name, however
       its quotes were printed: ``(devaddr)``, ``("hotspot_id")``,
       ``("hotspot_id)"`` and ``("dev_eui",`` all become ``"devaddr"`` etc.
       (so ``lat``/``long`` are strings where numbers belong: the reader
       reads a field of the wrong JSON type as null);
    3. a comma before a closing bracket is dropped (``},\\n]``);
    4. in the integration event only: the stray ``,\\n}`` after the event's
       closing brace is dropped.
    """
    text = re.sub(r"^Device \{", "{", text)
    text = re.sub(r'\(\s*"?([A-Za-z_]+)"?\s*\)"?', r'"\1"', text)  # (x) ("x") ("x)"
    text = re.sub(r'\(\s*"([A-Za-z_]+)"\s*,', r'"\1",', text)  # ("x",  (missing parenthesis)
    text = re.sub(r",(\s*[\]}])", r"\1", text)  # trailing commas, including "},\n}" -> "}\n}"
    text = re.sub(r"\}\s*\}\s*$", "}", text) if text.count("{") < text.count("}") else text
    return text


def test_helium_repairs_are_minimal():
    for original in (HELIUM_DEVICE_EVENT, HELIUM_INTEGRATION_EVENT):
        repaired = repair_helium(original)
        obj = json.loads(repaired)  # valid now
        # Nothing but the listed repairs: the same keys in the same order, line for line.
        keys = lambda s: re.findall(r'^"([a-z_]+)":', s, flags=re.M)
        assert keys(original) == keys(repaired)
        assert obj["category"] == "uplink"
    assert not json.loads(repair_helium(HELIUM_DEVICE_EVENT))["data"]["hotspot"]["lat"].startswith("(")


# --------------------------------------------------------------------------- golden: Firefly


def _check_firefly_seed(chunk):
    assert chunk.uplinks.schema == UPLINK_SCHEMA
    assert chunk.receptions.schema == RECEPTION_SCHEMA
    rows = chunk.uplinks.to_pylist()
    assert len(rows) == 2
    first, second = rows
    assert first == {
        "provider": "firefly",
        "packet_id": "8a569133-ba44-4d7e-5555-af62faf9f722",
        "dev_eui": "2564927382738492",
        "device_id": None,
        "devaddr": None,
        "received_at": dt.datetime(2016, 6, 22, 9, 35, 35, tzinfo=UTC),  # no zone printed: UTC
        "fcnt": 12882,
        "port": 2,
        "confirmed": False,  # unconfirmed_data_up
        "payload": bytes.fromhex("415141414277673D"),
        "payload_text": None,  # kept only where the text could not be decoded
        "frequency_mhz": 866.349812,  # Firefly values are not float32: kept as printed
        "spreading_factor": 7,
        "bandwidth_khz": 125.0,
        "coding_rate": "4/6",
        "rssi": 2.0,
        "snr": 8.5,
        "gateway_id": "0000024B080E006D",
        "gateway_count": 1,
        "line": 1,
        "error": None,
        "warnings": None,
    }
    assert second["packet_id"] == "8a569133-7752-4d7e-810d-af62faf9f722"
    assert second["received_at"] == dt.datetime(2016, 6, 22, 9, 39, 16, tzinfo=UTC)
    assert second["fcnt"] == 12883
    assert second["confirmed"] is True  # confirmed_data_up
    assert second["payload"] == bytes.fromhex("415141414277673A")
    assert second["frequency_mhz"] == 866.347719
    assert second["bandwidth_khz"] == 100.0
    assert (second["rssi"], second["snr"], second["gateway_id"]) == (-35.0, 5.1, "0102030205060708")
    assert second["line"] == 1  # both packets come from the one envelope line

    rec = chunk.receptions.to_pylist()
    assert rec == [
        {
            "packet_index": 0,
            "gateway_id": "0000024B080E006D",
            "gateway_name": None,
            "rssi": 2.0,
            "snr": 8.5,
            "time": dt.datetime(2016, 6, 22, 7, 35, 34, 774224, tzinfo=UTC),
            "tmst": 3977700196,
            "channel": None,
            "latitude": None,
            "longitude": None,
            "frequency_mhz": 866.349812,
        },
        {
            "packet_index": 1,
            "gateway_id": "0102030205060708",
            "gateway_name": None,
            "rssi": -35.0,
            "snr": 5.1,
            "time": dt.datetime(2016, 7, 18, 4, 13, 39, 573216, tzinfo=UTC),
            "tmst": 1468815219,
            "channel": None,
            "latitude": None,
            "longitude": None,
            "frequency_mhz": 866.347719,
        },
    ]
    assert chunk.bad_lines == [] and not chunk.skipped and chunk.lines == 1


def test_firefly_list_packets_as_printed_value():
    _check_firefly_seed(normalize_values([json.loads(FIREFLY_LIST_PACKETS)]))


def test_firefly_list_packets_as_printed_text():
    # The multi-line text as one item: read by orjson.
    _check_firefly_seed(normalize_values([FIREFLY_LIST_PACKETS]))


def test_firefly_list_packets_as_a_jsonl_line(tmp_path):
    # The envelope compacted to one line: read by Arrow (the fast path).
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(json.loads(FIREFLY_LIST_PACKETS)) + "\n")
    (chunk,) = list(read_chunks(path))
    _check_firefly_seed(chunk)


def test_firefly_packets_one_per_line_fast_and_slow_agree(tmp_path):
    packets = json.loads(FIREFLY_LIST_PACKETS)["packets"]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in packets))
    (fast,) = list(read_chunks(path))
    slow = normalize_values(packets)
    assert fast.uplinks.equals(slow.uplinks)
    assert fast.receptions.equals(slow.receptions)
    assert fast.uplinks.column("line").to_pylist() == [1, 2]


# --------------------------------------------------------------------------- golden: Helium


def test_helium_device_event():
    chunk = normalize_values([repair_helium(HELIUM_DEVICE_EVENT)])
    assert chunk.bad_lines == [] and not chunk.skipped
    (row,) = chunk.uplinks.to_pylist()
    import base64

    assert row == {
        "provider": "helium",
        "packet_id": None,  # the printed event has no "id"
        "dev_eui": None,  # device events carry the device id only
        "device_id": "device_id",
        "devaddr": "devaddr",
        "received_at": dt.datetime(2021, 9, 22, 23, 15, 28, 562000, tzinfo=UTC),  # "1632352528562" ms
        "fcnt": 33032,
        "port": 1,
        "confirmed": True,  # uplink_confirmed
        "payload": base64.b64decode("payload" + "="),
        "payload_text": None,
        "frequency_mhz": 905.3,  # 905.2999877929688 through float32
        "spreading_factor": 9,
        "bandwidth_khz": 125.0,
        "coding_rate": None,
        "rssi": -57.0,
        "snr": 12.8,  # 12.800000190734863 through float32
        "gateway_id": "hotspot_id",
        "gateway_count": 1,
        "line": 1,
        "error": None,
        # the reference prints placeholders where numbers belong: dropped, and said so
        "warnings": 'hotspots[].lat: "lat" is not a number; dropped; hotspots[].long: "long" is not a number; dropped',
    }
    (rec,) = chunk.receptions.to_pylist()
    assert rec == {
        "packet_index": 0,
        "gateway_id": "hotspot_id",
        "gateway_name": "hotspot_name",
        "rssi": -57.0,
        "snr": 12.8,
        "time": None,  # a device event's hotspot has no reported_at
        "tmst": None,
        "channel": 15,
        "latitude": None,  # "(lat)" repaired to a string: wrong type, read as null
        "longitude": None,
        "frequency_mhz": 905.3,
    }


def test_helium_integration_event():
    chunk = normalize_values([repair_helium(HELIUM_INTEGRATION_EVENT)])
    assert chunk.bad_lines == [] and not chunk.skipped
    (row,) = chunk.uplinks.to_pylist()
    import base64

    assert row["provider"] == "helium"
    assert row["packet_id"] is None
    assert row["dev_eui"] == "DEV_EUI"  # upper-cased like every EUI
    assert row["device_id"] == "device_id"
    assert row["devaddr"] == "devaddr"
    assert row["received_at"] == dt.datetime(2021, 9, 22, 23, 29, 49, 723000, tzinfo=UTC)  # body's reported_at
    assert (row["fcnt"], row["port"], row["confirmed"]) == (33072, 1, None)
    assert row["payload"] == base64.b64decode("device_payload" + "==", altchars=b"-_")
    assert row["frequency_mhz"] == 904.7  # 904.7000122070313 through float32
    assert (row["spreading_factor"], row["bandwidth_khz"]) == (9, 125.0)
    assert (row["rssi"], row["snr"], row["gateway_id"], row["gateway_count"]) == (-57.0, 12.5, "hotspot_id", 1)
    assert row["error"] is None
    (rec,) = chunk.receptions.to_pylist()
    assert rec["time"] == dt.datetime(2021, 9, 22, 23, 29, 49, 723000, tzinfo=UTC)
    assert rec["channel"] == 12 and rec["gateway_name"] == "hotspot_name"


def test_helium_http_integration_body_and_array_of_events():
    event = json.loads(repair_helium(HELIUM_DEVICE_EVENT))
    body = json.loads(repair_helium(HELIUM_INTEGRATION_EVENT))["data"]["req"]["body"]
    chunk = normalize_values([body, [event, dict(event, category="downlink", sub_category="downlink_ack")]])
    assert chunk.uplinks.column("line").to_pylist() == [1, 2]
    assert chunk.uplinks.column("dev_eui").to_pylist() == ["DEV_EUI", None]
    assert chunk.uplinks.column("device_id").to_pylist() == ["device_id", "device_id"]  # body: "id"
    # A body has no sub_category: whether it was confirmed is unknown, as inside an integration event.
    assert chunk.uplinks.column("confirmed").to_pylist() == [None, True]
    assert chunk.skipped == {"helium:downlink": 1}


def test_shapes_mixed_in_one_chunk_give_the_rows_they_give_alone():
    """Each Helium shape keeps its fields at its own paths (the top of a body, ``data`` of a
    device event, ``data.req.body`` of an integration event); interleaved with each other and
    with Firefly packets, every record still comes out as it does alone, in input order."""
    firefly = json.loads(FIREFLY_LIST_PACKETS)["packets"][0]
    device = json.loads(repair_helium(HELIUM_DEVICE_EVENT))
    integration = json.loads(repair_helium(HELIUM_INTEGRATION_EVENT))
    body = integration["data"]["req"]["body"]
    records = [body, device, firefly, integration, dict(device, id="second-event"), body, firefly]
    alone = [normalize_values([r]).uplinks.drop_columns(["line"]).to_pylist()[0] for r in records]
    together = normalize_values(records).uplinks
    assert together.column("line").to_pylist() == list(range(1, len(records) + 1))
    assert together.drop_columns(["line"]).to_pylist() == alone
    assert [r["provider"] for r in alone] == ["helium", "helium", "firefly", "helium", "helium", "helium", "firefly"]
    # The body and the packet come twice, and an integration event gives the row of its body.
    assert len({repr(r) for r in alone}) == 4
    assert alone[3] == alone[0]


def test_sample_files_decode(tmp_path):
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "samples" / "packets"
    counts = {}
    for name in ("firefly", "helium", "mixed", "bad"):
        chunks = list(read_chunks(root / f"{name}.jsonl"))
        counts[name] = (
            sum(c.uplinks.num_rows for c in chunks),
            sum(len(c.bad_lines) for c in chunks),
            sum(sum(c.skipped.values()) for c in chunks),
        )
    assert counts["firefly"] == (11, 0, 3)
    assert counts["helium"] == (5, 0, 2)
    assert counts["mixed"][1] == 0
    assert counts["bad"] == (10, 6, 1)


# --------------------------------------------------------------------------- best gateway, datr, times


def _ff_packet(gws, **extra):
    p = json.loads(FIREFLY_LIST_PACKETS)["packets"][0]
    p["gwrx"] = [dict(p["gwrx"][0], gweui=g, rssi=r, lsnr=s) for g, r, s in gws]
    p.update(extra)
    return p


def test_best_gateway_by_rssi_then_snr():
    p1 = _ff_packet([("A", -80, 5.0), ("B", -60, 1.0), ("C", -60, 7.5), ("D", -90, 9.0)])
    p2 = _ff_packet([("E", -70, None), ("F", -70, -3.0)])
    p3 = _ff_packet([])
    chunk = normalize_values([p1, p2, p3])
    up = chunk.uplinks.to_pylist()
    assert [(r["gateway_id"], r["rssi"], r["snr"], r["gateway_count"]) for r in up] == [
        ("C", -60.0, 7.5, 4),
        ("F", -70.0, -3.0, 2),  # a null SNR ranks below any number
        (None, None, None, 0),
    ]
    assert chunk.receptions.column("packet_index").to_pylist() == [0, 0, 0, 0, 1, 1]


def test_best_reception_kernel_ties_and_nan():
    counts = np.array([3, 0, 2, 1])
    rssi = np.array([-50, -50, -60, np.nan, np.nan, -1.0])
    snr = np.array([1.0, 1.0, 9.0, 2.0, np.nan, np.nan])
    assert best_reception(counts, rssi, snr).tolist() == [0, -1, 3, 5]


def test_datr_fallback_and_parse():
    p = _ff_packet([("A", -80, 5.0)], datr="SF10BW250")
    del p["spreading_factor"], p["bandwidth"]
    (row,) = normalize_values([p]).uplinks.to_pylist()
    assert (row["spreading_factor"], row["bandwidth_khz"]) == (10, 250.0)
    sf, bw = parse_datr(pa.array(["SF9BW125", "sf12bw500", "SF7BW125.5", "FSK", None, "SF9"]))
    assert sf.to_pylist() == [9, 12, 7, None, None, None]
    assert bw.to_pylist() == [125.0, 500.0, 125.5, None, None, None]


def test_iso_timestamps_mixed_forms():
    got = iso_to_ts(
        pa.array(
            ["2016-06-22T09:35:35", "2016-06-22T07:35:34.774224Z", "2016-06-22T09:35:35+02:00", "not a time", None]
        )
    ).to_pylist()
    assert got == [
        dt.datetime(2016, 6, 22, 9, 35, 35, tzinfo=UTC),
        dt.datetime(2016, 6, 22, 7, 35, 34, 774224, tzinfo=UTC),
        dt.datetime(2016, 6, 22, 7, 35, 35, tzinfo=UTC),
        None,
        None,
    ]


def test_reported_at_as_string_int_and_mixed_in_one_file(tmp_path):
    event = json.loads(repair_helium(HELIUM_DEVICE_EVENT))
    body = json.loads(repair_helium(HELIUM_INTEGRATION_EVENT))["data"]["req"]["body"]
    path = tmp_path / "m.jsonl"
    lines = [event, body] * 3 + [dict(event, reported_at=1632352528562)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    (chunk,) = list(read_chunks(path))
    assert chunk.bad_lines == []
    times = chunk.uplinks.column("received_at").to_pylist()
    assert times[0] == times[6] == dt.datetime(2021, 9, 22, 23, 15, 28, 562000, tzinfo=UTC)
    assert times[1] == dt.datetime(2021, 9, 22, 23, 29, 49, 723000, tzinfo=UTC)


# --------------------------------------------------------------------------- float32 -> shortest decimal


def test_float32_shortest_examples():
    got = float32_shortest(
        np.array(
            [
                905.2999877929688,
                12.800000190734863,
                904.7000122070313,
                -57.0,
                -19.700000762939453,
                0.0,
                np.nan,
                1e-30,
                3.4028234663852886e38,
            ]
        )
    )
    assert got[:6].tolist() == [905.3, 12.8, 904.7, -57.0, -19.7, 0.0]
    assert np.isnan(got[6])
    assert got[7] == 1e-30 and got[8] == 3.4028235e38


def _significant_digits(x: float) -> int:
    mantissa = repr(float(abs(x))).split("e")[0].replace(".", "").lstrip("0").rstrip("0")
    return max(len(mantissa), 1)


def test_float32_shortest_matches_shortest_round_trip_on_random_values():
    rng = np.random.default_rng(20240601)
    # Random bit patterns over the whole finite float32 range, and typical radio values.
    bits = rng.integers(0, 2**32, size=100_000, dtype=np.uint64).astype(np.uint32)
    f = bits.view(np.float32)
    f = f[np.isfinite(f) & (f != 0)]
    radio = np.concatenate(
        [
            np.round(rng.uniform(-140, 20, 50_000), 1),
            np.round(rng.uniform(860, 930, 50_000), 4),
            rng.uniform(-1e3, 1e3, 50_000),
        ]
    ).astype(np.float32)
    values = np.concatenate([f, radio])
    got = float32_shortest(values.astype(np.float64))
    assert (got.astype(np.float32) == values).all()  # every result reads back as the same float32
    for v, g in zip(values[::5], got[::5]):  # the Python checks below are slow: every 5th value
        # numpy prints a float32 as the shortest decimal that reads back as it (Dragon4)
        assert g == float(str(v)), (v, g)
        # independently: the nearest decimal with fewer digits does not read back as v
        k = _significant_digits(g)
        if k > 1:
            assert np.float32(float(f"{float(v):.{k - 2}e}")) != v, (v, g)


def test_a_column_asked_for_at_every_row_is_a_copy_and_any_other_rows_are_taken():
    """A file of one provider's uplinks asks for whole columns: copied straight, apart from the
    scan's memory. Rows that only look like every row (the right length and ends) are taken."""
    from decoder.ingest.fields import take

    column = pa.array(["a", "b", None, "d"])
    whole = take(column, np.arange(4))
    assert whole.equals(column) and whole.buffers()[2].address != column.buffers()[2].address
    assert take(column, None) is column
    for rows in ([0, 1, 3, 3], [0, 2, 1, 3], [0, 0, 0, 3], [1, 2, 3], [0, 1, 2, 3, 3], []):
        assert take(column, np.array(rows, np.int64)).to_pylist() == [column[i].as_py() for i in rows]

"""Reader issues fixed with the scanner: out-of-range times, Helium uplinks by payload, one
coercion rule for input fields with row warnings (each test fails on the previous reader)."""

from __future__ import annotations

import collections
import json

import pytest
from helpers import ROOT

import decoder
from decoder import Engine
from decoder.ingest import Reader, normalize_values

FF = {
    "uid": "u1",
    "device_eui": "70b3d57ed0000001",
    "received_at": "2024-01-02T03:04:05",
    "fcnt": 7,
    "port": 2,
    "mtype": "unconfirmed_data_up",
    "payload": "01020304",
    "freq": 868.1,
    "spreading_factor": 7,
    "bandwidth": 125,
    "codr": "4/5",
    "gwrx": [{"gweui": "GW1", "rssi": -80, "lsnr": 7.5, "time": "2024-01-02T03:04:05.5", "tmst": 1}],
}
HE = {
    "category": "uplink",
    "sub_category": "uplink_unconfirmed",
    "device_id": "dev-3",
    "id": "ev-1",
    "reported_at": "1700000000000",
    "data": {
        "devaddr": "26000003",
        "fcnt": 4,
        "port": 3,
        "payload": "AQID",
        "hotspot": {"id": "h2", "name": "n2", "rssi": -70, "snr": 1.2, "frequency": 903.9, "spreading": "SF7BW125"},
    },
}


@pytest.mark.parametrize("when", ["1500-01-01T00:00:00", "2300-06-01T12:00:00", "9999-12-31T23:59:59"])
def test_firefly_received_at_out_of_range_is_null_with_a_warning(when):
    chunk = normalize_values([dict(FF, received_at=when), FF])
    rows = chunk.uplinks.to_pylist()
    assert chunk.bad_lines == [] and len(rows) == 2
    assert rows[0]["received_at"] is None  # never a wrapped date
    assert rows[0]["warnings"] == f'received_at: "{when}" is outside 1677-09-21 to 2262-04-11 (timestamp[ns]); dropped'
    assert rows[1]["received_at"].year == 2024 and rows[1]["warnings"] is None


def test_helium_events_with_a_payload_are_uplinks_whatever_their_category():
    without = {k: v for k, v in HE.items() if k not in ("category", "sub_category")}
    values = [
        dict(HE, category="Uplink", sub_category="UPLINK_CONFIRMED"),  # case differs
        dict(HE, category="uplink", sub_category="uplink_something_new"),  # a new sub-category
        dict(HE, category="new_category", sub_category="x"),  # a new category
        dict(without, sub_category="uplink_unconfirmed"),  # no category
        dict(without, category="uplink"),  # no sub_category
        dict(HE, category="downlink", sub_category="downlink_ack"),  # documented non-uplinks: skipped
        dict(HE, category="join_request", sub_category="join_request"),
        dict(HE, category="uplink", sub_category="uplink_integration_res"),
        dict(HE, category="misc", sub_category="misc_integration_error"),
        # no payload and not an uplink kind: a bad line
        dict(HE, category="new_category", sub_category="x", data={"devaddr": "x"}),
    ]
    chunk = normalize_values(values)
    assert chunk.uplinks.column("line").to_pylist() == [1, 2, 3, 4, 5]
    assert chunk.uplinks.column("confirmed").to_pylist() == [True, None, None, False, None]
    assert chunk.skipped == collections.Counter(
        {"helium:downlink": 1, "helium:join_request": 1, "helium:uplink_integration_res": 1, "helium:misc": 1}
    )
    assert chunk.bad_lines == [(10, "helium event without a payload (category 'new_category', sub_category 'x')")]
    assert chunk.values == len(values)


def test_fcnt_beyond_a_double_no_longer_makes_the_line_bad():
    line = json.dumps(FF).replace('"fcnt": 7', '"fcnt": 1e400')
    chunk = normalize_values([line, FF])
    assert chunk.bad_lines == []
    first, second = chunk.uplinks.to_pylist()
    assert first["fcnt"] is None and first["payload"] == bytes.fromhex("01020304") and first["error"] is None
    assert first["warnings"] == "fcnt: a number beyond the range of a double; dropped"
    assert second["fcnt"] == 7


@pytest.mark.parametrize(
    "changes, column, value, warning",
    [
        ({"port": 256}, "port", None, "port: 256 is outside 0-255; dropped"),
        ({"port": -1}, "port", None, "port: -1 is outside 0-255; dropped"),
        ({"port": 255}, "port", 255, None),
        ({"fcnt": 2**32}, "fcnt", None, "fcnt: 4294967296 is outside 0-4294967295; dropped"),
        ({"fcnt": 2**32 - 1}, "fcnt", 2**32 - 1, None),
        ({"fcnt": "12"}, "fcnt", 12, 'fcnt: "12" read as 12'),
        ({"fcnt": 12.0}, "fcnt", 12, None),
        ({"fcnt": 12.5}, "fcnt", None, "fcnt: 12.5 is not an integer; dropped"),
        ({"fcnt": True}, "fcnt", None, "fcnt: expected a number, got true; dropped"),
        ({"fcnt": "twelve"}, "fcnt", None, 'fcnt: "twelve" is not an integer; dropped'),
        ({"freq": "868.3"}, "frequency_mhz", 868.3, 'freq: "868.3" read as 868.3'),
        ({"devaddr": 12}, "devaddr", None, "devaddr: expected text, got a number; dropped"),
    ],
)
def test_one_coercion_rule_with_row_warnings(changes, column, value, warning):
    chunk = normalize_values([dict(FF, **changes)])
    assert chunk.bad_lines == []
    (row,) = chunk.uplinks.to_pylist()
    assert row[column] == value
    assert row["warnings"] == warning


def test_only_gateway_objects_are_counted():
    gw = FF["gwrx"][0]
    chunk = normalize_values([dict(FF, gwrx=[5, gw, None, "x", dict(gw, gweui="GW2", rssi=-60)])])
    (row,) = chunk.uplinks.to_pylist()
    assert row["gateway_count"] == 2 and row["gateway_id"] == "GW2"
    assert chunk.receptions.column("gateway_id").to_pylist() == ["GW1", "GW2"]
    assert row["warnings"] == "gwrx: items that are not objects dropped"


def test_warnings_reach_the_decoded_table():
    engine = Engine(decoder.load_classes(ROOT / "samples" / "classes" / "test_device_class.json"))
    table = engine.decode_packets([dict(FF, port="2", payload="010203040506070809"), FF])
    assert table.column("warnings").to_pylist() == ['port: "2" read as 2', None]
    assert table.column("port").to_pylist() == [2, 2]


def test_the_engine_reads_no_field_only_receptions_show():
    # A gateway's time and tmst are only in the reception table. The engine builds none, so it
    # does not read them: their problems are not in its rows' warnings; the rest is the same.
    packet = dict(FF, gwrx=[dict(FF["gwrx"][0], time=[], tmst="soon")])
    (full,) = normalize_values([packet]).uplinks.to_pylist()
    assert "gwrx[].time: expected text" in full["warnings"] and '"soon" is not an integer' in full["warnings"]
    (lean,) = normalize_values([packet], reader=Reader(receptions=False)).uplinks.to_pylist()
    assert lean["warnings"] is None and {**lean, "warnings": None} == {**full, "warnings": None}
    engine = Engine(decoder.load_classes(ROOT / "samples" / "classes" / "test_device_class.json"))
    (row,) = engine.decode_packets([packet]).to_pylist()
    assert row["warnings"] is None and (row["rssi"], row["gateway_id"]) == (full["rssi"], full["gateway_id"])


@pytest.mark.parametrize("value", [[], {}, 5, True])
def test_a_time_of_another_type_is_dropped_with_a_warning(value):
    gw = dict(FF["gwrx"][0], time=value)
    chunk = normalize_values([dict(FF, received_at=value, gwrx=[gw])])
    (row,) = chunk.uplinks.to_pylist()
    assert row["received_at"] is None and chunk.receptions.column("time").to_pylist() == [None]
    assert "received_at: expected text, got " in row["warnings"] and "gwrx[].time: expected text" in row["warnings"]

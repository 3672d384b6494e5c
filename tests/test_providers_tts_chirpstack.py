"""The Things Stack and ChirpStack v4: their documented uplink shapes normalized (golden rows in
tests/fixtures), their other message kinds skipped and counted, protocol-buffer defaults, and
a file mixing all four providers through ``decoder decode``."""

from __future__ import annotations

import base64
import collections
import copy
import datetime as dt
import json

import orjson
import pyarrow.parquet as pq
import pytest
from helpers import ROOT, run_cli

from decoder.ingest import Reader, normalize_values, read_chunks

FIXTURES = ROOT / "tests" / "fixtures"
PACKETS = ROOT / "samples" / "packets"
TEST_CLASS = ROOT / "samples" / "classes" / "test_device_class.json"


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _plain(row: dict) -> dict:
    """A normalized row as the expected files print it (times in RFC 3339, payload in hex)."""
    out = {}
    for k, v in row.items():
        if isinstance(v, dt.datetime):
            v = v.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".") + "Z"
        if k == "payload":
            k, v = "payload_hex", None if v is None else v.hex()
        out[k] = v
    return out


def _ns_times(table, names) -> dict:
    """Timestamp columns as RFC 3339 text with nanoseconds (to_pylist stops at microseconds)."""
    out = {}
    for name in names:
        col = table.column(name).cast("int64").to_pylist()
        out[name] = [
            None
            if ns is None
            else dt.datetime.fromtimestamp(ns // 10**9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
            + (f".{ns % 10**9:09d}".rstrip("0").rstrip(".") + "Z")
            for ns in col
        ]
    return out


@pytest.mark.parametrize("name", ["tts_uplink", "chirpstack_up"])
def test_documented_uplink_normalizes_to_the_golden_rows(name, tmp_path):
    want = json.loads((FIXTURES / f"{name}.expected.json").read_text())
    message = _fixture(name)
    path = tmp_path / "one.jsonl"
    path.write_bytes(orjson.dumps(message) + b"\n")
    for chunk in (normalize_values([message]), next(iter(read_chunks(path)))):
        assert chunk.bad_lines == [] and not chunk.skipped
        (row,) = chunk.uplinks.to_pylist()
        row = _plain(row)
        row["received_at"] = _ns_times(chunk.uplinks, ["received_at"])["received_at"][0]
        assert row == want["uplink"]
        receptions = [_plain(r) for r in chunk.receptions.to_pylist()]
        for r, t in zip(receptions, _ns_times(chunk.receptions, ["time"])["time"]):
            r["time"] = t
        assert receptions == want["receptions"]


def test_the_things_stack_other_kinds_are_skipped():
    base = _fixture("tts_uplink")
    ids = {k: base[k] for k in ("end_device_ids", "correlation_ids", "received_at")}
    kinds = ["join_accept", "downlink_ack", "downlink_queued", "location_solved", "uplink_normalized"]
    values = [dict(ids, **{kind: {"received_at": "2024-05-06T07:08:09Z"}}) for kind in kinds]
    values.append(dict(ids, something_new={}))
    values.append(base)
    chunk = normalize_values(values)
    assert chunk.skipped == collections.Counter({f"tts:{k}": 1 for k in kinds})
    assert chunk.bad_lines == [(6, "the things stack message of no known kind")]
    assert chunk.uplinks.column("line").to_pylist() == [7]


def test_chirpstack_other_event_types_are_skipped():
    up = _fixture("chirpstack_up")
    head = {k: up[k] for k in ("deduplicationId", "time", "deviceInfo")}
    info = {"deviceInfo": up["deviceInfo"], "time": up["time"]}
    events = {
        "join": dict(head, devAddr="00189440"),
        "ack": dict(info, queueItemId="a", acknowledged=True, fCntDown=7),
        "txack": dict(info, downlinkId=1, queueItemId="a", fCntDown=7, gatewayId="g", txInfo={"frequency": 1}),
        "status": dict(info, margin=7, batteryLevel=55.5),
        "log": dict(info, level="ERROR", code="UPLINK_CODEC", description="oops", context={}),
        "location": dict(info, location={"latitude": 1.0, "longitude": 2.0}),
        "integration": dict(info, integrationName="loracloud", eventType="x", object={}),
    }
    chunk = normalize_values([*events.values(), info, up])
    assert chunk.skipped == collections.Counter({f"chirpstack:{k}": 1 for k in events})
    assert [b[0] for b in chunk.bad_lines] == [8] and "chirpstack event of no known type" in chunk.bad_lines[0][1]
    assert chunk.uplinks.column("line").to_pylist() == [9]
    assert chunk.values == 9


def test_protocol_buffer_defaults_and_ranges():
    tts = copy.deepcopy(_fixture("tts_uplink"))
    for key in ("f_cnt", "f_port", "frm_payload", "confirmed"):
        del tts["uplink_message"][key]
    cs = copy.deepcopy(_fixture("chirpstack_up"))
    for key in ("fCnt", "fPort", "data"):
        del cs[key]
    bad_port = dict(_fixture("chirpstack_up"), fPort=300)
    chunk = normalize_values([tts, cs, bad_port])
    rows = chunk.uplinks.to_pylist()
    assert [(r["fcnt"], r["port"], r["payload"], r["error"]) for r in rows[:2]] == [(0, 0, b"", None)] * 2
    assert rows[0]["confirmed"] is False and rows[0]["warnings"] is None
    assert rows[2]["port"] is None and rows[2]["warnings"] == "fPort: 300 is outside 0-255; dropped"
    assert rows[2]["payload"] == base64.b64decode(bad_port["data"])


def test_four_providers_in_one_file_through_decode(tmp_path):
    tts, cs = _fixture("tts_uplink"), _fixture("chirpstack_up")
    lines = []
    for source in ("firefly.jsonl", "helium.jsonl"):
        lines += [line for line in (PACKETS / source).read_bytes().splitlines() if line.strip()]
    lines[3:3] = [orjson.dumps(tts), orjson.dumps([cs, tts])]
    lines.append(orjson.dumps(dict(cs, deduplicationId="second", fCnt=18)))
    src = tmp_path / "four.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    devices = json.loads((PACKETS / "devices.json").read_text())
    devices.update({"70B3D57ED0000010": "Test Device Class", "70B3D57ED0000011": "Test Device Class"})
    devices_path = tmp_path / "devices.json"
    devices_path.write_text(json.dumps(devices))
    out, errors = tmp_path / "out.parquet", tmp_path / "errors.jsonl"
    res = run_cli(
        "decode", src, "--classes", TEST_CLASS, "--devices", devices_path, "-o", out, "--errors", errors, "-q"
    )
    assert res.returncode == 0, res.stderr.decode()
    table = pq.read_table(out).to_pylist()
    by_provider = collections.Counter(r["provider"] for r in table)
    assert set(by_provider) == {"firefly", "helium", "tts", "chirpstack"}
    assert by_provider["tts"] == 2 and by_provider["chirpstack"] == 2
    new = [r for r in table if r["provider"] in ("tts", "chirpstack")]
    assert [r["line"] for r in new] == [4, 5, 5, len(lines)]
    assert [r["packet_id"] for r in new][1:] == ["5b8e5a3c-2f1d-4e6a-9c7b-1a2b3c4d5e6f", new[0]["packet_id"], "second"]
    for r in new:  # bound to the class by EUI, like Firefly's packets, and decoded
        assert r["device_class"] == "Test Device Class" and r["error"] is None
    lines_out = [r["line"] for r in table]
    assert lines_out == sorted(lines_out)


@pytest.mark.parametrize("name", ["tts_uplink", "chirpstack_up"])
def test_uplinks_read_without_receptions_are_the_same(name):
    # Without receptions the reader leaves each provider's reception-only paths unread: none of
    # them may feed an uplink column.
    message = _fixture(name)
    full = normalize_values([message])
    lean = normalize_values([message], reader=Reader(receptions=False))
    assert full.receptions.num_rows >= 1 and lean.uplinks.equals(full.uplinks)

"""decoder.Engine: normalized uplinks grouped by class, decoded per group, one Arrow table."""

from __future__ import annotations

import json
import struct

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from helpers import ROOT

import decoder
from decoder.engine import Engine, Summary
from decoder.registry import NO_CLASS, Registry

CLASSES = ROOT / "samples" / "classes"
GPS_EUI = "70B3D57ED0000001"
CLIMATE_EUI = "70B3D57ED0100001"
MULTI_ID = "00000000-0000-4000-8002-000000000001"  # a Helium device id
BOTH_EUI = "70B3D57ED0200009"  # Multi Sensor on 3/4, Test Device Class elsewhere

GPS_PAYLOAD = bytes.fromhex("FF3F5E2A0A4E1F0064")
CLIMATE_PAYLOAD = bytes([0x41]) + struct.pack(">hBH", 2150, 91, 3012)
MEASUREMENT = bytes([5]) + struct.pack("<fH", 21.5, 612) + (101325).to_bytes(3, "little")
STATUS = bytes([0x86, 0b10000000, 200])
CONFIG = bytes([0]) + struct.pack("<Hh", 600, -25)


@pytest.fixture(scope="module")
def classes():
    return {dc.name: dc for f in sorted(CLASSES.glob("*.json")) for dc in decoder.load_classes(f)}


@pytest.fixture(scope="module")
def registry(classes):
    reg = Registry(classes.values())
    reg.load_devices(
        {GPS_EUI: 2, CLIMATE_EUI: "Room Climate Sensor", MULTI_ID: 12, BOTH_EUI: ["Multi Sensor", "Test Device Class"]}
    )
    reg.load_devices({"devices": [{"eui": CLIMATE_EUI, "address": "26012345", "device_class_id": 7}]})
    return reg


@pytest.fixture(scope="module")
def engine(registry):
    return Engine(registry)


def uplinks(rows: list[dict]) -> pa.Table:
    """A normalized uplinks table (the reader's schema) from a few dicts."""
    from decoder.ingest import normalize_values

    schema = normalize_values([]).uplinks.schema
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    cols["line"] = [r.get("line", k + 1) for k, r in enumerate(rows)]
    cols["provider"] = [r.get("provider", "firefly") for r in rows]
    return pa.table(
        {
            name: pa.array(v, type=schema.field(name).type if name != "provider" else pa.string())
            for name, v in cols.items()
        }
    ).cast(schema)


def test_mixed_classes_one_table_in_input_order(engine, classes):
    table_in = uplinks(
        [
            {"dev_eui": GPS_EUI, "port": 2, "payload": GPS_PAYLOAD},
            {"dev_eui": CLIMATE_EUI, "port": 2, "payload": CLIMATE_PAYLOAD},
            {"device_id": MULTI_ID, "port": 3, "payload": STATUS},
            {"dev_eui": "FFFFFFFFFFFFFFFF", "port": 1, "payload": GPS_PAYLOAD},
            {"dev_eui": GPS_EUI, "port": 2, "payload": GPS_PAYLOAD[:5]},
            {"dev_eui": GPS_EUI, "port": 2, "payload": None, "error": "invalid hex payload"},
        ]
    )
    chunk = engine.decode_uplinks(table_in)
    t = chunk.table
    assert engine.mixed and t.schema == engine.schema
    assert t.column_names[-5:] == ["device_class", "decoded", "normalized", "error", "warnings"]
    assert t["line"].to_pylist() == [1, 2, 3, 4, 5, 6]
    assert t["device_class"].to_pylist() == [
        "Test Device Class",
        "Room Climate Sensor",
        "Multi Sensor",
        None,
        "Test Device Class",
        "Test Device Class",
    ]
    assert pa.types.is_dictionary(t.schema.field("device_class").type)
    assert t["error"].to_pylist() == [
        None,
        None,
        None,
        NO_CLASS,
        "payload too short: needs 72 bits, has 40",
        "invalid hex payload",
    ]
    # decoded is a struct of class structs, set only for the row's own class
    names = [f.name for f in t.schema.field("decoded").type]
    assert names == [dc.name for dc in engine.classes]  # load order
    assert set(names) == {"Test Device Class", "Room Climate Sensor", "Multi Sensor"}
    rows = t.to_pylist()
    assert (
        rows[0]["decoded"]["Test Device Class"]
        == classes["Test Device Class"].decode([GPS_PAYLOAD], encoding="raw").to_pylist()[0]
    )
    assert rows[0]["decoded"]["Room Climate Sensor"] is None
    assert rows[1]["decoded"]["Room Climate Sensor"]["alarm"] == "TRUE"
    assert rows[1]["decoded"]["Room Climate Sensor"]["temperature"] == 21.5
    assert rows[2]["decoded"]["Multi Sensor"]["status"]["battery"] == 200
    for r in rows[3:]:
        assert r["decoded"] is None  # null exactly where error is set
    assert pc.equal(pc.is_null(t["decoded"]), pc.is_valid(t["error"])).to_pylist() == [True] * 6
    assert t["devaddr"].to_pylist()[1] == "26012345"  # filled from the device record
    assert chunk.rows == chunk.decoded + sum(chunk.errors.values()) == 6


def test_by_class_tables_have_the_plain_class_struct(engine, classes):
    chunk = engine.decode_uplinks(
        uplinks(
            [
                {"dev_eui": GPS_EUI, "port": 2, "payload": GPS_PAYLOAD, "line": 10},
                {"dev_eui": CLIMATE_EUI, "port": 2, "payload": CLIMATE_PAYLOAD, "line": 11},
                {"dev_eui": "nobody", "port": 2, "payload": CLIMATE_PAYLOAD, "line": 12},
                {"dev_eui": GPS_EUI, "port": 2, "payload": GPS_PAYLOAD, "line": 13},
            ]
        )
    )
    parts = chunk.by_class()
    assert set(parts) == {"Test Device Class", "Room Climate Sensor", None}
    gps = parts["Test Device Class"]
    assert gps["line"].to_pylist() == [10, 13]
    assert gps.schema == engine.class_schema("Test Device Class")
    assert gps.schema.field("decoded").type == pa.struct(list(classes["Test Device Class"].output_schema()))
    assert parts[None]["error"].to_pylist() == [NO_CLASS]
    assert sum(p.num_rows for p in parts.values()) == chunk.rows


def test_ports_choose_the_class_of_a_device(engine):
    t = engine.decode_uplinks(
        uplinks(
            [
                {"dev_eui": BOTH_EUI, "port": 3, "payload": STATUS},
                {"dev_eui": BOTH_EUI, "port": 2, "payload": GPS_PAYLOAD},
                {"dev_eui": BOTH_EUI, "port": None, "payload": GPS_PAYLOAD},
                {"device_id": MULTI_ID, "port": 9, "payload": STATUS},
            ]
        )
    ).table
    assert t["device_class"].to_pylist() == ["Multi Sensor", "Test Device Class", "Test Device Class", None]
    assert t["error"].to_pylist()[3] == "no device class for port 9"


def test_multi_sensor_layouts(classes):
    """The extension sample: layout chosen by port and header bit, little-endian fields, skip under if."""
    ms = classes["Multi Sensor"]
    rows = ms.decode([MEASUREMENT, STATUS, CONFIG], encoding="raw", ports=[3, 3, 4]).to_pylist()
    assert rows[0]["kind"] == "measurement" and rows[0]["temperature"] == 21.5
    assert rows[0]["co2"] == 612 and rows[0]["pressure"] == 1013.25 and rows[0]["sequence"] == 5
    assert rows[1]["kind"] == "status" and rows[1]["status"] == {
        "tamper": True,
        "moving": False,
        "battery": 200,
        "batteryLevel": 79,
    }
    assert rows[2] == {**rows[2], "kind": "config", "interval": 600, "calibrationOffset": -0.25}


def test_single_class_decoded_is_the_class_struct(classes):
    engine = Engine(classes["Test Device Class"])
    assert not engine.mixed
    t = engine.decode_uplinks(
        uplinks(
            [
                {"dev_eui": "anything", "port": 2, "payload": GPS_PAYLOAD},
                {"dev_eui": "else", "port": 7, "payload": b"\x01"},
            ]
        )
    ).table
    assert t.schema.field("decoded").type == pa.struct(list(classes["Test Device Class"].output_schema()))
    assert t["decoded"].to_pylist()[0]["gps"]["altitude"] == 100
    assert t["error"].to_pylist() == [None, "payload too short: needs 72 bits, has 8"]


def test_include_hidden(classes):
    engine = Engine(classes["Test Device Class"], include_hidden=True)
    t = engine.decode_uplinks(uplinks([{"dev_eui": "a", "port": 2, "payload": GPS_PAYLOAD}])).table
    assert t["decoded"].to_pylist()[0]["battery"] == 0xFF


def test_engine_refuses_a_registry_changed_after_it(classes):
    reg = Registry(classes.values())
    reg.bind("AA", 2)
    engine = Engine(reg)
    reg.bind("BB", 7)  # Room Climate Sensor is not among the engine's classes
    with pytest.raises(decoder.InputError, match="registry changed"):
        engine.decode_uplinks(uplinks([{"dev_eui": "BB", "port": 2, "payload": CLIMATE_PAYLOAD}]))


def test_empty_input_has_the_full_schema(engine):
    chunk = engine.decode_uplinks(uplinks([]))
    assert chunk.table.num_rows == 0 and chunk.table.schema == engine.schema
    assert chunk.by_class() == {}


# --- decode_packets: JSON values in (needs the reader) ---------------------------------

FIREFLY_SEED = {
    "more": True,
    "packets": [
        {
            "ack": False,
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
                    "gweui": "0000024B080E006D",
                }
            ],
            "modu": "LORA",
            "mtype": "unconfirmed_data_up",
            "payload_encrypted": False,
            "payload": "415141414277673D",
            "port": 2,
            "received_at": "2016-06-22T09:35:35",
            "size": 28,
            "spreading_factor": 7,
            "uid": "8a569133-ba44-4d7e-5555-af62faf9f722",
        },
    ],
}


def test_decode_packets_seed_packet_is_one_byte_short(classes):
    """The seed's List Packets sample carries 8 bytes; the seed class needs 9."""
    engine = Engine(classes["Test Device Class"])
    t = engine.decode_packets([FIREFLY_SEED])
    assert t.num_rows == 1
    row = t.to_pylist()[0]
    assert row["provider"] == "firefly" and row["dev_eui"] == "2564927382738492" and row["port"] == 2
    assert row["error"] == "payload too short: needs 72 bits, has 64" and row["decoded"] is None


def test_decode_keeps_bad_lines_and_skipped_out_of_the_rows(engine):
    good = dict(FIREFLY_SEED["packets"][0], device_eui=GPS_EUI, payload=GPS_PAYLOAD.hex())
    lines = [json.dumps(good), "{not json", json.dumps(dict(good, payload="zz")), "", json.dumps(good)]
    chunk = engine.decode(lines)
    assert chunk.rows == 3 and chunk.decoded == 2
    assert [line for line, _ in chunk.bad_lines] == [2]
    assert chunk.table["line"].to_pylist() == [1, 3, 5]
    summary = Summary()
    summary.add(chunk)
    assert summary.rows_in == summary.decoded + summary.failed + sum(summary.skipped.values())
    assert "rows/s" in summary.format()


def test_decode_stream_in_small_chunks_matches_all_at_once(engine, tmp_path, monkeypatch):
    """Chunks are decoded in the threads that parse them (or by the caller, when it was
    waiting for one), numbered from 1 there: renumbered, they are what decoding the whole
    file at once gives, bad lines included."""
    import threading

    good = dict(FIREFLY_SEED["packets"][0], device_eui=GPS_EUI, payload=GPS_PAYLOAD.hex())
    other = dict(good, device_eui=CLIMATE_EUI, payload=CLIMATE_PAYLOAD.hex())
    path = tmp_path / "p.jsonl"
    lines = [json.dumps(other if k % 3 else good) for k in range(400)]
    lines[150] = lines[150][:40]  # bad lines in later chunks keep their own numbers
    lines[333] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    threads = []
    decode_uplinks = Engine.decode_uplinks
    monkeypatch.setattr(
        Engine,
        "decode_uplinks",
        lambda *a, **k: (threads.append(threading.current_thread()), decode_uplinks(*a, **k))[1],
    )
    chunks = list(engine.decode_stream(path, chunk_bytes=16 << 10))
    assert len(chunks) > 3
    assert len(threads) == len(chunks)  # each chunk decoded once
    whole = engine.decode(path)
    streamed = pa.concat_tables([c.table for c in chunks])
    assert streamed.equals(whole.table)
    assert [b for c in chunks for b in c.bad_lines] == whole.bad_lines and [b[0] for b in whole.bad_lines] == [151, 334]
    assert [c.first_line for c in chunks] == [1] + [c.first_line + c.lines for c in chunks[:-1]]
    assert whole.table["line"].to_pylist() == [k for k in range(1, 401) if k not in (151, 334)]
    by_class = engine.decode_packets_by_class(str(path))  # a file name as str works too
    assert by_class["Room Climate Sensor"].num_rows == 266


def test_a_chunk_the_caller_waits_for_is_decoded_by_the_caller(engine, tmp_path, monkeypatch):
    """A worker that finishes a chunk its caller is already waiting for leaves the decoding to
    the caller, idle until then, and goes on to the next chunk (on a file of several providers
    the parsing threads are what a run waits for); the rows are the same."""
    import threading
    import time

    from decoder.ingest import parse

    good = dict(FIREFLY_SEED["packets"][0], device_eui=GPS_EUI, payload=GPS_PAYLOAD.hex())
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(dict(good, fcnt=k)) for k in range(600)) + "\n")
    by_caller = []
    decode_uplinks = Engine.decode_uplinks
    monkeypatch.setattr(
        Engine,
        "decode_uplinks",
        lambda *a, **k: (
            by_caller.append(threading.current_thread() is threading.main_thread()),
            decode_uplinks(*a, **k),
        )[1],
    )
    process = parse.Reader.process
    # Parsing slower than the caller: it asks for every chunk before that chunk is parsed.
    monkeypatch.setattr(parse.Reader, "process", lambda *a, **k: (time.sleep(0.5), process(*a, **k))[1])
    chunks = list(engine.decode_stream(path, chunk_bytes=64 << 10))
    assert len(chunks) >= 3 and len(by_caller) == len(chunks)
    assert any(by_caller)  # the first chunk at least: asked for at once, parsed 0.5 s later
    monkeypatch.undo()
    assert pa.concat_tables([c.table for c in chunks]).equals(engine.decode(path).table)


def test_decode_stream_of_a_stream_already_reading_equals_decoding_at_once(engine, tmp_path):
    """The command's first input starts reading before the engine exists: the chunks parsed by
    then are decoded by the caller, the rest where they are parsed; all in order, renumbered."""
    import time

    from decoder.ingest import ChunkStream

    good = dict(FIREFLY_SEED["packets"][0], device_eui=GPS_EUI, payload=GPS_PAYLOAD.hex())
    lines = [json.dumps(dict(good, fcnt=k)) for k in range(600)]
    lines[10], lines[450] = "{", '{"a":1}{"b":2}'
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    stream = ChunkStream(path, chunk_bytes=16 << 10, receptions=False)
    time.sleep(0.3)  # some chunks parsed before the engine asks (whatever the timing, the same result)
    with stream:
        chunks = list(engine.decode_stream(stream, name=str(path)))
    whole = engine.decode(path)
    assert len(chunks) > 3
    assert pa.concat_tables([c.table for c in chunks]).equals(whole.table)
    assert [b for c in chunks for b in c.bad_lines] == whole.bad_lines and [b[0] for b in whole.bad_lines] == [11, 451]

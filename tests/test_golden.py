"""The seed's Test Device Class on payloads worked out by hand, and the library API around it."""

from __future__ import annotations

import base64
import copy

import numpy as np
import pyarrow as pa
import pytest

import decoder

# battery 0x7F=127, latitude 0x400000 = 2**22 -> 45 deg, longitude 0xC00000 = -2**22 -> -90 deg, altitude 0x0064 = 100
P1 = "7F400000C000000064"
# battery 0 -> batteryLevel null; latitude -1 (FFFFFF), longitude 0x7FFFFF, altitude 0xFFFF = -1
P2 = "00FFFFFF7FFFFFFFFF"
# battery 254 -> 1.0; latitude 0x800000 = -2**23 -> -90; longitude 1; altitude 0x8000 = -32768
P3 = "FE8000000000018000"


def test_hand_worked_values(seed_class):
    rows = seed_class.decode([P1, P2, P3]).to_pylist()
    assert rows[0] == {"gps": {"latitude": 45.0, "longitude": -90.0, "altitude": 100}, "batteryLevel": 126 / 253}
    assert rows[1]["batteryLevel"] is None  # battery == 0
    assert rows[1]["gps"] == {"latitude": -90 / 2**23, "longitude": (2**23 - 1) / 2**23 * 180, "altitude": -1}
    assert rows[2] == {"gps": {"latitude": -90.0, "longitude": 180 / 2**23, "altitude": -32768}, "batteryLevel": 1.0}


def test_hidden_variable_only_on_request(seed_class):
    assert "battery" not in seed_class.decode([P1]).to_pylist()[0]
    assert seed_class.decode([P1, P2], include_hidden=True).to_pylist()[1]["battery"] == 0


def test_arrow_types_and_validity(seed_class):
    table = seed_class.decode([P1, P2, "00"], include_hidden=True).to_arrow()
    assert table.schema == seed_class.output_schema(include_hidden=True)
    assert table.schema.field("battery").type == pa.uint8()  # raw 8-bit field keeps a sized int
    gps = table.schema.field("gps").type
    assert gps.field("altitude").type == pa.int16()
    assert gps.field("latitude").type == pa.float64()  # reassigned by a formula
    level = table.column("batteryLevel")
    assert level.null_count == 2 and level.is_null().to_pylist() == [False, True, True]
    # null is a validity bit, never a NaN in the values
    assert not np.isnan(level.combine_chunks().drop_null().to_numpy()).any()


def test_bad_rows_get_errors_and_never_raise(seed_class):
    batch = seed_class.decode([P1, "7F40", "ABC", "zz" * 9, None, P3])
    errors = {e["row"]: e["error"] for e in batch.errors}
    assert errors[1] == "payload too short: needs 72 bits, has 16"
    assert "odd hex length" in errors[2]
    assert "bad hex character 'z'" in errors[3]
    assert errors[4] == "payload is missing"
    assert set(errors) == {1, 2, 3, 4}
    stats = batch.stats
    assert stats["rows"] == 6 == stats["decoded"] + stats["errors"]
    rows = batch.to_pylist()
    assert rows[1] == {"gps": {"latitude": None, "longitude": None, "altitude": None}, "batteryLevel": None}
    assert batch.error_array().to_pylist() == [None, errors[1], errors[2], errors[3], errors[4], None]


def test_leftover_bytes_are_counted_not_errors(seed_class):
    batch = seed_class.decode([P1 + "AABB", P1])
    assert batch.errors == []
    assert batch.stats["rows_with_leftover_bytes"] == 1 and batch.stats["leftover_bytes"] == 2


def test_base64_and_raw_inputs(seed_class):
    raw = bytes.fromhex(P1)
    b64 = seed_class.decode([base64.b64encode(raw).decode()], encoding="base64").to_pylist()
    assert b64 == seed_class.decode([P1]).to_pylist()
    assert seed_class.decode(pa.array([raw], pa.binary()), encoding="raw").to_pylist() == b64
    assert seed_class.decode(np.array([P1.lower()]), encoding="hex").to_pylist() == b64


@pytest.mark.parametrize("shape", ["list_response", "single_response", "class", "list", "script", "int_bits", "text"])
def test_every_script_shape_loads(seed_classes, shape):
    cls = copy.deepcopy(seed_classes["device_classes"][0])
    source = {
        "list_response": seed_classes,
        "single_response": {"device_classes": cls},
        "class": cls,
        "list": [cls],
        "script": cls["script"],
    }.get(shape)
    if shape == "int_bits":
        for el in cls["script"]["parseElements"]:
            el["bits"] = int(el["bits"])
        source = cls
    if shape == "text":
        import json

        source = json.dumps(seed_classes)
    dc = decoder.compile(source)
    assert dc.decode([P1]).to_pylist()[0]["gps"]["latitude"] == 45.0


def test_single_class_response_without_declared_formula_target():
    # "Show Single Device Class" declares no batteryLevel variable but computes it: still an output.
    from helpers import SEED_DEVICE_CLASSES

    cls = copy.deepcopy(SEED_DEVICE_CLASSES["device_classes"][0])
    del cls["script"]["variables"]["batteryLevel"]
    row = decoder.compile({"device_classes": cls}).decode([P1]).to_pylist()[0]
    assert row["batteryLevel"] == 126 / 253


def test_load_classes_and_compile_needs_exactly_one(seed_classes):
    two = {"device_classes": seed_classes["device_classes"] * 2}
    assert len(decoder.load_classes(two)) == 2
    with pytest.raises(decoder.ScriptError, match="expected one device class, found 2"):
        decoder.compile(two)


def test_ports_and_length_builtins():
    dc = decoder.compile(
        {
            "name": "p",
            "script": {
                "parseElements": [{"type": "uint", "target": "b", "bits": 8}],
                "calculateElements": [
                    {"target": "port_or_minus", "formula": "port == null ? -1 : port"},
                    {"target": "len", "formula": "length"},
                ],
            },
        }
    )
    rows = dc.decode(["01", "0102", "01"], ports=[5, None, 0]).to_pylist()
    assert [r["port_or_minus"] for r in rows] == [5.0, -1.0, 0.0]
    assert [r["len"] for r in rows] == [1.0, 2.0, 1.0]
    assert dc.decode(["01"], ports=7).to_pylist()[0]["port_or_minus"] == 7.0


def test_string_results_are_dictionary_encoded():
    dc = decoder.compile(
        {
            "name": "labels",
            "script": {
                "parseElements": [{"type": "uint", "target": "b", "bits": 8}],
                "calculateElements": [
                    {"target": "flag", "formula": "b & 0x40 ? \"TRUE\" : 'FALSE'"},
                    {"target": "maybe", "formula": "b == 0 ? null : flag"},
                    {"target": "same", "formula": "maybe == 'TRUE'"},
                ],
            },
        }
    )
    batch = dc.decode(["40", "01", "00"])
    table = batch.to_arrow()
    assert pa.types.is_dictionary(table.schema.field("flag").type)
    assert batch.to_pylist() == [
        {"b": 64, "flag": "TRUE", "maybe": "TRUE", "same": True},
        {"b": 1, "flag": "FALSE", "maybe": "FALSE", "same": False},
        {"b": 0, "flag": "FALSE", "maybe": None, "same": False},
    ]


def test_empty_batch(seed_class):
    batch = seed_class.decode([])
    assert batch.num_rows == 0 and batch.to_pylist() == [] and batch.errors == []
    assert batch.to_arrow().schema == seed_class.output_schema()


def test_long_lists_decoded_chunk_by_chunk_equal_one_call():
    """Lists of 2**16+ rows convert and decode in overlapped chunks; the result must not depend on it."""
    import random

    dc = decoder.compile(
        {
            "name": "switch",
            "script": {
                "parseElements": [
                    {"type": "uint", "target": "h", "bits": 8},
                    {"type": "int", "target": "t", "bits": 16, "signed": True, "if": "h == 1 || port == 7"},
                    {"type": "uint", "target": "tail", "bits": 8},
                ],
                "calculateElements": [{"target": "p", "formula": "port == null ? -1 : port * 2"}],
            },
        }
    )
    rng = random.Random(11)
    shapes = ["01FFFF07", "0207", "00", "0", "zz", "01", "7F12", ""]
    payloads = [
        rng.choice(shapes) if rng.random() < 0.3 else rng.randbytes(rng.choice([2, 4])).hex() for _ in range(70_000)
    ]
    ports = [rng.choice([None, 1, 7]) for _ in payloads]
    chunked = dc.decode(payloads, ports=ports, include_hidden=True)
    whole = dc.decode(pa.array(payloads), ports=ports, include_hidden=True)
    assert chunked.to_arrow().equals(whole.to_arrow())
    assert chunked.error_array().equals(whole.error_array())
    assert chunked.stats == whole.stats
    uniform = ["7F400000C000000064"] * 70_000
    assert dc.decode(uniform).stats == dc.decode(pa.array(uniform)).stats

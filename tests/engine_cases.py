"""Inputs and comparisons shared by the Spark, DuckDB and polars tests.

``EVERY_TYPE_CLASS`` is a device class whose outputs have every type a class
can produce: int8 to int64, uint8 to uint64, float32 and float64, bool, a
dictionary string, nested structs, and values that are null in decoded rows
(a conditional read, a formula that gives null). ``every_type_payloads``
gives payloads for it that hit the edges (all bits set, the smallest
negative numbers, NaN) and rows that fail (too short, odd or bad hex,
missing).
"""

from __future__ import annotations

import decimal
import math
import random
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

EVERY_TYPE_PORT = 9
EVERY_TYPE_CLASS = {
    "id": 901,
    "name": "Every Type",
    "ports": [EVERY_TYPE_PORT],
    "script": {
        "variables": {"flag": {"type": "hidden", "name": "flag"}},
        "parseElements": [
            {"type": "uint", "target": "flag", "bits": 8},
            {"type": "int", "target": "ints.i8", "bits": 8, "signed": True},
            {"type": "int", "target": "ints.i16", "bits": 16, "signed": True},
            {"type": "int", "target": "ints.i32", "bits": 32, "signed": True},
            {"type": "int", "target": "ints.i64", "bits": 64, "signed": True},
            {"type": "uint", "target": "uints.u8", "bits": 8},
            {"type": "uint", "target": "uints.u16", "bits": 16},
            {"type": "uint", "target": "uints.u32", "bits": 32},
            {"type": "uint", "target": "uints.u64", "bits": 64},
            {"type": "float", "target": "f32", "bits": 32},
            {"type": "float", "target": "f64", "bits": 64},
            {"type": "bool", "target": "b"},
            {"type": "skip", "bits": 7},
            {"type": "uint", "target": "maybe.u16", "bits": 16, "if": "(flag & 1) == 1"},
        ],
        "calculateElements": [
            {"target": "label", "formula": '(flag & 2) == 2 ? "two" : "other"'},
            {"target": "ratio", "formula": "(flag & 4) == 4 ? null : flag / 255"},
            {"target": "deep.er.sum", "formula": "uints.u8 + ints.i8"},
        ],
    },
}
EVERY_TYPE_BYTES = 44  # without the conditional u16 (flag bit 0 set: 46)

# The Arrow types the class must produce (checked, so a change in the compiler cannot thin the test out).
EVERY_TYPE_ARROW = pa.struct(
    [
        ("ints", pa.struct([("i8", pa.int8()), ("i16", pa.int16()), ("i32", pa.int32()), ("i64", pa.int64())])),
        ("uints", pa.struct([("u8", pa.uint8()), ("u16", pa.uint16()), ("u32", pa.uint32()), ("u64", pa.uint64())])),
        ("f32", pa.float32()),
        ("f64", pa.float64()),
        ("b", pa.bool_()),
        ("maybe", pa.struct([("u16", pa.uint16())])),
        ("label", pa.dictionary(pa.int32(), pa.string())),
        ("ratio", pa.float64()),
        ("deep", pa.struct([("er", pa.struct([("sum", pa.float64())]))])),
    ]
)


def every_type_payloads(n: int, seed: int = 7) -> list[str | None]:
    """``n`` hex payloads for EVERY_TYPE_CLASS: edge values first, then random ones; some rows fail."""
    rng = random.Random(seed)
    edges = [
        "ff" * 46,  # every bit set: -1 signed, max unsigned, NaN floats
        "00" + "80" + "8000" + "80000000" + "8000000000000000" + "00" * 28,  # minimum signed ints
        "00" * EVERY_TYPE_BYTES,  # zeros, flag 0: maybe.u16 null, ratio 0
        "05" + "00" * (EVERY_TYPE_BYTES - 1),  # flag bit 0 without the 2 bytes it needs: too short
        "06" + "7f" * (EVERY_TYPE_BYTES - 1),  # label "two", ratio null
        "abc",  # odd hex
        "zz" * EVERY_TYPE_BYTES,  # bad hex
        None,  # missing
        "",  # empty
    ]
    out: list[str | None] = edges[:n]
    while len(out) < n:
        size = EVERY_TYPE_BYTES + 2 if rng.random() < 0.9 else rng.randrange(0, EVERY_TYPE_BYTES)
        out.append(rng.randbytes(size).hex())
    return out


NAN = "NaN"  # NaN compares unequal to itself; rows compare with this in its place


def comparable(value: Any) -> Any:
    """A value as plain Python for equality: NaN -> NAN, integral Decimal -> int, containers recursively."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return NAN
    if isinstance(value, decimal.Decimal):
        assert value == value.to_integral_value(), value
        return int(value)
    return value


def rows(table: pa.Table | pa.RecordBatch) -> list[dict]:
    """Rows of a table as comparable dicts; timestamps as integer microseconds since the epoch."""
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            per_us = {"s": None, "ms": None, "us": 1, "ns": 1000}[field.type.unit]
            assert per_us is not None, field
            column = pc.divide(column.cast(pa.int64()), per_us)  # integer division: ns truncated to us
        columns.append(column)
    plain = pa.table(columns, names=table.schema.names)
    return [comparable(r) for r in plain.to_pylist()]


MIXED_GROUPS = ("Test Device Class:9:2", "Room Climate Sensor:6:1", "Multi Sensor:10:1")
MIXED_SHAPES = (
    "firefly=0.3,helium_event=0.15,helium_body=0.15,helium_integration=0.1,helium_downlink=0.1,tts=0.1,chirpstack=0.1"
)


def mixed_uplinks(n: int, classes_dir, seed: int = 5) -> tuple[pa.Table, dict]:
    """``n`` generated lines of three classes and every provider shape, normalized and decoded by the Engine.

    Returns the Engine's table (one row per uplink: raw ``payload`` bytes,
    ``port``, ``device_class``, ``decoded`` as a struct of class structs,
    ``error``) and the compiled classes by name.
    """
    from helpers import sample_generator

    import decoder

    gen_module = sample_generator()
    groups = [gen_module.parse_group(g) for g in MIXED_GROUPS]
    gen = gen_module.Generator(groups, 80, gen_module.parse_mix(MIXED_SHAPES), seed=seed)
    devices = {gen_module.device_eui(g, i): groups[g].name for g, i in gen.devices}
    devices.update({gen_module.device_uuid(g, i): groups[g].name for g, i in gen.devices})
    classes = [dc for path in sorted(classes_dir.glob("*.json")) for dc in decoder.load_classes(path)]
    registry = decoder.Registry(classes)
    registry.load_devices(devices)
    table = decoder.Engine(registry).decode_packets([line.encode() for line in gen.lines(n)])
    return table, {dc.name: dc for dc in classes}


# Cayenne LPP (the built-in format): type code -> bytes per item, from the format's table
# (digital in/out, analog in/out, luminosity, presence, temperature, humidity, accelerometer,
# barometer, gyrometer, GPS). Its output is a struct of maps {channel: value}.
LPP_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 101: 2, 102: 1, 103: 2, 104: 1, 113: 6, 115: 2, 134: 6, 136: 9}


def lpp_payloads(n: int, seed: int = 11) -> list[str | None]:
    """``n`` hex Cayenne LPP payloads of 1-4 random items each; a few fail (cut short, unknown type, missing)."""
    rng = random.Random(seed)
    out: list[str | None] = ["0367011", "03FF0000", None, "", "0367"]  # odd hex, unknown type, missing, empty, short
    codes = list(LPP_SIZES)
    while len(out) < n:
        items = []
        for _ in range(rng.randrange(1, 5)):
            code = rng.choice(codes)
            items.append(bytes([rng.randrange(0, 8), code]) + rng.randbytes(LPP_SIZES[code]))
        out.append(b"".join(items).hex())
    return out

"""Normalized payloads: a class maps its outputs onto The Things Stack's normalized payload schema,
and uplinks of different device models come out in one comparable column."""

from __future__ import annotations

import csv
import io
import json

import pyarrow as pa
import pytest
from helpers import run_cli

import decoder
from decoder.compiler.normalized import FIELDS
from decoder.engine import Summary


def _class(name: str, parse: list, calc: list, normalized: dict, variables: dict | None = None) -> dict:
    return {
        "name": name,
        "normalized": normalized,
        "script": {"variables": variables or {}, "parseElements": parse, "calculateElements": calc},
    }


# A weather station: temperature in 0.1 °C (signed), humidity in %, wind direction in degrees,
# battery in mV (hidden: only its volts are mapped), a door contact bit.
WEATHER = _class(
    "Weather Station",
    [
        {"type": "int", "target": "t", "bits": 16, "signed": True},
        {"type": "uint", "target": "rh", "bits": 8},
        {"type": "uint", "target": "dir", "bits": 16},
        {"type": "uint", "target": "mv", "bits": 16},
        {"type": "uint", "target": "door", "bits": 8},
    ],
    [
        {"target": "temperature", "formula": "t / 10"},
        {"target": "volts", "formula": "mv / 1000"},
        {"target": "contact", "formula": "door == 0 ? 'closed' : door == 1 ? 'open' : 'ajar'"},
    ],
    {
        "air.temperature": "temperature",
        "air.relativeHumidity": "rh",
        "wind.direction": "dir",
        "battery": "volts",
        "action.contactState": "contact",
    },
    variables={"mv": {"type": "hidden"}, "volts": {"type": "hidden"}},
)
# Another model: temperature in °C as a float, CO2 in ppm.
AIR = _class(
    "Air Quality",
    [{"type": "float", "target": "temp", "bits": 32}, {"type": "uint", "target": "co2", "bits": 16}],
    [],
    {"air.temperature": "temp", "air.co2": "co2"},
)


def _weather(t: int, rh: int, direction: int, mv: int, door: int) -> str:
    return f"{t & 0xFFFF:04X}{rh:02X}{direction:04X}{mv:04X}{door:02X}"


def _packet(eui: str, payload: str, k: int) -> dict:
    return {
        "uid": f"u{k}",
        "device_eui": eui,
        "payload": payload,
        "port": 1,
        "fcnt": k,
        "received_at": "2024-05-01T12:00:00",
        "gwrx": [{"gweui": "G", "rssi": -80, "lsnr": 7.0}],
    }


@pytest.fixture(scope="module")
def engine():
    registry = decoder.Registry(decoder.load_classes([WEATHER, AIR]))
    registry.bind("00000000000000A1", "Weather Station")
    registry.bind("00000000000000B2", "Air Quality")
    return decoder.Engine(registry)


def test_values_come_out_with_the_schemas_names_and_units(engine):
    chunk = engine.decode([_packet("00000000000000A1", _weather(215, 40, 90, 3300, 1), 1)])
    row = chunk.table.to_pylist()[0]
    assert row["normalized"]["air"]["temperature"] == 21.5
    assert row["normalized"]["air"]["relativeHumidity"] == 40.0
    assert row["normalized"]["wind"]["direction"] == 90.0
    assert row["normalized"]["battery"] == 3.3
    assert row["normalized"]["action"]["contactState"] == "open"
    assert row["normalized"]["air"]["co2"] is None  # this model has no CO2
    assert row["warnings"] is None
    assert "volts" not in row["decoded"]["Weather Station"]  # hidden stays hidden in `decoded`


def test_two_models_are_one_comparable_table(engine):
    import struct

    air = struct.pack(">fH", 23.25, 612).hex().upper()
    chunk = engine.decode(
        [_packet("00000000000000A1", _weather(-55, 80, 10, 3000, 0), 1), _packet("00000000000000B2", air, 2)]
    )
    temps = [r["normalized"]["air"]["temperature"] for r in chunk.table.to_pylist()]
    assert temps == [-5.5, 23.25]
    assert chunk.table.to_pylist()[1]["normalized"]["air"]["co2"] == 612.0
    # one type in every class's table, so files of different classes read back as one
    types = {name: t.schema.field("normalized").type for name, t in chunk.by_class().items()}
    assert len(set(types.values())) == 1 and set(types) == {"Weather Station", "Air Quality"}


@pytest.mark.parametrize(
    "values, quantity, text",
    [
        ((-2750, 40, 90, 3300, 0), ("air", "temperature"), "air.temperature: -275 °C is below -273.15"),
        ((200, 250, 90, 3300, 0), ("air", "relativeHumidity"), "air.relativeHumidity: 250 % is above 100"),
        ((200, 40, 360, 3300, 0), ("wind", "direction"), "wind.direction: 360 ° is above 360"),
        ((200, 40, 90, 3300, 7), ("action", "contactState"), "action.contactState: 'ajar' is not one of open, closed"),
    ],
)
def test_a_value_outside_the_schema_is_null_with_a_warning(engine, values, quantity, text):
    chunk = engine.decode([_packet("00000000000000A1", _weather(*values), 1)])
    row = chunk.table.to_pylist()[0]
    value = row["normalized"]
    for part in quantity:
        value = value[part]
    assert value is None
    assert row["error"] is None  # the row decoded; only that quantity is dropped
    assert row["warnings"] == f"normalized {text}"


def test_warnings_are_counted_in_the_summary(engine):
    summary = Summary()
    summary.add(
        engine.decode(
            [
                _packet("00000000000000A1", _weather(-2750, 250, 90, 3300, 0), 1),
                _packet("00000000000000A1", _weather(20, 40, 90, 3300, 0), 2),
            ]
        )
    )
    assert summary.warned == 1 and "warnings" in summary.format()


def test_a_failed_row_has_no_normalized_payload(engine):
    row = engine.decode([_packet("00000000000000A1", "00", 1)]).table.to_pylist()[0]
    assert row["error"].startswith("payload too short") and row["normalized"] is None


@pytest.mark.parametrize(
    "normalized, message",
    [
        ({"air.temprature": "temperature"}, "unknown quantity 'air.temprature'"),
        ({"air.temperature": "nowhere"}, "'nowhere', which is not an output"),
        ({"air.location": "temperature"}, "air.location is a string"),
        ({"air.temperature": 5}, "must name an output"),
    ],
)
def test_a_bad_map_is_a_script_error(normalized, message):
    bad = dict(WEATHER, normalized=normalized)
    with pytest.raises(decoder.ScriptError, match=message):
        decoder.compile(bad)


def test_the_schema_is_the_device_repositorys():
    names = {q.name for q in FIELDS}
    for name in (
        "air.temperature",
        "air.relativeHumidity",
        "air.pressure",
        "air.co2",
        "air.lightIntensity",
        "wind.speed",
        "wind.direction",
        "soil.moisture",
        "water.leak",
        "battery",
        "position.latitude",
    ):
        assert name in names


def test_csv_gets_one_column_per_quantity(tmp_path):
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps([WEATHER]))
    packets = tmp_path / "p.jsonl"
    packets.write_text(json.dumps(_packet("00000000000000A1", _weather(215, 40, 90, 3300, 1), 1)) + "\n")
    out = tmp_path / "out.csv"
    res = run_cli("decode", packets, "--classes", classes, "-o", out, "-q")
    assert res.returncode == 0, res.stderr.decode()
    row = next(csv.DictReader(io.StringIO(out.read_text())))
    assert row["normalized.air.temperature"] == "21.5" and row["normalized.action.contactState"] == "open"
    assert row["warnings"] == ""


def test_explain_shows_the_map():
    text = decoder.compile(WEATHER).explain()
    assert "normalized payload:" in text and "air.temperature <- temperature" in text


def test_no_map_no_column():
    engine = decoder.Engine(decoder.compile(dict(AIR, normalized=None)))
    assert "normalized" not in engine.schema.names and engine.schema.field("warnings").type == pa.string()

"""samples/generate.py: realistic payloads for the three sample classes, decoded without errors."""

from __future__ import annotations

import pytest
from helpers import ROOT, sample_generator

from decoder.engine import Engine
from decoder.registry import Registry

CLASSES = sorted((ROOT / "samples" / "classes").glob("*.json"))
# Multi Sensor first (and with a SIZE that fits none of its layouts): its port and size
# follow the layout, not the group's position or SIZE.
GROUPS = ["Multi Sensor:1:1", "Room Climate Sensor:6:1", "Test Device Class:9:2", "Other:7:1"]
MIX = "firefly=0.4,helium_event=0.2,helium_body=0.1,helium_integration=0.1,tts=0.1,chirpstack=0.1"


@pytest.fixture(scope="module")
def gen():
    return sample_generator()


def make(gen, seed: int, n: int):
    g = gen.Generator([gen.parse_group(x) for x in GROUPS], 40, gen.parse_mix(MIX), seed)
    return g, list(g.lines(n))


def test_same_seed_same_lines(gen):
    assert make(gen, 4, 300)[1] == make(gen, 4, 300)[1]
    assert make(gen, 4, 300)[1] != make(gen, 5, 300)[1]


@pytest.fixture(scope="module")
def decoded(gen):
    g, lines = make(gen, 11, 600)
    names = [grp.name for grp in g.groups]
    devices = {gen.device_eui(gi, i): names[gi] for gi, i in g.devices if names[gi] != "Other"}
    devices.update({gen.device_uuid(gi, i): names[gi] for gi, i in g.devices if names[gi] != "Other"})
    engine = Engine(Registry.from_files(CLASSES, devices=devices))
    chunk = engine.decode("\n".join(lines))
    return chunk, chunk.table.to_pylist()


def test_sample_classes_decode_without_errors(decoded):
    chunk, rows = decoded
    assert chunk.bad_lines == [] and not chunk.skipped
    assert {r["provider"] for r in rows} == {"firefly", "helium", "tts", "chirpstack"}
    assert all(r["warnings"] is None and r["gateway_count"] >= 1 and r["rssi"] is not None for r in rows)
    mine = [r for r in rows if r["device_class"] is not None]
    assert {r["device_class"] for r in mine} == {"Multi Sensor", "Room Climate Sensor", "Test Device Class"}
    assert len(mine) > 400 and all(r["error"] is None for r in mine)


def test_values_are_realistic(decoded):
    _, rows = decoded
    kinds = set()
    for r in rows:
        cls = r["device_class"]
        if cls is None:
            continue
        d = r["decoded"][cls]
        if cls == "Test Device Class":
            assert -90 <= d["gps"]["latitude"] <= 90 and -180 <= d["gps"]["longitude"] <= 180
            assert -100 <= d["gps"]["altitude"] < 3000 and 0 <= d["batteryLevel"] <= 1
        elif cls == "Room Climate Sensor":
            assert 15 <= d["temperature"] <= 30 and 25 <= d["humidity"] <= 70
            assert 2.9 <= d["batteryVoltage"] <= 3.6
            assert d["lowBattery"] == (d["batteryVoltage"] < 3.0)
            assert d["dewPoint"] < d["temperature"]
        else:
            kinds.add(d["kind"])
            assert r["port"] == (4 if d["kind"] == "config" else 3)
            assert 0 <= d["sequence"] <= 127
            if d["kind"] == "measurement":
                assert 15 <= d["temperature"] <= 30 and 400 <= d["co2"] <= 2000
                assert 950 <= d["pressure"] <= 1050
            elif d["kind"] == "status":
                assert 1 <= d["status"]["battery"] <= 254 and 0 <= d["status"]["batteryLevel"] <= 100
            else:
                assert 60 <= d["interval"] <= 3600 and -2 <= d["calibrationOffset"] <= 2
    assert kinds == {"measurement", "status", "config"}


def test_unknown_class_gets_random_bytes_of_its_size(gen):
    g, _ = make(gen, 1, 0)
    other = next(gi for gi, grp in enumerate(g.groups) if grp.name == "Other")
    port, body = g.payload(other, 5, 1 + other)
    assert port == 1 + other and len(body) == 7
    multi = g.payload(0, 5, 1)
    assert multi[0] in (3, 4) and len(multi[1]) in (3, 5, 10)

"""Mutated packet lines of every provider never raise, and every line is accounted for.

Real generated lines (Firefly packets, Helium device events, HTTP integration
bodies, integration events, downlinks, The Things Stack and ChirpStack
uplinks) are mutated the ways input goes wrong
in the field: fields deleted, duplicated or given another type, lines cut,
bytes inserted, payloads in the wrong encoding, text in another charset.
Each file goes through ``Engine.decode`` and through ``decoder decode`` run
in this process; neither may raise or print a traceback, and the counts must
reconcile: rows = decoded + errors, and every non-blank line holds rows, is
a bad line with its reason, or was skipped.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from engine_cases import MIXED_GROUPS, MIXED_SHAPES
from helpers import ROOT, run_cli, sample_generator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import decoder

CLASSES = ROOT / "samples" / "classes"

# Values a provider (or a broken one) may put where another type belongs.
ODD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    70000,
    2**70,
    3.7,
    1e308,
    "2",
    "",
    "x",
    "ÿ\u0000",
    [],
    {},
    [None, 5, "x"],
    {"a": {"b": []}},
]
RAW_ODD_NUMBERS = ["1e400", "-1e400", "123456789012345678901234567890", "-0", "1E5"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Generated lines of every shape, the devices file binding them, and an engine of the sample classes."""
    gen_module = sample_generator()
    groups = [gen_module.parse_group(g) for g in MIXED_GROUPS]
    gen = gen_module.Generator(groups, 12, gen_module.parse_mix(MIXED_SHAPES), seed=21)
    devices = {gen_module.device_eui(g, i): groups[g].name for g, i in gen.devices}
    devices.update({gen_module.device_uuid(g, i): groups[g].name for g, i in gen.devices})
    lines = list(gen.lines(60))
    folder = tmp_path_factory.mktemp("fuzz")
    devices_file = folder / "devices.json"
    devices_file.write_text(json.dumps(devices))
    registry = decoder.Registry([dc for path in sorted(CLASSES.glob("*.json")) for dc in decoder.load_classes(path)])
    registry.load_devices(devices)
    return lines, devices_file, decoder.Engine(registry)


def _paths(value, prefix=()):
    """Every (path) to a value inside a JSON object, containers included."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _parent(obj, path):
    for key in path[:-1]:
        obj = obj[key]
    return obj


def _payload_holders(obj: dict) -> list[tuple[dict, str]]:
    """(object, key) of each place a provider puts the payload text in this uplink."""
    places = [(obj, "payload")]
    data = obj.get("data")
    if isinstance(data, dict):  # Helium events; an integration event's body under data.req.body
        places.append((data, "payload"))
        req = data.get("req")
        if isinstance(req, dict) and isinstance(req.get("body"), dict):
            places.append((req["body"], "payload"))
    elif isinstance(data, str):  # ChirpStack: data is the payload itself
        places.append((obj, "data"))
    if isinstance(obj.get("uplink_message"), dict):  # The Things Stack
        places.append((obj["uplink_message"], "frm_payload"))
    return [(holder, key) for holder, key in places if key in holder]


@st.composite
def mutated_line(draw, lines):
    text = draw(st.sampled_from(lines))
    kind = draw(
        st.sampled_from(["delete", "retype", "raw_number", "duplicate", "cut", "insert", "payload", "latin1", "same"])
    )
    if kind in ("delete", "retype", "raw_number", "duplicate", "payload"):
        obj = json.loads(text)
        paths = list(_paths(obj))
        path = draw(st.sampled_from(paths))
        parent = _parent(obj, path)
        if kind == "delete":
            del parent[path[-1]]
            return json.dumps(obj).encode()
        if kind == "retype":
            parent[path[-1]] = draw(st.sampled_from(ODD_VALUES))
            return json.dumps(obj).encode()
        if kind == "raw_number":  # numbers json.dumps cannot write: spliced in as text
            parent[path[-1]] = "__RAW__"
            return json.dumps(obj).replace('"__RAW__"', draw(st.sampled_from(RAW_ODD_NUMBERS))).encode()
        if kind == "duplicate":  # the same key twice, the second with another value
            if not isinstance(parent, dict):
                return text.encode()
            key = json.dumps(path[-1])
            extra = json.dumps(draw(st.sampled_from(ODD_VALUES)))
            body = json.dumps(obj)
            at = body.find(key + ":")
            return (body[:at] + f"{key}: {extra}, " + body[at:]).encode() if at >= 0 else body.encode()
        # payload: text that is not what the provider's encoding allows
        bad = draw(st.sampled_from(["ABC", "zz", "@@@=", "0x01", " 01 02", "AQ", "AQI=\n", "é1"]))
        for holder, key in _payload_holders(obj):
            holder[key] = bad
        return json.dumps(obj).encode()
    data = text.encode()
    if kind == "cut":
        return data[: draw(st.integers(0, len(data)))]
    if kind == "insert":
        at = draw(st.integers(0, len(data)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b",", b"}", b"{", b'"', b"\\", b"\n", b"\xed\xa0\x80"]))
        return data[:at] + junk + data[at:]
    if kind == "latin1":
        return text.replace('"', '"\xe9', 1).encode("latin-1", errors="replace")
    return data


def _accounted(chunk, data: bytes) -> None:
    """rows = decoded + errors; every non-blank line holds rows, is a bad line, or was skipped."""
    assert chunk.rows == chunk.decoded + sum(chunk.errors.values())
    nonblank = {k for k, line in enumerate(data.split(b"\n"), 1) if line.strip()}
    row_lines = set(chunk.table.column("line").to_pylist())
    bad_lines = [line for line, _ in chunk.bad_lines]
    assert all(reason for _, reason in chunk.bad_lines)
    assert len(bad_lines) == len(set(bad_lines))
    assert row_lines <= nonblank and set(bad_lines) <= nonblank
    silent = nonblank - row_lines - set(bad_lines)
    assert len(silent) <= sum(chunk.skipped.values()), (silent, chunk.skipped)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_lines_never_raise_and_every_line_is_accounted_for(world, tmp_path, data):
    lines, devices_file, engine = world
    picked = data.draw(st.lists(mutated_line(lines), min_size=1, max_size=6))
    blob = b"\n".join(picked) + b"\n"

    chunk = engine.decode([line for line in blob.split(b"\n")][:-1])
    _accounted(chunk, blob)

    src = tmp_path / "in.jsonl"
    src.write_bytes(blob)
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    res = run_cli("decode", src, "--classes", CLASSES, "--devices", devices_file, "-o", out, "--errors", errors)
    err = res.stderr.decode()
    assert res.returncode == 0, err
    assert "Traceback" not in err
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    failed = [json.loads(x) for x in errors.read_text().splitlines()]
    assert len(rows) == chunk.rows
    assert Counter(r["error"] for r in rows if r["error"]) == chunk.errors
    assert len(failed) == sum(chunk.errors.values()) + len(chunk.bad_lines)
    # The summary's first line: "rows in N (U uplinks, S skipped; L lines)", N = decoded + errors + skipped.
    rows_in = int(err.split("rows in", 1)[1].split()[0].replace(",", ""))
    assert rows_in == chunk.decoded + sum(chunk.errors.values()) + sum(chunk.skipped.values())
    bad = int(err.split("bad lines", 1)[1].split()[0].replace(",", ""))
    assert bad == len(chunk.bad_lines)

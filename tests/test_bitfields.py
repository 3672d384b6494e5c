"""Bit fields against bitstring, the oracle: every width 1-64, signed and unsigned,
unaligned offsets, little-endian, float 16/32/64, bool, skip and conditional reads."""

from __future__ import annotations

import math
import random

import bitstring
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import decoder


def _class(elements):
    return decoder.compile({"name": "bits", "script": {"parseElements": elements}})


def _read(payload: bytes, fmt: list[str]) -> list:
    """bitstring 5's reader (ConstBitStream.readlist in bitstring 4)."""
    return bitstring.Reader(bitstring.Bits(payload)).read_list(fmt)


def _same(ours, theirs):
    if isinstance(theirs, float) and math.isnan(theirs):
        return isinstance(ours, float) and math.isnan(ours)
    return ours == theirs and (not isinstance(theirs, float) or math.copysign(1, ours) == math.copysign(1, theirs))


def _random_payloads(nbits, count, rng):
    nbytes = (nbits + 7) // 8
    edge = [
        bytes([0x00] * nbytes),
        bytes([0xFF] * nbytes),
        bytes([0x80] + [0] * (nbytes - 1)),
        bytes([0x7F] + [0xFF] * (nbytes - 1)),
    ]
    return edge + [rng.randbytes(nbytes) for _ in range(count)]


def test_every_width_signed_and_unsigned_at_unaligned_offsets():
    # int1 (u), int1 (s), int2 (u), int2 (s), ... int64 (s): offsets drift across every bit position
    elements, fmt = [], []
    for width in range(1, 65):
        elements.append({"type": "int", "target": f"u{width}", "bits": width})
        elements.append({"type": "int", "target": f"s{width}", "bits": str(width), "signed": True})
        fmt += [f"uint{width}", f"int{width}"]
    dc = _class(elements)
    payloads = _random_payloads(sum(range(1, 65)) * 2, 150, random.Random(1))
    rows = dc.decode([p.hex() for p in payloads]).to_pylist()
    for payload, row in zip(payloads, rows):
        expected = _read(payload, fmt)
        for width in range(1, 65):
            assert row[f"u{width}"] == expected[2 * width - 2], (payload.hex(), width)
            assert row[f"s{width}"] == expected[2 * width - 1], (payload.hex(), width)


def test_output_dtypes_are_sized_to_bits():
    dc = _class(
        [
            {"type": "int", "target": "a", "bits": 3},
            {"type": "int", "target": "b", "bits": 9, "signed": True},
            {"type": "uint", "target": "c", "bits": 33},
            {"type": "int", "target": "d", "bits": 64},
        ]
    )
    types = {f.name: str(f.type) for f in dc.output_schema()}
    assert types == {"a": "uint8", "b": "int16", "c": "uint64", "d": "uint64"}


@pytest.mark.parametrize("lead", [0, 8, 3])
def test_little_endian_and_floats(lead):
    elements = [{"type": "skip", "bits": lead}] if lead else []
    fmt = [f"pad{lead}"] if lead else []
    for nbytes in (1, 2, 3, 4, 8):
        elements.append({"type": "uint", "target": f"le{nbytes}", "bits": 8 * nbytes, "endian": "little"})
        elements.append(
            {"type": "int", "target": f"sle{nbytes}", "bits": 8 * nbytes, "endian": "little", "signed": True}
        )
        fmt += [f"uintle{8 * nbytes}" if nbytes > 1 else "uint8", f"intle{8 * nbytes}" if nbytes > 1 else "int8"]
    for bits in (16, 32, 64):
        elements.append({"type": "float", "target": f"f{bits}", "bits": bits})
        elements.append({"type": "float", "target": f"fle{bits}", "bits": bits, "endian": "little"})
        fmt += [f"floatbe{bits}", f"floatle{bits}"]
    elements.append({"type": "bool", "target": "flag"})
    elements.append({"type": "bool", "target": "wide", "bits": 5})
    fmt += ["bool", "uint5"]
    dc = _class(elements)
    total = lead + sum(2 * 8 * n for n in (1, 2, 3, 4, 8)) + 2 * (16 + 32 + 64) + 6
    rng = random.Random(lead)
    payloads = _random_payloads(total, 200, rng)
    # special floats at the float positions: build some payloads through bitstring itself
    for value in (0.0, -0.0, math.inf, -math.inf, math.nan, 1e-310, 65504.0, 5.960464477539063e-08):
        parts = [bitstring.Bits(uint=0, length=lead + sum(2 * 8 * n for n in (1, 2, 3, 4, 8)))]
        for bits in (16, 32, 64):
            for fmt_name in ("floatbe", "floatle"):
                try:
                    parts.append(bitstring.Bits(**{fmt_name: value, "length": bits}))
                except (ValueError, OverflowError, bitstring.CreationError):
                    parts.append(bitstring.Bits(**{fmt_name: 0.0, "length": bits}))
        parts.append(bitstring.Bits(uint=0, length=6))
        payloads.append(bitstring.Bits().join(parts).tobytes())
    rows = dc.decode([p.hex() for p in payloads]).to_pylist()
    names = [e["target"] for e in elements if "target" in e]
    for payload, row in zip(payloads, rows):
        expected = _read(payload, fmt)  # pad yields no value
        for name, want in zip(names, expected):
            got = row[name]
            if name == "wide":
                want = want != 0
            assert _same(float(got) if isinstance(want, float) else got, want), (payload.hex(), name, got, want)


def test_conditional_reads_switch_layout_and_do_not_move_the_cursor():
    dc = _class(
        [
            {"type": "uint", "target": "header", "bits": 8},
            {"type": "int", "target": "temp", "bits": 16, "signed": True, "if": "header == 1"},
            {"type": "uint", "target": "temp", "bits": 8, "if": "header == 2"},
            {"type": "uint", "target": "hum", "bits": 8, "if": "header == 2 || port == 9"},
            {"type": "uint", "target": "tail", "bits": 8},
        ]
    )
    batch = dc.decode(["01FF3807", "022A3307", "03AA", "01FF", "00AA07"], ports=[None, None, None, None, 9])
    rows = batch.to_pylist()
    assert rows[0] == {"header": 1, "temp": -200, "hum": None, "tail": 7}
    assert rows[1] == {"header": 2, "temp": 42, "hum": 51, "tail": 7}
    assert rows[2] == {"header": 3, "temp": None, "hum": None, "tail": 170}
    assert batch.errors == [{"row": 3, "error": "payload too short: needs 32 bits, has 16"}]
    assert rows[4] == {"header": 0, "temp": None, "hum": 170, "tail": 7}
    assert str(dc.output_schema().field("temp").type) == "int16"  # int16 or uint8 -> int16


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["int", "uint", "bool", "skip"]), st.integers(1, 64), st.booleans()),
        min_size=1,
        max_size=24,
    ),
    st.randoms(use_true_random=False),
)
def test_random_layouts_match_bitstring(fields, rng):
    elements, fmt, names = [], [], []
    for k, (kind, bits, signed) in enumerate(fields):
        if kind == "skip":
            elements.append({"type": "skip", "bits": bits})
            fmt.append(f"pad{bits}")
            continue
        elements.append({"type": kind, "target": f"f{k}", "bits": bits, "signed": signed and kind == "int"})
        fmt.append(f"{'int' if signed and kind == 'int' else 'uint'}{bits}")
        names.append((f"f{k}", kind))
    if not names:
        return
    total = sum(b for _, b, _ in fields)
    payloads = _random_payloads(total, 30, rng)
    rows = _class(elements).decode([p.hex() for p in payloads]).to_pylist()
    for payload, row in zip(payloads, rows):
        expected = [v for v in _read(payload, fmt)]
        for (name, kind), want in zip(names, expected):
            assert row[name] == (want != 0 if kind == "bool" else want), (payload.hex(), name)


def test_conditional_skip_moves_the_cursor_only_where_its_condition_holds():
    dc = _class(
        [
            {"type": "bool", "target": "has_pad"},
            {"type": "skip", "bits": 7},
            {"type": "skip", "bits": 8, "if": "has_pad"},
            {"type": "uint", "target": "value", "bits": 8},
        ]
    )
    batch = dc.decode(["80FF2A", "002A", "80"])
    assert [r["value"] for r in batch.to_pylist()] == [42, 42, None]
    assert batch.errors == [{"row": 2, "error": "payload too short: needs 24 bits, has 8"}]

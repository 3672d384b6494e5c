"""The benchmark's peers (benchmarks/peers.py) and `decoder` compute the same
values on the same payloads, so benchmarks/compare_decode.py compares equal
work. ~200 payloads: random ones plus the edges of every field."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import peers  # noqa: E402

EDGES = [
    "000000000000000000",  # battery 0 -> batteryLevel null; all zero
    "018000008000008000",  # battery 1 -> 0.0; int24 / int16 minimum
    "fe7fffff7fffff7fff",  # battery 254 -> 1.0; maxima
    "ffffffffffffffffff",  # battery 255; all -1
    "7f400000c000000001",  # +-half scale
]


@pytest.fixture(scope="module")
def payloads():
    return EDGES + peers.hex_list(peers.make_matrix(195, seed=7))


def expected(h):
    """Straight from the class's definition, with int.from_bytes."""
    b = bytes.fromhex(h)
    battery = b[0]
    lat = int.from_bytes(b[1:4], "big", signed=True)
    lon = int.from_bytes(b[4:7], "big", signed=True)
    alt = int.from_bytes(b[7:9], "big", signed=True)
    return {
        "battery": battery,
        "batteryLevel": None if battery == 0 else (battery - 1) / 253,
        "gps": {"latitude": lat / (1 << 23) * 90, "longitude": lon / (1 << 23) * 180, "altitude": alt},
    }


def same(a, b):
    """Exact equality (the peers do the same float operations in the same
    order), with types checked loosely: JSON turns -90.0 into -90."""
    assert (a["batteryLevel"] is None) == (b["batteryLevel"] is None)
    if a["batteryLevel"] is not None:
        assert float(a["batteryLevel"]) == float(b["batteryLevel"])
    for k in ("latitude", "longitude"):
        assert float(a["gps"][k]) == float(b["gps"][k]), k
    assert int(a["gps"]["altitude"]) == int(b["gps"]["altitude"])
    if "battery" in a and "battery" in b:
        assert int(a["battery"]) == int(b["battery"])


def test_edges_decode_as_documented():
    r = expected("018000008000008000")
    assert r["batteryLevel"] == 0.0
    assert r["gps"] == {"latitude": -90.0, "longitude": -180.0, "altitude": -32768}
    assert expected("000000000000000000")["batteryLevel"] is None
    assert expected("fe7fffff7fffff7fff")["batteryLevel"] == 1.0


@pytest.mark.parametrize("fn", [peers.bitstring_reader, peers.bitstring_unpack], ids=["reader", "unpack"])
def test_bitstring(payloads, fn):
    pytest.importorskip("bitstring")
    for h in payloads:
        same(fn(h), expected(h))


def test_quickjs(payloads):
    pytest.importorskip("quickjs")
    js = peers.QuickJSDecoder()
    for h in payloads:
        same(js(h), expected(h))


def test_handwritten_kernels(payloads):
    pytest.importorskip("numba")
    mat = peers.matrix_from_hex(payloads)
    for r, h in zip(peers.columns_to_records(peers.decode_matrix(mat)), payloads):
        same(r, expected(h))
    # data + offsets, with one short row that must come out invalid
    rows = [bytes.fromhex(h) for h in payloads] + [b"\x01\x02"]
    data = np.frombuffer(b"".join(rows), np.uint8)
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in rows])]).astype(np.int64)
    o = peers.decode_offsets(data, offsets)
    assert o["valid"].tolist() == [True] * len(payloads) + [False]
    recs = peers.columns_to_records(o)
    for r, h in zip(recs, payloads):
        same(r, expected(h))


def test_hex_list_round_trip():
    mat = peers.make_matrix(50, seed=1)
    assert np.array_equal(peers.matrix_from_hex(peers.hex_list(mat)), mat)


def _ours():
    try:
        import decoder
        from decoder.payload import to_buffer  # noqa: F401

        return decoder.compile
    except (ImportError, AttributeError):
        pytest.skip("decoder.compile / decoder.payload not available yet")


def _nested(rec):
    """to_pylist() rows may be nested ({"gps": {...}}) or flat ("gps.latitude")."""
    if "gps" in rec and isinstance(rec["gps"], dict):
        return rec
    out = {
        "batteryLevel": rec.get("batteryLevel"),
        "gps": {k: rec.get("gps." + k) for k in ("latitude", "longitude", "altitude")},
    }
    if rec.get("battery") is not None:
        out["battery"] = rec["battery"]
    return out


def test_ours_agrees_with_peers(payloads):
    compile_ = _ours()
    from decoder.payload import to_buffer

    dc = compile_(peers.TEST_DEVICE_CLASS)
    by_text = dc.decode(payloads, encoding="hex")
    by_buf = dc.decode_buffer(to_buffer(payloads, "hex"))
    assert by_text.num_rows == by_buf.num_rows == len(payloads)
    js = peers.QuickJSDecoder()
    for batch in (by_text, by_buf):
        for rec, h in zip(batch.to_pylist(), payloads):
            rec = _nested(rec)
            same(rec, expected(h))
            same(rec, peers.bitstring_unpack(h))
            same(rec, js(h))
    assert by_text.to_arrow().num_rows == len(payloads)

"""Shared pieces of the provider parsers: output schemas and vectorized helpers.

Nothing here loops over packets in Python. The two numba kernels (best
gateway per packet, float32 -> shortest decimal) are compiled on first use
and cached on disk, so importing this module does not import numba.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TS = pa.timestamp("ns", "UTC")
PROVIDER_TYPE = pa.dictionary(pa.int32(), pa.string())
PROVIDERS = pa.array(["firefly", "helium"], pa.string())
FIREFLY, HELIUM = 0, 1

UPLINK_SCHEMA = pa.schema(
    [
        ("provider", PROVIDER_TYPE),
        ("packet_id", pa.string()),
        ("dev_eui", pa.string()),
        ("device_id", pa.string()),
        ("devaddr", pa.string()),
        ("received_at", TS),
        ("fcnt", pa.int64()),
        ("port", pa.int64()),
        ("confirmed", pa.bool_()),
        ("payload", pa.binary()),
        ("frequency_mhz", pa.float64()),
        ("spreading_factor", pa.int64()),
        ("bandwidth_khz", pa.float64()),
        ("coding_rate", pa.string()),
        ("rssi", pa.float64()),
        ("snr", pa.float64()),
        ("gateway_id", pa.string()),
        ("gateway_count", pa.int64()),
        ("line", pa.int64()),
        ("error", pa.string()),
    ]
)

RECEPTION_SCHEMA = pa.schema(
    [
        ("packet_index", pa.int64()),
        ("gateway_id", pa.string()),
        ("gateway_name", pa.string()),
        ("rssi", pa.float64()),
        ("snr", pa.float64()),
        ("time", TS),
        ("tmst", pa.int64()),
        ("channel", pa.int64()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("frequency_mhz", pa.float64()),
    ]
)


def empty_uplinks() -> pa.Table:
    return UPLINK_SCHEMA.empty_table()


def empty_receptions() -> pa.Table:
    return RECEPTION_SCHEMA.empty_table()


# --------------------------------------------------------------------------- arrays


def combine(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous Array (a ChunkedArray is concatenated)."""
    if isinstance(a, pa.ChunkedArray):
        if a.num_chunks == 1:
            return a.chunk(0)
        return a.combine_chunks() if a.num_chunks else pa.array([], a.type)
    return a


def valid(a: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Validity as a numpy bool array."""
    if a.null_count == 0:
        return np.ones(len(a), dtype=bool)
    if a.null_count == len(a):
        return np.zeros(len(a), dtype=bool)
    return combine(a).is_valid().to_numpy(zero_copy_only=False)


def f64(a: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """float64 numpy array, NaN for null (only for internal arithmetic)."""
    a = combine(a)
    if a.type != pa.float64():
        a = a.cast(pa.float64())
    return a.to_numpy(zero_copy_only=False)


def nulls(n: int, type_: pa.DataType) -> pa.Array:
    return pa.nulls(n, type_)


# --------------------------------------------------------------------------- time


def epoch_ms_to_ts(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    """int64 epoch milliseconds -> timestamp[ns, UTC] (null stays null)."""
    a = combine(a)
    if a.type != pa.int64():
        a = a.cast(pa.int64())
    v = valid(a)
    ms = a.to_numpy(zero_copy_only=False) if a.null_count == 0 else a.fill_null(0).to_numpy()
    # 2**63 ns is year 2262: out-of-range milliseconds give null, not a wrapped value.
    ok = v & (np.abs(ms) < 9_223_372_036_854)
    ns = np.where(ok, ms, 0) * 1_000_000
    return pa.array(ns.view("datetime64[ns]"), pa.timestamp("ns"), mask=None if ok.all() else ~ok).cast(TS)


_ZONE_RE = r"(Z|z|[+-]\d\d(:?\d\d)?)$"


def iso_to_ts(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    """ISO 8601 strings -> timestamp[ns, UTC]. A string without a zone is UTC.

    Vectorized by Arrow's ISO 8601 parser; strings it cannot read become null
    (after one attempt per string in Python, which also accepts forms such as a
    lower-case ``t`` or a space separator).
    """
    a = combine(a)
    if len(a) == 0:
        return pa.array([], TS)
    if a.null_count == len(a):
        return nulls(len(a), TS)
    # Try the form of the first string first: a failing cast costs ~25x a good one.
    first = a[0 if a.null_count == 0 else int(np.argmax(valid(a)))].as_py()
    zoned_first = re.search(_ZONE_RE, first) is not None
    for target in ((TS, pa.timestamp("ns")) if zoned_first else (pa.timestamp("ns"), TS)):
        try:
            out = a.cast(target)  # Firefly received_at has no zone, gateway times have one
            return out if target == TS else out.cast(TS)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    # Mixed or invalid: split by zone and parse the two halves; stragglers one by one.
    zoned = pc.fill_null(pc.match_substring_regex(a, _ZONE_RE), False).to_numpy(zero_copy_only=False)
    out = np.zeros(len(a), dtype="datetime64[ns]")
    ok = np.zeros(len(a), dtype=bool)
    present = valid(a)
    for want_zone, target in ((False, pa.timestamp("ns")), (True, TS)):
        idx = np.flatnonzero(present & (zoned == want_zone))
        if len(idx) == 0:
            continue
        part = a.take(pa.array(idx))
        try:
            parsed = part.cast(target)
            out[idx] = parsed.cast(pa.timestamp("ns")).to_numpy(zero_copy_only=False)
            ok[idx] = True
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            for i, s in zip(idx, part.to_pylist()):
                t = _parse_iso_one(s)
                if t is not None:
                    out[i] = t
                    ok[i] = True
    return pa.array(out, pa.timestamp("ns"), mask=None if ok.all() else ~ok).cast(TS)


def _parse_iso_one(s: str) -> np.datetime64 | None:
    import datetime as _dt

    text = s.strip()
    if text[-1:] in "zZ":
        text = text[:-1] + "+00:00"
    try:
        d = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if d.tzinfo is not None:
        d = d.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    try:
        return np.datetime64(d, "ns")
    except (ValueError, OverflowError):
        return None


def ms_strings_to_ts(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Epoch milliseconds given as decimal strings -> timestamp (null when not digits)."""
    a = combine(a)
    try:
        return epoch_ms_to_ts(a.cast(pa.int64()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    digits = pc.fill_null(pc.match_substring_regex(a, r"^-?\d{1,18}$"), False)
    ints = pc.if_else(digits, a, pa.scalar(None, pa.string())).cast(pa.int64())
    return epoch_ms_to_ts(ints)


# --------------------------------------------------------------------------- radio

_DATR_RE = r"^\s*[Ss][Ff](?P<sf>\d{1,2})\s*[Bb][Ww](?P<bw>\d+(?:\.\d+)?)\s*$"


_DATR_PY = re.compile(_DATR_RE)


def _datr_one(text: str | None) -> tuple[int | None, float | None]:
    m = _DATR_PY.match(text) if text is not None else None
    if m is None:
        return None, None
    return int(m.group("sf")), float(m.group("bw"))


def parse_datr(a: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """'SF9BW125' -> (spreading factor int64, bandwidth kHz float64); null if not that form.

    A batch holds a handful of distinct data rates: they are dictionary-encoded
    and each distinct one parsed once."""
    a = combine(a)
    n = len(a)
    if n == 0 or a.null_count == n:
        return nulls(n, pa.int64()), nulls(n, pa.float64())
    if not pa.types.is_dictionary(a.type):
        if a.type != pa.string():
            a = a.cast(pa.string())
        a = pc.dictionary_encode(a)
    parsed = [_datr_one(v) for v in a.dictionary.to_pylist()]
    sf_d = pa.array([p[0] for p in parsed], pa.int64())
    bw_d = pa.array([p[1] for p in parsed], pa.float64())
    idx = a.indices
    return sf_d.take(idx), bw_d.take(idx)


# --------------------------------------------------------------------------- kernels

_kernels = None


def kernels():
    """The numba kernels, compiled (or loaded from cache) on first use."""
    global _kernels
    if _kernels is None:
        from . import _kernels as k

        _kernels = k
    return _kernels


def float32_shortest(values: np.ndarray) -> np.ndarray:
    """Each value rounded through float32 and printed as the shortest decimal
    that reads back as the same float32 (905.2999877929688 -> 905.3).

    NaN stays NaN. Vectorized: a numba kernel for magnitudes 1e-12..1e22
    (where powers of ten are exact doubles), Python's repr for the rest.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        f = np.ascontiguousarray(values, dtype=np.float64).astype(np.float32)
    out = np.empty(f.shape, dtype=np.float64)
    todo = kernels().f32_shortest(f, f.view(np.uint32), out)
    if todo:
        for i in np.flatnonzero(np.isnan(out) & ~np.isnan(f)):
            out[i] = float(str(f[i]))  # numpy's shortest repr of a float32
    return out


def line_bounds(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(starts, ends, non_ascii) of the lines of a uint8 buffer: line i is
    a[starts[i]:ends[i]] without its newline; no line after a final newline.
    non_ascii: some byte is >= 0x80 (the text then needs a UTF-8 check)."""
    n = len(a)
    if n == 0:
        z = np.zeros(0, np.int64)
        return z, z, False
    out = np.empty(n // 32 + 64, dtype=np.int64)
    k, high = kernels().newlines(a, out)
    if k < 0:  # very short lines: more than out holds
        nl = np.flatnonzero(a == 10).astype(np.int64)
        high = bool(a.max() >= 128)
    else:
        nl = out[:k]
    last = n if a[n - 1] != 10 else None
    starts = np.empty(len(nl) + (last is not None), dtype=np.int64)
    ends = np.empty_like(starts)
    starts[0] = 0
    starts[1:] = nl[: len(starts) - 1] + 1
    ends[: len(nl)] = nl
    if last is not None:
        ends[-1] = n
    return starts, ends, bool(high)


def best_by_parent(parent: np.ndarray, rssi: np.ndarray, snr: np.ndarray, n: int) -> np.ndarray:
    """best_reception for receptions in any order: parent[j] is the packet (0..n-1)
    of reception j. -1 for a packet without receptions."""
    return kernels().best_by_parent(
        np.ascontiguousarray(parent, dtype=np.int64),
        np.ascontiguousarray(rssi, dtype=np.float64),
        np.ascontiguousarray(snr, dtype=np.float64),
        int(n),
    )


def best_reception(counts: np.ndarray, rssi: np.ndarray, snr: np.ndarray) -> np.ndarray:
    """For each packet (its receptions are the next counts[i] entries of the
    reception arrays, in order), the index of the best reception: highest RSSI,
    ties broken by the higher SNR, first wins a full tie; NaN (null) ranks last.
    -1 for a packet without receptions."""
    return kernels().best_index(
        np.ascontiguousarray(counts, dtype=np.int64),
        np.ascontiguousarray(rssi, dtype=np.float64),
        np.ascontiguousarray(snr, dtype=np.float64),
    )

"""Provider timestamps -> ``timestamp[ns, UTC]``: ISO 8601 text and epoch milliseconds, vectorized."""

from __future__ import annotations

import datetime
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columns import combine, nulls, valid
from .schema import TS

__all__ = ["epoch_ms_to_ts", "iso_to_ts", "ms_strings_to_ts"]


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
    for target in (TS, pa.timestamp("ns")) if zoned_first else (pa.timestamp("ns"), TS):
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
    text = s.strip()
    if text[-1:] in "zZ":
        text = text[:-1] + "+00:00"
    try:
        d = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if d.tzinfo is not None:
        d = d.astimezone(datetime.UTC).replace(tzinfo=None)
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

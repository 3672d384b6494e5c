"""Provider times -> ``timestamp[ns, UTC]``: ISO 8601 text and epoch milliseconds, in numba.

A time a ``timestamp[ns]`` cannot hold (before 1677-09-21 or after
2262-04-11) is null with a row warning, never a wrapped date; so is text
that is not a time.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import scan_kernels as K
from . import text_kernels as TK
from .fields import Records, _clip, string_buffers
from .scan import int64_array
from .schema import TS

__all__ = ["iso_to_ts", "ts_array", "iso_times", "ms_times", "RANGE"]

RANGE = "1677-09-21 to 2262-04-11"
_MS_LIMIT = 9_223_372_036_854  # |epoch ms| below this fits in int64 nanoseconds


def ts_array(ns: np.ndarray, valid: np.ndarray) -> pa.Array:
    """int64 epoch nanoseconds -> timestamp[ns, UTC] (null where not valid), without a copy."""
    return int64_array(ns, valid).view(TS)


def _parse_iso(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    offsets, data, valid = string_buffers(arr)
    n = len(arr)
    ns = np.empty(n, np.int64)
    status = np.empty(n, np.uint8)
    if n:
        TK.iso_to_ns(offsets, data, valid, ns, status)
    return ns, status


def iso_to_ts(arr: pa.Array) -> pa.Array:
    """ISO 8601 strings -> timestamp[ns, UTC]; a string without a zone is UTC; null where
    the text is not a time or the time is out of range."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    ns, status = _parse_iso(arr)
    return ts_array(ns, status == TK.OK)


def iso_times(rec: Records, path: str, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An ISO 8601 text field as (epoch ns, valid), with a warning for text that is not a
    time or a time out of range."""
    col = rec.text(path, rows)
    ns, status = _parse_iso(col)
    valid = status == TK.OK
    present = rec.present(path, rows)
    codes = rec.codes(path, rows)
    text = (codes == K.T_STR) | (codes == K.T_STR_ESC)
    problems = np.flatnonzero(~valid & present & text)  # text that failed (other types: warned by rec.text)
    if len(problems):
        texts = col.take(int64_array(problems)).to_pylist()
        rec.note(path, rows, problems, [_time_warning(path, t, s) for t, s in zip(texts, status[problems])])
    return ns, valid


def _time_warning(path: str, text: str, status: int) -> str:
    if status == TK.OUT_OF_RANGE:
        return f'{path}: "{_clip(text)}" is outside {RANGE} (timestamp[ns]); dropped'
    return f'{path}: "{_clip(text)}" is not a time; dropped'


def ms_times(rec: Records, path: str, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Epoch milliseconds (a number, or digits in quotes as Helium prints them) as (epoch ns, valid)."""
    ms, valid = rec.number(path, rows, quoted=True)
    ok = valid & (np.abs(ms) < _MS_LIMIT)
    out = np.flatnonzero(valid & ~ok)
    if len(out):
        rec.note(path, rows, out, [f"{path}: {int(v)} ms is outside {RANGE} (timestamp[ns]); dropped" for v in ms[out]])
    ns = np.zeros(len(ms), np.int64)
    whole = np.where(ok, ms, 0.0)
    ns[ok] = (np.floor(whole[ok]).astype(np.int64) * 1_000_000) + np.round((whole[ok] % 1) * 1e6).astype(np.int64)
    return ns, ok

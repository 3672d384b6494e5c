"""Columns as text, for the text outputs (CSV, JSON Lines) and error records: hex, ISO 8601, JSON rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..arrays import combine

__all__ = ["to_hex", "to_iso", "textual", "json_rows", "has_map", "error_records", "ERROR_COLUMNS"]

_HEX = np.frombuffer(b"0123456789ABCDEF", np.uint8)
_HEX_LUT = np.stack([_HEX[np.arange(256) >> 4], _HEX[np.arange(256) & 15]], axis=1).astype(np.uint8)


def to_hex(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Binary -> upper-case hex strings, vectorized (null stays null)."""
    arr = combine(arr)
    if pa.types.is_large_binary(arr.type):
        arr = arr.cast(pa.binary()) if arr.nbytes < (1 << 30) else arr
    n = len(arr)
    if n == 0:
        return pa.array([], pa.string())
    off_type = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], off_type)[arr.offset : arr.offset + n + 1].astype(np.int64)
    start, end = int(offsets[0]), int(offsets[-1])
    data_buf = arr.buffers()[2]
    data = (
        np.frombuffer(data_buf, np.uint8)[start:end] if data_buf is not None and end > start else np.empty(0, np.uint8)
    )
    hexed = _HEX_LUT[data].reshape(-1)
    new_off = (offsets - start) * 2
    if new_off[-1] < (1 << 31):
        out = pa.StringArray.from_buffers(n, pa.py_buffer(new_off.astype(np.int32)), pa.py_buffer(hexed))
    else:
        out = pa.LargeStringArray.from_buffers(n, pa.py_buffer(new_off), pa.py_buffer(hexed))
    if arr.null_count:
        out = pc.if_else(pc.is_valid(arr), out, pa.scalar(None, out.type))
    return out


def to_iso(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Timestamps -> ISO 8601 text in UTC with ``Z``, no trailing zero fractions."""
    arr = combine(arr)
    if arr.type.unit == "ns" and arr.type.tz in (None, "UTC") and len(arr):
        return _iso_of_ns(arr)
    if arr.type.tz is None:
        arr = pc.assume_timezone(arr, "UTC")
    text = pc.strftime(arr, format="%Y-%m-%dT%H:%M:%S")
    text = pc.replace_substring_regex(text, r"\.0+$", "")
    text = pc.replace_substring_regex(text, r"(\.\d*?)0+$", r"\1")
    return pc.binary_join_element_wise(text, pa.scalar("Z"), pa.scalar(""))


def _iso_of_ns(arr: pa.Array) -> pa.Array:
    """to_iso of nanosecond times in UTC, by a kernel: Arrow's strftime and the two regular
    expressions that trim its fraction took 2.9 us a row, a fifth of writing a JSON Lines row."""
    from .text_kernels import ISO_MAX, iso_utc  # numba: only for the text outputs

    n = len(arr)
    ns = np.frombuffer(arr.buffers()[1], np.int64)[arr.offset : arr.offset + n]
    valid = np.ones(n, bool) if arr.null_count == 0 else np.asarray(arr.is_valid())
    offsets = np.empty(n + 1, np.int32)
    out = np.empty(n * ISO_MAX, np.uint8)
    used = iso_utc(ns, valid, offsets, out)
    validity = pa.array(valid).buffers()[1] if arr.null_count else None  # a bitmap from bit 0
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out[:used]), validity, arr.null_count)


def textual(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column made writable as CSV/JSON text: timestamps, binary and dictionaries converted."""
    arr = combine(arr)
    t = arr.type
    if pa.types.is_timestamp(t):
        return to_iso(arr)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return to_hex(arr.cast(pa.binary()) if pa.types.is_fixed_size_binary(t) else arr)
    if pa.types.is_dictionary(t):
        return arr.dictionary_decode()
    if pa.types.is_map(t):
        return _map_text(arr)
    return arr


def _map_text(arr: pa.Array) -> pa.Array:
    """A map column (a built-in format's channels) as JSON object text, ``{"3":27.2}``; null stays null."""
    dumps, opts = orjson.dumps, orjson.OPT_NON_STR_KEYS
    return pa.array(
        [None if v is None else dumps(v, option=opts).decode() for v in arr.to_pylist(maps_as_pydicts="strict")],
        pa.string(),
    )


def has_map(t: pa.DataType) -> bool:
    """Whether a type is or holds a map (what CSV cannot write and JSON needs integer keys for)."""
    if pa.types.is_map(t):
        return True
    return pa.types.is_struct(t) and any(has_map(f.type) for f in t)


def json_rows(table: pa.Table, *, mixed: bool, maps: bool = False) -> list[dict]:
    arrays = []
    for col in table.columns:
        t = col.type
        if pa.types.is_timestamp(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            arrays.append(textual(col))
        elif pa.types.is_dictionary(t):
            arrays.append(col.cast(t.value_type))  # to_pylist of a dictionary array is ~50x slower
        else:
            arrays.append(col)
    table = pa.Table.from_arrays(arrays, names=table.column_names)
    # maps (a built-in format's channels) as dicts: JSON objects, dumped with OPT_NON_STR_KEYS
    rows = table.to_pylist(maps_as_pydicts="strict") if maps else table.to_pylist()
    if mixed:
        for row in rows:
            dec = row.get("decoded")
            if dec is not None:
                row["decoded"] = dec.get(row.get("device_class"))
    return rows


ERROR_COLUMNS = ("provider", "packet_id", "dev_eui", "device_id", "port", "payload", "payload_text", "device_class")


def error_records(chunk: Any, tag: Callable[[int], dict]) -> list[dict]:
    """Every failed row and bad line of a decoded chunk as a JSON-ready dict, in input order.

    A failed row: ``{"line", **tag(line), "error", "provider", "packet_id",
    "dev_eui", "device_id", "port", "payload" (hex), "payload_text" (as
    received, where it could not be decoded), "device_class"}``; a bad
    line (no uplink in it): ``{"line", **tag(line), "error"}``. ``tag`` adds
    where the line came from (the input file, a stream position).
    """
    records: list[tuple[int, dict]] = []
    if chunk.error.null_count < chunk.rows:
        failed = chunk.failed()
        cols = ["line", "error"] + [c for c in ERROR_COLUMNS if c in failed.column_names]
        for row in json_rows(failed.select(cols), mixed=False):
            line = row.pop("line")
            records.append((line, {"line": line, **tag(line), **row}))
    for line, reason in chunk.bad_lines:
        records.append((line, {"line": line, **tag(line), "error": reason}))
    records.sort(key=lambda r: r[0])
    return [r for _, r in records]

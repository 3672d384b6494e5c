"""Vectorized helpers over Arrow arrays that the normalizers share (no Python loop per row)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..arrays import combine

__all__ = ["combine", "valid", "f64", "nulls", "child", "take", "if_else", "coalesce", "str_equals"]


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


def child(struct: pa.Array, name: str, type_: pa.DataType) -> pa.Array:
    """A struct's child, null where the struct is null (or lacks the field)."""
    k = struct.type.get_field_index(name)
    if k < 0 or struct.null_count == len(struct):
        return nulls(len(struct), type_)
    struct = combine(struct)
    if struct.null_count == 0:
        return struct.field(k)  # zero-copy: sliced to the struct, no nulls to merge
    return pc.struct_field(struct, name)


def take(a: pa.Array | pa.ChunkedArray, idx: pa.Array | None) -> pa.Array:
    """``a`` at the rows ``idx`` (all of it when idx is None)."""
    a = combine(a)
    return a if idx is None else a.take(idx)


def if_else(mask: np.ndarray, a: pa.Array, b: pa.Array) -> pa.Array:
    """``a`` where mask, else ``b`` (no work when the mask is all one way)."""
    if mask.all():
        return a
    if not mask.any():
        return b
    return pc.if_else(pa.array(mask), a, b)


def coalesce(*arrays: pa.Array) -> pa.Array:
    """The first non-null of the arrays, row by row (arrays that are all null are left out)."""
    live = [a for a in arrays if a.null_count < len(a)]
    if not live:
        return arrays[0]
    if len(live) == 1:
        return live[0]
    return pc.coalesce(*live)


def str_equals(a: pa.Array, value: str) -> np.ndarray:
    """Rows of a string (or dictionary) array equal to ``value``, as numpy bools (null: False)."""
    if a.null_count == len(a):
        return np.zeros(len(a), dtype=bool)
    if pa.types.is_dictionary(a.type):
        hit = np.asarray(pc.fill_null(pc.equal(a.dictionary, value), False).to_numpy(zero_copy_only=False))
        if not hit.any():
            return np.zeros(len(a), dtype=bool)
        idx = (
            a.indices.fill_null(0).to_numpy(zero_copy_only=False)
            if a.null_count
            else a.indices.to_numpy(zero_copy_only=False)
        )
        return hit[idx] & valid(a)
    return pc.fill_null(pc.equal(a, value), False).to_numpy(zero_copy_only=False)

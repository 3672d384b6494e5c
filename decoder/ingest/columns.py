"""Vectorized helpers over Arrow arrays that the normalizers share (no Python loop per row)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..arrays import combine
from .scan import bool_array

__all__ = ["combine", "nulls", "if_else", "coalesce"]


def nulls(n: int, type_: pa.DataType) -> pa.Array:
    return pa.nulls(n, type_)


def if_else(mask: np.ndarray, a: pa.Array, b: pa.Array) -> pa.Array:
    """``a`` where mask, else ``b`` (no work when the mask is all one way)."""
    if mask.all():
        return a
    if not mask.any():
        return b
    return pc.if_else(bool_array(mask), a, b)


def coalesce(*arrays: pa.Array) -> pa.Array:
    """The first non-null of the arrays, row by row (arrays that are all null are left out)."""
    live = [a for a in arrays if a.null_count < len(a)]
    if not live:
        return arrays[0]
    if len(live) == 1 or live[0].null_count == 0:
        return live[0]
    return pc.coalesce(*live)

"""Small Arrow helpers every stage uses."""

from __future__ import annotations

import pyarrow as pa

__all__ = ["combine"]


def combine(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous Array (a ChunkedArray is concatenated; one chunk is taken as it is)."""
    if isinstance(a, pa.ChunkedArray):
        if a.num_chunks == 1:
            return a.chunk(0)
        return a.combine_chunks() if a.num_chunks else pa.array([], a.type)
    return a

"""Small Arrow helpers every stage uses."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["combine", "plus"]


def combine(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous Array (a ChunkedArray is concatenated; one chunk is taken as it is)."""
    if isinstance(a, pa.ChunkedArray):
        if a.num_chunks == 1:
            return a.chunk(0)
        return a.combine_chunks() if a.num_chunks else pa.array([], a.type)
    return a


def plus(table: pa.Table, column: str, offset: int) -> pa.Table:
    """The table with ``offset`` added to an integer column (line numbers renumbered)."""
    k = table.schema.get_field_index(column)
    return table.set_column(k, column, pc.add(table.column(k), pa.scalar(offset, table.schema.field(k).type)))

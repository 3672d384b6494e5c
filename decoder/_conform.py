"""Cast our Arrow output to the types another engine expects (Spark, DuckDB, polars).

Our tables use types some engines reject or read differently: unsigned
integers, ``timestamp[ns]``, dictionary-encoded strings. Each integration
states the target type it wants and :func:`conform` casts to it, matching
struct fields by name (never by position) and putting them in the target's
order, so a reordered or renamed field is an error instead of a silently
swapped column.

Also here: :func:`class_sources`, the directory expansion the integrations
share with ``decoder decode --classes DIR``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["class_sources", "conform", "conform_table", "fixed_decode", "plain_type"]


def plain_type(t: pa.DataType) -> pa.DataType:
    """``t`` with every dictionary-encoded string replaced by a plain string (structs recursively)."""
    if pa.types.is_dictionary(t):
        return plain_type(t.value_type)
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, plain_type(f.type), f.nullable) for f in t])
    if pa.types.is_map(t):
        return pa.map_(plain_type(t.key_type), plain_type(t.item_type))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _list_like(t, plain_type(t.value_type))
    return t


def _list_like(t: pa.DataType, value_type: pa.DataType) -> pa.DataType:
    return pa.large_list(value_type) if pa.types.is_large_list(t) else pa.list_(value_type)


def conform(array: pa.Array | pa.ChunkedArray, target: pa.DataType, path: str = "") -> pa.Array:
    """``array`` cast to ``target``; struct fields matched by name and put in ``target``'s order.

    A struct whose field names differ from the target's (a missing, extra or
    duplicate name) raises TypeError naming the path. Timestamps are cast
    without the overflow check: a finer unit is truncated (ns -> us drops the
    nanoseconds, which the target cannot hold). Every other cast is checked,
    so a value that does not fit raises instead of wrapping.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    source = array.type
    if source == target:  # field names and order included
        return array
    if pa.types.is_struct(target):
        if not pa.types.is_struct(source):
            raise TypeError(f"{path or 'column'}: expected a struct, got {source}")
        have = [f.name for f in source]
        want = [f.name for f in target]
        if sorted(have) != sorted(want) or len(set(have)) != len(have):
            raise TypeError(f"{path or 'struct'}: fields {have} do not match the expected {want}")
        children = [conform(array.field(f.name), f.type, f"{path}.{f.name}" if path else f.name) for f in target]
        mask = pc.is_null(array) if array.null_count else None
        return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)
    if pa.types.is_map(target) or pa.types.is_list(target) or pa.types.is_large_list(target):
        return _conform_nested(array, target, path)
    if pa.types.is_dictionary(source):
        array = array.dictionary_decode()
        source = array.type
    if source == target:
        return array
    if pa.types.is_timestamp(source) and pa.types.is_timestamp(target):
        return array.cast(target, safe=False)
    return array.cast(target)


def _conform_nested(array: pa.Array, target: pa.DataType, path: str) -> pa.Array:
    """A map or list array with its keys, items or values conformed (offsets and nulls kept)."""
    source = array.type
    is_map = pa.types.is_map(target)
    if is_map != pa.types.is_map(source) or not (is_map or pa.types.is_list(source) or pa.types.is_large_list(source)):
        raise TypeError(f"{path or 'column'}: expected {'a map' if is_map else 'a list'}, got {source}")
    # .offsets index the whole child array, also for a slice: rebase them on the part this array uses
    offsets = np.asarray(array.offsets.to_numpy(zero_copy_only=False), np.int64)
    first, size = int(offsets[0]), int(offsets[-1] - offsets[0])
    rebased = pa.array(offsets - first, pa.int64() if pa.types.is_large_list(target) else pa.int32())
    mask = pc.is_null(array) if array.null_count else None
    if is_map:
        keys = conform(array.keys.slice(first, size), target.key_type, f"{path}.key")
        items = conform(array.items.slice(first, size), target.item_type, f"{path}.value")
        return pa.MapArray.from_arrays(rebased, keys, items, type=target, mask=mask)
    values = conform(array.values.slice(first, size), target.value_type, f"{path}[]")
    kind = pa.LargeListArray if pa.types.is_large_list(target) else pa.ListArray
    return kind.from_arrays(rebased, values, type=target, mask=mask)


def conform_table(table: pa.Table | pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """``table`` with every column conformed to ``schema``; the column names must equal the schema's, in order."""
    if table.schema.names != schema.names:
        raise TypeError(f"columns {table.schema.names} do not match the expected {schema.names}")
    columns = [conform(table.column(i), f.type, f.name) for i, f in enumerate(schema)]
    return pa.Table.from_arrays(columns, schema=schema)


def fixed_decode(device_class: Any) -> Any:
    """The decode call whose struct has the type ``output_schema()`` promises, whatever the batch holds.

    A built-in format whose ``decode()`` columns depend on the batch (Cayenne
    LPP: one per type and channel present) has ``decode_fixed()``, as the
    Engine uses; a compiled class's ``decode()`` is fixed already.
    """
    return getattr(device_class, "decode_fixed", None) or device_class.decode


def class_sources(source: Any) -> list[Any]:
    """One source per class file: a directory becomes its ``*.json`` files (sorted), as ``--classes DIR`` does.

    Anything else (a file, parsed JSON, JSON text, a compiled class) is
    returned as one source; a list of paths is expanded item by item, while
    any other list is one parsed JSON document.
    """
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        return [item for s in source for item in class_sources(s)]
    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        found = sorted(os.path.join(source, f) for f in os.listdir(source) if f.lower().endswith(".json"))
        if not found:
            from .errors import InputError

            raise InputError(f"{os.fspath(source)}: no .json files in this directory")
        return found
    return [source]

"""The Parquet layout both Parquet outputs share: one writer's settings, and partitioning by class.

With several classes bound (``engine.mixed``) rows are written Hive style,
one directory per class, ``device_class=<name>/...``, rows without a class
under ``device_class=`` (an empty name). Not Hive's
``__HIVE_DEFAULT_PARTITION__``: pyarrow's ``read_table`` (and so pandas)
turns it into a dictionary holding a null that it then cannot unify
("Cannot yet unify dictionaries with nulls"); an empty name reads as ``""``
in pyarrow, pandas, polars and DuckDB alike. Every file has ONE
schema, the engine's (``engine.schema``, what ``Engine.decode_packets``
returns) without the partition column: ``decoded`` is the struct of every
class's struct, set only on that class's rows. Readers take one file's
schema for a whole directory (pyarrow, pandas, polars, DuckDB); with a
schema per class they returned other classes' values as nulls, silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "PARTITION_KEY",
    "NULL_PARTITION",
    "WRITTEN_BY",
    "segment",
    "file_schema",
    "partitions",
    "open_writer",
    "written_by",
]

PARTITION_KEY = "device_class"
NULL_PARTITION = ""  # the partition of rows without a class (see the module docstring)
COMPRESSION = "zstd"
WRITTEN_BY = b"decoder.written_by"  # footer key: which command wrote a file ("decode", "stream")


def segment(name: str | None) -> str:
    """Hive partition directory name of a class (URI-escaped where a path needs it)."""
    if name is None:
        return f"{PARTITION_KEY}={NULL_PARTITION}"
    out = []
    for ch in name:
        if ch in '%/\\:*?"<>|#' or ord(ch) < 32 or ord(ch) == 127:
            out.extend(f"%{b:02X}" for b in ch.encode())
        else:
            out.append(ch)
    text = "".join(out)
    if text.startswith("."):
        text = "%2E" + text[1:]
    return f"{PARTITION_KEY}={text}"


def file_schema(engine: Any) -> pa.Schema:
    """The schema of every file of a partitioned output: the engine's, without the partition column."""
    schema = engine.schema
    return schema.remove(schema.get_field_index(PARTITION_KEY))


def partitions(chunk: Any, engine: Any) -> Iterator[tuple[str | None, pa.Schema, pa.Table]]:
    """(class name, file schema, rows) per class present in a decoded chunk, rows without a class
    last (name None); each table is ``chunk.table``'s rows of that class without the partition column."""
    table = chunk.table.drop_columns([PARTITION_KEY])
    schema = file_schema(engine)
    index = chunk.class_index
    present = np.unique(index).tolist()
    for pos in sorted(present, key=lambda p: (p < 0, p)):
        name = engine.classes[pos].name if pos >= 0 else None
        rows = table if len(present) == 1 else table.take(pa.array(np.flatnonzero(index == pos)))
        yield name, schema, rows


def open_writer(path: str | Path, schema: pa.Schema, *, command: str) -> pq.ParquetWriter:
    """A Parquet writer with the settings every output of ours uses; the footer says which
    ``command`` wrote the file, so a later run knows what it may replace."""
    schema = schema.with_metadata({**(schema.metadata or {}), WRITTEN_BY: command.encode()})
    return pq.ParquetWriter(str(path), schema, compression=COMPRESSION)


def written_by(path: str | Path) -> str | None:
    """The command that wrote the Parquet file at ``path`` (None: not ours, or not Parquet)."""
    try:
        metadata = pq.read_schema(str(path)).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    value = metadata.get(WRITTEN_BY)
    return value.decode(errors="replace") if value is not None else None

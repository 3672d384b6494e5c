"""The Parquet layout both Parquet outputs share: one writer's settings, and partitioning by class.

With several classes bound (``engine.mixed``) rows are written Hive style,
one directory per class, ``device_class=<name>/...`` (rows without a class
under ``device_class=__HIVE_DEFAULT_PARTITION__``): each class has its own
``decoded`` struct type, which one file cannot hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["PARTITION_KEY", "NULL_PARTITION", "segment", "partitions", "open_writer"]

PARTITION_KEY = "device_class"
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
COMPRESSION = "zstd"


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


def partitions(chunk: Any, engine: Any) -> Iterator[tuple[str | None, pa.Schema, pa.Table]]:
    """(class name, file schema, rows) per class of a decoded chunk, without the partition column."""
    for name, table in chunk.by_class().items():
        schema = engine.class_schema(name)
        yield name, schema.remove(schema.get_field_index(PARTITION_KEY)), table.drop_columns([PARTITION_KEY])


def open_writer(path: str | Path, schema: pa.Schema) -> pq.ParquetWriter:
    """A Parquet writer with the settings every output of ours uses."""
    return pq.ParquetWriter(str(path), schema, compression=COMPRESSION)

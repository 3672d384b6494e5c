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
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "PARTITION_KEY",
    "NULL_PARTITION",
    "WRITTEN_BY",
    "segment",
    "file_schema",
    "partitions",
    "open_writer",
    "Writer",
    "written_by",
]

PARTITION_KEY = "device_class"
NULL_PARTITION = ""  # the partition of rows without a class (see the module docstring)
COMPRESSION = "zstd"
# Rows per row group: large enough for readers (and for zstd), small enough to hold in memory
# while they gather; independent of how the input was chunked. DuckDB writes 122,880-row
# groups; at twice that, the last group (written when the input ends, after everything else)
# took 0.3 s of a 1M-packet run by itself.
ROW_GROUP_ROWS = 128 * 1024
# Columns whose values repeat (devices, gateways, data rates, radio measurements in whole dB or
# tenths, reasons): dictionary-encoded. The rest (ids, times, payloads, decoded values) would
# only pay for a hash table that overflows.
DICTIONARY_COLUMNS = frozenset(
    {
        "rssi",
        "snr",
        "gateway_count",
        "provider",
        "dev_eui",
        "device_id",
        "devaddr",
        "port",
        "frequency_mhz",
        "spreading_factor",
        "bandwidth_khz",
        "coding_rate",
        "gateway_id",
        "gateway_name",
        "input",
        PARTITION_KEY,
        "error",
        "warnings",
    }
)
# Integers that mostly grow (line numbers, times, frame counters): stored as deltas, which zstd
# then has almost nothing left to do for (a 1M-row write: 0.80 against 0.92 CPU-s, medians of
# 11, and 6% smaller). The readers we test read them: pyarrow, pandas, polars, DuckDB, and Spark
# (which needs a setting for nanosecond times at all: docs/engines.md).
DELTA_COLUMNS = frozenset({"line", "received_at", "fcnt"})
# Text unique to each row (ids, payloads): its lengths stored apart from its bytes, which zstd
# then compresses better (1M Firefly packets: the file 7% smaller, 47.3 against 51.1 MB; ids
# and payloads 12-14%) at the same cost. The readers we test read it (as DELTA_COLUMNS).
DELTA_LENGTH_COLUMNS = frozenset({"packet_id", "payload", "payload_text"})
# A class's outputs are dictionary-encoded where a row group's values repeat this often (a
# battery level, a count); floats that do not (coordinates, readings) are stored BYTE_STREAM_SPLIT,
# which zstd compresses better than plain doubles. 1M Firefly packets of the Test Device Class:
# the decoded columns 0.11 against 0.21 CPU-s to write, 10.9 against 14.8 MB.
REPEATS_AT_LEAST = 4
# Rows of the first row group the choice is made from: counting the distinct values of a whole
# group (128Ki rows) took 38 ms of the writer's thread, 16Ki rows 4 ms (1M Firefly packets),
# while the workers waited for it to take their chunks.
SAMPLE_ROWS = 16 * 1024
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


def _encodings(schema: pa.Schema, sample: pa.Table | None = None) -> tuple[list[str], dict[str, str]]:
    """(column paths to dictionary-encode, {path: encoding}): the repeating columns and every
    dictionary-typed leaf are dictionary-encoded, DELTA_COLUMNS and DELTA_LENGTH_COLUMNS
    delta-encoded; every other leaf (a class's outputs) as its values in ``sample`` (the start of
    the first row group) show: dictionary where they repeat, BYTE_STREAM_SPLIT where floats do not."""
    dictionary, encoding = [], {}
    leaves = _leaves(sample) if sample is not None else {}

    def visit(field: pa.Field, path: str) -> None:
        t = field.type
        if pa.types.is_struct(t):
            for child in t:
                visit(child, f"{path}.{child.name}")
        elif pa.types.is_dictionary(t) or path in DICTIONARY_COLUMNS:
            dictionary.append(path)
        elif path in DELTA_COLUMNS and (pa.types.is_integer(t) or pa.types.is_timestamp(t)):
            encoding[path] = "DELTA_BINARY_PACKED"
        elif path in DELTA_LENGTH_COLUMNS and (pa.types.is_string(t) or pa.types.is_binary(t)):
            encoding[path] = "DELTA_LENGTH_BYTE_ARRAY"
        elif path in leaves and _repeats(leaves[path]):
            dictionary.append(path)
        elif path in leaves and pa.types.is_floating(t) and leaves[path].null_count < len(leaves[path]):
            encoding[path] = "BYTE_STREAM_SPLIT"

    for f in schema:
        visit(f, f.name)
    return dictionary, encoding


def _leaves(table: pa.Table) -> dict[str, pa.ChunkedArray]:
    """{dotted path: values} of every leaf of a table, struct fields flattened (a null struct's
    fields are null)."""
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    return {name: table.column(name) for name in table.column_names}


# The types _repeats counts the distinct values of.
_COUNTABLE = (
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_temporal,
    pa.types.is_string,
    pa.types.is_large_string,
)


def _repeats(values: pa.ChunkedArray) -> bool:
    """Whether a sample's numbers or text repeat enough for a dictionary to pay: at most one
    distinct value in REPEATS_AT_LEAST non-null ones."""
    if not any(kind(values.type) for kind in _COUNTABLE):
        return False
    present = len(values) - values.null_count
    return present > 0 and pc.count_distinct(values).as_py() * REPEATS_AT_LEAST <= present


class Writer:
    """A Parquet file with the settings every output of ours uses, written in row groups of
    ``ROW_GROUP_ROWS`` whatever the size of the tables handed to it (they are held until a row
    group is full, or the file closes). The file is opened at once; its encodings are chosen
    when the first row group is written (``_encodings``), from its first ``SAMPLE_ROWS`` rows."""

    def __init__(self, path: str | Path, schema: pa.Schema, *, command: str) -> None:
        self._schema = schema.with_metadata({**(schema.metadata or {}), WRITTEN_BY: command.encode()})
        self._sink = pa.OSFile(str(path), "wb")
        self._file: pq.ParquetWriter | None = None
        self._held: list[pa.Table] = []
        self._rows = 0

    def _writer(self, sample: pa.Table | None) -> pq.ParquetWriter:
        """The file's writer, made on first use with the encodings the start of ``sample`` shows."""
        if self._file is None:
            dictionary, encoding = _encodings(self._schema, None if sample is None else sample.slice(0, SAMPLE_ROWS))
            self._file = pq.ParquetWriter(
                self._sink,
                self._schema,
                compression=COMPRESSION,
                use_dictionary=dictionary,
                column_encoding=encoding or None,
            )
        return self._file

    def write_table(self, table: pa.Table) -> None:
        """Add rows; a row group is written each time ROW_GROUP_ROWS have gathered."""
        if table.num_rows == 0:
            return
        self._held.append(table)
        self._rows += table.num_rows
        if self._rows >= ROW_GROUP_ROWS:
            self._flush(whole_groups_only=True)

    def _flush(self, whole_groups_only: bool = False) -> None:
        if not self._held:
            return
        table = pa.concat_tables(self._held)
        cut = (table.num_rows // ROW_GROUP_ROWS) * ROW_GROUP_ROWS if whole_groups_only else table.num_rows
        if cut:
            self._writer(table).write_table(table.slice(0, cut), row_group_size=ROW_GROUP_ROWS)
        rest = table.slice(cut)
        self._held = [rest] if rest.num_rows else []
        self._rows = rest.num_rows

    def add_key_value_metadata(self, metadata: dict) -> None:
        self._writer(pa.concat_tables(self._held) if self._held else None).add_key_value_metadata(metadata)

    def close(self) -> None:
        """Write what is held and the footer."""
        try:
            try:
                self._flush()
            finally:
                self._writer(None).close()
        finally:
            self._sink.close()


def open_writer(path: str | Path, schema: pa.Schema, *, command: str) -> Writer:
    """A Parquet writer with the settings every output of ours uses; the footer says which
    ``command`` wrote the file, so a later run knows what it may replace."""
    return Writer(path, schema, command=command)


def written_by(path: str | Path) -> str | None:
    """The command that wrote the Parquet file at ``path`` (None: not ours, or not Parquet)."""
    try:
        metadata = pq.read_schema(str(path)).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    value = metadata.get(WRITTEN_BY)
    return value.decode(errors="replace") if value is not None else None

"""Decode uplinks on Spark, batch and Structured Streaming (extra ``[spark]``).

    from decoder.spark import decode_lines, decode_payloads
    out = decode_lines(spark.read.text("s3://bucket/uplinks/*.jsonl.gz"),
                       classes="classes.json", devices="devices.json")   # or device_class="2"
    out.write.partitionBy("device_class").parquet("s3://bucket/decoded/")
    t = decode_payloads(df, payload="payload", classes="classes.json",
                        device_class="Test Device Class", encoding="hex", port="port")

Both run the library's own batch calls (:meth:`decoder.Engine.decode`,
``DeviceClass.decode``) inside ``DataFrame.mapInArrow``: Spark hands each
Python worker Arrow record batches, the worker decodes them with the fused
kernels and hands Arrow back. Nothing runs per row in Python.

- The classes and device bindings travel inside the function, as JSON
  text: workers need no access to the files the driver read.
- Each Python worker builds the engine once per set of classes (a
  module-level cache keyed by the JSON's digest) and numba keeps the
  compiled kernels on the worker's disk: ``$DECODER_CACHE_DIR`` if the
  executors set it (``spark.executorEnv.DECODER_CACHE_DIR``), else
  ``<tmp>/decoder-cache-<uid>`` on each worker machine.
- Our Arrow types are not all Spark's, and Spark matches a batch's columns
  to the declared schema by position, not name. :func:`spark_schema` maps
  our schema to Spark's (unsigned integers to the next wider signed type,
  ``uint64`` to ``decimal(20,0)``; ``timestamp[ns, UTC]`` to ``timestamp``,
  truncated to microseconds; dictionary strings to ``string``; struct
  fields in declared order) and every batch is cast to it with its column
  and field names checked.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

try:
    from pyspark.sql import DataFrame
    from pyspark.sql import types as T
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("decoder.spark needs PySpark: pip install 'decoder[spark]'") from err

from ._conform import class_sources, conform, conform_table, fixed_decode
from .errors import InputError
from .json_source import is_path, read_json_source

__all__ = ["decode_lines", "decode_payloads", "spark_arrow_type", "spark_schema"]

FILE_COLUMN = "input"  # the input file (as in the error records of `decoder decode`)
TEXT_COLUMN = "line_text"  # the text of a line that holds no uplink
_VALUE, _PATH, _START, _LINE = "__decoder_value", "__decoder_file", "__decoder_block", "__decoder_line"
_GROUP_ROWS = 1 << 16  # rows decoded per engine call (Spark's batches are 10,000 rows)
_GROUP_BYTES = 32 << 20
# Registry.load_devices names the class of an euis response by its file name, documented as
# "device_classes_2_euis.json" or "device_classes/2/euis.json"; the workers get the parsed JSON,
# not the file, so the driver reads the class off the name the same way.
_EUIS_NAME = re.compile(r"device_classes[/_\-.](\d+)[/_\-.]euis(?:\.[A-Za-z0-9]+)*$")

_UNSIGNED_TO_SIGNED = {8: pa.int16(), 16: pa.int32(), 32: pa.int64(), 64: pa.decimal128(20, 0)}
_SPARK_PRIMITIVES = {
    pa.bool_(): T.BooleanType(),
    pa.int8(): T.ByteType(),
    pa.int16(): T.ShortType(),
    pa.int32(): T.IntegerType(),
    pa.int64(): T.LongType(),
    pa.float32(): T.FloatType(),
    pa.float64(): T.DoubleType(),
    pa.string(): T.StringType(),
    pa.binary(): T.BinaryType(),
}


# -- the schema mapping -------------------------------------------------------------------------


def spark_arrow_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type a column of our type ``t`` is cast to before Spark reads it."""
    if pa.types.is_dictionary(t):
        return spark_arrow_type(t.value_type)
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, spark_arrow_type(f.type)) for f in t])
    if pa.types.is_map(t):
        return pa.map_(spark_arrow_type(t.key_type), spark_arrow_type(t.item_type))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(spark_arrow_type(t.value_type))
    if pa.types.is_unsigned_integer(t):
        return _UNSIGNED_TO_SIGNED[t.bit_width]
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC" if t.tz is not None else None)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pa.binary()
    if t in _SPARK_PRIMITIVES or pa.types.is_decimal128(t):
        return t
    raise TypeError(f"no Spark type for the Arrow type {t}")


def _spark_type(t: pa.DataType) -> T.DataType:
    """The Spark type of an Arrow type of :func:`spark_arrow_type`'s range."""
    if pa.types.is_struct(t):
        return T.StructType([T.StructField(f.name, _spark_type(f.type), True) for f in t])
    if pa.types.is_map(t):
        return T.MapType(_spark_type(t.key_type), _spark_type(t.item_type), True)
    if pa.types.is_list(t):
        return T.ArrayType(_spark_type(t.value_type), True)
    if pa.types.is_decimal128(t):
        return T.DecimalType(t.precision, t.scale)
    if pa.types.is_timestamp(t):
        return T.TimestampType() if t.tz is not None else T.TimestampNTZType()
    return _SPARK_PRIMITIVES[t]


def spark_schema(schema: pa.Schema | pa.DataType) -> T.StructType:
    """The Spark schema of our Arrow schema (see the module docstring for the mapping)."""
    fields = list(schema)
    _check_names(fields, "")
    return _spark_type(pa.struct([pa.field(f.name, spark_arrow_type(f.type)) for f in fields]))


def _check_names(fields: list[pa.Field], path: str) -> None:
    """Refuse names Spark cannot tell apart: it resolves columns and struct fields case-insensitively."""
    seen: dict[str, str] = {}
    for f in fields:
        where = f"{path}.{f.name}" if path else f.name
        other = seen.get(f.name.lower())
        if other is not None:
            how = "twice" if other == f.name else f"beside {other!r}, differing only in case"
            raise InputError(f"the output has {where!r} {how}, which Spark cannot tell apart")
        seen[f.name.lower()] = f.name
        inner = f.type
        while pa.types.is_map(inner) or pa.types.is_list(inner) or pa.types.is_large_list(inner):
            inner = inner.item_type if pa.types.is_map(inner) else inner.value_type
        if pa.types.is_struct(inner):
            _check_names(list(inner), where)


# -- classes and devices, shipped to the workers as JSON -------------------------------------------


def _read_json(source: Any, what: str) -> Any:
    """The parsed JSON of a path, of JSON text, or a parsed value as it is."""
    return read_json_source(source, what, InputError)


def _device_pairs(devices: Any) -> list[list]:
    """``[class or None, parsed devices JSON]`` per source (the shapes Registry.from_files takes)."""
    if devices is None:
        return []
    items = (
        devices
        if isinstance(devices, list) and all(isinstance(d, (str, os.PathLike, tuple)) for d in devices)
        else [devices]
    )
    pairs = []
    for item in items:
        ref = None
        if isinstance(item, tuple):
            ref, item = item
        elif is_path(item):
            named = _EUIS_NAME.search(Path(item).as_posix())
            ref = int(named.group(1)) if named else None
        pairs.append([ref, _read_json(item, "devices")])
    return pairs


def _spec(classes: Any, devices: Any, device_class: Any, include_hidden: bool) -> tuple[bytes, str]:
    """The JSON text the workers build their engine from, and its digest (the cache key)."""
    default = (
        []
        if device_class is None
        else (list(device_class) if isinstance(device_class, (list, tuple)) else [device_class])
    )
    doc = {
        "classes": [] if classes is None else [_read_json(s, "device classes") for s in class_sources(classes)],
        "devices": _device_pairs(devices),
        "default": default,
        "include_hidden": bool(include_hidden),
    }
    try:
        text = orjson.dumps(doc)
    except TypeError as err:
        raise InputError(f"classes and devices must be files or JSON data: {err}") from None
    return text, hashlib.sha256(text).hexdigest()


def _build_engine(spec: dict) -> Any:
    """The Engine of a spec; the same rules as ``decoder decode --classes/--devices/--class``."""
    from . import Engine, Registry

    registry = Registry()
    for doc in spec["classes"]:
        registry.add_classes(doc)
    if not registry.classes and not spec["default"]:
        raise InputError("no device class: give classes=..., or device_class= a built-in format (cayenne-lpp)")
    for ref, doc in spec["devices"]:
        registry.load_devices(doc, device_class=ref)
    for ref in spec["default"]:
        registry.bind_all(ref)
    if not spec["devices"] and not spec["default"]:
        if len(registry.classes) != 1:
            names = ", ".join(repr(dc.name) for dc in registry.classes)
            raise InputError(
                f"{len(registry.classes)} device classes loaded ({names}): say which device uses which "
                "with devices=..., or decode everything with one class: device_class=ID or NAME"
            )
        registry.bind_all(registry.classes[0])
    if not registry.bound_classes:
        raise InputError("no device is bound to any of the loaded classes (check devices)")
    return Engine(registry, include_hidden=spec["include_hidden"])


_ENGINES: dict[str, Any] = {}
_ENGINES_LOCK = threading.Lock()


def _worker_engine(spec: bytes, key: str) -> Any:
    """The engine of ``spec`` in this Python worker: built on first use, then kept for the worker's life."""
    engine = _ENGINES.get(key)
    if engine is None:
        with _ENGINES_LOCK:
            engine = _ENGINES.get(key)
            if engine is None:
                if not os.environ.get("DECODER_CACHE_DIR"):
                    # numba's cache must be on the worker's own disk, and writable there.
                    uid = os.getuid() if hasattr(os, "getuid") else "user"
                    os.environ["DECODER_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"decoder-cache-{uid}")
                engine = _ENGINES[key] = _build_engine(orjson.loads(spec))
    return engine


# -- decode_lines -----------------------------------------------------------------------------------


def _lines_target(engine: Any) -> pa.Schema:
    """The Arrow schema of decode_lines' batches: the engine's columns in Spark's types, then input and line_text."""
    fields = [pa.field(f.name, spark_arrow_type(f.type)) for f in engine.schema]
    return pa.schema(fields + [pa.field(FILE_COLUMN, pa.string()), pa.field(TEXT_COLUMN, pa.string())])


class _LineNumbers:
    """Line numbers per input file, counted as a task's rows arrive (Spark's text reader has none).

    Only rows of a split that starts at byte 0 are numbered: a later split of
    a large uncompressed file does not know how many lines come before it.
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[str, int], int] = {}

    def number(self, files: pa.Array, starts: pa.Array) -> pa.Array:
        n = len(files)
        file_code = np.asarray(pc.fill_null(files.dictionary_encode().indices, -1).to_numpy(zero_copy_only=False))
        start = np.asarray(pc.fill_null(starts, -1).to_numpy(zero_copy_only=False))
        cuts = np.flatnonzero((file_code[1:] != file_code[:-1]) | (start[1:] != start[:-1])) + 1
        bounds = [0, *cuts.tolist(), n]
        out = np.zeros(n, np.int64)
        known = np.zeros(n, bool)
        for a, b in itertools.pairwise(bounds):  # one run per file split: a few per batch
            key = (files[a].as_py(), int(start[a]))
            done = self.seen.get(key, 0)
            self.seen[key] = done + (b - a)
            if key[0] is not None and key[1] == 0:
                out[a:b] = np.arange(done + 1, done + 1 + b - a)
                known[a:b] = True
        return pa.array(out, pa.int64(), mask=~known)


def _items(values: pa.Array) -> list[bytes]:
    """One bytes item per line for Engine.decode (a null line counts as a blank one)."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values = values.cast(pa.binary() if pa.types.is_string(values.type) else pa.large_binary())
    return pc.fill_null(values, b"").to_pylist()


def _texts(values: pa.Array) -> pa.Array:
    """Lines as text (binary input decoded as UTF-8, bad bytes replaced)."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return values.cast(pa.string())
    return pa.array([None if v is None else v.decode("utf-8", "replace") for v in values.to_pylist()], pa.string())


def _combined(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _decode_group(engine: Any, target: pa.Schema, table: pa.Table) -> pa.Table:
    """Decode one group of lines: one row per uplink, one per bad line, in line order."""
    values = _combined(table[_VALUE])
    files, lines = _combined(table[_PATH]), _combined(table[_LINE])
    chunk = engine.decode(_items(values))
    decoded = chunk.table
    rows = pc.subtract(_combined(decoded["line"]), 1)  # Engine.decode numbers item k as line k + 1
    columns = {name: decoded[name] for name in decoded.column_names}
    columns["line"] = lines.take(rows)
    columns[FILE_COLUMN] = files.take(rows)
    columns[TEXT_COLUMN] = pa.nulls(len(rows), pa.string())
    out = conform_table(pa.table([columns[f.name] for f in target], names=target.names), target)
    if not chunk.bad_lines:
        return out
    bad_rows = pa.array([line - 1 for line, _ in chunk.bad_lines], pa.int64())
    bad = {f.name: pa.nulls(len(bad_rows), f.type) for f in target}
    bad["line"] = lines.take(bad_rows)
    bad[FILE_COLUMN] = files.take(bad_rows)
    bad["error"] = pa.array([reason for _, reason in chunk.bad_lines], pa.string())
    bad[TEXT_COLUMN] = _texts(values.take(bad_rows))
    both = pa.concat_tables([out, pa.table(bad, schema=target)])
    # sort_indices is stable: the uplinks of one line keep their order
    return both.take(pc.sort_indices(pa.concat_arrays([rows.cast(pa.int64()), bad_rows])))


def _numbered(batch: pa.RecordBatch, numbers: _LineNumbers | None) -> pa.RecordBatch:
    """The batch's lines with their file and line number (nulls where Spark gives no file)."""
    n = batch.num_rows
    if numbers is None:
        files, lines = pa.nulls(n, pa.string()), pa.nulls(n, pa.int64())
    else:
        files = batch.column(_PATH)
        lines = numbers.number(files, batch.column(_START))
    return pa.RecordBatch.from_arrays([batch.column(_VALUE), files, lines], names=[_VALUE, _PATH, _LINE])


def _lines_task(
    batches: Iterable[pa.RecordBatch], *, spec: bytes, key: str, with_file: bool
) -> Iterator[pa.RecordBatch]:
    """mapInArrow's function for decode_lines (runs on the workers)."""
    engine = _worker_engine(spec, key)
    target = _lines_target(engine)
    numbers = _LineNumbers() if with_file else None  # lines are numbered as they arrive, batch by batch
    pending: list[pa.RecordBatch] = []
    rows = size = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        pending.append(_numbered(batch, numbers))
        rows += batch.num_rows
        size += batch.nbytes
        if rows >= _GROUP_ROWS or size >= _GROUP_BYTES:
            yield from _decode_group(engine, target, pa.Table.from_batches(pending)).to_batches()
            pending, rows, size = [], 0, 0
    if pending:
        yield from _decode_group(engine, target, pa.Table.from_batches(pending)).to_batches()


def _has_file_metadata(df: DataFrame) -> bool:
    """Whether Spark can say which file each row came from (file sources: ``_metadata``)."""
    from pyspark.errors import AnalysisException

    try:
        _ = df.select("_metadata.file_path", "_metadata.file_block_start").schema  # analysis raises here
    except AnalysisException:
        return False
    return True


def _column_field(df: DataFrame, name: str, what: str) -> T.StructField:
    for f in df.schema.fields:
        if f.name == name:
            return f
    raise InputError(f"{what}: the DataFrame has no column {name!r} (columns: {', '.join(df.columns)})")


def decode_lines(
    lines_df: DataFrame,
    *,
    classes: Any = None,
    devices: Any = None,
    device_class: Any = None,
    column: str = "value",
    include_hidden: bool = False,
) -> DataFrame:
    """Decode a DataFrame of JSON lines (as ``spark.read.text`` gives) into one row per uplink.

    ``classes``, ``devices`` and ``device_class`` take what ``decoder decode``'s
    ``--classes``, ``--devices`` and ``--class`` take (paths on the driver, or
    parsed JSON; ``device_class="cayenne-lpp"`` needs no classes). The result
    has ``decoder decode``'s columns in Spark's types, then ``input`` (the
    file, from Spark's ``_metadata``; null when Spark does not know it) and
    ``line_text``. ``line`` is the line number in that file
    (null where Spark split a large uncompressed file: only the first split
    knows its line numbers). A line that holds no uplink (malformed JSON, an
    unknown shape) is a row too: every column null but ``input``, ``line``,
    ``error`` (the reason) and ``line_text`` (the line). Blank lines and
    events that are not uplinks have no row, as in ``decoder decode``.
    Works on streaming DataFrames as well.
    """
    field = _column_field(lines_df, column, "decode_lines")
    if not isinstance(field.dataType, (T.StringType, T.BinaryType)):
        raise InputError(f"decode_lines: column {column!r} holds {field.dataType.simpleString()}, not text")
    spec, key = _spec(classes, devices, device_class, include_hidden)
    engine = _build_engine(orjson.loads(spec))  # the driver checks what every worker will build
    target = _lines_target(engine)
    schema = spark_schema(target)
    with_file = _has_file_metadata(lines_df)
    columns = [lines_df[column].alias(_VALUE)]
    if with_file:
        columns += [lines_df["_metadata.file_path"].alias(_PATH), lines_df["_metadata.file_block_start"].alias(_START)]
    task = functools.partial(_lines_task, spec=spec, key=key, with_file=with_file)
    return lines_df.select(*columns).mapInArrow(task, schema)


# -- decode_payloads --------------------------------------------------------------------------------


def _payloads_task(
    batches: Iterable[pa.RecordBatch],
    *,
    spec: bytes,
    key: str,
    payload: str,
    port: str | None,
    encoding: str,
    output: str,
    error: str,
) -> Iterator[pa.RecordBatch]:
    """mapInArrow's function for decode_payloads (runs on the workers): the batch plus two columns."""
    engine = _worker_engine(spec, key)
    dc = engine.classes[0]
    target = spark_arrow_type(engine.decoded_type)
    for batch in batches:
        if not batch.num_rows:
            continue
        ports = batch.column(port) if port is not None else None
        result = fixed_decode(dc)(
            batch.column(payload), encoding=encoding, ports=ports, include_hidden=engine.include_hidden
        )
        decoded = conform(result.to_struct_array(), target, output)
        errors = conform(result.error_array(), pa.string(), error)
        yield pa.RecordBatch.from_arrays([*batch.columns, decoded, errors], names=[*batch.schema.names, output, error])


def decode_payloads(
    df: DataFrame,
    *,
    payload: str,
    classes: Any = None,
    device_class: Any = None,
    encoding: str = "hex",
    port: str | None = None,
    include_hidden: bool = False,
    output: str = "decoded",
    error: str = "error",
) -> DataFrame:
    """``df`` plus a struct column ``decoded`` (the class's outputs, null where the row failed) and ``error``.

    ``payload`` names a column of hex or base64 text (``encoding``) or of
    bytes (``encoding="raw"``); ``port`` an optional integer column of
    FPorts. ``classes`` is what ``decoder decode --classes`` takes (none for a
    built-in format such as ``device_class="cayenne-lpp"``);
    ``device_class`` (id or name) picks one of them, needed when there are
    several. ``error`` is null on decoded rows, else the reason.
    """
    _column_field(df, payload, "decode_payloads")
    if port is not None:
        _column_field(df, port, "decode_payloads")
    for name in (output, error):
        if name in df.columns:
            raise InputError(
                f"decode_payloads: the DataFrame already has a column {name!r}; "
                "choose other names with output=... and error=..."
            )
    if isinstance(device_class, (list, tuple)):
        raise InputError("decode_payloads decodes with one class: give one device_class")
    spec, key = _spec(classes, None, device_class, include_hidden)
    engine = _build_engine(orjson.loads(spec))
    decoded = pa.schema([pa.field(output, engine.decoded_type), pa.field(error, pa.string())])
    added = spark_schema(decoded)
    schema = T.StructType(df.schema.fields + added.fields)
    task = functools.partial(
        _payloads_task, spec=spec, key=key, payload=payload, port=port, encoding=encoding, output=output, error=error
    )
    return df.mapInArrow(task, schema)

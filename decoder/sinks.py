"""Output writers for decoded chunks: Parquet, Arrow IPC, CSV, JSON Lines.

Every writer streams (one chunk at a time) into a temporary name beside the
target and renames it into place in :meth:`Sink.close`; :meth:`Sink.abort`
removes it. So a failed run leaves no partial output, and an existing
output is only replaced by a complete one.

Layouts, by format (``engine.mixed``: the registry binds several classes):

- ``parquet``: one file; with mixed classes a directory partitioned by class,
  ``OUT/device_class=<name>/part-0.parquet`` (Hive style; rows without a
  class under ``device_class=__HIVE_DEFAULT_PARTITION__``). Each partition
  has its class's own ``decoded`` struct, so read one class at a time:
  ``pq.read_table("OUT/device_class=Room Climate Sensor")``.
- ``arrow``: one IPC file (``.arrow``/``.feather``; the stream format for
  ``.arrows`` or stdout), exactly the table of ``Engine.decode_packets``.
- ``csv``: nested fields flattened to ``decoded.gps.latitude``; with mixed
  classes the columns of all classes, empty where a row's class has none.
  Timestamps as ISO 8601, payload as hex.
- ``jsonl``: one object per row, ``decoded`` as the class's nested object,
  payload as hex, timestamps ISO 8601; NaN and infinities become null.

``.gz`` after a csv or jsonl suffix compresses with gzip.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .errors import InputError

__all__ = ["FORMATS", "detect_format", "open_sink", "Sink", "ErrorSink", "to_iso", "to_hex"]

FORMATS = ("parquet", "arrow", "csv", "jsonl")
STDOUT_FORMATS = ("arrow", "csv", "jsonl")
_SUFFIXES = {
    ".parquet": "parquet", ".pq": "parquet",
    ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow", ".arrows": "arrow",
    ".csv": "csv",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
}
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
PARTITION_KEY = "device_class"
_HEX = np.frombuffer(b"0123456789ABCDEF", np.uint8)
_HEX_LUT = np.stack([_HEX[np.arange(256) >> 4], _HEX[np.arange(256) & 15]], axis=1).astype(np.uint8)


def detect_format(path: str, fmt: str | None = None) -> str:
    """The output format: ``fmt`` if given, else from the suffix (``ValueError`` if unknown)."""
    if fmt:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
        return fmt
    if path == "-":
        return "jsonl"
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = os.path.splitext(name)[1]
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    raise ValueError(f"cannot tell the output format of {path!r} from its suffix; use --format {'|'.join(FORMATS)}")


# -- column conversions ------------------------------------------------------------


def _combine(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def to_hex(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Binary -> upper-case hex strings, vectorized (null stays null)."""
    arr = _combine(arr)
    if pa.types.is_large_binary(arr.type):
        arr = arr.cast(pa.binary()) if arr.nbytes < (1 << 30) else arr
    n = len(arr)
    if n == 0:
        return pa.array([], pa.string())
    off_type = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], off_type)[arr.offset:arr.offset + n + 1].astype(np.int64)
    start, end = int(offsets[0]), int(offsets[-1])
    data_buf = arr.buffers()[2]
    data = np.frombuffer(data_buf, np.uint8)[start:end] if data_buf is not None and end > start else \
        np.empty(0, np.uint8)
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
    arr = _combine(arr)
    if arr.type.tz is None:
        arr = pc.assume_timezone(arr, "UTC")
    text = pc.strftime(arr, format="%Y-%m-%dT%H:%M:%S")
    text = pc.replace_substring_regex(text, r"\.0+$", "")
    text = pc.replace_substring_regex(text, r"(\.\d*?)0+$", r"\1")
    return pc.binary_join_element_wise(text, pa.scalar("Z"), pa.scalar(""))


def _textual(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column made writable as CSV/JSON text: timestamps, binary and dictionaries converted."""
    arr = _combine(arr)
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
    return pa.array([None if v is None else dumps(v, option=opts).decode()
                     for v in arr.to_pylist(maps_as_pydicts="strict")], pa.string())


def _has_map(t: pa.DataType) -> bool:
    if pa.types.is_map(t):
        return True
    return pa.types.is_struct(t) and any(_has_map(f.type) for f in t)


def _leaves(t: pa.DataType, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], pa.DataType]]:
    if pa.types.is_struct(t):
        out = []
        for f in t:
            out.extend(_leaves(f.type, prefix + (f.name,)))
        return out
    return [(prefix, t)]


def _get(arr: pa.Array, path: tuple[str, ...]) -> pa.Array:
    """Child at ``path`` of a struct array, null wherever a parent is null."""
    for name in path:
        idx = arr.type.get_field_index(name)
        arr = arr.flatten()[idx]
    return arr


def _text_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(t) or pa.types.is_timestamp(t) or pa.types.is_binary(t) or pa.types.is_map(t):
        return pa.string()
    return t


def _common_type(types: list[pa.DataType]) -> pa.DataType:
    """One CSV column for a field several classes have: their type, a wider number, or text."""
    texts = {_text_type(t) for t in types}
    if len(texts) == 1:
        return texts.pop()
    if all(pa.types.is_integer(t) for t in texts) and not any(t == pa.uint64() for t in texts):
        return pa.int64()
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in texts):
        return pa.float64()
    return pa.string()


def _stable_dictionaries(arr: pa.Array, seen: dict, key: tuple) -> pa.Array:
    """Remap dictionary columns so each keeps one growing dictionary (IPC files allow deltas only)."""
    t = arr.type
    if pa.types.is_dictionary(t):
        known = seen.get(key)
        if known is None:
            seen[key] = arr.dictionary
            return arr
        if arr.dictionary.equals(known):
            return arr
        new_values = pc.filter(arr.dictionary, pc.invert(pc.is_in(arr.dictionary, value_set=known)))
        merged = pa.concat_arrays([known, new_values.cast(known.type)]) if len(new_values) else known
        remap = pc.index_in(arr.dictionary, value_set=merged)
        indices = pc.take(remap, arr.indices).cast(t.index_type)
        seen[key] = merged
        return pa.DictionaryArray.from_arrays(indices, merged)
    if pa.types.is_struct(t):
        children = [
            _stable_dictionaries(arr.field(i), seen, key + (t.field(i).name,)) for i in range(t.num_fields)
        ]
        mask = pc.is_null(arr) if arr.null_count else None
        return pa.StructArray.from_arrays(children, fields=list(t), mask=mask)
    return arr


def _has_dictionary(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return True
    if pa.types.is_struct(t):
        return any(_has_dictionary(f.type) for f in t)
    return False


# -- atomic targets -------------------------------------------------------------------


def _is_our_dataset(path: Path) -> bool:
    try:
        entries = list(path.iterdir())
    except OSError:
        return False
    return all(e.is_dir() and e.name.startswith(f"{PARTITION_KEY}=") for e in entries)


class _Target:
    """A temporary file or directory beside ``path``, renamed onto it on commit."""

    def __init__(self, path: str | Path, *, directory: bool = False) -> None:
        self.path = Path(path)
        self.directory = directory
        if self.path.is_dir() and not _is_our_dataset(self.path):
            raise InputError(f"cannot write {self.path}: it is a directory (not one this tool wrote)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot write {self.path}: {err.strerror or err}") from None
        self.tmp = self.path.parent / f".{self.path.name}.tmp-{os.getpid()}"
        try:
            if directory:
                if self.tmp.exists():
                    shutil.rmtree(self.tmp)
                self.tmp.mkdir()
            else:
                self.tmp.touch()
        except OSError as err:
            raise InputError(f"cannot write {self.path}: {err.strerror or err}") from None

    def commit(self) -> None:
        try:
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path)
            elif self.directory and self.path.exists():
                self.path.unlink()
            os.replace(self.tmp, self.path)
        except OSError as err:
            self.abort()
            raise InputError(f"cannot write {self.path}: {err.strerror or err}") from None

    def abort(self) -> None:
        try:
            if self.tmp.is_dir():
                shutil.rmtree(self.tmp, ignore_errors=True)
            elif self.tmp.exists():
                self.tmp.unlink()
        except OSError:
            pass


def _open_text_target(path: str, stdout: BinaryIO | None) -> tuple[Any, _Target | None]:
    """A writable binary stream for csv/jsonl: stdout, or a temp file (gzip for .gz)."""
    if path == "-":
        return (stdout or sys.stdout.buffer), None
    target = _Target(path)
    if path.lower().endswith(".gz"):
        stream = pa.CompressedOutputStream(str(target.tmp), "gzip")
    else:
        stream = open(target.tmp, "wb")
    return stream, target


# -- sinks ----------------------------------------------------------------------------


class Sink:
    """Base: ``write(chunk)`` for every DecodedChunk, then ``close()`` (commit) or ``abort()``."""

    format = ""
    path = ""

    def write(self, chunk: Any) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> str:
        """Finish and rename into place; returns a description of what was written."""
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _StreamSink(Sink):
    """A sink writing to ``self.stream``: a temp file renamed into place on close, or stdout.

    ``self.writer``, when set, is a pyarrow writer over that stream, closed first.
    """

    writer: Any = None
    target: Any = None
    stream: Any = None

    def close(self) -> str:
        if self.writer is not None:
            self.writer.close()
        if self.target is not None:
            self.stream.close()
            self.target.commit()
            return self.path
        self.stream.flush()
        return "stdout"

    def abort(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:
                pass
        if self.target is not None:
            try:
                self.stream.close()
            except Exception:
                pass
            self.target.abort()


class ParquetSink(Sink):
    format = "parquet"

    def __init__(self, path: str, engine: Any, *, compression: str = "zstd") -> None:
        import pyarrow.parquet as pq

        self._pq = pq
        self.path = path
        self.engine = engine
        self.compression = compression
        self.partitioned = engine.mixed
        self.target = _Target(path, directory=self.partitioned)
        self.writers: dict[str | None, Any] = {}
        self.rows: dict[str | None, int] = {}
        if not self.partitioned:
            self.writers[""] = pq.ParquetWriter(str(self.target.tmp), engine.schema, compression=compression)

    @staticmethod
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

    def write(self, chunk: Any) -> None:
        if not self.partitioned:
            self.writers[""].write_table(chunk.table)
            return
        for name, table in chunk.by_class().items():
            table = table.drop_columns([PARTITION_KEY])
            writer = self.writers.get(name)
            if writer is None:
                folder = self.target.tmp / self.segment(name)
                folder.mkdir()
                schema = self.engine.class_schema(name).remove(
                    self.engine.class_schema(name).get_field_index(PARTITION_KEY)
                )
                writer = self.writers[name] = self._pq.ParquetWriter(
                    str(folder / "part-0.parquet"), schema, compression=self.compression
                )
            writer.write_table(table)

    def _close_writers(self) -> None:
        for w in self.writers.values():
            w.close()
        self.writers.clear()

    def close(self) -> str:
        self._close_writers()
        self.target.commit()
        if self.partitioned:
            return f"{self.path}/ (Parquet dataset partitioned by {PARTITION_KEY})"
        return self.path

    def abort(self) -> None:
        try:
            self._close_writers()
        except Exception:
            pass
        self.target.abort()


class ArrowSink(_StreamSink):
    format = "arrow"

    def __init__(self, path: str, engine: Any, *, stdout: BinaryIO | None = None) -> None:
        self.path = path
        self.engine = engine
        self.schema = engine.schema
        self.target = None
        self.stream_format = path == "-" or path.lower().endswith(".arrows")
        options = pa.ipc.IpcWriteOptions(emit_dictionary_deltas=True)
        if path == "-":
            self.stream = pa.PythonFile(stdout or sys.stdout.buffer, mode="w")
        else:
            self.target = _Target(path)
            self.stream = pa.OSFile(str(self.target.tmp), "wb")
        opener = pa.ipc.new_stream if self.stream_format else pa.ipc.new_file
        self.writer = opener(self.stream, self.schema, options=options)
        self._dicts: dict = {}
        self._fix = any(_has_dictionary(f.type) for f in self.schema)

    def write(self, chunk: Any) -> None:
        table = chunk.table
        if self._fix:
            arrays = [
                _stable_dictionaries(_combine(col), self._dicts, (name,)) if _has_dictionary(col.type) else col
                for name, col in zip(table.column_names, table.columns)
            ]
            table = pa.Table.from_arrays(arrays, schema=self.schema)
        self.writer.write_table(table)

class CsvSink(_StreamSink):
    format = "csv"

    def __init__(self, path: str, engine: Any, *, stdout: BinaryIO | None = None) -> None:
        import pyarrow.csv as pcsv

        self.path = path
        self.engine = engine
        self.stream, self.target = _open_text_target(path, stdout)
        # The header is fixed up front from the engine, so every chunk writes the same columns.
        fields: list[pa.Field] = []
        self.plan: list[tuple[str, Any]] = []    # (column name, how to compute)
        for f in engine.schema:
            if f.name == "decoded":
                for name, sources, t in self._decoded_columns():
                    fields.append(pa.field(name, t))
                    self.plan.append((name, ("decoded", sources, t)))
            else:
                fields.append(pa.field(f.name, _text_type(f.type)))
                self.plan.append((f.name, ("column", f.name)))
        self.schema = pa.schema(fields)
        self.writer = pcsv.CSVWriter(self.stream, self.schema)

    def _decoded_columns(self) -> list[tuple[str, list, pa.DataType]]:
        """Flattened decoded columns: name, [(class field or None, path, type)], output type."""
        eng = self.engine
        found: dict[str, list] = {}
        order: list[str] = []
        classes = [(None, eng.decoded_type)] if not eng.mixed else [
            (dc.name, t) for dc, t in zip(eng.classes, eng.class_types)
        ]
        for cls, t in classes:
            for path, leaf in _leaves(t):
                name = "decoded." + ".".join(path)
                if name not in found:
                    found[name] = []
                    order.append(name)
                found[name].append((cls, path, leaf))
        return [(name, found[name], _common_type([leaf for _, _, leaf in found[name]])) for name in order]

    def write(self, chunk: Any) -> None:
        table = chunk.table
        n = table.num_rows
        arrays = []
        decoded = _combine(table["decoded"]) if n else None
        for (name, how), field in zip(self.plan, self.schema):
            if how[0] == "column":
                arr = _textual(table[how[1]])
            elif n == 0:
                arr = pa.array([], field.type)
            else:
                pieces = []
                for cls, path, _ in how[1]:
                    base = decoded if cls is None else _get(decoded, (cls,))
                    pieces.append(_textual(_get(base, path)).cast(field.type))
                arr = pieces[0] if len(pieces) == 1 else pc.coalesce(*pieces)
            arrays.append(arr.cast(field.type) if arr.type != field.type else arr)
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))

def _json_rows(table: pa.Table, *, mixed: bool, maps: bool = False) -> list[dict]:
    arrays = []
    for col in table.columns:
        t = col.type
        if pa.types.is_timestamp(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            arrays.append(_textual(col))
        elif pa.types.is_dictionary(t):
            arrays.append(col.cast(t.value_type))  # to_pylist of a dictionary array is ~50x slower
        else:
            arrays.append(col)
    table = pa.Table.from_arrays(arrays, names=table.column_names)
    # maps (a built-in format's channels) as dicts: JSON objects, dumped with _MAP_OPTS
    rows = table.to_pylist(maps_as_pydicts="strict") if maps else table.to_pylist()
    if mixed:
        for row in rows:
            dec = row.get("decoded")
            if dec is not None:
                row["decoded"] = dec.get(row.get("device_class"))
    return rows


_JSON_OPTS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
_MAP_OPTS = _JSON_OPTS | orjson.OPT_NON_STR_KEYS  # integer map keys; ~10% slower, so only with maps


class JsonlSink(_StreamSink):
    format = "jsonl"

    def __init__(self, path: str, engine: Any, *, stdout: BinaryIO | None = None) -> None:
        self.path = path
        self.engine = engine
        self.stream, self.target = _open_text_target(path, stdout)
        self._maps = any(_has_map(f.type) for f in engine.schema)

    def rows_of(self, chunk: Any) -> bytes:
        """The JSON Lines of a chunk's rows."""
        dumps, opts = orjson.dumps, _MAP_OPTS if self._maps else _JSON_OPTS
        rows = _json_rows(chunk.table, mixed=self.engine.mixed, maps=self._maps)
        return b"".join(dumps(r, option=opts) for r in rows)

    def write(self, chunk: Any) -> None:
        self.stream.write(self.rows_of(chunk))

_ERROR_COLUMNS = ("provider", "packet_id", "dev_eui", "device_id", "port", "payload", "device_class")


class ErrorSink(_StreamSink):
    """``--errors FILE``: every failed row and bad line, JSON Lines, in input order.

    A row: ``{"input", "line", "error", "provider", "packet_id", "dev_eui",
    "device_id", "port", "payload" (hex), "device_class"}``; a bad line (no
    uplink in it): ``{"input", "line", "error"}``.
    """

    def __init__(self, path: str, *, stdout: BinaryIO | None = None) -> None:
        self.path = path
        self.stream, self.target = _open_text_target(path, stdout)
        self.count = 0

    def write(self, chunk: Any) -> None:
        records: list[tuple[int, dict]] = []
        if chunk.error.null_count < chunk.rows:
            failed = chunk.failed()
            cols = ["line", "error"] + [c for c in _ERROR_COLUMNS if c in failed.column_names]
            for row in _json_rows(failed.select(cols), mixed=False):
                rec = {"input": chunk.source, **row}
                records.append((row.get("line") or 0, rec))
        for line, reason in chunk.bad_lines:
            records.append((line, {"input": chunk.source, "line": line, "error": reason}))
        if not records:
            return
        records.sort(key=lambda r: r[0])
        self.stream.write(b"".join(orjson.dumps(r, option=_JSON_OPTS) for _, r in records))
        self.count += len(records)

def open_sink(path: str, fmt: str | None, engine: Any, *, stdout: BinaryIO | None = None) -> Sink:
    """A writer for ``path`` (``"-"``: stdout) in ``fmt`` (or the format of its suffix)."""
    fmt = detect_format(path, fmt)
    if path == "-" and fmt not in STDOUT_FORMATS:
        raise ValueError(f"{fmt} cannot be written to stdout; give a file name with -o")
    if fmt == "parquet":
        return ParquetSink(path, engine)
    if fmt == "arrow":
        return ArrowSink(path, engine, stdout=stdout)
    if fmt == "csv":
        return CsvSink(path, engine, stdout=stdout)
    return JsonlSink(path, engine, stdout=stdout)

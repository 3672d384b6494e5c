"""Output writers for decoded chunks: Parquet, Arrow IPC, CSV, JSON Lines.

Every writer streams (one chunk at a time) into a temporary name beside the
target and renames it into place in :meth:`Sink.close`; :meth:`Sink.abort`
removes it. So a failed run leaves no partial output, and an existing
output is only replaced by a complete one. Only a regular file or a dataset
an earlier run wrote (its files' footers say so) is ever replaced; any
other directory is refused (:func:`refusal`). Temporaries that killed runs
left are removed when the next run opens the same output. A write that
fails raises OutputError naming the output.

Layouts, by format (``engine.mixed``: the registry binds several classes):

- ``parquet``: one file; with mixed classes a directory partitioned by class,
  ``OUT/device_class=<name>/part-0.parquet`` (Hive style; rows without a
  class under ``device_class=``). Every file has the engine's schema (see
  ``parquet``), so the whole directory reads as one table:
  ``pq.read_table("OUT")``.
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

import contextlib
import functools
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from ..arrays import combine
from ..errors import OutputError
from ..options import FORMATS, STDOUT_FORMATS, detect_format
from . import parquet
from .text import error_records, json_rows, textual

__all__ = [
    "FORMATS",
    "STDOUT_FORMATS",
    "detect_format",
    "refusal",
    "remove_stale_temporaries",
    "open_sink",
    "Sink",
    "ParquetSink",
    "ArrowSink",
    "CsvSink",
    "JsonlSink",
    "ErrorSink",
]


def _map_text(arr: pa.Array) -> pa.Array:
    """A map column (a built-in format's channels) as JSON object text, ``{"3":27.2}``; null stays null."""
    dumps, opts = orjson.dumps, orjson.OPT_NON_STR_KEYS
    return pa.array(
        [None if v is None else dumps(v, option=opts).decode() for v in arr.to_pylist(maps_as_pydicts="strict")],
        pa.string(),
    )


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
        children = [_stable_dictionaries(arr.field(i), seen, key + (t.field(i).name,)) for i in range(t.num_fields)]
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

_TMP_INFIX = ".tmp-"  # temporaries are .<name>.tmp-<pid>, beside the target


def _is_our_dataset(path: Path) -> bool:
    """Whether ``path`` is exactly what ``decode`` writes for several classes:
    ``device_class=<name>/part-0.parquet`` directories whose files' footers say
    ``decode`` wrote them, and nothing else (not even an empty directory)."""
    try:
        entries = list(path.iterdir())
        if not entries:
            return False
        for entry in entries:
            if entry.is_symlink() or not entry.is_dir() or not entry.name.startswith(f"{parquet.PARTITION_KEY}="):
                return False
            if [f.name for f in entry.iterdir()] != ["part-0.parquet"]:
                return False
            if parquet.written_by(entry / "part-0.parquet") != "decode":
                return False
    except OSError:
        return False
    return True


def refusal(path: str | Path) -> str | None:
    """Why an output at ``path`` would replace data this tool did not write (None: it would not).

    A missing path, a regular file (replaced whole, atomically, as outputs
    always were), a symlink (the link is replaced, never what it points to)
    and a dataset an earlier ``decode`` wrote are fine; any other directory,
    empty ones and a stream's rolling files included, and anything that is
    not a regular file (a device, a FIFO) are not.
    """
    p = Path(path)
    if p.is_symlink() or not os.path.lexists(p):
        return None
    if p.is_dir():
        if _is_our_dataset(p):
            return None
        return (
            f"{p} is a directory this tool did not write (not a Parquet dataset of decoder decode); "
            "nothing was replaced: remove it or name another output"
        )
    if not p.is_file():
        return f"{p} is not a regular file; nothing was replaced (use - for stdout)"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, it is someone else's
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporaries of ``path`` (``.<name>.tmp-<pid>`` beside it) left by processes
    that no longer run (killed mid-write); return what was removed. Nothing else is touched."""
    target = Path(path)
    prefix = f".{target.name}{_TMP_INFIX}"
    removed: list[Path] = []
    try:
        entries = [e for e in target.parent.iterdir() if e.name.startswith(prefix)]
    except OSError:
        return removed
    for entry in entries:
        pid = entry.name[len(prefix) :]
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            pass  # not ours to fight over: it stays
    return removed


class _Target:
    """A temporary file or directory beside ``path``, renamed onto it on commit.

    Refuses (OutputError) a path that holds data this tool did not write
    (:func:`refusal`); removes the temporaries dead runs left beside it.
    """

    def __init__(self, path: str | Path, *, directory: bool = False) -> None:
        self.path = Path(path)
        self.directory = directory
        reason = refusal(self.path)
        if reason is not None:
            raise OutputError(f"cannot write {self.path}: {reason}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from None
        self.stale_removed = remove_stale_temporaries(self.path)
        self.tmp = self.path.parent / f".{self.path.name}{_TMP_INFIX}{os.getpid()}"
        try:
            if directory:
                if self.tmp.exists():
                    shutil.rmtree(self.tmp)
                self.tmp.mkdir()
            else:
                # Made to fail here if the directory takes no new file, then removed: the sink
                # makes it again. A sink opening (and so truncating) a file made here had ext4
                # write it back when it closed (auto_da_alloc): 20-40 ms at the end of a run.
                self.tmp.touch()
                self.tmp.unlink()
        except OSError as err:
            raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from None

    @contextlib.contextmanager
    def removed_on_failure(self) -> Iterator[None]:
        """Remove the temporary when the block fails or is interrupted (Ctrl-C, SIGTERM), and re-raise."""
        try:
            yield
        except BaseException:
            self.abort()
            raise

    def commit(self) -> None:
        try:
            reason = refusal(self.path)  # checked again: the path may have changed while we wrote
            if reason is not None:
                raise OutputError(f"cannot write {self.path}: {reason}")
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path)
            elif self.directory and os.path.lexists(self.path):
                self.path.unlink()
            os.replace(self.tmp, self.path)
        except OSError as err:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from None
        except OutputError:
            self.abort()
            raise

    def abort(self) -> None:
        try:
            if self.tmp.is_dir():
                shutil.rmtree(self.tmp, ignore_errors=True)
            elif self.tmp.exists():
                self.tmp.unlink()
        except OSError:
            pass


def _removed_on_failure(target: _Target | None) -> Any:
    """``target.removed_on_failure()``; nothing to remove for stdout (None)."""
    return target.removed_on_failure() if target is not None else contextlib.nullcontext()


def _open_text_target(path: str, stdout: BinaryIO | None) -> tuple[Any, _Target | None]:
    """A writable binary stream for csv/jsonl: stdout, or a temp file (gzip for .gz)."""
    if path == "-":
        return (stdout or sys.stdout.buffer), None
    target = _Target(path)
    try:
        with target.removed_on_failure():
            if path.lower().endswith(".gz"):
                stream = pa.CompressedOutputStream(str(target.tmp), "gzip")
            else:
                stream = open(target.tmp, "wb")
    except OSError as err:
        raise _output_error(path, err) from None
    return stream, target


# -- sinks ----------------------------------------------------------------------------


def _output_error(path: str | Path, err: OSError) -> OutputError:
    where = "stdout" if str(path) == "-" else path
    return OutputError(f"cannot write {where}: {err.strerror or err}")


def _names_the_output(method: Any) -> Any:
    """A sink method whose OSError (disk full, a file too large) becomes an OutputError naming
    the output: the CLI must not blame the input it was reading. A closed stdout stays a
    BrokenPipeError (``| head`` is not a failure)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except BrokenPipeError:
            raise
        except OSError as err:
            raise _output_error(self.path, err) from None

    return wrapper


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

    def __enter__(self) -> Sink:
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

    def due(self) -> bool:
        """A stream hands rows on as it writes them: always time to commit (see ``stream.deliver``)."""
        return True

    @_names_the_output
    def commit(self) -> None:
        """Hand the written rows on (flush the stream)."""
        self.stream.flush()

    @_names_the_output
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
    """One Parquet file, or with several classes a directory partitioned by class (``parquet``)."""

    format = "parquet"

    def __init__(self, path: str, engine: Any) -> None:
        self.path = path
        self.engine = engine
        self.partitioned = engine.mixed
        self.target = _Target(path, directory=self.partitioned)
        self.writers: dict[str | None, Any] = {}
        if not self.partitioned:
            with self.target.removed_on_failure():
                self.writers[""] = parquet.open_writer(self.target.tmp, engine.schema, command="decode")

    @_names_the_output
    def write(self, chunk: Any) -> None:
        if not self.partitioned:
            self.writers[""].write_table(chunk.table)
            return
        for name, schema, table in parquet.partitions(chunk, self.engine):
            self._partition_writer(name, schema).write_table(table)

    def _partition_writer(self, name: str | None, schema: Any) -> Any:
        writer = self.writers.get(name)
        if writer is None:
            folder = self.target.tmp / parquet.segment(name)
            folder.mkdir()
            writer = self.writers[name] = parquet.open_writer(folder / "part-0.parquet", schema, command="decode")
        return writer

    def _close_writers(self) -> None:
        for w in self.writers.values():
            w.close()
        self.writers.clear()

    @_names_the_output
    def close(self) -> str:
        if self.partitioned and not self.writers:  # no rows: one empty file keeps the schema (and says whose)
            self._partition_writer(None, parquet.file_schema(self.engine))
        self._close_writers()
        self.target.commit()
        if self.partitioned:
            return f"{self.path}/ (Parquet dataset partitioned by {parquet.PARTITION_KEY})"
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
        opener = pa.ipc.new_stream if self.stream_format else pa.ipc.new_file
        with _removed_on_failure(self.target):
            if self.target is not None:
                self.stream = pa.OSFile(str(self.target.tmp), "wb")
            self.writer = opener(self.stream, self.schema, options=options)
        self._dicts: dict = {}
        self._fix = any(_has_dictionary(f.type) for f in self.schema)

    @_names_the_output
    def write(self, chunk: Any) -> None:
        table = chunk.table
        if self._fix:
            arrays = [
                _stable_dictionaries(combine(col), self._dicts, (name,)) if _has_dictionary(col.type) else col
                for name, col in zip(table.column_names, table.columns)
            ]
            table = pa.Table.from_arrays(arrays, schema=self.schema)
        self.writer.write_table(table)


class CsvSink(_StreamSink):
    format = "csv"

    def __init__(self, path: str, engine: Any, *, stdout: BinaryIO | None = None) -> None:
        self.path = path
        self.engine = engine
        self.stream, self.target = _open_text_target(path, stdout)
        with _removed_on_failure(self.target):
            self._start(engine)

    def _start(self, engine: Any) -> None:
        """The header, fixed up front from the engine, so every chunk writes the same columns."""
        fields: list[pa.Field] = []
        self.plan: list[tuple[str, Any]] = []  # (column name, how to compute)
        for f in engine.schema:
            if f.name == "decoded":
                for name, sources, t in self._decoded_columns():
                    fields.append(pa.field(name, t))
                    self.plan.append((name, ("decoded", sources, t)))
            elif pa.types.is_struct(f.type):  # the normalized payload: one column per quantity
                for path, leaf in _leaves(f.type):
                    name = ".".join((f.name, *path))
                    fields.append(pa.field(name, _text_type(leaf)))
                    self.plan.append((name, ("leaf", f.name, path)))
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
        classes = (
            [(None, eng.decoded_type)]
            if not eng.mixed
            else [(dc.name, t) for dc, t in zip(eng.classes, eng.class_types)]
        )
        for cls, t in classes:
            for path, leaf in _leaves(t):
                name = "decoded." + ".".join(path)
                if name not in found:
                    found[name] = []
                    order.append(name)
                found[name].append((cls, path, leaf))
        return [(name, found[name], _common_type([leaf for _, _, leaf in found[name]])) for name in order]

    @_names_the_output
    def write(self, chunk: Any) -> None:
        table = chunk.table
        n = table.num_rows
        arrays = []
        decoded = combine(table["decoded"]) if n else None
        for (_name, how), field in zip(self.plan, self.schema):
            if how[0] == "column":
                arr = textual(table[how[1]])
            elif how[0] == "leaf":
                arr = textual(_get(combine(table[how[1]]), how[2])) if n else pa.array([], field.type)
            elif n == 0:
                arr = pa.array([], field.type)
            else:
                pieces = []
                for cls, path, _ in how[1]:
                    base = decoded if cls is None else _get(decoded, (cls,))
                    pieces.append(textual(_get(base, path)).cast(field.type))
                arr = pieces[0] if len(pieces) == 1 else pc.coalesce(*pieces)
            arrays.append(arr.cast(field.type) if arr.type != field.type else arr)
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))


_JSON_OPTS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
_MAP_OPTS = _JSON_OPTS | orjson.OPT_NON_STR_KEYS  # integer map keys; ~10% slower, so only with maps
_JSON_PIECE_ROWS = 4096  # rows turned into Python objects and JSON at a time


class JsonlSink(_StreamSink):
    format = "jsonl"

    def __init__(self, path: str, engine: Any, *, stdout: BinaryIO | None = None) -> None:
        self.path = path
        self.engine = engine
        self.stream, self.target = _open_text_target(path, stdout)
        self._maps = any(_has_map(f.type) for f in engine.schema)

    def rows_of(self, chunk: Any) -> bytes:
        """The JSON Lines of a chunk's rows."""
        return b"".join(self._pieces(chunk.table))

    def _pieces(self, table: pa.Table) -> Any:
        """The JSON Lines of ``table``, _JSON_PIECE_ROWS rows at a time."""
        dumps, opts = orjson.dumps, _MAP_OPTS if self._maps else _JSON_OPTS
        for start in range(0, table.num_rows, _JSON_PIECE_ROWS):
            rows = json_rows(table.slice(start, _JSON_PIECE_ROWS), mixed=self.engine.mixed, maps=self._maps)
            yield b"".join(dumps(r, option=opts) for r in rows)

    @_names_the_output
    def write(self, chunk: Any) -> None:
        # In pieces: a chunk's rows as Python dicts, then as one bytes object, took about
        # 40 times the chunk's Arrow size at once (1.6 GB peak on a million packets).
        for piece in self._pieces(chunk.table):
            self.stream.write(piece)


class ErrorSink(_StreamSink):
    """``--errors FILE``: every failed row and bad line, JSON Lines, in input order
    (the records of ``text.error_records``, each with its ``input`` file)."""

    def __init__(self, path: str, *, stdout: BinaryIO | None = None) -> None:
        self.path = path
        self.stream, self.target = _open_text_target(path, stdout)
        self.count = 0

    @_names_the_output
    def write(self, chunk: Any) -> None:
        records = error_records(chunk, lambda line: {"input": chunk.source})
        if records:
            self.stream.write(b"".join(orjson.dumps(r, option=_JSON_OPTS) for r in records))
            self.count += len(records)


def open_sink(path: str, fmt: str | None, engine: Any, *, stdout: BinaryIO | None = None) -> Sink:
    """A writer for ``path`` (``"-"``: stdout) in ``fmt`` (or the format of its suffix).

    Raises OutputError when ``path`` cannot be written or holds data this tool
    did not write (see :func:`refusal`).
    """
    fmt = detect_format(path, fmt)
    if path == "-" and fmt not in STDOUT_FORMATS:
        raise ValueError(f"{fmt} cannot be written to stdout; give a file name with -o")
    kinds = {"parquet": ParquetSink, "arrow": ArrowSink, "csv": CsvSink, "jsonl": JsonlSink}
    try:
        if fmt == "parquet":
            return ParquetSink(path, engine)
        return kinds[fmt](path, engine, stdout=stdout)
    except BrokenPipeError:
        raise
    except OSError as err:
        raise _output_error(path, err) from None

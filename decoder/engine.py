"""Many classes: normalized packets in, normalized + decoded Arrow out.

:class:`Engine` takes a :class:`~decoder.registry.Registry`, groups each
chunk's uplinks by device class and decodes every group's payload column
with one kernel call (no Python per row). The result of a chunk is a
:class:`DecodedChunk`:

- :attr:`DecodedChunk.table`: one row per uplink, in input order: the
  normalized columns (docs/schema.md), ``device_class`` (the class name,
  dictionary-encoded), ``decoded`` (a struct with the class's output) and
  ``error`` (null, or the reason the row was not decoded). A built-in
  format (Cayenne LPP) gives its fixed struct (``decode_fixed``) and keeps
  the values read before a row's error.

  When the registry binds more than one class, the classes' outputs have
  different types and cannot share one struct type. ``decoded`` is then a
  struct with one field per class name, each that class's output struct,
  set only on the rows of that class (a union spelled as a struct, which
  every Arrow, Parquet and pandas reader handles):
  ``pc.struct_field(table["decoded"], "Room Climate Sensor")``.
- :meth:`DecodedChunk.by_class`: one table per class instead, each with
  that class's plain ``decoded`` struct; rows without a class under the key
  ``None``. (The partitioned Parquet output keeps ``table``'s schema in
  every partition, so a reader of the whole directory gets every class.)

Whether ``decoded`` is a class struct or a struct of classes depends only
on the registry (:attr:`Engine.mixed`), never on which classes a chunk
happens to contain, so every chunk of a stream has the same schema.

Counts reconcile: ``rows == decoded + sum(errors)`` for every chunk, and in
the :class:`Summary`, ``rows in == decoded + errors + skipped``; lines that
hold no uplink are bad lines, not rows.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrays import combine, plus
from .compiler.normalized import normalize as normalize_payload
from .compiler.normalized import normalized_type
from .errors import InputError
from .ingest import ChunkStream, NormalizedChunk, Reader, empty_uplinks, normalize_values, read_chunks
from .options import CHUNK_BYTES
from .registry import Registry

__all__ = ["Engine", "DecodedChunk", "Summary"]
CLASS_COLUMN = "device_class"
DECODED_COLUMN = "decoded"
NORMALIZED_COLUMN = "normalized"
ERROR_COLUMN = "error"
WARNINGS_COLUMN = "warnings"
NO_PAYLOAD = "no payload"
INPUT_COLUMN = "input"


def _np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False))


def _positions(rows: np.ndarray, n: int) -> pa.Array:
    """An n-long int64 index array: position k at rows[k], null elsewhere."""
    idx = np.zeros(n, np.int64)
    mask = np.ones(n, bool)
    idx[rows] = np.arange(len(rows), dtype=np.int64)
    mask[rows] = False
    return pa.array(idx, pa.int64(), mask=mask)


def _at_rows(values: pa.Array, rows: np.ndarray, n: int) -> pa.Array:
    """``values`` (one per row of ``rows``, ascending) at their rows of n, null elsewhere; a
    class with every row of a chunk (a one-class run) is already in place."""
    if len(rows) == n:
        return values
    return pc.take(values, _positions(rows, n))


def _with_validity(struct: pa.StructArray, null_rows: pa.Array) -> pa.StructArray:
    """``struct`` with its rows also null where ``null_rows`` is true."""
    mask = pc.or_(null_rows, pc.is_null(struct))
    if not pc.any(mask).as_py():
        return struct
    children = [struct.field(i) for i in range(struct.type.num_fields)]  # field(): offset applied
    return pa.StructArray.from_arrays(children, fields=list(struct.type), mask=mask)


def _merge_warnings(known: pa.Array, warned: list[tuple[np.ndarray, list]], n: int) -> pa.Array:
    """Each row's warnings: the reader's, then its class's ("; " between them)."""
    if not warned:
        return known
    texts = known.to_pylist()
    for rows, warnings in warned:
        for row, text in zip(rows.tolist(), warnings):
            if text is not None:
                texts[row] = text if texts[row] is None else f"{texts[row]}; {text}"
    return pa.array(texts, pa.string())


def _rows_by_class(class_index: np.ndarray, classes: int) -> list[tuple[int, np.ndarray]]:
    """(class position, its rows in ascending order) of each class with rows (-1: no class).
    Where one class has every row, its rows need no sort (a chunk's argsort and sorts were a
    fifth of decode_uplinks)."""
    n = len(class_index)
    counts = np.bincount(class_index + 1, minlength=classes + 1)
    first = int(class_index[0])
    if first >= 0 and counts[first + 1] == n:
        return [(first, np.arange(n))]
    order = np.argsort(class_index, kind="stable")  # stable: each class's rows stay ascending
    bounds = np.cumsum(counts)
    return [(pos, order[bounds[pos] : bounds[pos + 1]]) for pos in range(classes) if counts[pos + 1]]


def _merge_errors(pre_error: pa.Array, failed: list[tuple[np.ndarray, pa.Array]], n: int) -> pa.Array:
    """Each row's error: the one known before decoding, else its class's decode error."""
    if not failed:
        return combine(pre_error)
    all_errs = pa.concat_arrays([errs for _, errs in failed] + [pa.nulls(1, pa.string())])
    rows = np.concatenate([r for r, _ in failed])
    idx = np.full(n, len(all_errs) - 1, np.int64)
    idx[rows] = np.arange(len(rows), dtype=np.int64)
    return combine(pc.coalesce(pre_error, pc.take(all_errs, pa.array(idx))))


@dataclass
class _Found:
    """What decoding a chunk's classes found besides their values."""

    failed: list = field(default_factory=list)  # (rows, their decode errors) per class
    warned: list = field(default_factory=list)  # (rows, a warning or None per row) per class
    stats: Counter = field(default_factory=Counter)


def _conform(struct: pa.StructArray, type_: pa.StructType) -> pa.StructArray:
    """A class's output as the engine's type for it: fields it leaves out (hidden ones) dropped."""
    names = [f.name for f in type_]
    if [f.name for f in struct.type] == names:
        return struct.cast(type_)
    children = [struct.field(name).cast(f.type) for name, f in zip(names, type_)]
    mask = pc.is_null(struct) if struct.null_count else None
    return pa.StructArray.from_arrays(children, fields=list(type_), mask=mask)


@dataclass
class _ClassPart:
    pos: int  # position in Engine.classes
    rows: np.ndarray  # row positions in the chunk (ascending)
    decoded: pa.StructArray  # len(rows): the class's output, null on failed rows
    normalized: pa.StructArray | None = None  # len(rows): its normalized payload, when the engine has one


class DecodedChunk:
    """One chunk of decoded uplinks plus what the reader left aside."""

    def __init__(
        self,
        engine: Engine,
        base: pa.Table,
        class_index: np.ndarray,
        error: pa.Array,
        parts: list[_ClassPart],
        warnings: pa.Array,
        *,
        bad_lines: list[tuple[int, str]] | None = None,
        skipped: Counter | None = None,
        lines: int = 0,
        first_line: int = 1,
        source: str | None = None,
        decode_stats: Counter | None = None,
    ) -> None:
        self.engine = engine
        self.base = base  # normalized columns, without `error`
        self.class_index = class_index  # int32, -1: no class
        self.error = error  # final error per row
        self.warnings = warnings  # per row: null, or what was coerced or dropped ("; " between several)
        self.parts = parts
        self.bad_lines = bad_lines or []
        self.skipped = skipped or Counter()
        self.lines = lines
        self.first_line = first_line
        self.source = source
        self.decode_stats = decode_stats or Counter()
        self._table: pa.Table | None = None

    def shift_lines(self, offset: int) -> None:
        """Number the chunk's lines ``offset`` further on (a ChunkStream's chunk decoded in the
        worker that parsed it, numbered from 1 there, renumbered in input order)."""
        if not offset:
            return
        self.base = plus(self.base, "line", offset)
        if self._table is not None:
            self._table = plus(self._table, "line", offset)
        self.bad_lines = [(line + offset, reason) for line, reason in self.bad_lines]
        self.first_line += offset

    # -- counts ------------------------------------------------------------
    @property
    def rows(self) -> int:
        return self.base.num_rows

    @property
    def decoded(self) -> int:
        return self.error.null_count if self.rows else 0

    @property
    def errors(self) -> Counter:
        """Failed rows by reason."""
        if self.error.null_count == len(self.error):
            return Counter()
        vc = pc.value_counts(pc.drop_null(self.error))
        return Counter(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))

    # -- tables ------------------------------------------------------------
    def _class_column(self, rows: np.ndarray | None = None) -> pa.Array:
        idx = self.class_index if rows is None else self.class_index[rows]
        return pa.DictionaryArray.from_arrays(pa.array(idx, pa.int32(), mask=idx < 0), self.engine._class_dictionary)

    def _assemble(
        self,
        base: pa.Table,
        device_class: pa.Array,
        decoded: pa.Array,
        rows: np.ndarray | None,
        normalized: pa.Array | None = None,
    ) -> pa.Table:
        """The output columns: the normalized uplink columns, then the class, its output, its
        normalized payload (when a class maps one), the error and the warnings of ``rows`` (None: all)."""
        take = None if rows is None else pa.array(rows, pa.int64())
        if self.engine.input_column:  # which input each row came from (line numbers restart per input)
            n = base.num_rows
            inputs = pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, np.int32), mask=np.full(n, self.source is None)),
                pa.array([self.source or ""], pa.string()),
            )
            base = base.add_column(base.schema.get_field_index("line") + 1, INPUT_COLUMN, inputs)
        table = base.append_column(CLASS_COLUMN, device_class).append_column(
            pa.field(DECODED_COLUMN, decoded.type), decoded
        )
        normalized_type = self.engine.normalized_type
        if normalized_type is not None:
            if normalized is None:
                normalized = pa.nulls(table.num_rows, normalized_type)
            table = table.append_column(pa.field(NORMALIZED_COLUMN, normalized_type), normalized)
        error = self.error if take is None else self.error.take(take)
        warnings = self.warnings if take is None else self.warnings.take(take)
        return table.append_column(ERROR_COLUMN, error).append_column(WARNINGS_COLUMN, warnings)

    def _normalized(self, n: int) -> pa.Array | None:
        """The normalized payloads of every row, in input order (None when no class maps one)."""
        if self.engine.normalized_type is None:
            return None
        parts = [p for p in self.parts if p.normalized is not None]
        if not parts:
            return pa.nulls(n, self.engine.normalized_type)
        rows = np.concatenate([p.rows for p in parts])
        values = pa.concat_arrays([p.normalized for p in parts] + [pa.nulls(1, self.engine.normalized_type)])
        idx = np.full(n, len(values) - 1, np.int64)
        idx[rows] = np.arange(len(rows), dtype=np.int64)
        return values.take(pa.array(idx))

    @property
    def table(self) -> pa.Table:
        """All rows in input order (see the module docstring for ``decoded``)."""
        if self._table is None:
            n = self.rows
            eng = self.engine
            if not eng.mixed:
                if self.parts:
                    part = self.parts[0]
                    decoded = _at_rows(part.decoded, part.rows, n)
                else:
                    decoded = pa.nulls(n, eng.decoded_type)
            else:
                by_pos = {p.pos: p for p in self.parts}
                children = []
                for pos in range(len(eng.classes)):
                    part = by_pos.get(pos)
                    if part is None:
                        children.append(pa.nulls(n, eng.class_types[pos]))
                    else:
                        children.append(_at_rows(part.decoded, part.rows, n))
                mask = pc.is_valid(self.error) if n else pa.array([], pa.bool_())
                for pos, dc in enumerate(eng.classes):
                    if getattr(dc, "decode_fixed", None) is not None and pos in by_pos:
                        # a built-in format keeps the values read before a row's error
                        mask = pc.and_not(mask, pc.is_valid(children[pos]))
                if self.error.null_count == n:
                    mask = None
                decoded = (
                    pa.StructArray.from_arrays(children, fields=list(eng.decoded_type), mask=mask)
                    if eng.classes
                    else pa.nulls(n, eng.decoded_type)
                )
            self._table = self._assemble(self.base, self._class_column(), decoded, None, self._normalized(n))
        return self._table

    def by_class(self) -> dict[str | None, pa.Table]:
        """One table per class present, each with that class's own ``decoded`` struct.

        Rows without a class come under the key ``None`` with a ``decoded``
        column of type null. Input order is kept within each table.
        """
        out: dict[str | None, pa.Table] = {}
        eng = self.engine
        for part in self.parts:
            base = self.base.take(pa.array(part.rows, pa.int64()))
            out[eng.classes[part.pos].name] = self._assemble(
                base, self._class_column(part.rows), part.decoded, part.rows, part.normalized
            )
        none_rows = np.flatnonzero(self.class_index < 0)
        if len(none_rows):
            out[None] = self._assemble(
                self.base.take(pa.array(none_rows, pa.int64())),
                self._class_column(none_rows),
                pa.nulls(len(none_rows)),
                none_rows,
            )
        return out

    def failed(self) -> pa.Table:
        """The rows with an error (all columns)."""
        if self.error.null_count == self.rows:
            return self.table.slice(0, 0)
        return self.table.filter(pc.is_valid(self.error))

    def __repr__(self) -> str:
        return f"DecodedChunk(rows={self.rows}, decoded={self.decoded}, bad_lines={len(self.bad_lines)})"


@dataclass
class Summary:
    """Running totals over the chunks of a run (what the CLI prints)."""

    rows: int = 0
    decoded: int = 0
    errors: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    warned: int = 0  # rows with a warning
    bad_lines: int = 0
    lines: int = 0
    by_class: Counter = field(default_factory=Counter)
    decode_stats: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0

    def add(self, chunk: DecodedChunk) -> None:
        self.rows += chunk.rows
        self.decoded += chunk.decoded
        self.errors.update(chunk.errors)
        self.skipped.update(chunk.skipped)
        self.warned += len(chunk.warnings) - chunk.warnings.null_count
        self.bad_lines += len(chunk.bad_lines)
        self.lines += chunk.lines
        self.decode_stats.update(chunk.decode_stats)
        if chunk.rows:
            names = [None] + [dc.name for dc in chunk.engine.classes]
            for pos, count in enumerate(np.bincount(chunk.class_index + 1, minlength=len(names)).tolist()):
                if count:
                    self.by_class[names[pos]] += count
        self.seconds = time.perf_counter() - self.started

    @property
    def rows_in(self) -> int:
        """Uplinks plus skipped events: every item the reader recognized."""
        return self.rows + sum(self.skipped.values())

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "rows_in": self.rows_in,
            "uplinks": self.rows,
            "decoded": self.decoded,
            "errors": dict(self.errors),
            "skipped": dict(self.skipped),
            "warned": self.warned,
            "bad_lines": self.bad_lines,
            "lines": self.lines,
            "by_class": {str(k): v for k, v in self.by_class.items()},
            "seconds": round(self.seconds, 6),
            "rows_per_second": round(self.rate, 1),
        }

    def format(self, *, top: int = 8) -> str:
        """A few lines for humans (stderr)."""
        skipped = sum(self.skipped.values())
        out = [
            f"rows in    {self.rows_in:>12,}   ({self.rows:,} uplinks, {skipped:,} skipped; {self.lines:,} lines)",
            f"decoded    {self.decoded:>12,}",
            f"errors     {self.failed:>12,}",
        ]
        for reason, count in self.errors.most_common(top):
            out.append(f"  {count:>21,}  {reason}")
        if len(self.errors) > top:
            rest = sum(c for _, c in self.errors.most_common()[top:])
            out.append(f"  {rest:>21,}  ({len(self.errors) - top} more reasons)")
        out.append(f"skipped    {skipped:>12,}")
        for kind, count in self.skipped.most_common(top):
            out.append(f"  {count:>21,}  {kind}")
        if self.warned:
            out.append(
                f"warnings   {self.warned:>12,}   (rows with a value coerced or dropped: see the warnings column)"
            )
        out.append(f"bad lines  {self.bad_lines:>12,}")
        if len([k for k in self.by_class if k is not None]) > 1:
            for name, count in sorted(self.by_class.items(), key=lambda kv: -kv[1]):
                out.append(f"  {count:>21,}  class {name if name is not None else '(none)'}")
        out.append(f"time       {self.seconds:>12.2f} s   ({self.rate:,.0f} rows/s)")
        return "\n".join(out)


class Engine:
    """Decode normalized uplinks of many devices with the classes of a registry.

    >>> engine = decoder.Engine(decoder.Registry.from_files("classes.json", devices="devices.json"))
    >>> table = engine.decode_packets(open("packets.jsonl", "rb"))
    >>> for chunk in engine.decode_stream("big.jsonl.gz"):   # bounded memory
    ...     handle(chunk.table)

    ``registry`` may also be one compiled class or a list of them (each
    then bound to every device; with several, their ``ports`` choose).
    ``input_column``: add an ``input`` column after ``line`` naming the file
    each row came from (line numbers restart per file; ``decoder decode``
    sets it); null for rows of in-memory values.
    """

    def __init__(
        self,
        registry: Registry | Any,
        *,
        include_hidden: bool = False,
        chunk_bytes: int = CHUNK_BYTES,
        input_column: bool = False,
    ) -> None:
        if not isinstance(registry, Registry):
            classes = list(registry) if isinstance(registry, (list, tuple)) else [registry]
            reg = Registry(classes)
            for dc in classes:
                reg.bind_all(dc)
            registry = reg
        self.registry = registry
        self.include_hidden = include_hidden
        self.chunk_bytes = chunk_bytes
        self.input_column = input_column
        self.classes: list[Any] = registry.bound_classes
        names = [dc.name for dc in self.classes]
        self._registry_version = registry.version
        # registry class index -> engine position; the extra last slot maps -1 (no class) to -1
        positions = {id(dc): i for i, dc in enumerate(self.classes)}
        self._reg_to_pos = np.full(len(registry.classes) + 1, -1, np.int32)
        for ri, dc in enumerate(registry.classes):
            self._reg_to_pos[ri] = positions.get(id(dc), -1)
        self._class_dictionary = pa.array(names, pa.string())
        self.class_types: list[pa.StructType] = [
            pa.struct(list(dc.output_schema(include_hidden=include_hidden))) for dc in self.classes
        ]
        self.mixed = len(self.classes) > 1
        if self.mixed:
            self.decoded_type: pa.DataType = pa.struct(
                [pa.field(dc.name, t) for dc, t in zip(self.classes, self.class_types)]
            )
        elif self.classes:
            self.decoded_type = self.class_types[0]
        else:
            self.decoded_type = pa.struct([])
        # The quantities any class maps onto the normalized payload schema: one type for all classes.
        mapped = [name for dc in self.classes for name in (getattr(dc, "normalized", None) or {})]
        self.normalized_type: pa.StructType | None = normalized_type(mapped) if mapped else None
        self._schema: pa.Schema | None = None

    # -- schema ------------------------------------------------------------
    @property
    def schema(self) -> pa.Schema:
        """The schema of :attr:`DecodedChunk.table` (and ``decode_packets``)."""
        if self._schema is None:
            self._schema = self.decode_uplinks(empty_uplinks()).table.schema
        return self._schema

    def class_schema(self, name: str | None) -> pa.Schema:
        """The schema of ``by_class()[name]``."""
        base = [f for f in self.schema if f.name not in (DECODED_COLUMN,)]
        if name is None:
            t = pa.null()
        else:
            t = self.class_types[[dc.name for dc in self.classes].index(name)]
        fields = []
        for f in base:
            fields.append(f)
            if f.name == CLASS_COLUMN:
                fields.append(pa.field(DECODED_COLUMN, t))
        return pa.schema(fields)

    # -- decoding ------------------------------------------------------------
    def decode_uplinks(self, uplinks: pa.Table, **extra: Any) -> DecodedChunk:
        """Decode a normalized uplinks table (the reader's ``uplinks``)."""
        if self.registry.version != self._registry_version:
            raise InputError("the registry changed after the Engine was built; build a new Engine")
        n = uplinks.num_rows
        names = uplinks.column_names
        base = uplinks.drop_columns([c for c in (ERROR_COLUMN, WARNINGS_COLUMN) if c in names])
        in_error = combine(uplinks[ERROR_COLUMN]) if ERROR_COLUMN in names else pa.nulls(n, pa.string())
        in_warnings = combine(uplinks[WARNINGS_COLUMN]) if WARNINGS_COLUMN in names else pa.nulls(n, pa.string())

        def col(name: str) -> pa.Array | None:
            return combine(uplinks[name]) if name in names else None

        dev_eui, port, payload = col("dev_eui"), col("port"), col("payload")
        if dev_eui is None or payload is None:
            raise InputError("the uplinks table needs the columns dev_eui and payload")
        if port is None:
            port = pa.nulls(n, pa.int64())
        if "devaddr" in names:
            filled = self.registry.fill_devaddr(dev_eui, col("devaddr"))
            if filled is not base["devaddr"]:
                base = base.set_column(base.schema.get_field_index("devaddr"), "devaddr", filled)
        reg_idx, class_error = self.registry.assign(dev_eui, port, col("device_id"), col("devaddr"))
        class_index = self._reg_to_pos[reg_idx] if n else np.empty(0, np.int32)

        no_payload = pc.and_(pc.is_null(payload), pc.is_null(in_error))
        pre_error = (
            pc.coalesce(
                in_error,
                pc.if_else(no_payload, pa.scalar(NO_PAYLOAD, pa.string()), pa.scalar(None, pa.string())),
                class_error,
            )
            if n
            else pa.array([], pa.string())
        )
        decodable = _np(pc.is_null(pre_error)) if n else np.zeros(0, bool)

        parts: list[_ClassPart] = []
        found = _Found()
        if n and len(self.classes):
            for pos, rows in _rows_by_class(class_index, len(self.classes)):
                parts.append(self._decode_class(pos, rows, rows[decodable[rows]], payload, port, found))
        error = _merge_errors(pre_error, found.failed, n)
        warnings = _merge_warnings(in_warnings, found.warned, n)
        return DecodedChunk(
            self, base, class_index.astype(np.int32), error, parts, warnings, decode_stats=found.stats, **extra
        )

    def _decode_class(
        self, pos: int, rows: np.ndarray, ok: np.ndarray, payload: pa.Array, port: pa.Array, found: _Found
    ) -> _ClassPart:
        """Decode the payloads of ``ok`` (the decodable ones of the class's ``rows``) with one
        kernel call; the structs cover ``rows``, null where a row failed or was not decoded."""
        dc = self.classes[pos]
        mapping = getattr(dc, "normalized", None) if self.normalized_type is not None else None
        if not len(ok):
            normalized = pa.nulls(len(rows), self.normalized_type) if mapping else None
            return _ClassPart(pos, rows, pa.nulls(len(rows), self.class_types[pos]), normalized)
        take = pa.array(ok, pa.int64())
        # A built-in format whose decode() columns depend on the batch (Cayenne LPP) has
        # decode_fixed(): the one type output_schema() promises, for every chunk.
        fixed = getattr(dc, "decode_fixed", None)
        hidden = self.include_hidden or bool(mapping)  # a normalized map may name a hidden variable
        batch = (fixed or dc.decode)(
            pc.take(payload, take), encoding="raw", ports=pc.take(port, take), include_hidden=hidden
        )
        struct = combine(batch.to_struct_array())
        errs = combine(batch.error_array())
        if fixed is None:  # a built-in format keeps the values read before a row's error
            struct = _with_validity(struct, pc.is_valid(errs))
        normalized = None
        if mapping:
            normalized, warnings = normalize_payload(struct, mapping, self.normalized_type)
            if warnings is not None:
                found.warned.append((ok, warnings))
        if struct.type != self.class_types[pos]:
            struct = _conform(struct, self.class_types[pos])
        for key, value in (batch.stats or {}).items():
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                found.stats[key] += int(value)
        if errs.null_count < len(errs):
            found.failed.append((ok, errs))
        if len(ok) < len(rows):
            at = _positions(np.searchsorted(rows, ok), len(rows))
            struct = pc.take(struct, at)
            normalized = None if normalized is None else pc.take(normalized, at)
        return _ClassPart(pos, rows, struct, normalized)

    def decode(self, values: Any, *, first_line: int = 1) -> DecodedChunk:
        """Normalize and decode JSON values or lines (all at once) into one chunk.

        ``values``: an iterable of JSON values or of JSON text lines
        (str/bytes), JSON Lines text, or the path of a JSON Lines file
        (:class:`~pathlib.Path`, or a str that is not JSON text; ``.gz`` ok).
        """
        if isinstance(values, str) and "\n" not in values and not values.lstrip().startswith(("{", "[")):
            values = Path(values)  # a file name
        if isinstance(values, (Path, os.PathLike)):
            return self._decode_file(values)
        if isinstance(values, (str, bytes, bytearray)):
            values = (values if isinstance(values, (bytes, bytearray)) else values.encode()).splitlines()
        elif isinstance(values, dict):
            values = [values]
        # Read as every engine path reads (decode_stream, the stream stage): without receptions.
        norm = normalize_values(values, first_line=first_line, reader=Reader("<values>", receptions=False))
        return self.decode_uplinks(
            norm.uplinks,
            bad_lines=list(norm.bad_lines),
            skipped=Counter(norm.skipped),
            lines=norm.lines,
            first_line=norm.first_line,
        )

    def decode_packets(self, values: Any, *, first_line: int = 1) -> pa.Table:
        """Normalized + decoded columns, one row per uplink, as one Arrow table.

        With one bound class ``decoded`` is that class's struct; with several
        it is a struct of class structs (see :class:`DecodedChunk`). Use
        :meth:`decode_packets_by_class` for one table per class, or
        :meth:`decode` to also get bad lines and skipped counts.
        """
        return self.decode(values, first_line=first_line).table

    def decode_packets_by_class(self, values: Any, *, first_line: int = 1) -> dict[str | None, pa.Table]:
        """One table per class (rows without a class under ``None``)."""
        return self.decode(values, first_line=first_line).by_class()

    def decode_stream(
        self, source: Any, *, chunk_bytes: int | None = None, name: str | None = None
    ) -> Iterator[DecodedChunk]:
        """Read a JSON Lines source chunk by chunk and decode each (bounded memory).

        ``source``: a path (plain or ``.gz``), ``"-"`` for stdin, a binary
        file object, or a :class:`~decoder.ingest.ChunkStream` already reading
        one (made with ``receptions=False``; ``chunk_bytes`` is then its own).
        Chunks are decoded in the reader's worker threads (one this caller is
        already waiting for, here), and come in input order. Unreadable input
        raises :class:`~decoder.errors.InputError`.
        """
        label = name or (str(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", None))

        def decode(chunk: NormalizedChunk) -> DecodedChunk:
            return self.decode_uplinks(
                chunk.uplinks,
                bad_lines=list(chunk.bad_lines),
                skipped=Counter(chunk.skipped),
                lines=chunk.lines,
                first_line=chunk.first_line,
                source=label,
            )

        # Chunks are decoded in the worker that parsed them (those of a given stream parsed
        # before, here): the caller's thread, which writes them, was what a run waited for. One
        # the caller already waits for comes undecoded and is decoded here: on a file of several
        # providers the workers are what a run waits for, and that one goes on at once.
        given = isinstance(source, ChunkStream)
        if given:
            chunks = source
            chunks.prepare_with(decode)
        else:
            chunk_bytes = chunk_bytes or self.chunk_bytes
            chunks = ChunkStream(source, chunk_bytes=chunk_bytes, receptions=False, prepare=decode)
        try:
            for chunk in chunks:
                done = chunk.prepared
                yield done if isinstance(done, DecodedChunk) and done.engine is self else decode(chunk)
        finally:
            if not given:
                chunks.close()

    def _decode_file(self, path: Any) -> DecodedChunk:
        tables, bad, skipped, lines, first = [], [], Counter(), 0, 1
        for k, chunk in enumerate(read_chunks(path, chunk_bytes=self.chunk_bytes, receptions=False)):
            tables.append(chunk.uplinks)
            bad.extend(chunk.bad_lines)
            skipped.update(chunk.skipped)
            lines += chunk.lines
            if k == 0:
                first = chunk.first_line
        uplinks = pa.concat_tables(tables) if tables else empty_uplinks()
        return self.decode_uplinks(
            uplinks, bad_lines=bad, skipped=skipped, lines=lines, first_line=first, source=str(path)
        )

    def __repr__(self) -> str:
        return f"Engine(classes={[dc.name for dc in self.classes]}, devices={self.registry.device_count})"

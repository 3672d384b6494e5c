"""Chunks of JSON Lines -> normalized Arrow tables (``NormalizedChunk``), and in-memory values the same way.

How a chunk goes:

1. One scan (``scan``) reads every line with one plan covering every
   provider's fields, tables and markers: a line that is not JSON is a bad
   line with the scanner's reason and byte offset (its rows rolled back);
   every object, top-level array item and envelope item is a record with
   its line number and a mask of the marker keys it holds.
2. Each record's shape comes from its mask (``_shapes``), in this order: a
   Helium event (``category``/``sub_category``), a Firefly packet
   (``device_eui``, ``gwrx``, ``mtype``; items of a ``packets`` envelope
   are judged like any record), a The Things Stack message (``end_device_ids``), a ChirpStack
   event (``deviceInfo``), a Helium integration body (``dev_eui``,
   ``hotspots``), a Firefly MAC event (an item of a ``mac_events``
   envelope); a record of none of these is a bad line naming its keys.
3. Each provider's ``Rows`` picks its uplinks (counting skipped kinds and
   reporting bad lines through ``_Found``), gives its gateways and its
   normalized columns; here the best gateway of each uplink is chosen
   (highest RSSI, ties by SNR), payloads are decoded with the provider's
   encoding and the providers' rows are put back in input order.

Every value read through ``fields.Records`` follows one coercion rule and
leaves a row warning where something was coerced or dropped: the
``warnings`` column.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .. import threads
from ..arrays import plus
from ..payload import to_buffer
from . import chirpstack, firefly, helium, tts
from . import scan_kernels as K
from .columns import coalesce, combine, nulls
from .fields import Records
from .radio import best_by_parent
from .scan import PAD, Plan, ScanBuffer, bool_array, int64_array, scan
from .schema import PROVIDER_NAMES, PROVIDERS, RECEPTION_SCHEMA, UPLINK_SCHEMA, empty_receptions, empty_uplinks

__all__ = ["NormalizedChunk", "Reader", "normalize_values"]

_WS = b" \t\r\n"
_PROVIDERS = (firefly, helium, tts, chirpstack)
_ENVELOPES = ("packets", "mac_events")
_KIND = {  # JSON type codes as reasons name them
    K.T_NULL: "null",
    K.T_FALSE: "boolean",
    K.T_TRUE: "boolean",
    K.T_INT: "number",
    K.T_FLOAT: "number",
    K.T_BIGINT: "number",
    K.T_STR: "string",
    K.T_STR_ESC: "string",
    K.T_OBJECT: "object",
    K.T_ARRAY: "array",
}
_OBJECT_PATHS = ("data", "data.req.body", "uplink_message")  # required parts that are objects
_MIN_PART_BYTES = 1 << 20  # below this a chunk is not cut into parts for threads


@dataclass
class NormalizedChunk:
    uplinks: pa.Table  # one row per uplink found, in input order (UPLINK_SCHEMA)
    # The reception table, or a function that builds it: few callers want one row per
    # (uplink x gateway), so it is built on first use of ``receptions``.
    _receptions: Any
    bad_lines: list[tuple[int, str]]  # (1-based line number, reason), lines holding no uplink
    skipped: collections.Counter  # skipped event kinds, e.g. {"helium:downlink": 3}
    lines: int  # non-blank input lines consumed by this chunk
    first_line: int  # line number of the chunk's first line
    total_lines: int = field(default=0, repr=False)  # every line of the chunk, blank ones included
    # What a ChunkStream's ``prepare`` made of the chunk in the worker that parsed it (the
    # engine decodes it there), None where the consumer was already waiting for the chunk;
    # renumbered with the chunk (its ``shift_lines``).
    prepared: Any = field(default=None, repr=False)

    @property
    def receptions(self) -> pa.Table:
        """One row per (uplink x gateway) (RECEPTION_SCHEMA), ``packet_index`` the uplink's row."""
        if self._receptions is None:
            raise ValueError("this chunk was read without its receptions (receptions=False)")
        if callable(self._receptions):
            self._receptions = self._receptions()
        return self._receptions

    @property
    def values(self) -> int:
        """JSON values found: uplinks + bad + skipped (an array line counts its items)."""
        return self.uplinks.num_rows + len(self.bad_lines) + sum(self.skipped.values())

    def shift_lines(self, offset: int) -> None:
        """Number the chunk's lines ``offset`` further on, what ``prepared`` made of it too (a
        chunk parsed apart is numbered from 1, then renumbered in input order)."""
        if self.uplinks.num_rows:
            self.uplinks = plus(self.uplinks, "line", offset)
        self.bad_lines = [(line + offset, reason) for line, reason in self.bad_lines]
        self.first_line += offset
        if self.prepared is not None:
            self.prepared.shift_lines(offset)


# --------------------------------------------------------------------------- the plan


def _merged_fields() -> dict[str, str]:
    """Every provider's fields; a path two providers declare takes the union of their types."""
    out: dict[str, str] = {}
    for p in _PROVIDERS:
        for path, spec in p.FIELDS.items():
            old = out.get(path)
            if old is None or old == spec:
                out[path] = spec
            elif "records" in (old, spec):
                raise ValueError(f"{path}: declared as records and as a value")
            else:
                out[path] = "|".join(dict.fromkeys(old.split("|") + spec.split("|")))
    return out


def _marker_paths() -> list[str]:
    return list(dict.fromkeys(m for p in _PROVIDERS for m in (*p.MARKERS, *getattr(p, "SHAPE_MARKERS", ()))))


_plans: dict[bool, Plan] = {}  # by whether the reception-only paths are read
_plan_lock = threading.Lock()


def _the_plan(receptions: bool = True) -> Plan:
    """The plan of every provider (built once: it also learns output sizes as chunks go).
    Without receptions the paths only a reception table shows are left unread: the scan
    stores none of them (8% less scan time on Firefly packets, 6.5% on the mixed file)."""
    with _plan_lock:
        plan = _plans.get(receptions)
        if plan is None:
            tables: dict[str, list[str]] = {}
            for p in _PROVIDERS:
                tables.update(p.TABLES)
            unread = () if receptions else [path for p in _PROVIDERS for path in p.RECEPTION_ONLY]
            plan = _plans[receptions] = Plan(_merged_fields(), tables=tables, markers=_marker_paths(), unread=unread)
        return plan


# --------------------------------------------------------------------------- the reader


class Reader:
    """Turns chunks of JSON Lines into NormalizedChunks (one scan per chunk, or per part of one)."""

    def __init__(self, name: str = "<input>", *, receptions: bool = True):
        self.name = name
        # False: chunks keep no way to build their reception tables. That way is what holds a
        # chunk's gateway columns, views of its whole scan (about 20 MB per 8 MB chunk), alive
        # while the chunk waits for its consumer. And the fields only receptions show are not
        # read at all: nothing about them is stored, or warned about.
        self.plan = _the_plan(receptions)
        self.receptions = receptions

    def process(self, buf, first_line: int, bounds=None, parallel: bool = True) -> NormalizedChunk:
        """A chunk of whole lines (bytes-like, or a ScanBuffer scanned where it is) ->
        NormalizedChunk; its lines are numbered from first_line. parallel: cut a big chunk into
        one part per core, scanned in threads (read_chunks runs whole chunks in parallel instead
        and passes False for all but the last). bounds: ignored (kept for callers of the
        previous reader). Nothing returned refers to ``buf``: it may be filled again at once."""
        sb = buf if isinstance(buf, ScanBuffer) else ScanBuffer.of(buf)
        n = sb.n
        if n == 0:
            return _empty_chunk(first_line)
        workers = threads.workers() if parallel and n >= 2 * _MIN_PART_BYTES else 1
        cuts = _line_cuts(sb, workers) if workers > 1 else []
        chunk = self._in_parts(sb, cuts, first_line) if cuts else self._part(sb, first_line)
        if not self.receptions:
            chunk._receptions = None
        return chunk

    def _in_parts(self, sb: ScanBuffer, cuts: list[int], first_line: int) -> NormalizedChunk:
        """The chunk cut at byte offsets ``cuts`` (line starts), each part scanned in a thread
        of its own and put together in order. Each part after the first is numbered from line
        1, then moved on by the lines of the parts before it: no pass over the chunk counts
        them first (a chunk's newlines found ahead of the scan were 10-15 ms of a 24 MB chunk,
        and the run's last chunk, the only one cut, is on the way to the end of every run)."""
        edges = [0, *cuts, sb.n]
        parts = [_scan_buffer(sb.a, s, e) for s, e in zip(edges[:-2], edges[1:-1])]
        parts.append(ScanBuffer(sb.a[cuts[-1] :], sb.n - cuts[-1]))  # ends as the chunk does: padded
        # The first part in this thread, which has a scan's outputs to reuse (a pool thread's
        # first scan makes new ones: the end of a run held the most memory).
        rest = [threads.pool("parts").submit(self._part, part, 1) for part in parts[1:]]
        chunks = [self._part(parts[0], first_line)] + [f.result() for f in rest]
        line = first_line + chunks[0].total_lines
        for c in chunks[1:]:
            c.shift_lines(line - 1)
            line += c.total_lines
        return _merge(chunks, first_line)

    def _part(self, sb: ScanBuffer, first_line: int) -> NormalizedChunk:
        """Scan the lines of one buffer and assemble them."""
        res = scan(sb, self.plan)
        try:
            return _assemble(res, first_line)
        finally:
            res.release()  # what was read from the buffer is copied; the caller may reuse it


def _line_cuts(sb: ScanBuffer, parts: int) -> list[int]:
    """Byte offsets that cut a buffer's lines into ``parts`` parts of about equal size: each the
    start of the first line at or after k/parts of the bytes (fewer where lines are longer)."""
    a, n = sb.a, sb.n
    cuts: list[int] = []
    for k in range(1, parts):
        newline = _newline_at_or_after(a, max(n * k // parts, cuts[-1] + 1 if cuts else 1) - 1, n)
        if newline < 0 or newline + 1 >= n:
            break
        cuts.append(newline + 1)
    return cuts


def _newline_at_or_after(a: np.ndarray, i: int, n: int) -> int:
    """The index of the first newline in a[i:n], or -1; looked for 64 KB at a time."""
    while i < n:
        window = a[i : min(i + (1 << 16), n)]
        hit = int(np.argmax(window == 10))  # 0 where there is none: checked below
        if window[hit] == 10:
            return i + hit
        i += len(window)
    return -1


def _scan_buffer(data, start: int, end: int) -> ScanBuffer:
    """data[start:end] copied into a buffer with the scanner's padding."""
    n = end - start
    a = np.empty(n + PAD, np.uint8)
    src = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    a[:n] = src[start:end]
    return ScanBuffer(a, n)


# --------------------------------------------------------------------------- assembling


class _Found:
    """Bad lines and skipped kinds found while the providers pick their uplinks."""

    def __init__(self, rec: Records, lines: np.ndarray, prefix) -> None:
        self.rec = rec
        self.lines = lines  # per record: its 1-based line number
        self.prefix = prefix  # record -> "item 2: " etc.
        self.bad: list[tuple[int, str]] = []
        self.skipped: collections.Counter = collections.Counter()

    def skip(self, idx: np.ndarray, key: str) -> None:
        if len(idx):
            self.skipped[key] += len(idx)

    def skip_each(self, idx: np.ndarray, keys: list[str]) -> None:
        self.skipped.update(keys)

    def bad_each(self, idx: np.ndarray, reasons: list[str], where: bool = False) -> None:
        """Bad lines of records; where: the reason starts with where the record is in its line
        ("item 2: ", "packets[0]: ")."""
        for r, reason in zip(np.asarray(idx).tolist(), reasons):
            self.bad.append((int(self.lines[r]), self.prefix(r) + reason if where else reason))

    def bad_unknown(self, idx: np.ndarray, reason: str) -> None:
        self.bad_each(idx, [reason] * len(idx))

    def keep_with_text(self, records: np.ndarray, path: str, reason: str) -> np.ndarray:
        """The records of the mask whose ``path`` holds text; the others are bad lines (``reason``)."""
        has = self.rec.is_text(path)
        self.bad_field(np.flatnonzero(records & ~has), reason, path)
        return records & has

    def bad_field(self, idx: np.ndarray, reason: str, path: str) -> None:
        """Records lacking a required field; the reason says what the field held instead."""
        if not len(idx):
            return
        codes = self.rec.codes(path, idx)
        want = "an object" if path in _OBJECT_PATHS else "a string"
        self.bad_each(
            idx,
            [f"{reason} ({path}: expected {want}, got {_KIND[c]})" if c > K.T_NULL else reason for c in codes.tolist()],
        )


def _assemble(res, first_line: int) -> NormalizedChunk:
    """One scan -> NormalizedChunk."""
    ltype, lerr = res.line_types, res.line_errors
    total = res.n_lines
    nonblank = int(np.count_nonzero((ltype != K.T_ABSENT) | (lerr != 0)))
    bad = [(first_line + i, f"malformed JSON: {why} (byte {pos + 1})") for i, why, pos in res.bad_lines()]
    rec = Records(res)
    n = rec.n
    lines = first_line + res.record_line
    parent, item = res.parent(0), res.item(0)
    skipped: collections.Counter = collections.Counter()
    top_arrays = np.flatnonzero((ltype == K.T_ARRAY) & (lerr == 0))
    if len(top_arrays):
        items = np.bincount(res.record_line[(parent < 0) & (item >= 0)], minlength=total)
        empty = int(np.count_nonzero(items[top_arrays] == 0))
        if empty:
            skipped["empty_array"] += empty
    if n == 0:
        return NormalizedChunk(empty_uplinks(), empty_receptions(), bad, skipped, nonblank, first_line, total)
    plan = res.plan
    mask = res.record_mask
    kinds = rec.codes("$")
    envelope_of = _envelope_names(rec)

    def prefix(r: int) -> str:
        parts = []
        while r >= 0:
            p, i = int(parent[r]), int(item[r])
            if p >= 0:
                parts.append(f"{envelope_of(p)}[{i}]: ")
            elif i >= 0:
                parts.append(f"item {i}: ")
            r = p
        return "".join(reversed(parts))

    found = _Found(rec, lines, prefix)
    found.skipped.update(skipped)
    found.bad.extend(bad)
    shapes = _shapes(rec, plan, mask, kinds, parent, found)
    providers = [
        p.Rows(rec, shapes[p.PROVIDER]) for p in _PROVIDERS if any(m.any() for m in shapes[p.PROVIDER].values())
    ]
    up = np.zeros(n, bool)
    for p in providers:
        up |= p.select(found)
    unknown = np.flatnonzero(shapes["unknown"])
    if len(unknown):
        found.bad_each(unknown, [_unknown_reason(res, int(r)) for r in unknown])
    found.bad.sort(key=lambda b: b[0])
    if not up.any():
        return NormalizedChunk(
            empty_uplinks(), empty_receptions(), found.bad, found.skipped, nonblank, first_line, total
        )
    uplinks, receptions = _tables(rec, [p for p in providers if p.up.any()], up, lines)
    return NormalizedChunk(uplinks, receptions, found.bad, found.skipped, nonblank, first_line, total)


def _envelope_names(rec: Records):
    """record -> the name of the envelope array its items come from."""

    def name(p: int) -> str:
        return "packets" if rec.codes("packets", np.array([p]))[0] == K.T_ARRAY else "mac_events"

    return name


def _shapes(rec: Records, plan: Plan, mask: np.ndarray, kinds: np.ndarray, parent: np.ndarray, found: _Found):
    """{provider: {shape: record mask}, "unknown": mask}: which provider and shape each
    record is (see the module docstring); envelopes, and records that are not objects, are
    judged here."""
    n = rec.n
    has = lambda *names: (mask & plan.bits(names)) != 0  # noqa: E731 - a one-line view
    obj = kinds == K.T_OBJECT
    not_obj = np.flatnonzero(~obj)
    if len(not_obj):
        reasons = [f"expected a JSON object, got {_KIND.get(int(c), 'nothing')}" for c in kinds[not_obj]]
        found.bad_each(not_obj, reasons, where=True)
    is_packets = rec.codes("packets") == K.T_ARRAY
    is_mac = rec.codes("mac_events") == K.T_ARRAY
    envelope = obj & (is_packets | is_mac)
    in_envelope = parent >= 0
    if envelope.any():  # an envelope is no record of its own; one without items is counted
        counts = np.bincount(parent[in_envelope], minlength=n)
        empty = np.flatnonzero(envelope & (counts == 0))
        found.skip(empty, firefly.EMPTY_ENVELOPE_KEY)
    left = obj & ~envelope
    from_mac = np.zeros(n, bool)  # items of a mac_events envelope
    if in_envelope.any():
        at = np.flatnonzero(in_envelope)
        from_mac[at] = ~is_packets[parent[at]]

    def take(m: np.ndarray) -> np.ndarray:
        nonlocal left
        m = left & m
        left = left & ~m
        return m

    out: dict[str, Any] = {}
    event = take(has(*helium.EVENT_MARKERS))
    packet = take(has(*firefly.PACKET_MARKERS))
    message = take(has(*tts.SHAPE_MARKERS))
    cs_event = take(has(*chirpstack.SHAPE_MARKERS))
    body = take(has(*helium.BODY_MARKERS))
    mac_event = take(from_mac)
    out["firefly"] = {"packet": packet, "mac_event": mac_event}
    out["helium"] = {"event": event, "body": body}
    out["tts"] = {"message": message}
    out["chirpstack"] = {"event": cs_event}
    out["unknown"] = left
    return out


def _unknown_reason(res, row: int) -> str:
    """A record of no known shape: its keys."""
    try:
        keys = sorted(map(str, orjson.loads(res.record_text(row))))
    except (orjson.JSONDecodeError, TypeError):  # pragma: no cover - the scanner accepted it
        keys = []
    listed = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
    return (
        "unknown shape: no Firefly packet, Helium event, The Things Stack message or ChirpStack event fields"
        f" (keys: {listed or 'none'})"
    )


def _tables(rec: Records, providers: list, up: np.ndarray, lines: np.ndarray) -> tuple[pa.Table, pa.Table]:
    """The uplink and reception tables of the providers' uplink records, in input order."""
    up_idx = np.flatnonzero(up)  # ascending record rows: input order
    m = len(up_idx)
    position = np.full(rec.n, -1, np.int64)
    position[up_idx] = np.arange(m)
    pieces = []  # per group of a provider's rows (_row_groups): its rows and columns
    gateway_sets = []  # per group with gateways: them, for the reception table
    groups = [(provider, rows) for provider in providers for rows in _row_groups(provider)]
    for p, rows in groups:
        gw = p.gateways(rows)
        best = best_by_parent(gw.parent, gw.rssi, gw.snr, rec.n)[rows]
        has_best = best >= 0
        best_of = _best_of(gw, int64_array(np.where(has_best, best, 0), has_best), len(rows))
        cols = p.columns(rows, best_of)
        payload, error, payload_text = _payloads(rec, p, rows)
        cols.update(
            payload=payload,
            error=error,
            payload_text=payload_text,
            provider=int64_array(np.full(len(rows), PROVIDER_NAMES.index(p.provider))),
            rssi=best_of("rssi"),
            snr=best_of("snr"),
            gateway_id=best_of("gateway_id"),
            gateway_count=int64_array(np.bincount(gw.parent, minlength=rec.n)[rows]),
        )
        pieces.append((rows, cols))
        if len(gw):
            gateway_sets.append(gw)
    order = None
    if len(pieces) > 1:  # interleave the groups' rows back into input order
        order = int64_array(np.argsort(np.concatenate([rows for rows, _ in pieces]), kind="stable"))

    def column(name: str, type_: pa.DataType) -> pa.Array:
        arrays = [_typed(combine(cols[name]), type_) for _, cols in pieces]
        if order is None:
            return arrays[0]
        if all(a.null_count == len(a) for a in arrays):  # a take of nulls cost 7 ns a row
            return nulls(m, type_)
        return _take(pa.concat_arrays(arrays), order)

    values: dict[str, pa.Array] = {}
    for f in UPLINK_SCHEMA:
        if f.name == "provider":
            codes = column("provider", pa.int64()).cast(pa.int32())
            values["provider"] = pa.DictionaryArray.from_arrays(codes, PROVIDERS)
        elif f.name == "line":
            values["line"] = int64_array(lines[up_idx])
        elif f.name == "warnings":
            values["warnings"] = _warnings(rec, up_idx)
        else:
            values[f.name] = column(f.name, f.type)
    dev_eui = values["dev_eui"]
    if dev_eui.null_count < m:
        values["dev_eui"] = pc.ascii_upper(dev_eui)
    uplinks = pa.Table.from_arrays([values[f.name] for f in UPLINK_SCHEMA], schema=UPLINK_SCHEMA)

    def receptions() -> pa.Table:
        return _receptions(
            [
                [int64_array(position[gw.parent])]
                + [_typed(gw.column(f.name), f.type) for f in list(RECEPTION_SCHEMA)[1:]]
                for gw in gateway_sets
            ]
        )

    return uplinks, receptions


def _row_groups(p) -> list[np.ndarray]:
    """A provider's uplink records as groups of ascending rows, each normalized apart: one
    group, or the provider's ``row_groups()`` where its shapes keep the same field at different
    paths (in a group every path is then in all rows or none, which the reads are fast for)."""
    groups = getattr(p, "row_groups", None)
    return groups() if groups is not None else [np.flatnonzero(p.up)]


def _best_of(gw, take: pa.Array, k: int):
    """name -> the gateway column at each of k uplinks' best gateway (null without one)."""

    def column(name: str) -> pa.Array:
        col = gw.column(name)
        return nulls(k, col.type) if len(col) == 0 else _take(col, take)

    return column


def _receptions(parts: list[list[pa.Array]]) -> pa.Table:
    """Reception columns of every provider -> one table ordered by uplink row."""
    if not parts:
        return empty_receptions()
    arrays = [pa.concat_arrays([p[k] for p in parts]) if len(parts) > 1 else parts[0][k] for k in range(len(parts[0]))]
    table = pa.Table.from_arrays(arrays, schema=RECEPTION_SCHEMA)
    index = np.concatenate([np.asarray(p[0].to_numpy(zero_copy_only=False)) for p in parts])
    if len(parts) > 1 and (np.diff(index) < 0).any():
        table = table.take(int64_array(np.argsort(index, kind="stable")))
    return table


def _take(values: pa.Array, indices: pa.Array) -> pa.Array:
    """``values.take(indices)`` for indices made here, in range by construction: Arrow's check
    of every index was a fifth of a string column's take."""
    return pc.take(values, indices, boundscheck=False)


def _typed(a: pa.Array, type_: pa.DataType) -> pa.Array:
    return a if a.type == type_ else a.cast(type_)


def _payloads(rec: Records, p, rows: np.ndarray) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(payload bytes, error per row, the text kept where it could not be decoded): the first
    of the provider's payload paths present decides; a payload that is not text is a row
    error, a missing one too (an empty payload where the provider leaves empty ones out)."""
    m = len(rows)
    chosen = np.zeros(m, np.uint8)
    texts = []
    for path in p.payload_paths():
        codes = rec.codes(path, rows)
        fresh = (chosen == 0) & (codes > K.T_NULL)
        chosen[fresh] = codes[fresh]
        texts.append(rec.text(path, rows, warn=False))
    text = coalesce(*texts)
    not_text = (chosen > K.T_NULL) & (chosen != K.T_STR) & (chosen != K.T_STR_ESC)
    missing = chosen == 0
    if getattr(p, "empty_payload", False) and missing.any():
        text = pc.if_else(bool_array(missing), pa.scalar("", pa.string()), text)
    if m == 0:
        return pa.array([], pa.binary()), nulls(0, pa.string()), nulls(0, pa.string())
    buf = to_buffer(text, p.encoding)
    binary = buf.to_arrow()
    code = np.asarray(buf.error)
    failed = np.flatnonzero(code | not_text)
    if not len(failed):
        return binary, nulls(m, pa.string()), nulls(m, pa.string())
    messages: list[str | None] = [None] * m
    for i in failed.tolist():
        messages[i] = "payload is not text" if not_text[i] else buf.error_message(i)
    if binary.null_count < len(failed):  # a failed row is null, not empty bytes
        ok = np.ones(m, bool)
        ok[failed] = False
        binary = pc.if_else(bool_array(ok), binary, pa.scalar(None, pa.binary()))
    bad = code != 0
    kept = combine(text).take(int64_array(np.where(bad, np.arange(m), 0), bad))
    return binary, pa.array(messages, pa.string()), kept


def _warnings(rec: Records, up_idx: np.ndarray) -> pa.Array:
    """The warnings column: what the providers' reads coerced or dropped, and what the scanner
    saw (duplicate keys, array items that are not objects)."""
    res = rec.res
    w = res.warnings()
    if w.shape[1]:
        plan = rec.plan
        for node, row, code in zip(w[0].tolist(), w[1].tolist(), w[2].tolist()):
            if code == K.W_TYPE or node < 0:
                continue  # wrong types are noted where the field is read
            record = _record_of(res, plan.nodes[node].table, row)
            path = plan.path_of(node)
            text = "duplicate key, the last value kept" if code == K.W_DUP else "items that are not objects dropped"
            rec.warnings.add(np.array([record]), f"{path}: {text}")
    return rec.warnings.column(up_idx, rec.n)


def _record_of(res, table: int, row: int) -> int:
    while table != 0 and row >= 0:
        row = int(res.parent(table)[row])
        table = res.plan.table_parent[table]
    return row


def _empty_chunk(first_line: int, lines: int = 0, total: int = 0) -> NormalizedChunk:
    return NormalizedChunk(empty_uplinks(), empty_receptions(), [], collections.Counter(), lines, first_line, total)


def _merge(chunks: list[NormalizedChunk], first_line: int) -> NormalizedChunk:
    """Chunks of consecutive parts -> one chunk."""
    uplinks, bad = [], []
    skipped: collections.Counter = collections.Counter()
    for c in chunks:
        uplinks.append(c.uplinks)
        bad.extend(c.bad_lines)
        skipped.update(c.skipped)

    def receptions() -> pa.Table:
        tables, offset = [], 0
        for c in chunks:
            r = c.receptions
            if offset and r.num_rows:
                index = np.asarray(r.column(0).to_numpy()) + offset
                r = r.set_column(0, "packet_index", int64_array(index))
            tables.append(r)
            offset += c.uplinks.num_rows
        return pa.concat_tables(tables)

    return NormalizedChunk(
        pa.concat_tables(uplinks),
        receptions,
        bad,
        skipped,
        sum(c.lines for c in chunks),
        first_line,
        sum(c.total_lines for c in chunks),
    )


# --------------------------------------------------------------------------- public


def _not_json(value: Any) -> dict:
    """What orjson cannot write (bytes, sets, ...) goes in as an object: a field holding it is
    then of the wrong type (a payload of bytes: "payload is not text")."""
    return {"$not_json": type(value).__name__}


def normalize_values(values: Iterable[Any], first_line: int = 1, *, reader: Reader | None = None) -> NormalizedChunk:
    """Normalize in-memory packets: each item is one JSON value (dict or list)
    or one JSON text (str or bytes). Item k gets the line number first_line + k;
    blank text items are skipped (like blank lines).

    Items become one line of JSON each (values written by orjson, texts as
    they are; a text holding newlines is read and written again) and go
    through the same scan as a file. reader: a :class:`Reader` kept from one
    call to the next (a stream of small batches)."""
    items = values if isinstance(values, (list, tuple)) else list(values)
    if not items:
        return _empty_chunk(first_line)
    reader = reader or Reader("<values>")
    if all(type(v) is bytes for v in items):  # a stream's messages: already one line each, most likely
        joined = b"\n".join(items)
        if joined.count(b"\n") == len(items) - 1 and b"\r" not in joined:
            return reader.process(bytearray(joined + b"\n"), first_line, parallel=False)
    out: list[bytes] = []
    bad: list[tuple[int, str]] = []
    for k, v in enumerate(items):
        if isinstance(v, str):
            v = v.encode()
        if isinstance(v, (bytes, bytearray, memoryview)):
            text = bytes(v)
            if b"\n" not in text and b"\r" not in text:
                out.append(text)
                continue
            if not text.strip(_WS):
                out.append(b"")
                continue
            try:
                v = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                bad.append((first_line + k, f"malformed JSON: {exc}"))
                out.append(b"")
                continue
        out.append(orjson.dumps(v, default=_not_json))
    chunk = reader.process(bytearray(b"\n".join(out) + b"\n"), first_line, parallel=False)
    if bad:
        chunk.bad_lines = sorted(chunk.bad_lines + bad)
        chunk.lines += len(bad)
    return chunk

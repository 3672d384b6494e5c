"""Chunks of JSON Lines -> normalized Arrow tables (``NormalizedChunk``), and in-memory values the same way.

How a chunk goes (every choice measured: benchmarks/bench_ingest.py):

1. A numba SWAR scan (``scan``, 8 bytes per step) finds the lines; blank
   lines are set aside (only lines starting with whitespace are looked at),
   so every Arrow row maps to its line number.
2. Lines are grouped by the first key of their object: one group per shape
   in a mixed file, and no copy for a one-shape chunk.
3. ``pyarrow.json.read_json`` parses a group with only the field groups it
   needs (``raw.raw_schema``: Arrow pays for every schema field on every
   row, so a Firefly file is not parsed with Helium's fields). What a group
   needs is learned as it goes: more fields are added when rows need them
   (``Normalized.needs``), reported_at is read as text when Helium prints it
   in quotes, and rewritten in place as a number when one group prints it
   both ways.
4. ``normalize`` does the rest, vectorized (Arrow compute, numpy, small
   numba kernels).

When Arrow rejects a part (a malformed line, a JSON array, a field of the
wrong type, invalid UTF-8, two values on one line), it is parsed again as
one block to learn the failing row: the lines before it go through Arrow,
the failing line through orjson, the rest through Arrow again; failures
Arrow does not locate are narrowed down by halving. Lines read by orjson are
expanded (arrays, envelopes), their fields checked against the schema (a
field of the wrong type becomes null; a payload that is not text is a row
error), and put into an Arrow table of the same schema: the one
``normalize`` handles both paths, and rows of no known shape are always
judged on their text with every field.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from .. import threads
from . import scan
from .normalize import Normalized, normalize
from .raw import ALL_GROUPS, describe_other, json_kind, prepare_object, raw_schema, raw_table
from .scan import line_bounds
from .schema import RECEPTION_SCHEMA, UPLINK_SCHEMA, empty_receptions, empty_uplinks

__all__ = ["NormalizedChunk", "Reader", "normalize_values"]

_WS = b" \t\r\n"
_ROW_RE = re.compile(r" in row (\d+)\s*$")
_TYPE_RE = re.compile(r"Column\(([^)]*)\) changed from (\w+) to (\w+)")
_LEAF_LINES = 64  # below this, a failing block is read line by line
_MAX_ATTEMPTS = 64  # Arrow attempts per chunk before the rest goes line by line


@dataclass
class NormalizedChunk:
    uplinks: pa.Table  # one row per uplink found, in input order (UPLINK_SCHEMA)
    receptions: pa.Table  # one row per (uplink x gateway) (RECEPTION_SCHEMA)
    bad_lines: list[tuple[int, str]]  # (1-based line number, reason), lines holding no uplink
    skipped: collections.Counter  # skipped event kinds, e.g. {"helium:downlink": 3}
    lines: int  # non-blank input lines consumed by this chunk
    first_line: int  # line number of the chunk's first line
    total_lines: int = field(default=0, repr=False)  # every line of the chunk, blank ones included

    @property
    def values(self) -> int:
        """JSON values found: uplinks + bad + skipped (an array line counts its items)."""
        return self.uplinks.num_rows + len(self.bad_lines) + sum(self.skipped.values())


class Reader:
    """Turns chunks of JSON Lines into NormalizedChunks.

    State kept across chunks: whether to rewrite digit-string epoch
    milliseconds, and which field groups to parse with (the groups the
    previous part used: a Firefly-only file is parsed without Helium's
    fields, which Arrow would otherwise pay for on every row)."""

    def __init__(self, name: str = "<input>"):
        self.name = name
        self.learned: dict[int, _Learned] = {}  # by first key (see process)
        self._options: dict = {}

    def _learned(self, key: int) -> _Learned:
        state = self.learned.get(key)
        if state is None:
            state = self.learned[key] = _Learned(ALL_GROUPS)
        return state

    # -- Arrow ---------------------------------------------------------------
    def _read_json(self, data, groups, text: bool = False) -> pa.Table:
        key = (groups, text)
        opts = self._options.get(key)
        if opts is None:
            opts = pj.ParseOptions(
                explicit_schema=raw_schema(groups, text, own_markers=True), unexpected_field_behavior="ignore"
            )
            self._options[key] = opts
        # One block: Arrow's row numbers in errors are then exact, and every
        # column comes out as a single array. Parallelism is ours (see process).
        ropts = pj.ReadOptions(use_threads=False, block_size=max(len(data) + 1, 1 << 16))
        return pj.read_json(pa.BufferReader(pa.py_buffer(data)), read_options=ropts, parse_options=opts)

    def _parse(self, data, a: np.ndarray, state: dict, learned: _Learned):
        """(Arrow table of data, or the ArrowInvalid; a function parsing again with
        more field groups). Learns how this input prints reported_at: epoch
        milliseconds as numbers (bodies), as strings (device events), or both,
        in which case the strings are turned into numbers in place (a part
        whose text was not yet rewritten is rewritten first: a is the whole part
        data lies in, state["patched"] says whether it was)."""
        groups = learned.groups
        err = None
        for _ in range(4):
            text = learned.text and not learned.unquote
            try:
                table = self._read_json(data, groups, text)
                return table, (lambda more, text=text: self._read_json(data, groups | more, text))
            except pa.ArrowInvalid as e:
                err = e
            m = _TYPE_RE.search(str(err))
            if not m or not m.group(1).endswith("/reported_at"):
                break
            path, was, got = m.groups()
            if path == "/reported_at" and not learned.unquote and was == "number" and got == "string" and not text:
                learned.text = True  # device events: read reported_at as text
                continue
            if state["patched"]:
                break
            learned.unquote = True  # both forms: rewrite "123" as 123, read numbers
            scan.unquote_reported_at(a, scan.REPORTED_AT_KEY)
            state["patched"] = True
        return err, None

    # -- one chunk -----------------------------------------------------------
    def process(self, buf, first_line: int, bounds=None, parallel: bool = True) -> NormalizedChunk:
        """A chunk of whole lines (bytes-like; it may be rewritten in place) ->
        NormalizedChunk.

        Lines are grouped by the first key of their object (a mixed file's
        shapes differ there: "ack" for Firefly packets, "category" for Helium
        events, "app_eui" for integration bodies), so each group is parsed
        with only the fields it needs and without rewriting reported_at; a
        one-shape chunk is one group and is not copied. Each group is cut into
        parts at line boundaries, one per core, parsed and normalized in its
        own thread (Arrow, numpy and numba release the GIL); the results are
        put back in input order. bounds: line_bounds(buf) if known; parallel:
        False to stay in the calling thread (read_chunks runs whole chunks in
        parallel instead)."""
        n = len(buf)
        if n == 0:
            return _empty_chunk(first_line)
        view = memoryview(buf)
        a = np.frombuffer(view, dtype=np.uint8)
        starts, ends, non_ascii = line_bounds(a) if bounds is None else bounds
        total = len(starts)  # every line, blank ones included
        keep = _nonblank(a, starts, ends)
        if keep.all():
            line_no = np.arange(first_line, first_line + len(starts), dtype=np.int64)
        else:
            idx = np.flatnonzero(keep)
            starts, ends, line_no = starts[idx], ends[idx], first_line + idx
        nonblank = len(line_no)
        if nonblank == 0:
            return _empty_chunk(first_line, lines=0, total=total)

        groups = self._group(a, starts, ends)
        workers = threads.workers() if parallel and n >= _MIN_PART_BYTES * 2 else 1
        jobs = []
        for key, sel in groups:
            if sel is None:  # the whole chunk
                g_view, g_a, g_starts, g_ends, g_lines = view, a, starts, ends, line_no
            else:
                g_a, g_starts, g_ends = _gather(a, starts, ends, sel)
                g_view, g_lines = memoryview(g_a), line_no[sel]
            size = len(g_a)
            parts = max(1, min(workers, round(workers * size / n)))
            cuts = [0]
            for k in range(1, parts):  # at the first line starting after k/parts of the bytes
                c = int(np.searchsorted(g_starts, size * k // parts))
                if cuts[-1] < c < len(g_starts):
                    cuts.append(c)
            cuts.append(len(g_starts))
            learned = self._learned(key)
            for lo, hi in zip(cuts, cuts[1:]):
                s0 = int(g_starts[lo])
                e0 = int(g_starts[hi]) if hi < len(g_starts) else size
                jobs.append(
                    (
                        g_view[s0:e0],
                        g_a[s0:e0],
                        g_starts[lo:hi] - s0,
                        g_ends[lo:hi] - s0,
                        g_lines[lo:hi],
                        non_ascii,
                        learned,
                    )
                )
        if len(jobs) == 1:
            results = [self._part(*jobs[0])]
        else:
            results = list(threads.pool("parts").map(lambda j: self._part(*j), jobs))
        chunk = _merge([p for ps in results for p in ps], first_line, nonblank)
        chunk.total_lines = total
        return chunk

    def _group(self, a, starts, ends) -> list[tuple[int, np.ndarray | None]]:
        """[(first-key group, line indices or None for all)]: at most 4 groups;
        lines whose key is rare go together (key 0)."""
        n = len(starts)
        if n < 2 * _MIN_GROUP_LINES:
            return [(0, None)]
        keys = scan.first_keys(a, starts, ends)
        if (keys == keys[0]).all():
            return [(int(keys[0]), None)]
        uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        big = [k for k in np.argsort(-counts)[:4] if counts[k] >= _MIN_GROUP_LINES and uniq[k] != 0]
        if len(big) == 1 and counts[big[0]] == n:  # pragma: no cover - caught above
            return [(int(uniq[big[0]]), None)]
        out = []
        rest = np.ones(n, dtype=bool)
        for k in big:
            sel = np.flatnonzero(inverse == k)
            rest[sel] = False
            out.append((int(uniq[k]), sel))
        if rest.any():
            out.append((0, np.flatnonzero(rest)))
        if len(out) == 1:
            return [(out[0][0], None)]
        return out

    def _part(self, buf: memoryview, a: np.ndarray, starts, ends, line_no, non_ascii, learned):
        """Non-blank lines of one part -> Normalized pieces in line order."""
        state = {"patched": False}
        if learned.unquote:
            scan.unquote_reported_at(a, scan.REPORTED_AT_KEY)
            state["patched"] = True
        if not non_ascii or _first_non_utf8(buf, None) is None:
            table, again = self._parse(buf, a, state, learned)
            if isinstance(table, pa.Table) and table.num_rows == len(line_no):  # else: a line holding two values
                norm = self._normalize_run(table, again, buf, (starts, ends), line_no, learned)
                if norm is not None:
                    return [norm]
        pieces: list = []
        self._careful(buf, starts, ends, line_no, pieces, state, learned, non_ascii)
        return pieces

    def _normalize_run(self, table, again, buf, bounds, line_no, learned: _Learned):
        """Normalize rows Arrow parsed from buf; row i is the line line_no[i], whose
        text is buf[bounds[0][i]:bounds[1][i]]. again(groups) parses buf again
        with more field groups, when the rows need them. None if Arrow then
        rejects the text (the caller goes line by line)."""
        groups = frozenset()
        for _ in range(4):
            norm = normalize(table, line_no)
            if not norm.needs:
                break
            groups = groups | norm.needs
            try:
                table = again(groups)
            except pa.ArrowInvalid:
                return None
        if norm.used:
            learned.groups = frozenset(norm.used | ({"firefly"} if "firefly_full" in norm.used else set()))
        if len(norm.unknown):
            other = self._judge_unknown(norm, buf, bounds, line_no)
            if other is None or other.uplinks.num_rows:
                # Cannot happen with a schema of every group; with fewer, parse again.
                try:
                    table = again(ALL_GROUPS)
                except pa.ArrowInvalid:
                    return None
                norm = normalize(table, line_no)
                other = self._judge_unknown(norm, buf, bounds, line_no)
                if other is None or other.uplinks.num_rows:  # pragma: no cover
                    raise AssertionError("rows of no known shape turned out to be uplinks")
            norm.bad.extend(other.bad)
            norm.skipped.update(other.skipped)
        norm.first = int(line_no[0]) if len(line_no) else 0
        return norm

    def _judge_unknown(self, norm, buf, bounds, line_no):
        """Rows of no known shape: read their text with orjson and judge them with
        every field (the schema may lack the fields that would have made them,
        say, a down packet; or they are an envelope it does not carry)."""
        starts, ends = bounds
        items = []
        extra = []
        for r, j in zip(norm.unknown, norm.unknown_packet):
            line = int(line_no[r])
            obj = orjson.loads(bytes(buf[starts[r] : ends[r]]))
            if j >= 0:  # a packet of an envelope, parsed with every Firefly field
                skipped, reason = describe_other(obj["packets"][j])
                extra.append((line, skipped, reason))
            else:
                items.append((line, obj))
        other = self.values(items) if items else None
        if other is None:
            other = Normalized(empty_uplinks(), empty_receptions())
        for line, skipped, reason in extra:
            other.skipped.update(skipped)
            if reason:
                other.bad.append((line, reason))
        return other

    # -- the careful path ------------------------------------------------------
    def _careful(self, buf, starts, ends, line_no, pieces, state=None, learned=None, non_ascii=True):
        """Non-blank lines [starts[i], ends[i]) of buf, numbered line_no[i]: Arrow
        for the runs it accepts, orjson for the lines it does not.

        A failure Arrow locates splits the run there; one it does not locate is
        narrowed down by halving. When Arrow keeps failing on the first line
        (a file of JSON arrays, say), ever longer runs go to orjson directly."""
        a = np.frombuffer(buf, dtype=np.uint8)
        state = {"patched": False} if state is None else state
        learned = self._learned(0) if learned is None else learned
        bad_utf8 = _bad_utf8_lines(a, starts, ends) if non_ascii else np.zeros(0, np.int64)
        attempts = 0
        streak = 0  # failures on the first line of a run in a row
        todo = [(0, len(starts))]
        while todo:
            s, e = todo.pop()
            while s < e:
                if e - s <= _LEAF_LINES or attempts >= _MAX_ATTEMPTS:
                    pieces.extend(self._slow_lines(buf, starts[s:e], ends[s:e], line_no[s:e]))
                    break
                k = int(np.searchsorted(bad_utf8, s))
                if k < len(bad_utf8) and bad_utf8[k] < e:  # invalid UTF-8: that line to orjson
                    bad_at = int(bad_utf8[k]) - s
                else:
                    bad_at = None
                    attempts += 1
                    data = memoryview(buf)[starts[s] : ends[e - 1]]
                    table, again = self._parse(data, a, state, learned)
                    if isinstance(table, pa.Table):
                        if table.num_rows == e - s:
                            norm = self._normalize_run(
                                table,
                                again,
                                data,
                                (starts[s:e] - starts[s], ends[s:e] - starts[s]),
                                line_no[s:e],
                                learned,
                            )
                            if norm is not None:
                                pieces.append(norm)
                                streak = 0
                                break
                        # a line holding two values, or rejected with more groups: halve
                    else:
                        m = _ROW_RE.search(str(table))
                        bad_at = int(m.group(1)) if m else None
                        if bad_at is not None and not (0 <= bad_at < e - s):
                            bad_at = None
                if bad_at is None:
                    mid = (s + e) // 2
                    todo.append((mid, e))
                    e = mid
                    continue
                # The lines before the failing one go to Arrow (now), the failing
                # one to orjson and the rest to Arrow again (later).
                if bad_at > 0:
                    streak = 0
                    todo.append((s + bad_at + 1, e))
                    todo.append((s + bad_at, s + bad_at + 1))
                    e = s + bad_at
                    continue
                streak += 1
                w = min(1 << min(streak - 1, 20), e - s)
                pieces.extend(self._slow_lines(buf, starts[s : s + w], ends[s : s + w], line_no[s : s + w]))
                s += w
        # `todo` is a stack: put the pieces back in line order (a stable sort:
        # the items of one array line may span pieces, appended in order).
        pieces.sort(key=_piece_first_line)

    def _slow_lines(self, buf, starts, ends, line_no) -> list:
        """Lines read by orjson -> Normalized pieces. JSON arrays of objects (the
        Helium events endpoint returns one) and envelopes are written back as one
        object per line and go through Arrow, the rest through ``values``."""
        items = []
        objects, object_lines = [], []
        for s, e, line in zip(starts, ends, line_no):
            line = int(line)
            try:
                value = orjson.loads(bytes(buf[s:e]))
            except orjson.JSONDecodeError as exc:
                items.append((line, _Bad(f"malformed JSON: {exc}")))
                continue
            if (
                type(value) is list
                and value
                and all(type(x) is dict and not isinstance(x.get("packets"), list) for x in value)
            ):
                objects.extend(value)
                object_lines.extend([line] * len(value))
            else:
                items.append((line, value))
        pieces = []
        if len(objects) < _MIN_REWRITE:
            items.extend(zip(object_lines, objects))
            items.sort(key=lambda x: x[0])  # stable: an array's items stay in order
        else:
            text = bytearray(b"\n".join(map(orjson.dumps, objects)) + b"\n")
            o_starts, o_ends, _ = line_bounds(np.frombuffer(text, dtype=np.uint8))
            self._careful(
                text,
                o_starts,
                o_ends,
                np.array(object_lines, dtype=np.int64),
                pieces,
                learned=self._learned(-1),
                non_ascii=False,
            )
        if items:
            norm = self.values(items)
            norm.first = items[0][0]
            pieces.append(norm)
        return pieces

    # -- Python values -----------------------------------------------------------
    def values(self, items: list[tuple[int, Any]]):
        """(line, parsed JSON value) pairs -> Normalized (the slow path)."""
        rows, lines, errors, whys, objs = [], [], [], [], []
        bad: list[tuple[int, str]] = []
        skipped: collections.Counter = collections.Counter()
        for line, value in items:
            if isinstance(value, _Bad):
                bad.append((line, value.reason))
                continue
            for obj, prefix in _expand(value, skipped):
                if not isinstance(obj, dict):
                    bad.append((line, f"{prefix}expected a JSON object, got {json_kind(obj)}"))
                    continue
                row, error, why = prepare_object(obj)
                rows.append(row)
                lines.append(line)
                errors.append(error)
                whys.append(why)
                objs.append(obj)
        table = raw_table(rows)
        norm = normalize(
            table,
            np.array(lines, dtype=np.int64),
            pa.array(errors, pa.string()) if any(errors) else None,
            pa.array(whys, pa.string()) if any(whys) else None,
        )
        for r in norm.unknown:
            s, reason = describe_other(objs[r])
            norm.skipped.update(s)
            if reason:
                norm.bad.append((lines[r], reason))
        norm.bad.extend(bad)
        norm.skipped.update(skipped)
        return norm


class _Learned:
    """What the reader learned about one group of lines: the field groups to
    parse with, and how reported_at is printed."""

    __slots__ = ("groups", "text", "unquote")

    def __init__(self, groups):
        self.groups = groups
        self.text = False  # read the top-level reported_at as a string
        self.unquote = False  # rewrite "reported_at": "<digits>" as a number


def _gather(a, starts, ends, sel):
    """The lines sel of a, copied one after the other (with newlines)."""
    size = int((ends[sel] - starts[sel]).sum()) + len(sel)
    out = np.empty(size, dtype=np.uint8)
    new_starts = np.empty(len(sel), dtype=np.int64)
    new_ends = np.empty(len(sel), dtype=np.int64)
    scan.gather_lines(a, starts, ends, np.ascontiguousarray(sel, dtype=np.int64), out, new_starts, new_ends)
    return out, new_starts, new_ends


class _Bad:
    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason


def _expand(value, skipped):
    """A parsed JSON value -> (object, label prefix) for each candidate uplink:
    arrays yield their items, Firefly envelopes their packets."""
    if isinstance(value, list):
        if not value:
            skipped["empty_array"] += 1
        for i, item in enumerate(value):
            for obj, prefix in _expand_object(item, skipped):
                yield obj, f"item {i}: {prefix}"
    else:
        yield from _expand_object(value, skipped)


def _expand_object(value, skipped):
    if isinstance(value, dict) and isinstance(value.get("packets"), list):
        packets = value["packets"]
        if not packets:
            skipped["firefly:empty_envelope"] += 1
        for j, p in enumerate(packets):
            yield p, f"packets[{j}]: "
    else:
        yield value, ""


def _piece_first_line(norm) -> int:
    return getattr(norm, "first", 0)


def _nonblank(a: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Lines holding something other than whitespace. Only empty lines and
    lines that start with a byte <= 0x20 are looked at in Python."""
    keep = ends > starts
    if len(a) == 0 or len(starts) == 0:
        return keep
    first = a[np.minimum(starts, len(a) - 1)]
    for i in np.flatnonzero(keep & (first <= 32)):
        if not bytes(a[starts[i] : ends[i]]).strip(_WS):
            keep[i] = False
    return keep


def _first_non_utf8(data: memoryview, starts: np.ndarray) -> int | None:
    """Index of the first line holding invalid UTF-8, or None."""
    b = bytes(data) if not isinstance(data, (bytes, bytearray)) else data
    if b.isascii():
        return None
    try:
        b.decode("utf-8")
        return None
    except UnicodeDecodeError as e:
        return 0 if starts is None else int(np.searchsorted(starts, e.start, side="right") - 1)


def _bad_utf8_lines(a: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Indices of the lines holding invalid UTF-8 (only lines with a byte >= 0x80
    are decoded)."""
    high = np.flatnonzero(a >= 128)
    if len(high) == 0:
        return np.zeros(0, np.int64)
    lines = np.unique(np.searchsorted(starts, high, side="right") - 1)
    bad = []
    for i in lines:
        if i < 0 or a[starts[i] : ends[i]].size == 0:
            continue
        try:
            bytes(a[starts[i] : ends[i]]).decode("utf-8")
        except UnicodeDecodeError:
            bad.append(i)
    return np.array(bad, dtype=np.int64)


_MIN_PART_BYTES = 1 << 20
_MIN_REWRITE = 16  # objects from arrays worth writing back as lines for Arrow
_MIN_GROUP_LINES = 256  # a shape with fewer lines in a chunk is not parsed on its own


def _empty_chunk(first_line: int, lines: int = 0, total: int = 0) -> NormalizedChunk:
    return NormalizedChunk(empty_uplinks(), empty_receptions(), [], collections.Counter(), lines, first_line, total)


def _merge(pieces: list, first_line: int, lines: int) -> NormalizedChunk:
    """Pieces (each in line order) -> one chunk with the uplinks in line order."""
    if not pieces:
        return _empty_chunk(first_line, lines)
    if len(pieces) == 1:
        p = pieces[0]
        bad = sorted(p.bad, key=lambda x: x[0]) if len(p.bad) > 1 else p.bad
        return NormalizedChunk(p.uplinks, p.receptions, bad, p.skipped, lines, first_line)
    uplinks, receptions, bad = [], [], []
    skipped: collections.Counter = collections.Counter()
    offset = 0
    for p in pieces:
        uplinks.append(p.uplinks)
        r = p.receptions
        if offset and r.num_rows:
            r = r.set_column(0, "packet_index", pc.add(r.column(0), offset))
        receptions.append(r)
        offset += p.uplinks.num_rows
        bad.extend(p.bad)
        skipped.update(p.skipped)
    bad.sort(key=lambda x: x[0])
    up = pa.concat_tables(uplinks) if uplinks else UPLINK_SCHEMA.empty_table()
    rec = pa.concat_tables(receptions) if receptions else RECEPTION_SCHEMA.empty_table()
    if up.num_rows > 1:
        line = up.column("line").to_numpy()
        if (np.diff(line) < 0).any():  # groups of a mixed chunk: interleave back into input order
            order = np.argsort(line, kind="stable")
            up = up.take(pa.array(order))
            if rec.num_rows:
                inverse = np.empty(len(order), dtype=np.int64)
                inverse[order] = np.arange(len(order))
                rec = rec.set_column(0, "packet_index", pa.array(inverse[rec.column(0).to_numpy()], pa.int64()))
    return NormalizedChunk(up, rec, bad, skipped, lines, first_line)


# --------------------------------------------------------------------------- public


def normalize_values(values: Iterable[Any], first_line: int = 1, *, reader: Reader | None = None) -> NormalizedChunk:
    """Normalize in-memory packets: each item is one JSON value (dict or list)
    or one JSON text (str or bytes). Item k gets the line number first_line + k;
    blank text items are skipped (like blank lines).

    Items become one line of JSON each (dicts and lists written by orjson,
    texts as they are) and go through the same Arrow path as a file; an item
    that cannot be one line (a text with a newline, a value orjson cannot
    write) is read on its own by the slow path.

    reader: a :class:`Reader` kept from one call to the next, to keep what it
    learns about the shapes of the values from one call to the next (a
    stream of small batches)."""
    items = values if isinstance(values, (list, tuple)) else list(values)
    if not items:
        return _empty_chunk(first_line)
    reader = reader or Reader("<values>")
    if all(type(v) is bytes for v in items):  # lines from a socket or a pipe: join them as they are
        text = b"\n".join(items)
        if text.count(b"\n") == len(items) - 1:  # no item holds a newline of its own
            return reader.process(bytearray(text + b"\n"), first_line)
    out: list[bytes] = []
    side: list[tuple[int, Any]] = []  # (line, value or _Bad) for the slow path
    side_lines = 0
    for k, v in enumerate(items):
        if isinstance(v, str):
            v = v.encode()
        if isinstance(v, (bytes, bytearray, memoryview)):
            text = bytes(v)
            if b"\n" not in text:
                out.append(text)
                continue
            if not text.strip(_WS):
                out.append(b"")
                continue
            try:
                v = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                side.append((first_line + k, _Bad(f"malformed JSON: {exc}")))
                side_lines += 1
                out.append(b"")
                continue
        try:
            out.append(orjson.dumps(v))
        except TypeError:  # not JSON (bytes, sets, ...): judge it as it is
            side.append((first_line + k, v))
            side_lines += 1
            out.append(b"")
    chunk = reader.process(bytearray(b"\n".join(out) + b"\n"), first_line)
    if not side:
        return chunk
    pieces = [chunk_piece for chunk_piece in [_as_piece(chunk)] if chunk_piece is not None]
    pieces.append(reader.values(side))
    return _merge(pieces, first_line, chunk.lines + side_lines)


def _as_piece(chunk: NormalizedChunk):
    if not (chunk.uplinks.num_rows or chunk.bad_lines or chunk.skipped):
        return None
    return Normalized(chunk.uplinks, chunk.receptions, list(chunk.bad_lines), collections.Counter(chunk.skipped))

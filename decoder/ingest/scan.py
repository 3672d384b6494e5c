"""JSON Lines -> Arrow columns of declared paths, in one numba pass per chunk (the kernels: ``scan_kernels``).

    plan = Plan({"uid": "str", "fcnt": "int|float|str", "gwrx[].rssi": "float",
                 "packets[]": "records"}, markers=["device_eui", "gwrx"])
    buf = ScanBuffer.of(data)              # whole lines, padded for the kernel
    res = scan(buf, plan)
    res.column("gwrx[].rssi")              # pyarrow.Array, one value per gwrx row
    res.types("fcnt")                      # the JSON type of each record's fcnt (T_* codes)
    res.bad_lines()                        # (line index, reason, byte offset in the line)

Paths are keys joined by ``.``; ``key[]`` is an array. Types: ``str``,
``int`` (exact int64), ``float``, ``bool``, ``raw`` (the value's JSON
text), ``any`` (presence only: the JSON type is kept, no value), or several
joined by ``|`` (``int|float|str``: a number a provider may print in
quotes). ``records`` on an array path makes its items records (Firefly's
``{"packets": [...]}`` envelope). A scalar type on ``key[]`` makes an
array of scalars a table of its own (``correlation_ids[]``).

Tables: table 0 is the records (one per top-level object, top-level array
item, or ``records`` item). Every array of objects on a declared path is a
child table named by its path without ``[]``; ``tables={"hotspots":
["hotspots[]", "data.req.body.hotspots[]", "data.hotspot"]}`` makes several
paths feed one table (an object path gives one row per object).

Markers: each path in ``markers`` gets a bit (in order) in the record's
``mask`` when its key is present with a non-null value: the shape of every
record without another pass.

A key may be both a container and a value (ChirpStack's ``data`` is a
string, Helium's an object): the kernel keeps whichever the line has.

This module imports numba (through the kernels): the ingest package needs
it for every line it reads.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import scan_kernels as K

__all__ = ["Plan", "ScanBuffer", "ScanResult", "scan", "line_bounds", "int64_array", "bool_array", "PAD"]

PAD = 17  # bytes the kernels may read past the data (a newline and 16 more)
# A buffer shorter than this has its strings' spans (positions in it, or in an arena region
# holding no more than its strings) stored as int32: the kernel writes a span to a different row
# of each slot's array, and half the bytes to bring into cache made a mixed-file scan 1.10x as
# fast (24 MB, medians of 9). Longer buffers store int64 (the kernel is compiled for both).
SPANS_32_BELOW = 1 << 31

_TYPES = {
    "str": (1 << K.T_STR) | (1 << K.T_STR_ESC),
    "int": 1 << K.T_INT,
    "float": (1 << K.T_INT) | (1 << K.T_FLOAT) | (1 << K.T_BIGINT),
    "bool": (1 << K.T_TRUE) | (1 << K.T_FALSE),
    "raw": (1 << 11) - 1,
    "any": (1 << 11) - 1,
}
_ARROW = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "raw": pa.string()}


def _segments(path) -> list[str]:
    return list(path) if isinstance(path, (tuple, list)) else path.split(".")


@dataclass
class _Node:
    key: bytes
    scope: int
    table: int  # the table whose rows hold this node's values
    kind: int = K.K_LEAF
    cscope: int = -1
    ctable: int = -1
    item: int = -1
    types: tuple = ()
    accept: int = 0
    span: int = -1
    float_: int = -1
    int_: int = -1
    raw: int = 0
    name: str = ""


class Plan:
    """Declared paths compiled into the numpy tables the scan kernel reads."""

    def __init__(
        self, fields: dict, tables: dict | None = None, markers=(), raw_records: bool = True, unread=()
    ) -> None:
        """``unread``: declared leaf paths the scan treats as undeclared keys (read past,
        never stored, never warned about): they read as absent everywhere."""
        self.nodes: list[_Node] = [_Node(b"", -1, 0, K.K_ROOT, cscope=0, accept=_TYPES["raw"], name="$")]
        self.scope_table = [0]
        self.table_names = ["records"]
        self.table_parent = [-1]
        self.table_scope = [0]
        self._index: dict[tuple[int, bytes], int] = {}
        self.by_name: dict[str, int] = {"$": 0}
        if raw_records:
            self._slots(self.nodes[0], ("raw",))
        for name, paths in (tables or {}).items():
            t = self._new_table(name, None)
            for p in paths:
                self._alias(_segments(p), t)
        for path, spec in fields.items():
            self._field(path, spec)
        self.markers: list[str] = []
        self.node_mask = np.zeros(len(self.nodes), np.uint64)
        if len(markers) > 64:
            raise ValueError("at most 64 markers")
        for bit, path in enumerate(markers):
            node = self._resolve(_segments(path), create=False)
            self.node_mask[node] |= np.uint64(1 << bit)
            self.markers.append(path)
        self.unread = frozenset(self.node(p) for p in unread)
        if any(self.node_mask[n] for n in self.unread):
            raise ValueError("a marker path cannot be unread")
        if any(self.nodes[n].kind != K.K_LEAF for n in self.unread):
            raise ValueError("only leaf paths can be unread")
        self._freeze()

    # -- building -------------------------------------------------------------
    def _new_table(self, name: str, parent: int | None) -> int:
        t = len(self.table_names)
        self.table_names.append(name)
        self.table_parent.append(-1 if parent is None else parent)
        self.scope_table.append(t)
        self.table_scope.append(len(self.scope_table) - 1)
        return t

    def _child(self, scope: int, key: str) -> int:
        kb = key.encode()
        if len(kb) > K.KEY_MAX:
            raise ValueError(f"key longer than {K.KEY_MAX} bytes: {key!r}")
        n = self._index.get((scope, kb))
        if n is None:
            n = len(self.nodes)
            self.nodes.append(_Node(kb, scope, self.scope_table[scope]))
            self._index[(scope, kb)] = n
        return n

    def _descend(self, scope: int, seg: str, prefix: str) -> int:
        """The scope under path segment seg (an object, or the items of an array of objects)."""
        is_array = seg.endswith("[]")
        n = self._child(scope, seg[:-2] if is_array else seg)
        node = self.nodes[n]
        if node.kind == K.K_LEAF and node.cscope < 0:
            if is_array:
                t = self._new_table(prefix[:-2], self.scope_table[scope])
                node.kind, node.ctable, node.cscope = K.K_ARRAY_OBJ, t, self.table_scope[t]
            else:
                self.scope_table.append(self.scope_table[scope])
                node.kind, node.cscope = K.K_OBJECT, len(self.scope_table) - 1
            node.accept |= 1 << (K.T_ARRAY if is_array else K.T_OBJECT)
            node.name = node.name or (prefix[:-2] if is_array else prefix)
            self.by_name.setdefault(node.name, n)
        elif node.cscope < 0 or (node.kind == K.K_ARRAY_OBJ) != is_array:
            raise ValueError(f"{prefix}: declared both as a value and as a container")
        return node.cscope

    def _alias(self, segs: list[str], t: int) -> None:
        scope = 0
        for i, seg in enumerate(segs[:-1]):
            scope = self._descend(scope, seg, ".".join(segs[: i + 1]))
        last = segs[-1]
        is_array = last.endswith("[]")
        n = self._child(scope, last[:-2] if is_array else last)
        node = self.nodes[n]
        if node.kind != K.K_LEAF or node.types:
            raise ValueError(f"{'.'.join(segs)}: already declared")
        node.kind = K.K_ARRAY_OBJ if is_array else K.K_CHILD_OBJECT
        node.ctable, node.cscope = t, self.table_scope[t]
        node.accept = 1 << (K.T_ARRAY if is_array else K.T_OBJECT)
        node.name = ".".join(segs)
        self.by_name[node.name] = n
        self.table_parent[t] = self.scope_table[scope]

    def _resolve(self, segs: list[str], create: bool) -> int:
        scope = 0
        for i, seg in enumerate(segs[:-1]):
            scope = self._descend(scope, seg, ".".join(segs[: i + 1]))
        last = segs[-1]
        key = last.removesuffix("[]")
        n = self._index.get((scope, key.encode()))
        if n is None:
            if not create:
                raise ValueError(f"{'.'.join(segs)}: not a declared path")
            n = self._child(scope, key)
        return n

    def _field(self, path, spec: str) -> None:
        segs = _segments(path)
        name = ".".join(segs)
        n = self._resolve(segs, create=True)
        node = self.nodes[n]
        is_array = segs[-1].endswith("[]")
        if spec == "records":
            if not is_array or node.kind != K.K_LEAF or node.types:
                raise ValueError(f"{name}: 'records' needs a fresh array path")
            node.kind, node.cscope, node.accept, node.name = K.K_RECORDS, 0, 1 << K.T_ARRAY, name[:-2]
            self.by_name[name] = self.by_name[name[:-2]] = n
            return
        types_ = tuple(spec.split("|"))
        if any(t not in _TYPES for t in types_):
            raise ValueError(f"{name}: unknown type {spec!r} (use {', '.join(_TYPES)} or records)")
        if node.types or (node.kind != K.K_LEAF and (is_array or node.kind != K.K_OBJECT)):
            raise ValueError(f"{name}: already declared")
        if is_array:  # an array of scalars: a table of its own, one row per item
            t = self._new_table(name[:-2], self.scope_table[node.scope])
            item = _Node(b"", -1, t, name=name)
            self._slots(item, types_)
            node.kind, node.ctable, node.item = K.K_ARRAY_SCALAR, t, len(self.nodes)
            node.accept, node.name = 1 << K.T_ARRAY, name[:-2]
            self.by_name[name[:-2]] = n
            self.nodes.append(item)
            self.by_name[name] = len(self.nodes) - 1
            return
        self._slots(node, types_)
        node.name = name
        self.by_name[name] = n

    def _slots(self, node: _Node, types_: tuple) -> None:
        node.types = types_
        for t in types_:
            node.accept |= _TYPES[t]
        node.raw = int("raw" in types_)
        if node.raw and "str" in types_:
            raise ValueError(f"{node.name}: 'raw' and 'str' cannot share a path")
        node.span = -2 if ("str" in types_ or node.raw) else -1
        node.float_ = -2 if "float" in types_ else -1
        node.int_ = -2 if "int" in types_ else -1

    def _freeze(self) -> None:
        counters = {"span": 0, "float_": 0, "int_": 0}
        for node in self.nodes:
            for slot in counters:
                if getattr(node, slot) == -2:
                    setattr(node, slot, counters[slot])
                    counters[slot] += 1
        self.n_span, self.n_float, self.n_int = counters["span"], counters["float_"], counters["int_"]
        nn = len(self.nodes)
        pool = bytearray()
        info = np.zeros((nn, K.N_ROWS), np.int64)
        for i, node in enumerate(self.nodes):
            info[i, :] = [
                node.kind,
                node.table,
                node.cscope,
                node.ctable,
                node.item,
                node.accept,
                node.span,
                node.float_,
                node.int_,
                node.raw,
                len(pool),
                len(node.key),
            ]
            pool += node.key
        self.info = info
        self.keypool = np.frombuffer(bytes(pool) + b"\0" * 16, np.uint8)
        keyed = [(i, n) for i, n in enumerate(self.nodes) if n.scope >= 0 and i not in self.unread]
        bits = max(4, (2 * len(keyed)).bit_length())
        size = 1 << bits
        ht = np.full((3, size), -1, np.int64)
        htw = np.zeros((2, size), np.uint64)
        for i, node in keyed:
            w0, w1 = _key_words(node.key)
            h = _key_hash(w0, w1, len(node.key), node.scope) >> (64 - bits)
            while ht[0, h] >= 0:
                h = (h + 1) & (size - 1)
            ht[:, h] = (i, node.scope, len(node.key))
            htw[:, h] = (w0, w1)
        self.ht, self.htw, self.hbits = ht, htw, bits
        self.n_tables = len(self.table_names)
        # Output sizes learned from the last part scanned (see _Out); first guesses:
        # 4 rows per line, the input's bytes shared evenly by the string slots.
        ns = max(self.n_span, 1)
        self.learned = {
            "rows_per_line": 4.0,
            "bytes_per_line": _PROBE_LINE_BYTES,
            "slot_bytes": np.full(ns, 1.0 / ns),
            "probed": False,
        }
        self.probing = threading.Lock()  # held while the first big scan learns the sizes

    # -- queries ---------------------------------------------------------------
    def node(self, name: str) -> int:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"not a declared path: {name!r}") from None

    def table_of(self, name: str) -> int:
        return self.table_names.index(name)

    def bit(self, marker: str) -> np.uint64:
        """The mask bit of a marker path."""
        return np.uint64(1 << self.markers.index(marker))

    def bits(self, markers) -> np.uint64:
        """The mask bits of several marker paths, or-ed."""
        out = np.uint64(0)
        for m in markers:
            out |= self.bit(m)
        return out

    def path_of(self, node: int) -> str:
        """The declared path a node stands for (its table's path for a table row)."""
        return self.nodes[node].name

    def leaves(self, table: int) -> list[int]:
        """Nodes holding values in rows of table (declared leaves, in declaration order)."""
        return [i for i, n in enumerate(self.nodes) if n.table == table and n.types and i != 0]


def _key_words(key: bytes) -> tuple[int, int]:
    w0 = int.from_bytes(key[:8].ljust(8, b"\0"), "little")
    w1 = int.from_bytes(key[-8:], "little") if len(key) > 8 else 0
    return w0, w1


def _key_hash(w0: int, w1: int, kl: int, scope: int) -> int:
    """The kernel's key hash (scan_kernels._key_hash), in Python integers."""
    m = (1 << 64) - 1
    return ((w0 ^ (w1 >> 1) ^ ((kl << 56) & m) ^ ((scope << 40) & m)) * int(K._H1)) & m


# --------------------------------------------------------------------------- buffers


class ScanBuffer:
    """Whole lines in a uint8 array with ``PAD`` readable bytes after them (the kernels' contract).

    ``n`` bytes of data; ``a[n:n + PAD]`` are newlines. A reader fills one
    with ``ScanBuffer.empty(size)`` and ``view()``; ``of(data)`` copies bytes."""

    __slots__ = ("a", "n")

    def __init__(self, a: np.ndarray, n: int) -> None:
        if len(a) < n + PAD:
            raise ValueError(f"scan buffers need {PAD} spare bytes after the data")
        self.a = a
        self.n = n
        a[n : n + PAD] = 10

    @classmethod
    def of(cls, data) -> ScanBuffer:
        n = len(data)
        a = np.empty(n + PAD, np.uint8)
        a[:n] = np.frombuffer(data, np.uint8) if n else a[:0]
        return cls(a, n)

    def text(self, start: int, end: int) -> bytes:
        return self.a[start:end].tobytes()


def line_bounds(a: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the lines of a[:n] (a ScanBuffer's array: a newline at n, 16 readable
    bytes past it); a last line without a newline ends at n; no line after a final newline."""
    out = np.empty(n // 16 + 16, np.int64)
    k = K.find_lines(a, n, out)
    nl = out[:k] if k >= 0 else np.flatnonzero(a[:n] == 10)
    last = n > 0 and a[n - 1] != 10  # a last line without its newline
    m = len(nl) + int(last)
    starts = np.empty(m, np.int64)
    ends = np.empty(m, np.int64)
    if m:
        starts[0] = 0
        starts[1:] = nl[: m - 1] + 1
        ends[: len(nl)] = nl
        if last:
            ends[-1] = n
    return starts, ends


# --------------------------------------------------------------------------- scanning


class _Out:
    """Output arrays of one scan, grown on demand.

    Sizes are learned per plan (``Plan.learned``): rows per line of the
    biggest table, and each string slot's bytes per input byte. Arrow
    columns keep these arrays alive, so they are sized for what a chunk
    needs, not for the worst case (a region per slot sized for the whole
    chunk held gigabytes for a 1M-line file). ``np.empty`` pages that are
    never written cost no memory. A thread's next scan reuses the outputs of
    its last released one where nothing refers to them any more (``_reused``)."""

    def __init__(
        self,
        plan: Plan,
        nlines: int,
        nbytes: int,
        bounds: tuple | None = None,
        wcap: int = 1024,
        fcap: int = 256,
        span: type = np.int64,
    ):
        """``bounds``: the lines' (starts, ends) when the caller has them; else room for the
        kernel to write the lines it finds. ``span``: the dtype of the strings' spans."""
        nn = len(plan.nodes)
        ns = max(plan.n_span, 1)
        spare = _spares()
        cap = _capacity(spare, int(nlines * plan.learned["rows_per_line"] * 1.25) + 64, nn)
        self.vt = _array(spare, "vt", (nn, cap), np.uint8, zeroed=True)
        self.sp0 = _array(spare, "sp0", (ns, cap), span)
        self.sp1 = _array(spare, "sp1", (ns, cap), span)
        self.fl = _array(spare, "fl", (max(plan.n_float, 1), cap), np.float64)
        self.iv = _array(spare, "iv", (max(plan.n_int, 1), cap), np.int64)
        self.rparent = _array(spare, "rparent", (plan.n_tables, cap), np.int64)
        self.ritem = _array(spare, "ritem", (plan.n_tables, cap), np.int64)
        self.rline = _array(spare, "rline", (cap,), np.int64)
        self.rmask = _array(spare, "rmask", (cap,), np.uint64)
        self.counts = np.zeros(plan.n_tables + 2, np.int64)
        self.lerr = np.empty(nlines, np.uint8)
        self.lpos = np.empty(nlines, np.int64)
        self.ltype = np.empty(nlines, np.uint8)
        if bounds is None:
            bounds = np.empty(nlines, np.int64), np.empty(nlines, np.int64)
        self.starts, self.ends = bounds
        self.warn = np.empty((4, wcap), np.int64)
        self.fix = np.empty((4, fcap), np.int64)
        self.need = np.zeros(2, np.int64)
        self.apos = np.zeros(ns, np.int64)
        limits = (plan.learned["slot_bytes"] * nbytes * 1.25).astype(np.int64) + 256
        self._layout(limits, spare=spare)

    def _layout(self, limits: np.ndarray, old: np.ndarray | None = None, spare: dict | None = None) -> None:
        """Arena regions of the given sizes (8-aligned), used bytes copied from old; in the spare
        outputs' arena where it fits (see _reused)."""
        limits = (limits + 7) & ~7
        base = np.zeros(len(limits), np.int64)
        base[1:] = np.cumsum(limits)[:-1]
        size = int(limits.sum()) + 16  # +16: 8-byte copies may run past a region
        arena = _reused(spare, "arena", lambda a: size <= len(a) <= 2 * size)
        if arena is None:
            arena = np.empty(size, np.uint8)
        if old is not None:
            for k in range(len(limits)):
                n = int(self.apos[k])
                arena[base[k] : base[k] + n] = old[self.abase[k] : self.abase[k] + n]
        self.arena, self.abase, self.alimit = arena, base, limits

    def grow_lines(self) -> None:
        """Double the room for lines (the kernel found more than estimated)."""
        for name in ("lerr", "lpos", "ltype", "starts", "ends"):
            old = getattr(self, name)
            new = np.empty(2 * len(old), old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def grow(self) -> None:
        """Double what the kernel found full (need[0]: 1 tables, 2 a string region, 3 warnings)."""
        kind = int(self.need[0])
        if kind == 1:
            cap = self.vt.shape[1]
            for name in ("vt", "sp0", "sp1", "fl", "iv", "rparent", "ritem", "rline", "rmask"):
                old = getattr(self, name)
                new = (np.zeros if name == "vt" else np.empty)(old.shape[:-1] + (2 * cap,), old.dtype)
                new[..., :cap] = old
                setattr(self, name, new)
        elif kind == 2:
            limits = self.alimit.copy()
            k = int(self.need[1])
            limits[k] = 2 * limits[k] + 4096
            self._layout(limits, self.arena)
        else:
            for name in ("warn", "fix"):
                old = getattr(self, name)
                new = np.empty((4, 2 * old.shape[1]), np.int64)
                new[:, : old.shape[1]] = old
                setattr(self, name, new)


_PROBE_LINES = 256
_PROBE_LINE_BYTES = 256  # bytes a line is taken to have before any was scanned
_MIN_LINE_BYTES = 64
_ROW_OUTPUTS = ("vt", "sp0", "sp1", "fl", "iv", "rparent", "ritem", "rline", "rmask")
_spare = threading.local()  # per thread: the outputs of its last scan released, for its next scan


def _spares() -> dict:
    """The calling thread's spare outputs (taken: a scan in progress owns them)."""
    arrays = getattr(_spare, "arrays", None)
    _spare.arrays = None
    return arrays or {}


def _capacity(spare: dict, rows: int, nodes: int) -> int:
    """Rows to allocate: ``rows``, or the spare outputs' capacity where it is not much more."""
    vt = spare.get("vt")
    if vt is not None and vt.shape[0] == nodes and rows <= vt.shape[1] <= 2 * rows:
        return int(vt.shape[1])
    return rows


def _reused(spare: dict | None, name: str, fits) -> np.ndarray | None:
    """The spare array of that output if ``fits(it)`` and nothing else refers to it any more (no
    column, view or ScanResult), else None. Fresh memory is what made a scan slow: the kernel
    faulting in and zeroing new pages cost a fifth of a chunk's scan."""
    old = spare.pop(name, None) if spare else None
    if old is not None and fits(old) and sys.getrefcount(old) == 2:  # `old` and the argument
        return old
    return None


def _array(spare: dict, name: str, shape: tuple, dtype, *, zeroed: bool = False) -> np.ndarray:
    """The output array ``name``: the spare one where it has this shape (_reused), else a new one."""
    old = _reused(spare, name, lambda a: a.shape == shape and a.dtype == dtype)
    if old is None:
        return np.zeros(shape, dtype) if zeroed else np.empty(shape, dtype)
    if zeroed:
        old.fill(0)
    return old


def _keep_spare(out: _Out) -> None:
    """Keep a released scan's outputs for the thread's next scan (_reused checks that nothing
    refers to them any more before reusing them)."""
    arrays = {name: getattr(out, name) for name in _ROW_OUTPUTS}
    arrays["arena"] = out.arena
    _spare.arrays = arrays


def scan(
    buf: ScanBuffer, plan: Plan, bounds: tuple[np.ndarray, np.ndarray] | None = None, max_lines: int | None = None
) -> ScanResult:
    """Scan every line of a buffer (in the calling thread; the kernel releases the GIL).
    Without ``bounds`` the kernel finds the lines as it parses them (a separate pass over the
    bytes for their newlines was 0.13-0.19 s per 1M lines); ``max_lines``: stop after that
    many lines."""
    a = buf.a
    found = bounds is None
    if found:
        nbytes = buf.n
    else:
        starts, ends = bounds
        nbytes = int(ends[-1] - starts[0]) + 1 if len(starts) else 0
    if not plan.learned["probed"] and max_lines is None and nbytes > 4 * _PROBE_LINES * _PROBE_LINE_BYTES:
        # A plan's first big scan learns its sizes from its first lines: with the first
        # guesses, the string regions of a 8 MB chunk of Firefly packets grew 13 times over
        # (40 ms more for the first chunk of each worker, on the way to the first output).
        # The other workers' first scans wait for it: racing past it with the guesses, a
        # 16 MB chunk's regions grew 11-13 times (0.10 s of copies, fresh pages besides).
        with plan.probing:
            if not plan.learned["probed"]:
                scan(buf, plan, None if found else (starts[:_PROBE_LINES], ends[:_PROBE_LINES]), _PROBE_LINES)
                plan.learned["probed"] = True
    if found:
        # Room for lines as the last scans' lines were long (it grows if short). Never as if
        # they were under 64 bytes: after a run of tiny lines, long ones would get tables sized
        # for many times the rows they have, zeroed all the same.
        per_line = max(plan.learned["bytes_per_line"], _MIN_LINE_BYTES)
        m = max_lines or int(nbytes / per_line * 1.25) + 16
    else:
        m = len(starts)
    out = _Out(plan, m, nbytes, bounds, span=np.int32 if len(a) < SPANS_32_BELOW else np.int64)
    li, pos = 0, 0
    while True:
        room = len(out.lerr) if found else m
        done = _scan_lines(a, plan, out, li, min(room, max_lines) if max_lines else room, nbytes if found else -1, pos)
        if out.need[0]:  # an output filled up: grow it and scan that line again
            out.grow()
            li = done
            pos = int(out.starts[done]) if found else 0
            continue
        if not found or done < room or done == max_lines:
            break
        li, pos = done, int(out.ends[done - 1]) + 1  # the room for lines filled up: more bytes?
        if pos >= nbytes:
            break
        out.grow_lines()
    m = done
    starts, ends = out.starts[:m], out.ends[:m]
    used = int(ends[-1] - starts[0]) + 1 if m else 0
    # Learn sizes for the next scan (races between threads only blur them). A string slot keeps
    # the largest share it had lately: a batch without one provider's messages must not size
    # that provider's slots at nothing for the next (small stream batches re-scanned five
    # times over when they did).
    if m >= 256 and used:
        plan.learned["rows_per_line"] = max(1.0, float(out.counts[:-2].max()) / m)
        plan.learned["bytes_per_line"] = used / m
    if used:
        plan.learned["slot_bytes"] = np.maximum(out.apos / used, plan.learned["slot_bytes"] * 0.95)
    return ScanResult(plan, buf, starts, ends, out)


def _scan_lines(a: np.ndarray, plan: Plan, out: _Out, lo: int, hi: int, nbytes: int, pos: int) -> int:
    """One call of the kernel over lines lo..hi-1 (K.scan_lines: nbytes -1, the lines are
    out.starts/out.ends; else found from byte pos) -> the first line not done."""
    # lerr/lpos/ltype are indexed from lo: slice views so resumed calls fill the right place
    return K.scan_lines(
        a,
        out.starts,
        out.ends,
        lo,
        hi,
        nbytes,
        pos,
        plan.info,
        plan.node_mask,
        plan.ht,
        plan.htw,
        plan.hbits,
        plan.keypool,
        out.vt,
        out.sp0,
        out.sp1,
        out.fl,
        out.iv,
        out.rparent,
        out.ritem,
        out.rline,
        out.rmask,
        out.counts,
        out.lerr[lo:],
        out.lpos[lo:],
        out.ltype[lo:],
        out.warn,
        out.fix,
        out.arena,
        out.abase,
        out.alimit,
        out.apos,
        out.need,
    )


# --------------------------------------------------------------------------- results


class ScanResult:
    """Columns of one scanned buffer. Rows of table 0 are records; ``record_line`` gives
    each record's line index (into ``starts``/``ends``)."""

    def __init__(self, plan: Plan, buf: ScanBuffer | None, starts, ends, out: _Out):
        self.plan, self.buf, self.out = plan, buf, out
        self.starts, self.ends = starts, ends
        self.n_lines = len(starts)
        self.counts = out.counts[:-2].copy()
        self._fixed = False

    def rows(self, table: int | str = 0) -> int:
        return int(self.counts[table if isinstance(table, int) else self.plan.table_of(table)])

    def release(self) -> None:
        """Drop the reference to the input buffer (columns of type ``raw`` need it; nothing else).
        The thread's next scan may then reuse the outputs, once nothing refers to them."""
        self._fixups()
        self.buf = None
        _keep_spare(self.out)

    # -- numpy views -------------------------------------------------------------
    def types(self, name: str) -> np.ndarray:
        """JSON type codes (K.T_*) of a path's values, one per row of its table (T_ABSENT: absent)."""
        n = self.plan.node(name)
        return self.out.vt[n, : self.counts[self.plan.nodes[n].table]]

    def parent(self, table: int | str) -> np.ndarray:
        t = table if isinstance(table, int) else self.plan.table_of(table)
        return self.out.rparent[t, : self.counts[t]]

    def item(self, table: int | str) -> np.ndarray:
        t = table if isinstance(table, int) else self.plan.table_of(table)
        return self.out.ritem[t, : self.counts[t]]

    def numbers(self, name: str, type_: str = "float") -> np.ndarray:
        """A float or int path's values as numpy (one per row of its table; rows where
        types(name) is not a number hold garbage: mask them)."""
        node = self.plan.nodes[self.plan.node(name)]
        self._fixups()
        rows = int(self.counts[node.table])
        return self.out.fl[node.float_, :rows] if type_ == "float" else self.out.iv[node.int_, :rows]

    @property
    def record_line(self) -> np.ndarray:
        return self.out.rline[: self.counts[0]]

    @property
    def record_mask(self) -> np.ndarray:
        return self.out.rmask[: self.counts[0]]

    @property
    def line_errors(self) -> np.ndarray:
        """Per line: 0, or the error code (K.E_*) of a line that is not valid JSON."""
        return self.out.lerr[: self.n_lines]

    @property
    def line_types(self) -> np.ndarray:
        """Per line: the JSON type of its value (K.T_ABSENT for a blank line)."""
        return self.out.ltype[: self.n_lines]

    def record_text(self, row: int) -> bytes:
        """A record's JSON text (needs the buffer; see ``release``)."""
        s = self.plan.nodes[0].span
        return self.buf.text(int(self.out.sp0[s, row]), int(self.out.sp1[s, row]))

    # -- Arrow -----------------------------------------------------------------
    def column(self, name: str, type_: str | None = None) -> pa.Array:
        """A declared path as an Arrow array (nulls where absent, null or of another
        type). For a path of several types, ``type_`` picks one."""
        self._fixups()
        n = self.plan.node(name)
        node = self.plan.nodes[n]
        rows = int(self.counts[node.table])
        vt = self.out.vt[n, :rows]
        t = type_ or node.types[0]
        if t == "raw":  # spans into the scanned buffer, whatever JSON they hold
            vt = np.where(vt > K.T_NULL, K.T_STR, K.T_NULL).astype(np.uint8)
            return self._gather(self.buf.a, vt, node.span, np.arange(rows))
        if t == "str":  # already copied into the slot's arena region while scanning
            s = node.span
            offsets, bitmap, nulls, contiguous = K.string_offsets(vt, self.out.sp0[s], self.out.sp1[s], rows)
            if not contiguous:
                return self._gather(self._region(s), vt, s, np.arange(rows))
            return _strings(rows, bitmap, nulls, offsets, self._region(s)[: offsets[-1]])
        bitmap, nulls = K.validity(vt, rows, _TYPES[t])
        if t == "bool":
            values = np.packbits(vt == K.T_TRUE, bitorder="little")
            return pa.Array.from_buffers(
                pa.bool_(), rows, [_bitmap(bitmap, nulls), pa.py_buffer(values)], null_count=nulls
            )
        values = self.out.fl[node.float_, :rows] if t == "float" else self.out.iv[node.int_, :rows]
        return pa.Array.from_buffers(_ARROW[t], rows, [_bitmap(bitmap, nulls), pa.py_buffer(values)], null_count=nulls)

    def strings_at(self, name: str, rows: np.ndarray) -> pa.Array:
        """Some rows of a text path (declared "str") as an Arrow string array, copied from
        the arena: cheaper than the whole column and a take when rows are a part of it."""
        n = self.plan.node(name)
        node = self.plan.nodes[n]
        vt = self.out.vt[n, : int(self.counts[node.table])]
        return self._gather(self._region(node.span), vt, node.span, rows)

    def _region(self, slot: int) -> np.ndarray:
        """A string slot's arena region (with the 8 bytes a copy may read past its end)."""
        return self.out.arena[self.out.abase[slot] : self.out.abase[slot] + self.out.alimit[slot] + 8]

    def _gather(self, buf: np.ndarray, vt: np.ndarray, slot: int, rows: np.ndarray) -> pa.Array:
        """The strings of ``rows`` at a slot's spans into ``buf`` (see K.gather_strings)."""
        rows = np.ascontiguousarray(rows, np.int64)
        offsets, data, bitmap, nulls = K.gather_strings(buf, vt, self.out.sp0[slot], self.out.sp1[slot], rows)
        return _strings(len(rows), bitmap, nulls, offsets, data)

    # -- problems ---------------------------------------------------------------
    def bad_lines(self) -> list[tuple[int, str, int]]:
        """(line index, reason, byte offset in the line) of each line that is not valid JSON."""
        lerr = self.line_errors
        bad = np.flatnonzero(lerr)
        return [(int(i), K.ERROR_TEXT.get(int(lerr[i]), "?"), int(self.out.lpos[i])) for i in bad]

    def warnings(self) -> np.ndarray:
        """(node, row, code, byte position) of each duplicate key, wrong-typed value and
        non-object array item, as a (4, k) int64 array."""
        k = int(self.out.counts[-2])
        return self.out.warn[:, :k]

    def _fixups(self) -> None:
        """Values the kernel could not round exactly: parse them again with float()."""
        if self._fixed:
            return
        self._fixed = True
        k = int(self.out.counts[-1])
        for node, row, s, e in self.out.fix[:, :k].T:
            if node >= 0:
                self.out.fl[self.plan.nodes[node].float_, row] = float(self.buf.text(int(s), int(e)))


def int64_array(a: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A numpy array as an Arrow int64 array without a copy (``pa.array`` would import
    pandas on its first call: 0.3-0.7 s of start-up). ``valid``: bool mask of non-null rows."""
    a = np.ascontiguousarray(a, np.int64)
    return _numeric(pa.int64(), a, valid)


def float64_array(a: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A numpy array as an Arrow float64 array (see ``int64_array``)."""
    a = np.ascontiguousarray(a, np.float64)
    return _numeric(pa.float64(), a, valid)


def bool_array(a: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A numpy bool array as an Arrow boolean array (see ``int64_array``)."""
    n = len(a)
    values = np.packbits(np.asarray(a, bool), bitorder="little")
    if valid is None or valid.all():
        return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(values)], null_count=0)
    bitmap = np.packbits(valid, bitorder="little")
    return pa.Array.from_buffers(
        pa.bool_(), n, [pa.py_buffer(bitmap), pa.py_buffer(values)], null_count=int(n - valid.sum())
    )


def _numeric(type_: pa.DataType, a: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    n = len(a)
    if valid is None or valid.all():
        return pa.Array.from_buffers(type_, n, [None, pa.py_buffer(a)], null_count=0)
    bitmap = np.packbits(valid, bitorder="little")
    return pa.Array.from_buffers(type_, n, [pa.py_buffer(bitmap), pa.py_buffer(a)], null_count=int(n - valid.sum()))


def _strings(rows: int, bitmap: np.ndarray, nulls: int, offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(
        pa.string(), rows, [_bitmap(bitmap, nulls), pa.py_buffer(offsets), pa.py_buffer(data)], null_count=nulls
    )


def _bitmap(bitmap: np.ndarray, nulls: int):
    return None if nulls == 0 else pa.py_buffer(bitmap)

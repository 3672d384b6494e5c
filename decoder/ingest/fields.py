"""Reading a scan's values by path with one coercion rule, and the row warnings it leaves.

The rule (the same for every provider and field):

- A text field takes a JSON string. Anything else is dropped (null) with a
  warning; required fields (a packet's EUI, a payload) are judged by the
  provider instead (a bad line, or a row error).
- A number field takes a JSON number. A string holding a decimal number is
  read as that number, with a warning, except where the provider documents
  the quoted form (The Things Stack's frequencies, Helium's epoch
  milliseconds). Integer fields also take integral numbers (``12.0``);
  other fractions, infinities (``1e400``), numbers outside the field's
  range (FPort 0-255, frame counters 0-4294967295), booleans, objects and
  arrays are dropped with a warning.
- A field that is absent (or null) is null, or the provider's documented
  default (protocol-buffer JSON leaves zeros out: The Things Stack's and
  ChirpStack's ``f_cnt``/``fCnt`` and ports are 0 when absent).
- Array items that are not objects where objects belong (gateways) are
  dropped with a warning (the scanner makes no row of them), so a gateway
  count counts gateway objects only.

A warning reads ``<path>: <what happened>``; a row's warnings are joined
with "; " in the ``warnings`` column.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import scan_kernels as K
from . import text_kernels as TK
from .scan import ScanResult, bool_array, float64_array, int64_array

__all__ = [
    "Records",
    "Warnings",
    "json_kind",
    "valid_of",
    "true_of",
    "categories",
    "string_buffers",
    "take",
    "nulls",
]

_NUMBER_CODES = (K.T_INT, K.T_FLOAT, K.T_BIGINT)
_KIND = {
    K.T_NULL: "null",
    K.T_FALSE: "false",
    K.T_TRUE: "true",
    K.T_INT: "a number",
    K.T_FLOAT: "a number",
    K.T_BIGINT: "a number",
    K.T_STR: "text",
    K.T_STR_ESC: "text",
    K.T_OBJECT: "an object",
    K.T_ARRAY: "an array",
}


def json_kind(code: int) -> str:
    """What a JSON type code is, for messages ("a number", "an object", ...)."""
    return _KIND.get(int(code), "nothing")


def nulls(n: int, type_: pa.DataType) -> pa.Array:
    return pa.nulls(n, type_)


def valid_of(arr: pa.Array) -> np.ndarray:
    """An Arrow array's validity as numpy bools (``Array.to_numpy`` would import pandas)."""
    n = len(arr)
    if arr.null_count == 0:
        return np.ones(n, bool)
    if arr.null_count == n:
        return np.zeros(n, bool)
    bits = np.frombuffer(arr.buffers()[0], np.uint8)
    return np.unpackbits(bits, bitorder="little", count=arr.offset + n)[arr.offset :].astype(bool)


def true_of(arr: pa.Array) -> np.ndarray:
    """Rows of a boolean array that are true (null: False), as numpy bools."""
    n = len(arr)
    if n == 0:
        return np.zeros(0, bool)
    bits = np.frombuffer(arr.buffers()[1], np.uint8)
    values = np.unpackbits(bits, bitorder="little", count=arr.offset + n)[arr.offset :].astype(bool)
    return values & valid_of(arr) if arr.null_count else values


def categories(arr: pa.Array, *, lower: bool = False) -> tuple[np.ndarray, list]:
    """A string column as (int64 code per row, -1 for null; the distinct values): a column
    of a few kinds (categories, data rates) is then judged once per kind. ``lower``: the
    values lower-cased (``utf8_lower``), which is done to the few distinct values, not to
    every row (a Helium event's two categories: 0.6 ms of a mixed 8 MB chunk's assembly)."""
    if len(arr) == 0 or arr.null_count == len(arr):
        return np.full(len(arr), -1, np.int64), []
    enc = pc.dictionary_encode(arr)
    idx = enc.indices
    codes = np.frombuffer(idx.buffers()[1], np.int32)[idx.offset : idx.offset + len(idx)].astype(np.int64)
    if idx.null_count:
        codes[~valid_of(idx)] = -1
    names = (pc.utf8_lower(enc.dictionary) if lower else enc.dictionary).to_pylist()
    distinct = list(dict.fromkeys(names))
    if len(distinct) < len(names):  # values that differ only in case: one code (-1 stays -1)
        codes = np.array([distinct.index(name) for name in names] + [-1], np.int64)[codes]
    return codes, distinct


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int32 offsets, uint8 data, bool valid) of a string array, zero-copy where possible."""
    n = len(arr)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], np.int32)[arr.offset : arr.offset + n + 1] if n else np.zeros(1, np.int32)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets, data, valid_of(arr)


def take(arr: pa.Array, rows: np.ndarray | None) -> pa.Array:
    """arr at rows (all of it when rows is None). Rows that are every row in order (a file of
    one provider's uplinks asks for whole text columns) are copied straight, not taken: 2
    against 16 ns a row, a take was a sixth of putting a Firefly chunk's columns together. A
    copy all the same: a text column is a view of its scan's string arena, which the thread's
    next scan reuses once nothing refers to it; holding it kept 90 MB more alive."""
    if rows is None:
        return arr
    if _every_row(rows, len(arr)):
        return _copied(arr)
    return arr.take(int64_array(rows))


def _copied(arr: pa.Array) -> pa.Array:
    """arr in buffers of its own (see ``take``)."""
    return pa.concat_arrays([arr])


def _every_row(rows: np.ndarray, n: int) -> bool:
    """Whether rows are 0, 1, ..., n-1."""
    if len(rows) != n:
        return False
    return n == 0 or (rows[0] == 0 and rows[-1] == n - 1 and bool((np.diff(rows) == 1).all()))


class Warnings:
    """Row warnings of one normalization: (record rows, a text per row or one for all) parts."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, list[str] | str]] = []

    def add(self, rows: np.ndarray, texts: list[str] | str) -> None:
        if len(rows):
            self.parts.append((np.asarray(rows, np.int64), texts))

    def column(self, up_rows: np.ndarray, n_records: int) -> pa.Array:
        """The warnings column of the uplink rows ``up_rows`` (record rows, ascending)."""
        m = len(up_rows)
        if not self.parts:
            return nulls(m, pa.string())
        where = np.full(n_records, -1, np.int64)
        where[up_rows] = np.arange(m)
        texts: list[list[str] | None] = [None] * m
        for rows, what in self.parts:
            at = where[rows]
            for k in np.flatnonzero(at >= 0).tolist():
                text = what if isinstance(what, str) else what[k]
                i = int(at[k])
                if texts[i] is None:
                    texts[i] = [text]
                elif text not in texts[i]:  # a field read twice (a packet's and its gateways' view)
                    texts[i].append(text)
        if all(t is None for t in texts):
            return nulls(m, pa.string())
        return pa.array([None if t is None else "; ".join(t) for t in texts], pa.string())


class Records:
    """One scan's values, read by declared path, for the rows a provider asks for.

    ``rows`` arguments are row numbers in the path's table (None: every row);
    results have one value per row asked for. Whatever is coerced or dropped
    is noted in ``warnings`` against the record the value belongs to."""

    def __init__(self, res: ScanResult) -> None:
        self.res = res
        self.plan = res.plan
        self.n = res.rows(0)
        self.warnings = Warnings()
        self._columns: dict[tuple[str, str], pa.Array] = {}

    # -- raw views ---------------------------------------------------------
    def codes(self, path: str, rows: np.ndarray | None = None) -> np.ndarray:
        vt = self.res.types(path)
        return vt if rows is None else vt[rows]

    def present(self, path: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Rows where the path holds a value (not absent, not null)."""
        return self.codes(path, rows) > K.T_NULL

    def is_text(self, path: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Rows where the path holds a JSON string."""
        codes = self.codes(path, rows)
        return (codes == K.T_STR) | (codes == K.T_STR_ESC)

    def is_object(self, path: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Rows where the path holds a JSON object."""
        return self.codes(path, rows) == K.T_OBJECT

    def column(self, path: str, type_: str) -> pa.Array:
        key = (path, type_)
        col = self._columns.get(key)
        if col is None:
            col = self._columns[key] = self.res.column(path, type_)
        return col

    def record_of(self, path: str, rows: np.ndarray | None) -> np.ndarray:
        """The record row of each of ``rows`` of the path's table."""
        table = self.plan.nodes[self.plan.node(path)].table
        if table == 0:
            return np.arange(self.n) if rows is None else rows
        parent = self.res.parent(table)
        return parent if rows is None else parent[rows]

    # -- typed reads ---------------------------------------------------------
    def text(self, path: str, rows: np.ndarray | None = None, *, warn: bool = True) -> pa.Array:
        """A text field (null where absent or not text; other JSON types warned about)."""
        codes = self.codes(path, rows)
        if not (codes > K.T_NULL).any():  # nowhere in these rows (another shape's path): no take
            return nulls(len(codes), pa.string())
        col = self._text_at(path, rows)
        if warn:
            wrong = np.flatnonzero((codes > K.T_NULL) & (codes != K.T_STR) & (codes != K.T_STR_ESC))
            self.note(path, rows, wrong, [f"{path}: expected text, got {json_kind(c)}; dropped" for c in codes[wrong]])
        return col

    def _text_at(self, path: str, rows: np.ndarray | None) -> pa.Array:
        """A text path's column at rows: a part of its table is copied from the scan's arena
        (building the whole column and taking from it made a mixed file's assembly 13% slower,
        paired in-process runs), the whole table as a whole column, copied as ``take`` does."""
        if rows is None:
            return self.column(path, "str")
        if _every_row(rows, len(self.res.types(path))):
            return _copied(self.column(path, "str"))
        return self.res.strings_at(path, rows)

    def flag(self, path: str, rows: np.ndarray | None = None, absent: bool | None = None) -> pa.Array:
        """A boolean field; ``absent``: the value of an absent field (None: null)."""
        codes = self.codes(path, rows)
        is_true = codes == K.T_TRUE
        valid = is_true | (codes == K.T_FALSE)
        wrong = np.flatnonzero((codes > K.T_NULL) & ~valid)
        self.note(
            path, rows, wrong, [f"{path}: expected true or false, got {json_kind(c)}; dropped" for c in codes[wrong]]
        )
        if absent is not None:
            missing = codes <= K.T_NULL
            is_true = is_true | (missing & bool(absent))
            valid = valid | missing
        return bool_array(is_true, valid)

    def integer(
        self,
        path: str,
        rows: np.ndarray | None = None,
        *,
        lo: int | None = None,
        hi: int | None = None,
        absent: int | None = None,
        quoted: bool = False,
    ) -> pa.Array:
        """An integer field (int64). ``lo``/``hi``: the valid range; ``absent``: the value of
        an absent field; ``quoted``: the provider prints it in quotes (no warning then)."""
        values, valid = self._numbers(path, rows, integer=True, quoted=quoted, lo=lo, hi=hi, absent=absent)
        return int64_array(values, valid)

    def number(
        self, path: str, rows: np.ndarray | None = None, *, quoted: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """A number field as (float64 values, valid); NaN where not valid."""
        values, valid = self._numbers(path, rows, integer=False, quoted=quoted)
        if not valid.all():
            values = values.copy()
            values[~valid] = np.nan
        return values, valid

    def number_array(self, path: str, rows: np.ndarray | None = None, **kw) -> pa.Array:
        values, valid = self.number(path, rows, **kw)
        return float64_array(values, valid)

    def note(self, path: str, rows: np.ndarray | None, idx: np.ndarray, texts) -> None:
        """Warnings against the records of ``rows[idx]`` (texts: one per index, or one for all)."""
        if len(idx):
            self.warnings.add(self.record_of(path, rows)[idx], texts)

    def _numbers(self, path, rows, *, integer, quoted, lo=None, hi=None, absent=None):
        """(values, valid): int64 values for integer fields, float64 otherwise (see the module rule)."""
        node = self.plan.nodes[self.plan.node(path)]
        if node.float_ < 0:
            raise TypeError(f"{path}: number fields are declared with 'float'")
        codes = self.codes(path, rows)
        m = len(codes)
        if absent is None and not (codes > K.T_NULL).any():  # nowhere in these rows: all null
            return np.zeros(m, np.int64 if integer else np.float64), np.zeros(m, bool)  # as below: 0 where not valid
        is_int = codes == K.T_INT
        simple = is_int.all() if integer else (is_int | (codes == K.T_FLOAT)).all()
        if simple and integer and node.int_ >= 0:  # the common case: one array, every value in range
            iv = self.res.numbers(path, "int")
            values = iv if rows is None else iv[rows]
            if m == 0 or ((lo is None or values.min() >= lo) and (hi is None or values.max() <= hi)):
                return values, np.ones(m, bool)
        if simple and lo is None and hi is None:
            if not integer:
                fl = self.res.numbers(path, "float")
                fl = fl if rows is None else fl[rows]
                if np.isfinite(fl).all():
                    return fl, np.ones(m, bool)
        fl = self.res.numbers(path, "float")
        fl = fl if rows is None else fl[rows]
        number = is_int | (codes == K.T_FLOAT) | (codes == K.T_BIGINT)
        notes: list[tuple[np.ndarray, list[str]]] = []
        if integer:
            values = np.zeros(m, np.int64)
            valid = np.zeros(m, bool)
            exact = is_int if node.int_ >= 0 else np.zeros(m, bool)
            if exact.any():
                iv = self.res.numbers(path, "int")
                values[exact] = (iv if rows is None else iv[rows])[exact]
                valid[exact] = True
            other = np.flatnonzero(number & ~exact)
            if len(other):  # integral doubles pass; fractions and huge values are dropped
                f = fl[other]
                ok = np.isfinite(f) & (f == np.floor(f)) & (np.abs(f) < 2.0**63)
                values[other[ok]] = f[ok].astype(np.int64)
                valid[other[ok]] = True
                bad = other[~ok]
                notes.append(
                    (
                        bad,
                        [
                            f"{path}: {_num_text(x)} is not an integer; dropped"
                            if np.isfinite(x)
                            else f"{path}: a number beyond the range of a double; dropped"
                            for x in fl[bad]
                        ],
                    )
                )
        else:
            values = np.where(number, fl, 0.0)
            valid = number & np.isfinite(values)
            inf = np.flatnonzero(number & ~valid)
            notes.append((inf, [f"{path}: a number beyond the range of a double; dropped"] * len(inf)))
        texts = np.flatnonzero((codes == K.T_STR) | (codes == K.T_STR_ESC))
        if len(texts):
            self._quoted(path, rows, texts, integer, quoted, values, valid, notes)
        wrong = np.flatnonzero((codes > K.T_NULL) & ~number & (codes != K.T_STR) & (codes != K.T_STR_ESC))
        notes.append((wrong, [f"{path}: expected a number, got {json_kind(c)}; dropped" for c in codes[wrong]]))
        if lo is not None or hi is not None:
            out = valid.copy()
            out &= (values < lo) if lo is not None else False
            if hi is not None:
                out |= valid & (values > hi)
            out = np.flatnonzero(out)
            if len(out):
                valid[out] = False
                span = (
                    f"{lo}-{hi}"
                    if lo is not None and hi is not None
                    else (f">= {lo}" if lo is not None else f"<= {hi}")
                )
                notes.append((out, [f"{path}: {_num_text(values[i])} is outside {span}; dropped" for i in out]))
        if absent is not None:
            missing = codes == K.T_ABSENT
            if missing.any():
                values[missing] = absent
                valid |= missing
        for idx, texts_ in notes:
            self.note(path, rows, idx, texts_)
        return values, valid

    def _quoted(self, path, rows, idx, integer, quoted, values, valid, notes) -> None:
        """Numbers printed as text (rows idx): read them, with a warning unless the provider prints them so."""
        col = self.column(path, "str").take(int64_array(idx if rows is None else rows[idx]))
        offsets, data, ok = string_buffers(col)
        k = len(idx)
        ints = np.empty(k, np.int64)
        floats = np.empty(k, np.float64)
        kind = np.empty(k, np.uint8)
        TK.parse_numbers(offsets, data, ok, ints, floats, kind)
        strings = None
        for j in np.flatnonzero(kind == TK.FRACTION).tolist():  # rare: float() rounds exactly
            strings = strings or col.to_pylist()
            floats[j] = float(strings[j])
        if integer:
            whole = np.isfinite(floats) & (floats == np.floor(floats)) & (np.abs(floats) < 2.0**63)
            good = (kind == TK.INTEGER) | ((kind == TK.FRACTION) & whole)
            got = np.where(kind == TK.INTEGER, ints, np.where(good, floats, 0.0).astype(np.int64))
        else:
            good = (kind != TK.NOT_A_NUMBER) & np.isfinite(floats)
            got = floats
        values[idx[good]] = got[good]
        valid[idx[good]] = True
        if quoted and good.all():
            return
        strings = strings or col.to_pylist()
        if not quoted:
            fine = np.flatnonzero(good)
            notes.append((idx[fine], [f'{path}: "{_clip(strings[j])}" read as {_num_text(got[j])}' for j in fine]))
        bad = np.flatnonzero(~good)
        what = "an integer" if integer else "a number"
        notes.append((idx[bad], [f'{path}: "{_clip(strings[j])}" is not {what}; dropped' for j in bad]))


def _num_text(x) -> str:
    """A number as a message shows it: integral values without a fraction."""
    x = float(x) if not isinstance(x, (int, np.integer)) else int(x)
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return repr(x)


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."

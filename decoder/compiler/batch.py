"""The decoded columns of one batch and their export to Arrow and Python."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..runtime.abi import ERR_INPUT, ERR_OK, ERR_TOO_SHORT
from .ir import Slot

__all__ = ["Column", "DecodedBatch"]


@dataclass(frozen=True)
class Column:
    path: tuple[str, ...]
    slot: Slot
    values: np.ndarray
    valid: np.ndarray | None  # uint8 per row, None when the column is never null in a decoded row
    hidden: bool


def _leaf_array(col: Column, row_ok: np.ndarray, strings: pa.Array) -> pa.Array:
    valid = row_ok if col.valid is None else row_ok & col.valid.view(np.bool_)
    mask = None if valid.all() else ~valid
    if col.slot.storage == "str":
        indices = pa.array(col.values, type=pa.int32(), mask=mask)
        return pa.DictionaryArray.from_arrays(indices, strings)
    return pa.array(col.values, mask=mask)


def _nest(columns: list[Column], row_ok: np.ndarray, strings: pa.Array, depth: int = 0) -> tuple[list, list]:
    """Group leaves by their path below `depth` into arrays and names, in first-seen order."""
    names: list[str] = []
    groups: dict[str, list[Column]] = {}
    for col in columns:
        key = col.path[depth]
        if key not in groups:
            groups[key] = []
            names.append(key)
        groups[key].append(col)
    arrays = []
    struct_mask = None if row_ok.all() else pa.array(~row_ok)
    for key in names:
        group = groups[key]
        if len(group) == 1 and len(group[0].path) == depth + 1:
            arrays.append(_leaf_array(group[0], row_ok, strings))
        else:
            child_arrays, child_names = _nest(group, row_ok, strings, depth + 1)
            arrays.append(pa.StructArray.from_arrays(child_arrays, child_names, mask=struct_mask))
    return arrays, names


class DecodedBatch:
    """Decoded values of a batch of payloads, with a reason for every row that failed."""

    def __init__(
        self,
        *,
        class_name: str,
        columns: list[Column],
        err: np.ndarray,
        bits_used: np.ndarray | None,
        offsets: np.ndarray,
        input_errors: list[str | None] | None,
        strings: list[str],
        static_bits: int | None,
        include_hidden: bool,
    ):
        self.class_name = class_name
        self._columns = columns
        self._err = err
        self._bits_used = bits_used
        self._offsets = offsets
        self._input_errors = input_errors
        self._strings = pa.array(strings, type=pa.string())
        self._static_bits = static_bits
        self.include_hidden = include_hidden

    @property
    def num_rows(self) -> int:
        return len(self._err)

    def __len__(self) -> int:
        return self.num_rows

    def _bytes_of(self, rows: np.ndarray) -> np.ndarray:
        return self._offsets[rows + 1] - self._offsets[rows]

    def _bits_needed(self, rows: np.ndarray) -> np.ndarray:
        if self._bits_used is None:  # fixed layout: every row needs its static size
            return np.full(len(rows), self._static_bits, np.int64)
        return self._bits_used[rows]

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the rows that decoded."""
        return self._err == ERR_OK

    def _visible(self) -> list[Column]:
        return [c for c in self._columns if self.include_hidden or not c.hidden]

    # ---- Arrow -----------------------------------------------------------
    def to_arrow(self) -> pa.Table:
        """Decoded columns as a table: nested structs for dotted targets, nulls where not decoded."""
        cols = self._visible()
        if not cols:
            return pa.table({})
        arrays, names = _nest(cols, self.ok, self._strings)
        return pa.Table.from_arrays(arrays, names=names)

    def to_struct_array(self) -> pa.StructArray:
        """All output columns as one struct column, null for rows that failed."""
        cols = self._visible()
        ok = self.ok
        if not cols:
            return pa.array([{}] * self.num_rows, type=pa.struct([]))
        arrays, names = _nest(cols, ok, self._strings)
        mask = None if ok.all() else pa.array(~ok)
        return pa.StructArray.from_arrays(arrays, names, mask=mask)

    # ---- errors ----------------------------------------------------------
    def error_message(self, row: int) -> str | None:
        """Reason row `row` was not decoded, or None."""
        code = self._err[row]
        if code == ERR_OK:
            return None
        if code == ERR_TOO_SHORT:
            rows = np.array([row])
            needs, has = int(self._bits_needed(rows)[0]), int(self._bytes_of(rows)[0]) * 8
            return f"payload too short: needs {needs} bits, has {has}"
        if code == ERR_INPUT and self._input_errors is not None:
            return self._input_errors[row] or "invalid payload"
        return "invalid payload"

    @property
    def errors(self) -> list[dict]:
        """One {"row", "error"} dict per row that failed, in row order."""
        return [{"row": int(i), "error": self.error_message(int(i))} for i in np.flatnonzero(self._err != ERR_OK)]

    def error_array(self) -> pa.StringArray:
        """Per row: null where decoded, else the reason."""
        failed = np.flatnonzero(self._err != ERR_OK)
        if not len(failed):
            return pa.nulls(self.num_rows, pa.string())
        # Reasons repeat (one per distinct length or input error): render each once, then take by index.
        short = self._err[failed] == ERR_TOO_SHORT
        keys = np.where(short, self._bits_needed(failed) * (1 << 32) + self._bytes_of(failed), -1 - failed)
        unique_keys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        messages = pa.array([self.error_message(int(failed[k])) for k in first], type=pa.string())
        indices = np.full(self.num_rows, -1, np.int64)
        indices[failed] = inverse
        return messages.take(pa.array(indices, mask=indices < 0))

    @property
    def stats(self) -> dict:
        """Counts that always reconcile: rows == decoded + errors."""
        ok = self.ok
        rows = np.arange(self.num_rows)
        leftover_bits = np.where(ok, self._bytes_of(rows) * 8 - self._bits_needed(rows), 0)
        leftover_bytes = leftover_bits // 8
        return {
            "rows": self.num_rows,
            "decoded": int(ok.sum()),
            "errors": int(self.num_rows - ok.sum()),
            "rows_with_leftover_bytes": int((leftover_bytes > 0).sum()),
            "leftover_bytes": int(leftover_bytes.sum()),
        }

    # ---- Python ----------------------------------------------------------
    def to_pylist(self) -> list[dict]:
        """One dict per payload, nested like a TTN decoder's `data`, None for null."""
        table = self.to_arrow()
        if table.num_columns == 0:
            return [{} for _ in range(self.num_rows)]
        rows = table.to_pylist()
        ok = self.ok
        for row, good in zip(rows, ok):
            if not good:
                for key, value in row.items():
                    if value is None:
                        row[key] = _null_like(self, key)
        return rows

    def __repr__(self) -> str:
        s = self.stats
        return f"<DecodedBatch class={self.class_name!r} rows={s['rows']} decoded={s['decoded']} errors={s['errors']}>"


def _null_like(batch: DecodedBatch, key: str):
    """For a failed row, a nested object of Nones rather than a bare None, so every row has the same shape."""
    leaves = [c.path[1:] for c in batch._visible() if c.path[0] == key and len(c.path) > 1]
    if not leaves:
        return None
    out: dict = {}
    for path in leaves:
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = None
    return out

"""Cayenne LPP (Low Power Payload), decoded for a whole batch in one numba loop.

A payload is a sequence of items, each ``channel (1 byte) | type (1 byte) |
value (big-endian)``. The standard types (myDevices' Cayenne LPP
specification; the type is the IPSO object id minus 3200):

====  ===================  =====  =========================================
type  name                 bytes  value
====  ===================  =====  =========================================
0     digital_in           1      unsigned integer
1     digital_out          1      unsigned integer
2     analog_in            2      signed, 0.01
3     analog_out           2      signed, 0.01
101   luminosity           2      unsigned integer, lux
102   presence             1      unsigned integer
103   temperature          2      signed, 0.1 °C
104   relative_humidity    1      unsigned, 0.5 %
113   accelerometer        6      x, y, z: signed 16 bit each, 0.001 G
115   barometric_pressure  2      unsigned, 0.1 hPa
134   gyrometer            6      x, y, z: signed 16 bit each, 0.01 °/s
136   gps                  9      latitude, longitude: signed 24 bit,
                                  0.0001 °; altitude: signed 24 bit, 0.01 m
====  ===================  =====  =========================================

Names are The Things Stack's: an item is called ``<name>_<channel>``
(``temperature_5``, ``gps_10`` with ``latitude``, ``longitude``,
``altitude``). Integer types stay integers; a scaled value is the raw integer
divided by its scale in float64 (the correctly rounded quotient, as The
Things Stack computes it: ``27.2``, not ``27.200000000000003``).

Rules:

- A (type, channel) pair that repeats in one payload keeps its last value
  (The Things Stack writes every item into one map, so the last one wins).
- An unknown type, a value cut short, or a lone channel byte at the end ends
  the row with an error naming the byte where that item starts (``unknown
  Cayenne LPP type 0x42 at byte 6``, ``truncated temperature at byte 4: needs
  2 bytes, has 1``). The values before it are kept. An empty payload decodes
  to no values and no error. Counts reconcile: rows == decoded + errors.
- ``decode(...)`` has one column per (type, channel) pair that occurs in the
  batch, ordered by type code, then channel. Its columns therefore depend on
  the batch. ``decode_fixed(...)`` and :meth:`CayenneLPP.output_schema` give
  one type for every batch, which is what the Engine and every file output
  use: a struct with one field per type, each a ``map<uint8 channel,
  value>`` (null where the payload has no item of that type).

Differences from The Things Stack, on purpose: the barometer is read
unsigned, as the specification says (The Things Stack reads it signed; the
two differ only above 3276.7 hPa); a row with an error keeps the values
before it (The Things Stack drops the whole payload).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["TYPES", "CayenneBatch", "CayenneLPP", "LppType"]


@dataclass(frozen=True)
class LppType:
    """One Cayenne LPP data type: its code, The Things Stack name and value layout."""

    code: int
    name: str
    width: int                    # bytes per component
    signed: bool
    scales: tuple[int, ...]       # one per component; 1: an integer value
    fields: tuple[str, ...] = ()  # component names of a struct value; () for a scalar
    int_type: pa.DataType | None = None  # Arrow type of an unscaled value

    @property
    def size(self) -> int:
        """Bytes of the value (after the channel and type bytes)."""
        return self.width * len(self.scales)

    @property
    def value_type(self) -> pa.DataType:
        """Arrow type of one value."""
        if self.fields:
            return pa.struct([pa.field(f, pa.float64()) for f in self.fields])
        return self.int_type if self.scales[0] == 1 else pa.float64()


_XYZ = ("x", "y", "z")
TYPES: tuple[LppType, ...] = (
    LppType(0, "digital_in", 1, False, (1,), int_type=pa.uint8()),
    LppType(1, "digital_out", 1, False, (1,), int_type=pa.uint8()),
    LppType(2, "analog_in", 2, True, (100,)),
    LppType(3, "analog_out", 2, True, (100,)),
    LppType(101, "luminosity", 2, False, (1,), int_type=pa.uint16()),
    LppType(102, "presence", 1, False, (1,), int_type=pa.uint8()),
    LppType(103, "temperature", 2, True, (10,)),
    LppType(104, "relative_humidity", 1, False, (2,)),
    LppType(113, "accelerometer", 2, True, (1000, 1000, 1000), _XYZ),
    LppType(115, "barometric_pressure", 2, False, (10,)),
    LppType(134, "gyrometer", 2, True, (100, 100, 100), _XYZ),
    LppType(136, "gps", 3, True, (10000, 10000, 100), ("latitude", "longitude", "altitude")),
)

# Row outcomes written by the kernel.
_OK, _INPUT, _UNKNOWN, _TRUNCATED, _NO_TYPE = 0, 1, 2, 3, 4

# Lookup tables handed to the kernel: a type's slot is its position in TYPES;
# an item's key is slot * 256 + channel.
_SLOT_OF = np.full(256, -1, np.int8)
for _slot, _t in enumerate(TYPES):
    _SLOT_OF[_t.code] = _slot
_VALUE_BYTES = np.array([t.size for t in TYPES], np.int64)
_WIDTH = np.array([t.width for t in TYPES], np.int64)
_COMPONENTS = np.array([len(t.scales) for t in TYPES], np.int64)
_SIGNED = np.array([t.signed for t in TYPES], np.uint8)
_KEYS = len(TYPES) * 256


def _decode_items(data, offsets, in_err, slot_of, value_bytes, width, components, signed,
                  item_row, item_key, item_raw, row_items, row_err, err_at, err_type, last_row, last_item):
    """Every row's items into item arrays (raw integers), one pass; returns the number of items.

    Compiled by numba (see _kernel). A row's items are contiguous:
    row_items[r] .. row_items[r + 1]. A key repeated in a row overwrites its
    earlier item, so each key occurs at most once per row.
    """
    m = 0
    row_items[0] = 0
    for r in range(in_err.shape[0]):
        start = offsets[r]
        end = offsets[r + 1]
        pos = start
        outcome = _OK
        if in_err[r] != 0:
            outcome = _INPUT
        while outcome == _OK and pos < end:
            if end - pos < 2:
                outcome = _NO_TYPE
                break
            slot = np.int64(slot_of[data[pos + 1]])
            if slot < 0:
                outcome = _UNKNOWN
                err_type[r] = data[pos + 1]
                break
            if end - pos - 2 < value_bytes[slot]:
                outcome = _TRUNCATED
                err_type[r] = data[pos + 1]
                break
            key = slot * 256 + np.int64(data[pos])
            if last_row[key] == r:
                k = last_item[key]
            else:
                k = m
                m += 1
                last_row[key] = r
                last_item[key] = k
                item_row[k] = r
                item_key[k] = key
            w = width[slot]
            p = pos + 2
            for c in range(components[slot]):
                v = np.int64(0)
                for b in range(w):
                    v = (v << 8) | np.int64(data[p + b])
                if signed[slot] and v >= (np.int64(1) << (8 * w - 1)):
                    v -= np.int64(1) << (8 * w)
                item_raw[k, c] = v
                p += w
            pos = p
        row_err[r] = outcome
        err_at[r] = pos - start
        row_items[r + 1] = m
    return m


_kernel_lock = threading.Lock()
_compiled = None


def _kernel():
    """The numba-compiled _decode_items (numba is imported here, not at import: `import decoder` stays cheap)."""
    global _compiled
    with _kernel_lock:
        if _compiled is None:
            import numba

            _compiled = numba.njit(nogil=True, cache=True)(_decode_items)
        return _compiled


@dataclass(frozen=True)
class _Items:
    """The kernel's output for one batch."""

    n: int
    row: np.ndarray        # int64 per item
    key: np.ndarray        # int16 per item: slot * 256 + channel
    raw: np.ndarray        # int32 (items, 3): raw component values
    row_items: np.ndarray  # int64, n + 1
    row_err: np.ndarray    # uint8 per row: _OK, _INPUT, ...
    err_at: np.ndarray     # int64 per row: byte offset of the item that failed
    err_type: np.ndarray   # uint8 per row: its type byte
    row_bytes: np.ndarray  # int64 per row: payload length


def _run_kernel(buffer) -> _Items:
    n = len(buffer)
    data, offsets, in_err = buffer.data, buffer.offsets, buffer.error
    capacity = int(offsets[n] - offsets[0]) // 3 + 1 if n else 1   # an item takes at least 3 bytes
    item_row = np.empty(capacity, np.int64)
    item_key = np.empty(capacity, np.int16)
    item_raw = np.empty((capacity, 3), np.int32)
    row_items = np.empty(n + 1, np.int64)
    row_err = np.empty(n, np.uint8)
    err_at = np.empty(n, np.int64)
    err_type = np.zeros(n, np.uint8)
    last_row = np.full(_KEYS, -1, np.int64)
    last_item = np.empty(_KEYS, np.int64)
    if len(data) == 0:
        data = np.zeros(1, np.uint8)  # numba needs a buffer; no row reads it
    m = _kernel()(data, offsets, in_err, _SLOT_OF, _VALUE_BYTES, _WIDTH, _COMPONENTS, _SIGNED,
                  item_row, item_key, item_raw, row_items, row_err, err_at, err_type, last_row, last_item)
    return _Items(n, item_row[:m], item_key[:m], item_raw[:m], row_items, row_err, err_at, err_type,
                  np.diff(offsets))


def _values(t: LppType, raw: np.ndarray) -> pa.Array:
    """Arrow values of type t from its items' raw components (items, 3)."""
    if not t.fields:
        if t.scales[0] == 1:
            return pa.array(raw[:, 0].astype(t.int_type.to_pandas_dtype()), t.int_type)
        return pa.array(raw[:, 0] / t.scales[0])  # float64 division: the correctly rounded quotient
    children = [pa.array(raw[:, c] / scale) for c, scale in enumerate(t.scales)]
    return pa.StructArray.from_arrays(children, fields=list(t.value_type))


def _fixed_type() -> pa.StructType:
    return pa.struct([pa.field(t.name, pa.map_(pa.uint8(), t.value_type)) for t in TYPES])


class CayenneBatch:
    """Decoded Cayenne LPP payloads of one batch, with a reason for every row that failed.

    ``fixed=False`` (``CayenneLPP.decode``): one column per (type, channel)
    pair in the batch. ``fixed=True`` (``decode_fixed``): the fixed struct of
    maps that ``CayenneLPP.output_schema()`` describes.
    """

    class_name = "cayenne-lpp"

    def __init__(self, items: _Items, buffer, fixed: bool):
        self._items = items
        self._buffer = buffer
        self.fixed = fixed
        self._columns: tuple[list[str], list[pa.Array]] | None = None

    @property
    def num_rows(self) -> int:
        return self._items.n

    def __len__(self) -> int:
        return self.num_rows

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the rows that decoded without an error."""
        return self._items.row_err == _OK

    # ---- columns -----------------------------------------------------------
    def _by_key(self) -> list[tuple[int, np.ndarray]]:
        """(key, item indices in row order) for every key present, by key."""
        key = self._items.key
        if not len(key):
            return []
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        cuts = np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [len(key)]))
        return [(int(sorted_key[s]), order[s:e]) for s, e in zip(starts, ends)]

    def _dense(self) -> tuple[list[str], list[pa.Array]]:
        """One array per (type, channel): n long, null where the row has no such item."""
        if self._columns is None:
            n = self._items.n
            names, arrays = [], []
            for key, idx in self._by_key():
                t = TYPES[key >> 8]
                rows = self._items.row[idx]
                positions = np.full(n, -1, np.int64)
                positions[rows] = np.arange(len(rows))
                # take() with null indices scatters the values to their rows, nulls elsewhere.
                arrays.append(_values(t, self._items.raw[idx]).take(pa.array(positions, mask=positions < 0)))
                names.append(f"{t.name}_{key & 255}")
            self._columns = (names, arrays)
        return self._columns

    def _maps(self) -> list[pa.Array]:
        """One map<uint8, value> per type, n long, null where the row has no item of that type."""
        n = self._items.n
        slot = (self._items.key >> 8).astype(np.int8)
        order = np.argsort(slot, kind="stable")   # keeps row order within a type
        bounds = np.searchsorted(slot[order], np.arange(len(TYPES) + 1))
        maps = []
        for s, t in enumerate(TYPES):
            idx = order[bounds[s]:bounds[s + 1]]
            counts = np.bincount(self._items.row[idx], minlength=n)
            offsets = np.zeros(n + 1, np.int32)
            np.cumsum(counts, out=offsets[1:])
            channels = pa.array((self._items.key[idx] & 255).astype(np.uint8))
            maps.append(pa.MapArray.from_arrays(
                pa.array(offsets), channels, _values(t, self._items.raw[idx]),
                type=pa.map_(pa.uint8(), t.value_type), mask=pa.array(counts == 0),
            ))
        return maps

    def _row_mask(self) -> pa.Array | None:
        """Null rows of the struct: those whose payload could not be read at all."""
        bad = self._items.row_err == _INPUT
        return pa.array(bad) if bad.any() else None

    def to_struct_array(self) -> pa.StructArray:
        """All values as one struct column (null only where the payload could not be read)."""
        if self.fixed:
            return pa.StructArray.from_arrays(self._maps(), fields=list(_fixed_type()), mask=self._row_mask())
        names, arrays = self._dense()
        if not names:
            bad = self._items.row_err == _INPUT
            return pa.array([None if b else {} for b in bad.tolist()], type=pa.struct([]))
        return pa.StructArray.from_arrays(arrays, names, mask=self._row_mask())

    def to_arrow(self) -> pa.Table:
        """The values as a table: one column per (type, channel), or per type with ``fixed``."""
        if self.fixed:
            return pa.Table.from_arrays(self._maps(), schema=pa.schema(list(_fixed_type())))
        names, arrays = self._dense()
        return pa.Table.from_arrays(arrays, names=names) if names else pa.table({})

    def to_pylist(self) -> list[dict]:
        """One dict per payload with the items it holds, in payload order, like The Things Stack's ``decoded_payload``."""
        it = self._items
        names: list[str | None] = [None] * len(it.key)
        values: list[Any] = [None] * len(it.key)
        for key, idx in self._by_key():
            t = TYPES[key >> 8]
            name = f"{t.name}_{key & 255}"
            for k, value in zip(idx.tolist(), _values(t, it.raw[idx]).to_pylist()):
                names[k] = name
                values[k] = value
        rows: list[dict] = [{} for _ in range(it.n)]
        for row, name, value in zip(it.row.tolist(), names, values):
            rows[row][name] = value
        return rows

    # ---- errors ------------------------------------------------------------
    def error_message(self, row: int) -> str | None:
        """Reason row ``row`` has an error, or None."""
        it = self._items
        code = int(it.row_err[row])
        if code == _OK:
            return None
        if code == _INPUT:
            return self._buffer.error_message(row) or "invalid payload"
        at = int(it.err_at[row])
        have = int(it.row_bytes[row]) - at
        if code == _NO_TYPE:
            return f"truncated item at byte {at}: needs a channel and a type byte, has {have} byte"
        if code == _UNKNOWN:
            return f"unknown Cayenne LPP type 0x{int(it.err_type[row]):02X} at byte {at}"
        t = TYPES[_SLOT_OF[it.err_type[row]]]
        return f"truncated {t.name} at byte {at}: needs {t.size} bytes, has {have - 2}"

    @property
    def errors(self) -> list[dict]:
        """One {"row", "error"} dict per row that failed, in row order."""
        return [{"row": int(r), "error": self.error_message(int(r))} for r in np.flatnonzero(~self.ok)]

    def error_array(self) -> pa.StringArray:
        """Per row: null where decoded, else the reason."""
        it = self._items
        failed = np.flatnonzero(it.row_err != _OK)
        if not len(failed):
            return pa.nulls(it.n, pa.string())
        # Reasons repeat: render each distinct (outcome, type, offset, length) once, then take by index.
        facts = np.stack([it.row_err[failed].astype(np.int64), it.err_type[failed].astype(np.int64),
                          it.err_at[failed], it.row_bytes[failed]], axis=1)
        facts[it.row_err[failed] == _INPUT, 1:] = -1 - failed[it.row_err[failed] == _INPUT, None]
        _, first, inverse = np.unique(facts, axis=0, return_index=True, return_inverse=True)
        messages = pa.array([self.error_message(int(failed[k])) for k in first], pa.string())
        indices = np.full(it.n, -1, np.int64)
        indices[failed] = inverse.reshape(-1)
        return messages.take(pa.array(indices, mask=indices < 0))

    @property
    def stats(self) -> dict:
        """Counts that always reconcile: rows == decoded + errors."""
        ok = int(self.ok.sum())
        return {"rows": self.num_rows, "decoded": ok, "errors": self.num_rows - ok, "values": len(self._items.key)}

    def __repr__(self) -> str:
        s = self.stats
        return f"<CayenneBatch rows={s['rows']} decoded={s['decoded']} errors={s['errors']} values={s['values']}>"


class CayenneLPP:
    """The built-in Cayenne LPP decoder, with the interface of a compiled device class."""

    name = "cayenne-lpp"
    id = None
    ports = None
    types = TYPES

    def __repr__(self) -> str:
        return "<builtin 'cayenne-lpp'>"

    def decode(self, payloads: Any, encoding: str = "hex", ports: Any = None, include_hidden: bool = False):
        """Decode a batch (hex or base64 text, or raw bytes): one column per (type, channel) in it.

        ``ports`` and ``include_hidden`` are accepted for the interface and
        ignored: Cayenne LPP does not depend on the port and has no hidden values.
        """
        return self._decode(payloads, encoding, fixed=False)

    def decode_fixed(self, payloads: Any, encoding: str = "hex", ports: Any = None, include_hidden: bool = False):
        """Like decode, but with the one fixed type of output_schema() whatever the batch holds."""
        return self._decode(payloads, encoding, fixed=True)

    def _decode(self, payloads: Any, encoding: str, fixed: bool) -> CayenneBatch:
        from ..payload import to_buffer  # imports numba: not at module import

        buffer = to_buffer(payloads, encoding)
        return CayenneBatch(_run_kernel(buffer), buffer, fixed)

    def output_schema(self, include_hidden: bool = False) -> pa.Schema:
        """Arrow schema of ``decode_fixed(...).to_arrow()``: one map<uint8 channel, value> per type."""
        return pa.schema(list(_fixed_type()))

    def explain(self) -> str:
        """A human description: the types, their sizes and scales, and the fixed output."""
        lines = ["built-in format 'cayenne-lpp' (Cayenne Low Power Payload)",
                 "  payload: items of channel (1 byte), type (1 byte), value (big-endian)",
                 "  types:"]
        for t in TYPES:
            scale = "integer" if t.scales[0] == 1 else ", ".join(f"1/{s}" for s in dict.fromkeys(t.scales))
            parts = f" {{{', '.join(t.fields)}}}" if t.fields else ""
            sign = "signed" if t.signed else "unsigned"
            lines.append(f"    {t.code:>3} (0x{t.code:02X})  {t.name}_<channel>{parts}: {t.size} byte{'s' if t.size > 1 else ''}, "
                         f"{sign} {t.width * 8}-bit, {scale}")
        lines.append("  decode(): one column per (type, channel) present, by type code then channel")
        lines.append("  output (decode_fixed, Engine, files):")
        for field in self.output_schema():
            lines.append(f"    {field.name}: {field.type}")
        return "\n".join(lines)

"""Cayenne LPP (Low Power Payload), decoded for a whole batch in one numba loop.

The decode is one pass over every byte of the batch (``_lpp_kernels``); each
Arrow form is then one more native pass over the items it found.

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
    width: int  # bytes per component
    signed: bool
    scales: tuple[int, ...]  # one per component; 1: an integer value
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

# Lookup tables handed to the kernels: a type's slot is its position in TYPES;
# an item's key is slot * 256 + channel, so keys sort by type code, then channel.
_SLOT_OF = np.full(256, -1, np.int8)
for _slot, _t in enumerate(TYPES):
    _SLOT_OF[_t.code] = _slot
_VALUE_BYTES = np.array([t.size for t in TYPES], np.int64)
_WIDTH = np.array([t.width for t in TYPES], np.int64)
_COMPONENTS = np.array([len(t.scales) for t in TYPES], np.int64)
_SIGNED = np.array([t.signed for t in TYPES], np.bool_)
_SCALE = np.ones((len(TYPES), 3), np.float64)
for _slot, _t in enumerate(TYPES):
    _SCALE[_slot, : len(_t.scales)] = _t.scales
_INTEGER = np.array([t.int_type is not None for t in TYPES], np.bool_)
_KEYS = len(TYPES) * 256
_LAYOUT = (_WIDTH, _COMPONENTS, _SIGNED)


def _kernels():
    """The numba kernels module (imported on first use: numba is not imported with decoder)."""
    from . import _lpp_kernels

    return _lpp_kernels


@dataclass(frozen=True)
class _Items:
    """What the decode kernel found in one batch (see _lpp_kernels.decode_items)."""

    n: int
    data: np.ndarray  # uint8: the payload bytes (values are read from here on export)
    offsets: np.ndarray  # int64, n + 1
    key: np.ndarray  # int16 per item: slot * 256 + channel
    pos: np.ndarray  # int32 per item: where its value starts, from the row's start
    row_items: np.ndarray  # int64, n + 1: row r's items are row_items[r] .. row_items[r + 1]
    key_rows: np.ndarray  # int64 per key: rows holding it
    row_err: np.ndarray  # uint8 per row: _OK, _INPUT, ...
    err_at: np.ndarray  # int64 per row: byte offset of the item that failed
    err_type: np.ndarray  # uint8 per row: its type byte

    @property
    def row_bytes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def rows(self) -> np.ndarray:
        """The row of every item."""
        return np.repeat(np.arange(self.n), np.diff(self.row_items))


class _Decoder:
    """Runs the decode kernel over rows as they are converted to bytes, chunk by chunk.

    ``run`` fits ``payload.to_buffer``'s ``on_rows``: for a long list of text
    it is called from a worker thread as soon as a chunk is converted, while
    the next chunk's text is still being gathered (two cores share the work).
    """

    def __init__(self, n: int):
        self.n = n
        self.rows_done = 0
        self.items = 0
        self.row_items = np.empty(n + 1, np.int64)
        self.row_items[0] = 0
        self.row_err = np.empty(n, np.uint8)
        self.err_at = np.empty(n, np.int64)
        self.err_type = np.zeros(n, np.uint8)
        self.key_rows = np.zeros(_KEYS, np.int64)
        self.keys: list[np.ndarray] = []
        self.positions: list[np.ndarray] = []

    def run(self, data: np.ndarray, offsets: np.ndarray, in_err: np.ndarray, first: int, count: int) -> None:
        """Decode rows first .. first + count (offsets are absolute positions in data)."""
        if count <= 0:
            return
        row_offsets = offsets[first : first + count + 1]
        span = int(row_offsets[-1] - row_offsets[0])
        if span >= 1 << 31 and int(np.diff(row_offsets).max()) >= 1 << 31:
            raise ValueError("a payload of 2 GiB or more is not Cayenne LPP")  # item positions are int32
        capacity = span // 3 + 1  # an item takes at least 3 bytes
        key = np.empty(capacity, np.int16)
        pos = np.empty(capacity, np.int32)
        row_items = np.empty(count + 1, np.int64)
        rows = slice(first, first + count)
        m = _kernels().decode_items(
            data if len(data) else np.zeros(1, np.uint8),
            row_offsets,
            in_err[rows],
            _SLOT_OF,
            _VALUE_BYTES,
            key,
            pos,
            row_items,
            self.row_err[rows],
            self.err_at[rows],
            self.err_type[rows],
            self.key_rows,
            np.full(_KEYS, -1, np.int64),
            np.empty(_KEYS, np.int64),
        )
        self.row_items[first + 1 : first + count + 1] = row_items[1:] + self.items
        self.items += m
        self.keys.append(key[:m])
        self.positions.append(pos[:m])
        self.rows_done += count

    def result(self, buffer) -> _Items:
        """The items of every row, once run has seen them all."""

        def joined(parts: list[np.ndarray], dtype) -> np.ndarray:
            return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0, dtype)

        data = buffer.data if len(buffer.data) else np.zeros(1, np.uint8)
        return _Items(
            self.n,
            data,
            buffer.offsets,
            joined(self.keys, np.int16),
            joined(self.positions, np.int32),
            self.row_items,
            self.key_rows,
            self.row_err,
            self.err_at,
            self.err_type,
        )


_OVERLAP_ROWS = 1 << 16  # lists at least this long are decoded chunk by chunk as they are converted


def _decode_buffer(payloads: Any, encoding: str):
    """(payload buffer, items) of a batch: to bytes, then the decode kernel (overlapped for long lists)."""
    from ..payload import to_buffer  # imports numba: not at module import

    if isinstance(payloads, (list, tuple)) and len(payloads) >= _OVERLAP_ROWS:
        decoder = _Decoder(len(payloads))
        buffer = to_buffer(payloads, encoding, on_rows=decoder.run)
        if decoder.rows_done == len(buffer):
            return buffer, decoder.result(buffer)
        # The conversion took its general path: decode the whole buffer at once.
    else:
        buffer = to_buffer(payloads, encoding)
    decoder = _Decoder(len(buffer))
    decoder.run(buffer.data, buffer.offsets, buffer.error, 0, len(buffer))
    return buffer, decoder.result(buffer)


def _values(t: LppType, raw: np.ndarray) -> pa.Array:
    """Arrow values of type t from its items' raw components (items, 3)."""
    if not t.fields:
        if t.scales[0] == 1:
            return pa.array(raw[:, 0].astype(t.int_type.to_pandas_dtype()), t.int_type)
        return pa.array(raw[:, 0] / t.scales[0])  # float64 division: the correctly rounded quotient
    children = [pa.array(raw[:, c] / scale) for c, scale in enumerate(t.scales)]
    return pa.StructArray.from_arrays(children, fields=list(t.value_type))


def _leaf(t: LppType, values: np.ndarray) -> pa.Array:
    """One component's values (contiguous: float64, or raw integers for an integer type) as Arrow, no nulls."""
    arrow_type = t.int_type if t.int_type is not None else pa.float64()
    values = np.ascontiguousarray(values, dtype=arrow_type.to_pandas_dtype())
    # from_buffers: pa.array() of a row of a 2-D array takes ~30 ms per million values
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])


def _with_bitmap(t: LppType, n: int, bitmap: np.ndarray, children: list[pa.Array]) -> pa.Array:
    """An n-long array of type t's values: children (one per component) and an Arrow validity bitmap."""
    validity = pa.py_buffer(bitmap)
    if t.fields:
        return pa.Array.from_buffers(t.value_type, n, [validity], children=children)
    (child,) = children
    return pa.Array.from_buffers(child.type, n, [validity, child.buffers()[1]])


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
    def _dense(self) -> tuple[list[str], list[pa.Array]]:
        """One array per (type, channel): n long, null where the row has no such item."""
        if self._columns is None:
            it = self._items
            n = it.n
            present = np.flatnonzero(it.key_rows)  # by type code, then channel
            integer = _INTEGER[present >> 8]
            widths = np.where(integer, 1, _COMPONENTS[present >> 8])
            column_of = np.full(_KEYS, -1, np.int64)
            column_of[present] = np.arange(len(present))
            leaf_of = np.zeros(_KEYS, np.int64)  # a row of ints for an integer type, of floats otherwise
            leaf_of[present] = np.where(integer, np.cumsum(integer) - 1, np.cumsum(widths * ~integer) - widths)
            # zeros: no garbage under nulls; uint16 holds every integer type at a quarter of float64's memory
            floats = np.zeros((int((widths * ~integer).sum()), n), np.float64)
            ints = np.zeros((int(integer.sum()), n), np.uint16)
            valid = np.zeros((len(present), (n + 7) // 8), np.uint8)
            _kernels().fill_columns(
                it.data,
                it.offsets,
                it.row_items,
                it.key,
                it.pos,
                *_LAYOUT,
                _SCALE,
                _INTEGER,
                column_of,
                leaf_of,
                floats,
                ints,
                valid,
            )
            names, arrays = [], []
            for col, key in enumerate(present.tolist()):
                t = TYPES[key >> 8]
                first = int(leaf_of[key])
                if t.int_type is not None:
                    children = [_leaf(t, ints[first])]
                else:
                    children = [_leaf(t, floats[first + c]) for c in range(len(t.scales))]
                arrays.append(_with_bitmap(t, n, valid[col], children))
                names.append(f"{t.name}_{key & 255}")
            self._columns = (names, arrays)
        return self._columns

    def _maps(self) -> list[pa.Array]:
        """One map<uint8, value> per type, n long, null where the row has no item of that type."""
        it = self._items
        n, m = it.n, len(it.key)
        per_slot = it.key_rows.reshape(len(TYPES), 256).sum(axis=1)
        slot_start = np.concatenate(([0], np.cumsum(per_slot)))
        value_start = np.concatenate(([0], np.cumsum(per_slot * _COMPONENTS)))
        map_offsets = np.empty((len(TYPES), n + 1), np.int32)
        map_valid = np.zeros((len(TYPES), (n + 7) // 8), np.uint8)
        channel = np.empty(m, np.uint8)
        values = np.empty(int(value_start[-1]), np.float64)
        _kernels().fill_maps(
            it.data,
            it.offsets,
            it.row_items,
            it.key,
            it.pos,
            *_LAYOUT,
            _SCALE,
            slot_start,
            value_start,
            map_offsets,
            map_valid,
            channel,
            values,
        )
        maps = []
        for s, t in enumerate(TYPES):
            a, b, count = int(slot_start[s]), int(slot_start[s + 1]), int(per_slot[s])
            map_type = pa.map_(pa.uint8(), t.value_type)
            first = int(value_start[s])
            children = [_leaf(t, values[first + c * count : first + (c + 1) * count]) for c in range(len(t.scales))]
            items = pa.StructArray.from_arrays(children, fields=list(t.value_type)) if t.fields else children[0]
            entries = pa.StructArray.from_arrays(
                [pa.array(channel[a:b]), items], fields=[map_type.key_field, map_type.item_field]
            )
            maps.append(
                pa.Array.from_buffers(
                    map_type, n, [pa.py_buffer(map_valid[s]), pa.py_buffer(map_offsets[s])], children=[entries]
                )
            )
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
        """One dict per payload with the items it holds, in payload order (The Things Stack's ``decoded_payload``)."""
        it = self._items
        m = len(it.key)
        raw = np.zeros((m, 3), np.int64)
        _kernels().read_raw(it.data, it.offsets, it.row_items, it.key, it.pos, *_LAYOUT, raw)
        names: list[str | None] = [None] * m
        values: list[Any] = [None] * m
        order = np.argsort(it.key, kind="stable")
        bounds = np.searchsorted(it.key[order], np.flatnonzero(it.key_rows), side="left").tolist() + [m]
        for key, a, b in zip(np.flatnonzero(it.key_rows).tolist(), bounds, bounds[1:]):
            t = TYPES[key >> 8]
            name = f"{t.name}_{key & 255}"
            idx = order[a:b]
            for k, value in zip(idx.tolist(), _values(t, raw[idx]).to_pylist()):
                names[k] = name
                values[k] = value
        rows: list[dict] = [{} for _ in range(it.n)]
        for row, name, value in zip(it.rows().tolist(), names, values):
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
        facts = np.stack(
            [
                it.row_err[failed].astype(np.int64),
                it.err_type[failed].astype(np.int64),
                it.err_at[failed],
                it.row_bytes[failed],
            ],
            axis=1,
        )
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
        buffer, items = _decode_buffer(payloads, encoding)
        return CayenneBatch(items, buffer, fixed)

    def output_schema(self, include_hidden: bool = False) -> pa.Schema:
        """Arrow schema of ``decode_fixed(...).to_arrow()``: one map<uint8 channel, value> per type."""
        return pa.schema(list(_fixed_type()))

    def explain(self) -> str:
        """A human description: the types, their sizes and scales, and the fixed output."""
        lines = [
            "built-in format 'cayenne-lpp' (Cayenne Low Power Payload)",
            "  payload: items of channel (1 byte), type (1 byte), value (big-endian)",
            "  types:",
        ]
        for t in TYPES:
            scale = "integer" if t.scales[0] == 1 else ", ".join(f"1/{s}" for s in dict.fromkeys(t.scales))
            parts = f" {{{', '.join(t.fields)}}}" if t.fields else ""
            sign = "signed" if t.signed else "unsigned"
            size = f"{t.size} byte{'s' if t.size > 1 else ''}"
            name = f"{t.name}_<channel>{parts}"
            lines.append(f"    {t.code:>3} (0x{t.code:02X})  {name}: {size}, {sign} {t.width * 8}-bit, {scale}")
        lines.append("  decode(): one column per (type, channel) present, by type code then channel")
        lines.append("  output (decode_fixed, Engine, files):")
        for field in self.output_schema():
            lines.append(f"    {field.name}: {field.type}")
        return "\n".join(lines)

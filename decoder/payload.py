"""Text payloads (hex, base64) -> one contiguous byte buffer plus int64 offsets.

``to_buffer(payloads, encoding)`` turns a batch of payloads into the Arrow
binary layout: ``data`` holds every decoded payload back to back and row ``i``
is ``data[offsets[i]:offsets[i+1]]``. The work is done by numba kernels over
raw buffers, never by a Python loop per payload.

Inputs: a list or tuple of str / bytes / bytearray (None is a missing
payload); a numpy array of dtype ``U``, ``S`` or object; a pyarrow Array or
ChunkedArray of string, large_string, string_view, binary, large_binary,
binary_view or a dictionary of those (nulls allowed); or a single str or bytes
(a batch of one). Any other iterable is read into a list first.

Rules, per row (positions count characters from 0; bytes input that is not
valid UTF-8 counts bytes):

- ``hex``: digits ``0-9a-fA-F`` in pairs, upper and lower case alike. An
  empty string is a valid empty payload. No ``0x`` prefix, no whitespace, no
  separators: those are bad characters, because a payload field holds bare
  hex and anything else means the text is not what we think it is.
  Errors: ``odd hex length (N characters)``, ``bad hex character 'g' at
  position 5``. A bad character is reported before an odd length.
- ``base64``: the standard alphabet of RFC 4648 section 4 and also its
  URL-safe alphabet (section 5: ``-`` for ``+``, ``_`` for ``/``); the two
  never disagree on a character, so accepting both costs nothing and a row
  may even mix them. Padding ``=`` is either absent or complete (total length
  a multiple of 4, at most two ``=``, only at the end). Like Python's
  ``base64.b64decode``, non-zero unused bits in the last character are
  ignored (``QR==`` is ``b"A"``); unlike it, surplus ``=`` after a whole
  group (``QUJD==``) is an error. No whitespace. Errors: ``bad base64
  character '!' at position 3``, ``bad base64 length (N characters)`` (N is
  1 more than a multiple of 4, not counting padding), and ``bad base64
  padding`` (``=`` inside the data, more than two ``=``, or an incomplete
  padding such as ``QQ=``). Checked in that order.
- ``raw``: bytes input used as is. Text (str) input with ``raw`` is a
  ValueError: it has no byte value without an encoding. A numpy ``S`` array
  is fixed-width: with ``raw`` every row is its full width, trailing NUL
  bytes included (numpy drops them when an element is read, which cut
  payloads ending in ``00``). numpy pads shorter items with NULs, so payloads
  of several lengths should come as a list of bytes or an Arrow binary array.
- Bytes input with ``hex`` or ``base64`` is read as ASCII text.
- A null row (None, float NaN as pandas writes it, Arrow null) is ``payload
  is missing``; any other item that is neither str nor bytes is ``payload has
  the wrong type: int, expected str or bytes``.

A wrong container (an Arrow array of integers, a 2-D numpy array) raises
TypeError or ValueError: that is a caller's bug, not bad data.

Errors never raise: a bad row gets an error code in ``error`` and empty bytes;
every other row decodes. Error codes are the ``ERR_*`` constants; the message
with position and character is rendered on demand, for bad rows only, by
re-scanning that one row in Python.

Paths, fastest first: Arrow arrays are read in place (~10 ns per 18-character
hex payload on a 2-core machine); a list of ASCII str is joined with NUL in
steps and split by the kernel as it decodes (~35 ns all told, against ~50 ns
for pa.array plus the Arrow path); numpy ``U``/``S`` arrays are read in place
as fixed-width code units. Lists pyarrow cannot type (ints, mixed types) take
a slow per-item path that marks the odd items.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import pyarrow as pa
from numba.extending import overload

__all__ = [
    "ENCODINGS",
    "PayloadBuffer",
    "to_buffer",
    "ERR_OK",
    "ERR_MISSING",
    "ERR_WRONG_TYPE",
    "ERR_ODD_HEX_LENGTH",
    "ERR_BAD_HEX_CHARACTER",
    "ERR_BAD_BASE64_CHARACTER",
    "ERR_BAD_BASE64_LENGTH",
    "ERR_BAD_BASE64_PADDING",
    "ERROR_REASONS",
]

ENCODINGS = ("hex", "base64", "raw")

ERR_OK = 0
ERR_MISSING = 1
ERR_WRONG_TYPE = 2
ERR_ODD_HEX_LENGTH = 3
ERR_BAD_HEX_CHARACTER = 4
ERR_BAD_BASE64_CHARACTER = 5
ERR_BAD_BASE64_LENGTH = 6
ERR_BAD_BASE64_PADDING = 7

# Short reasons without row details: stable keys for "errors by reason" counts.
ERROR_REASONS = {
    ERR_MISSING: "payload is missing",
    ERR_WRONG_TYPE: "payload has the wrong type",
    ERR_ODD_HEX_LENGTH: "odd hex length",
    ERR_BAD_HEX_CHARACTER: "bad hex character",
    ERR_BAD_BASE64_CHARACTER: "bad base64 character",
    ERR_BAD_BASE64_LENGTH: "bad base64 length",
    ERR_BAD_BASE64_PADDING: "bad base64 padding",
}

_HEX, _BASE64, _RAW = 0, 1, 2
_ENCODING_IDS = {"hex": _HEX, "base64": _BASE64, "raw": _RAW}

_INVALID = -1
_PAD = -2  # '=' in the base64 table: tells "padding in the wrong place" from "bad character"
_EQUALS = ord("=")


def _readonly(array: np.ndarray) -> np.ndarray:
    # numba compiles readonly and writeable arrays separately; handing the kernels
    # readonly inputs always keeps it to one compiled version per input layout.
    array.flags.writeable = False
    return array


# Each encoding's lookup table has its own dtype, and the kernels pick the row
# decoder from that dtype at compile time (see _decode_row). A runtime branch on
# the encoding inside the row loop made the loop about 50% slower.
_HEX_TABLE_DTYPE = np.int8
_BASE64_TABLE_DTYPE = np.int16
_RAW_TABLE_DTYPE = np.uint8  # raw has no table: an empty one only selects the copy


def _make_hex_table() -> np.ndarray:
    table = np.full(256, _INVALID, dtype=_HEX_TABLE_DTYPE)
    for value, char in enumerate("0123456789abcdef"):
        table[ord(char)] = value
        table[ord(char.upper())] = value
    return _readonly(table)


def _make_base64_table() -> np.ndarray:
    table = np.full(256, _INVALID, dtype=_BASE64_TABLE_DTYPE)
    for value, char in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"):
        table[ord(char)] = value
    table[ord("-")] = 62  # URL-safe alphabet, RFC 4648 section 5
    table[ord("_")] = 63
    table[_EQUALS] = _PAD
    return _readonly(table)


_TABLES = {
    _HEX: _make_hex_table(),
    _BASE64: _make_base64_table(),
    _RAW: _readonly(np.zeros(0, dtype=_RAW_TABLE_DTYPE)),
}
_EMPTY_BYTES = _readonly(np.zeros(0, dtype=np.uint8))


# --------------------------------------------------------------------------- kernels
# Row decoders write one row at out[cursor:] and return (cursor after the row,
# error code). On an error the caller keeps its old cursor, which discards
# whatever was written: outputs are sized by an upper bound, so one pass suffices.
# `data` is uint8 (UTF-8 / ASCII bytes) or uint32 (numpy 'U' code points).
#
# Three things took the row loop from ~55 ns to ~10 ns per 18-character hex
# payload on the 2-core development machine: helpers are inlined
# (inline="always"); every index is uint64, because numba adds a negative-index
# fix-up to each access with a signed index (and uint64 mixed with int64 gives
# float64 in numba, hence the _U* constants); and the kernels run without the
# numba runtime (_nrt=False, as numba's own string helpers do), which drops the
# reference counting that inlining otherwise leaves on every row. They allocate
# nothing, which _nrt=False requires.

_KERNEL_OPTIONS = dict(cache=True, nogil=True, _nrt=False)
_HELPER_OPTIONS = dict(cache=True, nogil=True, inline="always")

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U2 = np.uint64(2)
_U3 = np.uint64(3)
_U4 = np.uint64(4)
_U7 = np.uint64(7)


@numba.njit(**_HELPER_OPTIONS)
def _lookup(table, char):
    # Code points above 255 (numpy 'U' input) are outside every alphabet.
    if char > 255:
        return _INVALID
    return np.int32(table[char])


@numba.njit(**_HELPER_OPTIONS)
def _hex_row(data, start, end, table, out, cursor):
    length = end - start
    pairs_end = end - (length & _U1)
    pos = start
    while pos < pairs_end:
        high = _lookup(table, data[pos])
        low = _lookup(table, data[pos + _U1])
        if (high | low) < 0:
            return cursor, ERR_BAD_HEX_CHARACTER
        out[cursor] = (high << 4) | low
        cursor += _U1
        pos += _U2
    if length & _U1:
        # A bad character is reported before the odd length, as _describe does.
        if _lookup(table, data[pairs_end]) < 0:
            return cursor, ERR_BAD_HEX_CHARACTER
        return cursor, ERR_ODD_HEX_LENGTH
    return cursor, ERR_OK


@numba.njit(**_HELPER_OPTIONS)
def _base64_quad(data, pos, table, out, cursor):
    # Four alphabet characters at pos -> three bytes at out[cursor]; False (nothing written) otherwise.
    a = _lookup(table, data[pos])
    b = _lookup(table, data[pos + _U1])
    c = _lookup(table, data[pos + _U2])
    d = _lookup(table, data[pos + _U3])
    if (a | b | c | d) < 0:
        return False
    bits = (a << 18) | (b << 12) | (c << 6) | d
    out[cursor] = (bits >> 16) & 255
    out[cursor + _U1] = (bits >> 8) & 255
    out[cursor + _U2] = bits & 255
    return True


@numba.njit(cache=True, nogil=True, _nrt=False)  # not inlined: a cold path that doubled compile time when inlined
def _base64_first_bad(data, start, end, table):
    # Classify the first non-alphabet character of data[start:end] (ERR_OK if none).
    pos = start
    while pos < end:
        value = _lookup(table, data[pos])
        if value == _PAD:
            return ERR_BAD_BASE64_PADDING
        if value < 0:
            return ERR_BAD_BASE64_CHARACTER
        pos += _U1
    return ERR_OK


@numba.njit(**_HELPER_OPTIONS)
def _base64_row(data, start, end, table, out, cursor):
    padding = _U0
    while end - padding > start and data[end - _U1 - padding] == _EQUALS:
        padding += _U1
    body_end = end - padding
    body = body_end - start
    rest = body & _U3
    quads_end = body_end - rest
    pos = start
    while pos < quads_end:
        if not _base64_quad(data, pos, table, out, cursor):
            return cursor, _base64_first_bad(data, pos, pos + _U4, table)
        cursor += _U3
        pos += _U4
    if rest:
        a = _lookup(table, data[pos])
        b = _lookup(table, data[pos + _U1]) if rest > 1 else 0
        c = _lookup(table, data[pos + _U2]) if rest > 2 else 0
        if (a | b | c) < 0:
            return cursor, _base64_first_bad(data, pos, body_end, table)
        if rest == 1:
            return cursor, ERR_BAD_BASE64_LENGTH
        out[cursor] = ((a << 2) | (b >> 4)) & 255
        cursor += _U1
        if rest == 3:
            out[cursor] = ((b << 4) | (c >> 2)) & 255
            cursor += _U1
    if padding > 2 or (padding > 0 and ((body + padding) & _U3) != 0):
        return cursor, ERR_BAD_BASE64_PADDING
    return cursor, ERR_OK


@numba.njit(**_HELPER_OPTIONS)
def _raw_row(data, start, end, table, out, cursor):
    pos = start
    while pos < end:
        out[cursor] = data[pos]
        cursor += _U1
        pos += _U1
    return cursor, ERR_OK


def _decode_row(data, start, end, table, out, cursor):
    """Decode one row; only callable from a kernel, where the table's dtype picks the encoding."""
    raise NotImplementedError("_decode_row runs inside numba kernels only")


@overload(_decode_row, inline="always")
def _decode_row_for_table(data, start, end, table, out, cursor):
    if table.dtype == numba.from_dtype(np.dtype(_HEX_TABLE_DTYPE)):
        return lambda data, start, end, table, out, cursor: _hex_row(data, start, end, table, out, cursor)
    if table.dtype == numba.from_dtype(np.dtype(_BASE64_TABLE_DTYPE)):
        return lambda data, start, end, table, out, cursor: _base64_row(data, start, end, table, out, cursor)
    if table.dtype == numba.from_dtype(np.dtype(_RAW_TABLE_DTYPE)):
        return lambda data, start, end, table, out, cursor: _raw_row(data, start, end, table, out, cursor)
    return None


@numba.njit(**_HELPER_OPTIONS)
def _hex_prefix(data, pos, size, table, out, cursor):
    # Decode whole pairs from pos until one is not two hex digits (a NUL, the end, a bad character).
    while pos + _U1 < size:
        high = _lookup(table, data[pos])
        low = _lookup(table, data[pos + _U1])
        if (high | low) < 0:
            break
        out[cursor] = (high << 4) | low
        cursor += _U1
        pos += _U2
    return pos, cursor


@numba.njit(**_HELPER_OPTIONS)
def _base64_prefix(data, pos, size, table, out, cursor):
    # Decode whole groups of four from pos until one is not four alphabet characters.
    while pos + _U3 < size:
        if not _base64_quad(data, pos, table, out, cursor):
            break
        cursor += _U3
        pos += _U4
    return pos, cursor


def _decode_prefix(data, pos, size, table, out, cursor):
    """Decode the clean leading groups of a row whose end is not known yet; kernels only."""
    raise NotImplementedError("_decode_prefix runs inside numba kernels only")


@overload(_decode_prefix, inline="always")
def _decode_prefix_for_table(data, pos, size, table, out, cursor):
    if table.dtype == numba.from_dtype(np.dtype(_HEX_TABLE_DTYPE)):
        return lambda data, pos, size, table, out, cursor: _hex_prefix(data, pos, size, table, out, cursor)
    if table.dtype == numba.from_dtype(np.dtype(_BASE64_TABLE_DTYPE)):
        return lambda data, pos, size, table, out, cursor: _base64_prefix(data, pos, size, table, out, cursor)
    return lambda data, pos, size, table, out, cursor: (pos, cursor)


@numba.njit(**_KERNEL_OPTIONS)
def _decode_arrow_rows(
    offsets, data, validity, first_row, n_rows, table, out, out_offsets, out_error, out_first_row, cursor
):
    """Decode rows first_row.. of one Arrow (large_)string/binary array; returns (cursor, bad rows)."""
    has_validity = validity.size > 0
    n_bad = 0
    row = np.uint64(first_row)
    out_row = np.uint64(out_first_row)
    position = np.uint64(cursor)
    for _ in range(n_rows):
        out_offsets[out_row] = position
        if has_validity and ((validity[row >> _U3] >> (row & _U7)) & 1) == 0:
            out_error[out_row] = ERR_MISSING
            n_bad += 1
        else:
            after, code = _decode_row(
                data, np.uint64(offsets[row]), np.uint64(offsets[row + _U1]), table, out, position
            )
            out_error[out_row] = code
            if code == ERR_OK:
                position = after
            else:
                n_bad += 1
        row += _U1
        out_row += _U1
    out_offsets[out_row] = position
    return np.int64(position), n_bad


@numba.njit(**_KERNEL_OPTIONS)
def _decode_joined_rows(data, n_rows, table, out, out_offsets, out_error, out_first_row, cursor):
    """Decode rows joined by NUL bytes; returns (cursor, bad rows), or (-1, 0) if the NUL count is not n_rows - 1."""
    size = np.uint64(data.size)
    pos = _U0
    position = np.uint64(cursor)
    row = np.uint64(out_first_row)
    n_bad = 0
    for i in range(n_rows):
        # Decode the row's whole groups while looking for its end (a NUL is never
        # a digit), then let the row decoder finish and judge the rest: the groups
        # read are whole, so its length and padding checks come out the same.
        tail, tail_cursor = _decode_prefix(data, pos, size, table, out, position)
        pos = tail
        while pos < size and data[pos] != 0:
            pos += _U1
        end = pos
        if i < n_rows - 1:
            if pos >= size:
                return np.int64(-1), 0
            pos += _U1
        out_offsets[row] = position
        after, code = _decode_row(data, tail, end, table, out, tail_cursor)
        out_error[row] = code
        if code == ERR_OK:
            position = after
        else:
            n_bad += 1
        row += _U1
    # A payload that itself held a NUL leaves bytes unread: the split was wrong.
    if pos != size:
        return np.int64(-1), 0
    out_offsets[row] = position
    return np.int64(position), n_bad


@numba.njit(**_KERNEL_OPTIONS)
def _decode_fixed_rows(data, width, n_rows, table, out, out_offsets, out_error):
    """Decode a numpy 'S'/'U' array seen as flat code units, `width` per row, trailing NULs stripped."""
    row_width = np.uint64(width)
    position = _U0
    row = _U0
    n_bad = 0
    for _ in range(n_rows):
        start = row * row_width
        end = start + row_width
        while end > start and data[end - _U1] == 0:
            end -= _U1
        out_offsets[row] = position
        after, code = _decode_row(data, start, end, table, out, position)
        out_error[row] = code
        if code == ERR_OK:
            position = after
        else:
            n_bad += 1
        row += _U1
    out_offsets[row] = position
    return np.int64(position), n_bad


# --------------------------------------------------------------------------- result

# on_rows(data, offsets, error, first, count): rows first .. first + count are converted.
RowsCallback = Callable[[np.ndarray, np.ndarray, np.ndarray, int, int], None]


@dataclass(frozen=True, eq=False)
class PayloadBuffer:
    """Decoded payloads in the Arrow binary layout, with a per-row error code."""

    data: np.ndarray  # uint8, all payload bytes back to back
    offsets: np.ndarray  # int64, n + 1
    error: np.ndarray  # uint8, n; ERR_OK or an ERR_* code (the row's bytes are then empty)
    # What the rows were decoded from, kept only when some row has a text error so
    # its message can be rendered; row access gives str, bytes, None or the odd item.
    _source: Any = field(default=None, repr=False)
    _encoding: str = field(default="hex", repr=False)

    def __len__(self) -> int:
        """Number of rows."""
        return len(self.error)

    def error_message(self, row: int) -> str | None:
        """The reason row `row` failed, with position and character where relevant; None if it decoded."""
        code = int(self.error[row])
        if code == ERR_OK:
            return None
        if code == ERR_MISSING:
            return ERROR_REASONS[ERR_MISSING]
        item = _source_item(self._source, row) if self._source is not None else None
        if code == ERR_WRONG_TYPE:
            wanted = "bytes" if self._encoding == "raw" else "str or bytes"
            return f"payload has the wrong type: {type(item).__name__}, expected {wanted}"
        if item is None:
            return ERROR_REASONS.get(code, f"error code {code}")
        return _describe(code, item, self._encoding)

    def error_messages(self) -> list[str | None]:
        """error_message for every row (strings are built for bad rows only)."""
        messages: list[str | None] = [None] * len(self.error)
        for row in np.flatnonzero(self.error).tolist():
            messages[row] = self.error_message(row)
        return messages

    def to_arrow(self) -> pa.BinaryArray:
        """An Arrow binary array sharing `data` (large_binary past 2 GiB); null where a row has an error."""
        n = len(self.error)
        n_bad = int(np.count_nonzero(self.error))
        validity = None
        if n_bad:
            validity = pa.py_buffer(np.packbits(self.error == ERR_OK, bitorder="little"))
        data = pa.py_buffer(self.data)
        if int(self.offsets[-1]) <= np.iinfo(np.int32).max:
            offsets = pa.py_buffer(self.offsets.astype(np.int32))
            return pa.Array.from_buffers(pa.binary(), n, [validity, offsets, data], null_count=n_bad)
        offsets = pa.py_buffer(self.offsets)
        return pa.Array.from_buffers(pa.large_binary(), n, [validity, offsets, data], null_count=n_bad)


def _source_item(source: Any, row: int) -> Any:
    if isinstance(source, (pa.Array, pa.ChunkedArray)):
        return source[row].as_py()
    item = source[row]
    if isinstance(item, np.generic):
        return item.item()
    return item


def _as_text(item: Any) -> str | bytes:
    if isinstance(item, str):
        return item
    raw = bytes(item)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw  # positions are then byte positions


def _show(text: str | bytes, position: int) -> str:
    char = text[position]
    if isinstance(char, int):  # bytes that are not UTF-8: ASCII as a character, the rest as a byte
        return repr(chr(char)) if char < 128 else f"byte 0x{char:02x}"
    return repr(char)


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_BASE64_DIGITS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_")


def _characters(count: int) -> str:
    return f"{count} character" if count == 1 else f"{count} characters"


def _describe(code: int, item: Any, encoding: str) -> str:
    """Render the message of one bad row by re-scanning it, in the kernels' order of checks."""
    text = _as_text(item)
    is_bytes = isinstance(text, bytes)
    hex_digits = {ord(c) for c in _HEX_DIGITS} if is_bytes else _HEX_DIGITS
    base64_digits = {ord(c) for c in _BASE64_DIGITS} if is_bytes else _BASE64_DIGITS
    equals = _EQUALS if is_bytes else "="
    if code in (ERR_BAD_HEX_CHARACTER, ERR_ODD_HEX_LENGTH):
        for position, char in enumerate(text):
            if char not in hex_digits:
                return f"bad hex character {_show(text, position)} at position {position}"
        return f"odd hex length ({_characters(len(text))})"
    if code in (ERR_BAD_BASE64_CHARACTER, ERR_BAD_BASE64_LENGTH, ERR_BAD_BASE64_PADDING):
        padding = len(text) - len(text.rstrip(b"=" if is_bytes else "="))
        body = len(text) - padding
        for position in range(body):
            char = text[position]
            if char == equals:
                return f"bad base64 padding: '=' at position {position}"
            if char not in base64_digits:
                return f"bad base64 character {_show(text, position)} at position {position}"
        if body % 4 == 1:
            return f"bad base64 length ({_characters(body)} without padding)"
        if padding > 2:
            return f"bad base64 padding: {padding} '=' at the end, at most 2 allowed"
        return f"bad base64 padding: {_characters(len(text))} with padding, not a multiple of 4"
    return ERROR_REASONS.get(code, f"error code {code}")


# --------------------------------------------------------------------------- entry point


def to_buffer(payloads: Any, encoding: str = "hex", *, on_rows: RowsCallback | None = None) -> PayloadBuffer:
    """Decode a batch of payloads into one byte buffer plus int64 offsets; bad rows get an error code.

    `on_rows(data, offsets, error, first, count)`, if given, is called as soon
    as rows ``first .. first + count`` are converted, from a worker thread while
    the next rows' text is still being gathered; a consumer (the class kernel)
    can so overlap with the conversion. It is called only on the chunked path
    of a long list of text, in row order, never twice for a row; the caller
    must check which rows it saw (other inputs never call it).
    """
    if encoding not in _ENCODING_IDS:
        raise ValueError(f"unknown payload encoding {encoding!r}; use one of {', '.join(map(repr, ENCODINGS))}")
    encoding_id = _ENCODING_IDS[encoding]

    if isinstance(payloads, (str, bytes, bytearray, memoryview)):
        payloads = [payloads]
    if isinstance(payloads, (pa.Array, pa.ChunkedArray)):
        return _from_arrow(payloads, encoding, encoding_id, source=None)
    if isinstance(payloads, np.ndarray):
        return _from_numpy(payloads, encoding, encoding_id)
    if not isinstance(payloads, (list, tuple)):
        payloads = list(payloads)
    return _from_list(payloads, encoding, encoding_id, on_rows)


def _text_not_raw(encoding: str) -> ValueError:
    return ValueError(
        "encoding 'raw' takes bytes, but the payloads are text (str); "
        "pass bytes, or name the text's encoding ('hex' or 'base64')"
    )


def _from_list(items: list | tuple, encoding: str, encoding_id: int, on_rows=None) -> PayloadBuffer:
    if encoding_id != _RAW and items:
        result = _from_joined_text(items, encoding, encoding_id, on_rows)
        if result is not None:
            return result
    try:
        array = pa.array(items, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        array = None
    if array is not None and _is_text_type(array.type):
        if encoding_id == _RAW and (pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)):
            # pa.array quietly UTF-8 encodes str items mixed into bytes; raw must not.
            if str in set(map(type, items)):
                raise _text_not_raw(encoding)
        return _from_arrow(array, encoding, encoding_id, source=lambda: list(items))
    return _from_mixed_list(items, encoding, encoding_id)


def _from_mixed_list(items: list | tuple, encoding: str, encoding_id: int) -> PayloadBuffer:
    # Slow path, only for lists pyarrow cannot type: items that are neither text nor
    # bytes become ERR_WRONG_TYPE rows, the rest decode as usual.
    clean: list[bytes | None] = []
    not_text: list[int] = []
    for row, item in enumerate(items):
        if item is None or (isinstance(item, float) and math.isnan(item)):
            clean.append(None)
        elif isinstance(item, str):
            if encoding_id == _RAW:
                raise _text_not_raw(encoding)
            clean.append(item.encode("utf-8", errors="surrogatepass"))
        elif isinstance(item, (bytes, bytearray, memoryview, np.bytes_)):
            clean.append(bytes(item))
        else:
            clean.append(None)
            not_text.append(row)
    result = _from_arrow(pa.array(clean, pa.large_binary()), encoding, encoding_id, source=lambda: list(items))
    if not not_text:
        return result
    error = result.error.copy()
    error[not_text] = ERR_WRONG_TYPE
    return PayloadBuffer(result.data, result.offsets, error, _source=list(items), _encoding=encoding)


def _is_text_type(type_: pa.DataType) -> bool:
    t = pa.types
    return (
        t.is_string(type_)
        or t.is_large_string(type_)
        or t.is_binary(type_)
        or t.is_large_binary(type_)
        or t.is_null(type_)
    )


def _is_str_type(type_: pa.DataType) -> bool:
    t = pa.types
    return t.is_string(type_) or t.is_large_string(type_) or t.is_string_view(type_)


def _normalize_arrow(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    # Bring the types the kernels do not read directly to one they do.
    type_ = array.type
    if pa.types.is_dictionary(type_):
        array = array.cast(type_.value_type)
        type_ = array.type
    if pa.types.is_string_view(type_):
        array = array.cast(pa.large_string())
    elif pa.types.is_binary_view(type_):
        array = array.cast(pa.large_binary())
    if not _is_text_type(array.type):
        raise TypeError(f"payloads must be a string or binary Arrow array, not {array.type}")
    return array


def _buffer_as(buffer: pa.Buffer | None, dtype: type) -> np.ndarray:
    if buffer is None or buffer.size == 0:
        return _EMPTY_BYTES if dtype is np.uint8 else _readonly(np.zeros(0, dtype=dtype))
    return _readonly(np.frombuffer(buffer, dtype=dtype))


def _from_arrow(array: pa.Array | pa.ChunkedArray, encoding: str, encoding_id: int, source: Any) -> PayloadBuffer:
    if pa.types.is_dictionary(array.type):
        value_type = array.type.value_type
    else:
        value_type = array.type
    if encoding_id == _RAW and _is_str_type(value_type):
        raise _text_not_raw(encoding)
    array = _normalize_arrow(array)
    chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    n = len(array)

    # Output size upper bound from the input text actually covered by the rows.
    prepared = []
    total_text = 0
    for chunk in chunks:
        if pa.types.is_null(chunk.type) or len(chunk) == 0:
            prepared.append((chunk, None, None, None))
            continue
        is_large = pa.types.is_large_string(chunk.type) or pa.types.is_large_binary(chunk.type)
        offset_type = np.int64 if is_large else np.int32
        validity_buffer, offsets_buffer, data_buffer = chunk.buffers()[:3]
        offsets = _buffer_as(offsets_buffer, offset_type)
        validity = _buffer_as(validity_buffer, np.uint8) if chunk.null_count else _EMPTY_BYTES
        data = _buffer_as(data_buffer, np.uint8)
        total_text += int(offsets[chunk.offset + len(chunk)]) - int(offsets[chunk.offset])
        prepared.append((chunk, offsets, validity, data))

    out = np.empty(_output_bound(encoding_id, total_text), dtype=np.uint8)
    out_offsets = np.empty(n + 1, dtype=np.int64)
    out_error = np.empty(n, dtype=np.uint8)
    out_offsets[0] = 0
    table = _TABLES[encoding_id]
    cursor = 0
    n_bad = 0
    row = 0
    for chunk, offsets, validity, data in prepared:
        length = len(chunk)
        if offsets is None:  # a null-typed or empty chunk: every row is missing
            out_offsets[row : row + length + 1] = cursor
            out_error[row : row + length] = ERR_MISSING
            n_bad += length
        else:
            cursor, chunk_bad = _decode_arrow_rows(
                offsets, data, validity, chunk.offset, length, table, out, out_offsets, out_error, row, cursor
            )
            n_bad += chunk_bad
        row += length
    return _finish(out, cursor, out_offsets, out_error, n_bad, encoding, source if source is not None else array)


# Rows joined per step of the list fast path. The joined text of a step (~300 KB
# for 18-character payloads) stays in L2 and its memory is reused step after
# step; joining the whole batch at once wrote two fresh copies of all its text,
# and first touch of fresh memory costs more than the decoding (70 -> 45 ns
# per payload here).
_JOIN_ROWS = 1 << 14


def _join_ascii(items: list | tuple) -> bytes | None:
    """The items joined by NUL as ASCII bytes, or None if they are not all ASCII str or all bytes."""
    try:
        text = "\x00".join(items)
    except TypeError:
        try:
            return b"\x00".join(items)
        except TypeError:
            return None
    return text.encode("ascii") if text.isascii() else None


def _from_joined_text(items: list | tuple, encoding: str, encoding_id: int, on_rows=None) -> PayloadBuffer | None:
    """Fast path for the common case, a list of ASCII str (or of bytes).

    Joining with NUL and encoding are C loops that beat pa.array, and the kernel
    splits on NUL as it decodes. Returns None (use the general path) for anything
    else: None or other items, non-ASCII text, a NUL inside a payload.

    The join holds the GIL, the kernel does not: with more than one step, the
    kernel (and `on_rows`) of step k runs in a worker thread while this thread
    joins step k + 1, so two cores share the work.
    """
    n = len(items)
    table = _TABLES[encoding_id]
    out_offsets = np.empty(n + 1, dtype=np.int64)
    out_error = np.empty(n, dtype=np.uint8)
    state = {"out": _EMPTY_BYTES, "cursor": 0, "bad": 0, "failed": False}

    def convert(data: np.ndarray, count: int, first: int) -> None:
        if state["failed"]:
            return
        cursor, chunk_bad = _decode_joined_rows(
            data, count, table, state["out"], out_offsets, out_error, first, state["cursor"]
        )
        if cursor < 0:
            state["failed"] = True
            return
        state["cursor"] = cursor
        state["bad"] += chunk_bad
        if on_rows is not None:
            on_rows(state["out"], out_offsets, out_error, first, count)

    pool = ThreadPoolExecutor(max_workers=1) if n > _JOIN_ROWS else None
    pending: list = []
    try:
        for first in range(0, n, _JOIN_ROWS):
            chunk = items[first : first + _JOIN_ROWS]
            joined = _join_ascii(chunk)
            if joined is None:
                return None
            if first == 0:
                # Size for the whole batch from the first step's text, grown below if later rows are longer.
                state["out"] = np.empty(_output_bound(encoding_id, len(joined) * n // len(chunk)), dtype=np.uint8)
            else:
                # Text seen so far bounds the output exactly; grow only with no kernel running.
                seen = sum(p[1] for p in pending) + len(joined)
                if _output_bound(encoding_id, seen) + state["cursor"] > len(state["out"]):
                    _drain(pending)
                    needed = state["cursor"] + _output_bound(encoding_id, len(joined))
                    if needed > len(state["out"]):
                        grown = np.empty(max(needed, len(state["out"]) * 3 // 2), dtype=np.uint8)
                        grown[: state["cursor"]] = state["out"][: state["cursor"]]
                        state["out"] = grown
            data = _readonly(np.frombuffer(joined, dtype=np.uint8))
            if pool is None:
                convert(data, len(chunk), first)
            else:
                pending.append((pool.submit(convert, data, len(chunk), first), len(joined)))
                if len(pending) > 2:  # bound the text held in flight
                    pending.pop(0)[0].result()
        _drain(pending)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    if state["failed"]:
        return None
    # Copy the list's references (not its strings) so later edits to it cannot change messages.
    return _finish(state["out"], state["cursor"], out_offsets, out_error, state["bad"], encoding, lambda: list(items))


def _drain(pending: list) -> None:
    while pending:
        pending.pop(0)[0].result()


def _from_numpy(array: np.ndarray, encoding: str, encoding_id: int) -> PayloadBuffer:
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ValueError(f"payloads must be a 1-dimensional array, not shape {array.shape}")
    kind = array.dtype.kind
    if kind == "O":
        return _from_list(array.tolist(), encoding, encoding_id)
    if kind not in ("U", "S"):
        raise TypeError(f"payloads must be a numpy array of str, bytes or objects, not dtype {array.dtype}")
    if kind == "U" and encoding_id == _RAW:
        raise _text_not_raw(encoding)
    n = len(array)
    if kind == "S" and encoding_id == _RAW:
        # Every row is the whole fixed-width item: a NUL at the end is payload, not padding.
        width = array.dtype.itemsize
        data = np.ascontiguousarray(array).view(np.uint8).reshape(-1).copy()
        offsets = np.arange(n + 1, dtype=np.int64) * width
        return PayloadBuffer(data, offsets, np.zeros(n, np.uint8), _encoding=encoding)
    if not array.dtype.isnative:  # the kernel reads code points in native byte order
        array = array.astype(array.dtype.newbyteorder("="))
    array = np.ascontiguousarray(array)
    unit = np.uint32 if kind == "U" else np.uint8
    width = array.dtype.itemsize // np.dtype(unit).itemsize
    if width == 0:  # dtype 'U0'/'S0': every row is the empty string
        flat = _readonly(np.zeros(0, dtype=unit))
    else:
        flat = _readonly(array.view(unit).reshape(-1))  # a view: the caller's array stays writeable
    out = np.empty(_output_bound(encoding_id, n * width), dtype=np.uint8)
    out_offsets = np.empty(n + 1, dtype=np.int64)
    out_error = np.empty(n, dtype=np.uint8)
    cursor, n_bad = _decode_fixed_rows(flat, width, n, _TABLES[encoding_id], out, out_offsets, out_error)
    return _finish(out, cursor, out_offsets, out_error, n_bad, encoding, lambda: array.copy())


def _output_bound(encoding_id: int, text_length: int) -> int:
    if encoding_id == _HEX:
        return text_length // 2
    if encoding_id == _BASE64:
        return text_length * 3 // 4
    return text_length


def _finish(out, cursor, out_offsets, out_error, n_bad, encoding, source) -> PayloadBuffer:
    # Keep the input only if some row needs it to render its message; `source`
    # may be a thunk so the common all-good batch never pays for a copy.
    keep = None
    if n_bad and np.any((out_error != ERR_OK) & (out_error != ERR_MISSING)):
        keep = source() if callable(source) else source
    # out may be longer than cursor (errors, base64 padding): the view keeps it alive.
    return PayloadBuffer(out[:cursor], out_offsets, out_error, _source=keep, _encoding=encoding)

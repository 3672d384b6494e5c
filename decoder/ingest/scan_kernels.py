"""numba kernels of the schema-directed JSON Lines scanner (``scan`` is their Python face).

One pass per chunk of lines (scan_lines). Every line is parsed completely as
JSON (structure, strings with escapes and UTF-8, numbers, literals, depth
1024 as orjson) and only the values at declared paths are kept, as columns.

Design (each choice was measured against the alternative named):

* The plan (scan.Plan) is compiled into small numpy tables: one *node* per
  declared key per *scope* (the object it is a key of), a hash table keyed
  by (scope, key length, first and last 8 key bytes), and *slots* (string,
  float64, int64 columns) per node. A key is matched with two loads, one
  multiply and one probe; no Python object is built.
* Output is columnar and field-major (``vt[node, row]`` etc.): every column
  is contiguous and becomes an Arrow buffer without a copy. ``vt`` holds the
  JSON type seen per node and row (0: absent), which gives validity,
  booleans, wrong-type warnings and the records' shape markers.
* Strings are copied (and unescaped) into a per-slot arena while they are in
  cache: the Arrow data buffer is the arena itself, offsets come from one
  sequential pass (string_offsets). Copying them afterwards from the input
  (gather_strings) cost 10x more: one cache miss per string and column.
* Records: a top-level object is a record (table 0); a top-level array's
  items and the items of a ``records`` path (Firefly's ``packets`` envelope)
  are records too, each knowing its line, item index and envelope record.
  Arrays of objects declared as tables give child rows with their parent
  row. A bad line's rows are rolled back: a line is all in, or reported
  once with an error code and a byte offset.
* Numbers: Clinger's fast path, then fast_float's Eisel-Lemire variant,
  exact without fallback; only a number of more than 19 significant digits
  next to a rounding boundary becomes a fixup for Python's float(). Doubles
  are computed only for declared float fields. A number beyond the range of
  a double is infinity there, not an error: JSON allows it, and the
  normalizer drops it with a row warning (orjson rejects such a line).
* Helpers read the input through address intrinsics (_ld1/_ld8), never as
  arrays: numba reference-counts arrays passed to functions and could not
  prune those counts in a loop this size (they were 28% of the time).
* Input contract: the byte at every line end is a newline (or padding
  newline) and 16 bytes past the data are readable (``scan.pad_buffer``,
  ``scan.ScanBuffer``). No bounds checks are then needed: every scan stops
  at the newline, which no JSON token accepts. The same fact lets
  scan_lines find the lines itself: a line ends at the byte where its
  parse stopped (a valid one) or at the next newline from there (a bad one).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.extending import intrinsic
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

# --------------------------------------------------------------------------- codes

# JSON type seen, per node and row (vt). 0: key absent.
T_ABSENT, T_NULL, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_BIGINT, T_STR, T_STR_ESC, T_OBJECT, T_ARRAY = range(11)
TYPE_NAMES = [
    "absent",
    "null",
    "false",
    "true",
    "integer",
    "number",
    "integer (out of int64 range)",
    "string",
    "string",
    "object",
    "array",
]

# Line errors (line_err). Byte offset of the error in line_pos.
(
    E_OK,
    E_END,
    E_VALUE,
    E_COLON,
    E_KEY,
    E_OBJ_SEP,
    E_ARR_SEP,
    E_TRAILING,
    E_LITERAL,
    E_NUMBER,
    E_CONTROL,
    E_ESCAPE,
    E_UTF8,
    E_SURROGATE,
    E_DEPTH,
) = range(15)
E_CAPACITY = 255  # internal: outputs full, the caller grows them and resumes
ERROR_TEXT = {
    E_END: "line ends inside a JSON value (truncated line)",
    E_VALUE: "expected a JSON value",
    E_COLON: "expected ':' after an object key",
    E_KEY: "expected a string object key",
    E_OBJ_SEP: "expected ',' or '}' in an object",
    E_ARR_SEP: "expected ',' or ']' in an array",
    E_TRAILING: "more than one JSON value on the line",
    E_LITERAL: "invalid literal (expected true, false or null)",
    E_NUMBER: "invalid number",
    E_CONTROL: "control character in a string",
    E_ESCAPE: "invalid escape in a string",
    E_UTF8: "invalid UTF-8",
    E_SURROGATE: "unpaired UTF-16 surrogate in a \\u escape",
    E_DEPTH: "nesting deeper than 1024",
}

# Per-row warnings: (node, row, code, byte offset in the buffer).
W_TYPE, W_DUP, W_ITEM = 1, 2, 3
WARNING_TEXT = {
    W_TYPE: "wrong JSON type",
    W_DUP: "duplicate key (last value kept)",
    W_ITEM: "array item is not an object",
}

# Node kinds.
K_LEAF, K_OBJECT, K_ARRAY_OBJ, K_ARRAY_SCALAR, K_RECORDS, K_CHILD_OBJECT, K_ROOT = range(7)
# Array frame actions.
A_SKIP, A_CHILD_OBJ, A_CHILD_SCALAR, A_RECORD, A_FIELD = range(5)
# Columns of the node table (int64 [n_nodes, N_ROWS]: a node's fields in two cache lines, which
# the scan reads one after another for every value; paired runs: 2-3% less kernel time than
# field-major).
N_KIND, N_TABLE, N_CSCOPE, N_CTABLE, N_ITEM, N_ACCEPT, N_SPAN, N_FLOAT, N_INT, N_RAW, N_KSTART, N_KLEN = range(12)
N_ROWS = 12

MAX_DEPTH = 1024  # orjson's limit: deeper is an error there too
KEY_MAX = 64  # longest declared key (escaped keys longer than this match nothing)

_U = np.uint64
_ONES = _U(0x0101010101010101)
_HIGH = _U(0x8080808080808080)
_QUOTES = _U(0x2222222222222222)
_BSLASHES = _U(0x5C5C5C5C5C5C5C5C)
_SPACES = _U(0x2020202020202020)
_NEWLINES = _U(0x0A0A0A0A0A0A0A0A)
_M32 = _U(0xFFFFFFFF)
_TWO53 = _U(1 << 53)
_TWO63 = _U(1 << 63)
_H1, _H2, _H3, _H4 = _U(0x9E3779B97F4A7C15), _U(0xC2B2AE3D27D4EB4F), _U(0x165667B19E3779F9), _U(0xD6E8FEB86659FD93)
_MASK64 = (1 << 64) - 1
_POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)  # exact doubles
_Q_MIN, _Q_MAX = -342, 308


def _pow5_table():
    """128-bit mantissas of 5**q as fast_float builds them: truncated for q >= 0,
    rounded up for q < 0 (Mushtak and Lemire, "Fast Number Parsing Without
    Fallback", 2023: with this table the product always decides the rounding)."""
    hi = np.empty(_Q_MAX - _Q_MIN + 1, np.uint64)
    lo = np.empty_like(hi)
    for i, q in enumerate(range(_Q_MIN, _Q_MAX + 1)):
        if q < 0:
            p5 = 5**-q
            z = (p5 - 1).bit_length()  # smallest z with 2**z >= p5
            if q >= -27:
                c = (1 << (z + 127)) // p5 + 1
            else:
                c = (1 << (2 * z + 128)) // p5 + 1
                c >>= max(c.bit_length() - 128, 0)
        else:
            c = 5**q  # scaled into [2**127, 2**128) by shifting, as fast_float does
            c = c << (128 - c.bit_length()) if c.bit_length() <= 128 else c >> (c.bit_length() - 128)
        hi[i], lo[i] = c >> 64, c & _MASK64
    return hi, lo


_PW_HI, _PW_LO = _pow5_table()


# --------------------------------------------------------------------------- small kernels


# Helpers take addresses (int64), never arrays: numba reference-counts an
# array passed to a function, and in a loop this size it cannot prune those
# counts (measured: NRT_incref/decref were 28% of the scan). So the scanner
# reads its input through these intrinsics and only the kernel body indexes
# its output arrays.


@intrinsic
def _addr(typingctx, arr):
    """Address of an array's first element, as int64."""
    sig = types.int64(arr)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.ptrtoint(ary.data, ir.IntType(64))

    return sig, codegen


@intrinsic
def _ld8(typingctx, addr):
    """Unaligned little-endian 8-byte load (no bounds check)."""
    sig = types.uint64(addr)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.load(ptr, align=1)

    return sig, codegen


@intrinsic
def _ld1(typingctx, addr):
    """Byte at an address, as int64."""
    sig = types.int64(addr)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(8).as_pointer())
        return builder.zext(builder.load(ptr), ir.IntType(64))

    return sig, codegen


@intrinsic
def _st1(typingctx, addr, value):
    """Store the low byte of value at an address."""
    sig = types.void(addr, value)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(8).as_pointer())
        builder.store(builder.trunc(args[1], ir.IntType(8)), ptr)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _alive(typingctx, arr):
    """Nothing, but a use of ``arr``: numba frees an array right after its last use, so one
    read and written only through its address (``_addr``) needs this where that use ends."""
    sig = types.void(arr)

    def codegen(context, builder, signature, args):
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _f64_from_bits(typingctx, bits):
    sig = types.float64(bits)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@intrinsic
def _st8(typingctx, addr, value):
    """Unaligned 8-byte store."""
    sig = types.void(addr, value)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        builder.store(args[1], ptr, align=1)
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always")
def _mul128(a, b):
    """(high, low) 64-bit halves of the 128-bit product a * b."""
    a_lo = a & _M32
    a_hi = a >> _U(32)
    b_lo = b & _M32
    b_hi = b >> _U(32)
    p0 = a_lo * b_lo
    p1 = a_lo * b_hi
    p2 = a_hi * b_lo
    p3 = a_hi * b_hi
    mid = (p0 >> _U(32)) + (p1 & _M32) + (p2 & _M32)
    lo = (p0 & _M32) | (mid << _U(32))
    hi = p3 + (p1 >> _U(32)) + (p2 >> _U(32)) + (mid >> _U(32))
    return hi, lo


@njit(cache=True)
def _compute_float(w, q, neg):
    """w * 10**q correctly rounded (w > 0, -342 <= q <= 308): (value, status);
    status 0 ok, 2 overflow (infinity). fast_float's compute_float: no
    fallback needed (see _pow5_table)."""
    lz = int(leading_zeros(w))
    w = w << _U(lz)
    idx = q - _Q_MIN
    hi, lo = _mul128(w, _PW_HI[idx])
    if (hi & _U(0x1FF)) == _U(0x1FF):  # the second word can carry into the first
        hi2, lo2 = _mul128(w, _PW_LO[idx])
        lo += hi2
        if hi2 > lo:
            hi += _U(1)
    upperbit = int(hi >> _U(63))
    shift = upperbit + 64 - 52 - 3
    mantissa = hi >> _U(shift)
    power2 = (((152170 + 65536) * q) >> 16) + 63 + upperbit - lz + 1023
    if power2 <= 0:  # subnormal (or zero)
        if -power2 + 1 >= 64:
            return (-0.0 if neg else 0.0), 0
        mantissa >>= _U(-power2 + 1)
        mantissa += mantissa & _U(1)
        mantissa >>= _U(1)
        power2 = 0 if mantissa < (_U(1) << _U(52)) else 1
        bits = (_U(power2) << _U(52)) | (mantissa & _U(0x000FFFFFFFFFFFFF))
        if neg:
            bits |= _U(0x8000000000000000)
        return _f64_from_bits(bits), 0
    if lo <= _U(1) and -4 <= q <= 23 and (mantissa & _U(3)) == _U(1):
        if (mantissa << _U(shift)) == hi:  # exactly between two doubles: round to even
            mantissa &= ~_U(1)
    mantissa += mantissa & _U(1)
    mantissa >>= _U(1)
    if mantissa >= (_U(2) << _U(52)):
        mantissa = _U(1) << _U(52)
        power2 += 1
    mantissa &= ~(_U(1) << _U(52))
    if power2 >= 0x7FF:
        return (-np.inf if neg else np.inf), 2
    bits = (_U(power2) << _U(52)) | mantissa
    if neg:
        bits |= _U(0x8000000000000000)
    return _f64_from_bits(bits), 0


@njit(inline="always")  # a call per number was 3-5% of a scan (paired runs of the kernel)
def _to_double(man, exp10, neg, trunc):
    """Decimal man * 10**exp10 (trunc: nonzero digits were dropped after the
    19th) -> (double, status): 0 ok, 1 undecided (Python parses the text
    again), 2 infinity (orjson rejects it)."""
    if man == _U(0):
        return (-0.0 if neg else 0.0), 0
    if not trunc and man <= _TWO53 and -22 <= exp10 <= 22:  # Clinger: both operands exact
        v = np.float64(man)
        v = v * _POW10[exp10] if exp10 >= 0 else v / _POW10[-exp10]
        return (-v if neg else v), 0
    if exp10 < _Q_MIN:  # below half the smallest subnormal even with 19 digits
        return (-0.0 if neg else 0.0), 0
    if exp10 > _Q_MAX:
        return (-np.inf if neg else np.inf), 2
    v, st = _compute_float(man, exp10, neg)
    if st == 0 and trunc:  # the dropped digits must not change the rounding
        v2, st2 = _compute_float(man + _U(1), exp10, neg)
        if st2 != 0 or v2 != v:
            return v, 1  # more than 19 digits near a rounding boundary: Python finishes it
    return v, st


@njit(inline="always")
def _utf8_len(p):
    """Length of the valid UTF-8 sequence at address p (first byte >= 0x80), or 0."""
    c = _ld1(p)
    if c < 0xC2:
        return 0
    b1 = _ld1(p + 1)
    if c < 0xE0:
        return 2 if 0x80 <= b1 <= 0xBF else 0
    if c < 0xF0:
        lo1 = 0xA0 if c == 0xE0 else 0x80
        hi1 = 0x9F if c == 0xED else 0xBF
        if not (lo1 <= b1 <= hi1):
            return 0
        return 3 if 0x80 <= _ld1(p + 2) <= 0xBF else 0
    if c < 0xF5:
        lo1 = 0x90 if c == 0xF0 else 0x80
        hi1 = 0x8F if c == 0xF4 else 0xBF
        if not (lo1 <= b1 <= hi1):
            return 0
        if not (0x80 <= _ld1(p + 2) <= 0xBF):
            return 0
        return 4 if 0x80 <= _ld1(p + 3) <= 0xBF else 0
    return 0


@njit(inline="always")
def _hex4(p):
    """Value of the 4 hex digits at address p, or -1."""
    v = 0
    for k in range(4):
        c = _ld1(p + k)
        if 48 <= c <= 57:
            d = c - 48
        elif 65 <= c <= 70:
            d = c - 55
        elif 97 <= c <= 102:
            d = c - 87
        else:
            return -1
        v = v * 16 + d
    return v


@njit(inline="always")
def _escape_len(p):
    """Length of the valid escape at address p (a backslash), or -error code."""
    c2 = _ld1(p + 1)
    if c2 == 117:  # \uXXXX: surrogates must pair, as orjson requires
        u = _hex4(p + 2)
        if u < 0:
            return -E_ESCAPE
        if 0xD800 <= u <= 0xDBFF:
            if _ld1(p + 6) != 92 or _ld1(p + 7) != 117:
                return -E_SURROGATE
            u2 = _hex4(p + 8)
            if u2 < 0:
                return -E_ESCAPE
            if not (0xDC00 <= u2 <= 0xDFFF):
                return -E_SURROGATE
            return 12
        if 0xDC00 <= u <= 0xDFFF:
            return -E_SURROGATE
        return 6
    if c2 == 34 or c2 == 92 or c2 == 47 or c2 == 98 or c2 == 102 or c2 == 110 or c2 == 114 or c2 == 116:
        return 2
    return -E_ESCAPE


@njit(inline="always")
def _scan_string(bp, pos):
    """pos: first byte after the opening quote. -> (position of the closing
    quote, 1 if escapes else 0), or (error position, -error code). Eight bytes
    per step until one is a quote, a backslash, a control byte or >= 0x80."""
    esc = 0
    while True:
        w = _ld8(bp + pos)
        q = w ^ _QUOTES
        b = w ^ _BSLASHES
        t = (((q - _ONES) & ~q) | ((b - _ONES) & ~b) | ((w - _SPACES) & ~w) | w) & _HIGH
        if t == _U(0):
            pos += 8
            continue
        pos += int(trailing_zeros(t)) >> 3
        c = _ld1(bp + pos)
        if c == 34:
            return pos, esc
        if c == 92:
            esc = 1
            n = _escape_len(bp + pos)
            if n < 0:
                return pos, n
            pos += n
        elif c < 32:
            return pos, -E_CONTROL
        else:
            n = _utf8_len(bp + pos)
            if n == 0:
                return pos, -E_UTF8
            pos += n


@njit(inline="always")
def _scan_number(bp, pos):
    """-> (end, error, mantissa (first 19 significant digits), exp10, negative,
    integer literal, nonzero digits dropped, significant digits kept)."""
    neg = False
    c = _ld1(bp + pos)
    if c == 45:
        neg = True
        pos += 1
        c = _ld1(bp + pos)
    man = _U(0)
    nd = 0
    exp = 0
    trunc = False
    if c == 48:
        pos += 1
        c = _ld1(bp + pos)
        if 48 <= c <= 57:
            return pos - 1, E_NUMBER, man, 0, neg, False, False, 0
    elif 49 <= c <= 57:
        while 48 <= c <= 57:
            if nd < 19:
                man = man * _U(10) + _U(c - 48)
                nd += 1
            else:
                exp += 1
                if c != 48:
                    trunc = True
            pos += 1
            c = _ld1(bp + pos)
    else:
        return pos, E_NUMBER, man, 0, neg, False, False, 0
    is_int = True
    if c == 46:
        is_int = False
        pos += 1
        c = _ld1(bp + pos)
        if not (48 <= c <= 57):
            return pos, E_NUMBER, man, 0, neg, False, False, 0
        while 48 <= c <= 57:
            if man == _U(0) and c == 48:
                exp -= 1
            elif nd < 19:
                man = man * _U(10) + _U(c - 48)
                nd += 1
                exp -= 1
            elif c != 48:
                trunc = True
            pos += 1
            c = _ld1(bp + pos)
    if c == 101 or c == 69:
        is_int = False
        pos += 1
        c = _ld1(bp + pos)
        eneg = False
        if c == 43 or c == 45:
            eneg = c == 45
            pos += 1
            c = _ld1(bp + pos)
        if not (48 <= c <= 57):
            return pos, E_NUMBER, man, 0, neg, False, False, 0
        ev = 0
        while 48 <= c <= 57:
            if ev < 100000:
                ev = ev * 10 + (c - 48)
            pos += 1
            c = _ld1(bp + pos)
        exp += -ev if eneg else ev
    return pos, 0, man, exp, neg, is_int, trunc, nd


@njit(inline="always")
def _key_hash(w0, w1, kl, scope):
    """One multiply: the table is small and a probe compares the words anyway."""
    return (w0 ^ (w1 >> _U(1)) ^ (_U(kl) << _U(56)) ^ (_U(scope) << _U(40))) * _H1


@njit(inline="always")
def _put_utf8(op, u):
    """Write code point u as UTF-8 at address op; -> bytes written."""
    if u < 0x80:
        _st1(op, u)
        return 1
    if u < 0x800:
        _st1(op, 0xC0 | (u >> 6))
        _st1(op + 1, 0x80 | (u & 0x3F))
        return 2
    if u < 0x10000:
        _st1(op, 0xE0 | (u >> 12))
        _st1(op + 1, 0x80 | ((u >> 6) & 0x3F))
        _st1(op + 2, 0x80 | (u & 0x3F))
        return 3
    _st1(op, 0xF0 | (u >> 18))
    _st1(op + 1, 0x80 | ((u >> 12) & 0x3F))
    _st1(op + 2, 0x80 | ((u >> 6) & 0x3F))
    _st1(op + 3, 0x80 | (u & 0x3F))
    return 4


@njit(cache=True)
def _unescape(sp, ep, op):
    """Copy the (validated) string body at addresses [sp, ep) to op, decoding
    escapes. -> bytes written (never more than ep - sp)."""
    o = op
    i = sp
    while i < ep:
        c = _ld1(i)
        if c != 92:
            _st1(o, c)
            o += 1
            i += 1
            continue
        c2 = _ld1(i + 1)
        if c2 == 117:
            u = _hex4(i + 2)
            i += 6
            if 0xD800 <= u <= 0xDBFF:
                u = 0x10000 + ((u - 0xD800) << 10) + (_hex4(i + 2) - 0xDC00)
                i += 6
            o += _put_utf8(o, u)
            continue
        if c2 == 98:
            c2 = 8
        elif c2 == 102:
            c2 = 12
        elif c2 == 110:
            c2 = 10
        elif c2 == 114:
            c2 = 13
        elif c2 == 116:
            c2 = 9
        _st1(o, c2)  # '"', '\\', '/' stand for themselves
        o += 1
        i += 2
    return o - op


# --------------------------------------------------------------------------- the scanner

# Frame rows of the explicit parse stack.
_F_OBJ, _F_SCOPE, _F_ROW, _F_REC, _F_ACT, _F_ANODE, _F_PROW, _F_CNT, _F_RAW, _F_RAWPOS, _F_RAWROW = range(11)
_S_VALUE, _S_AFTER, _S_KEY, _S_KEY_FIRST, _S_ITEM_FIRST = range(5)


@njit(inline="always")
def _next_newline(bp, pos):
    """Position of the first newline at or after pos (the padding holds one). Eight bytes at a
    time: a borrow may flag a byte above a newline, never below, so the lowest flag is one."""
    while True:
        x = _ld8(bp + pos) ^ _NEWLINES
        t = (x - _ONES) & ~x & _HIGH
        if t != _U(0):
            return pos + (int(trailing_zeros(t)) >> 3)
        pos += 8


@njit(nogil=True, cache=True)
def scan_lines(
    buf,
    starts,
    ends,
    lo,
    hi,
    nbytes,
    pos0,
    nodes,
    node_mask,
    ht,
    htw,
    hbits,
    keypool,
    vt,
    sp0,
    sp1,
    fl,
    iv,
    rparent,
    ritem,
    rline,
    rmask,
    counts,
    lerr,
    lpos,
    ltype,
    warn,
    fix,
    arena,
    abase,
    alimit,
    apos,
    need,
):
    """Parse lines lo..hi-1 of buf (starts/ends: line bounds, ends exclusive)
    and store the declared values (see the module docstring for the
    contract). With nbytes >= 0 the lines are found here instead, from byte
    pos0 until nbytes, and their bounds written to starts/ends (hi: their
    room): a valid line ends where its value and trailing blanks do (the
    parser never passes a newline), so only a bad line is searched for its
    end; no separate pass over the bytes. Returns early when every byte is
    read. Output rows are appended after counts[t] rows of each table t;
    counts[-2] / counts[-1] are the warning / fixup counts; lerr/lpos/ltype
    are indexed from lo. Returns the index of the first line not done: hi, or
    the line that found an output full (its partial output rolled back; grow
    the outputs and call again from there).

    String values are copied (unescaped) while they are in cache into the
    arena, one region per span slot (arena[abase[k]:abase[k] + alimit[k]]),
    in the order they come; their spans are then positions in that region
    (apos[k] bytes used). Raw spans point into buf. When an output is full,
    need[0] says which: 1 a table, 2 the arena region need[1], 3 warnings
    or fixups."""
    bp = _addr(buf)
    kp = _addr(keypool)
    ntab = counts.size - 2
    wi = ntab
    fi = ntab + 1
    cap = vt.shape[1]
    wcap = warn.shape[1]
    fcap = fix.shape[1]
    hmask = (1 << hbits) - 1
    hshift = _U(64 - hbits)
    fr = np.empty((11, MAX_DEPTH + 1), np.int64)
    saved = np.empty(ntab + 2, np.int64)
    scratch = np.zeros(6 * KEY_MAX + 16, np.uint8)
    scr = _addr(scratch)
    nslots = apos.size
    saved_apos = np.empty(nslots, np.int64)
    slot_line = np.full(nslots, -1, np.int64)  # last line that wrote the slot: save its position once per line
    touched = np.empty(nslots, np.int64)
    ap = _addr(arena)
    need[0] = 0
    discover = nbytes >= 0
    next_line = pos0
    for li in range(lo, hi):
        if discover:
            if next_line >= nbytes:
                return li
            s = next_line
            starts[li] = s  # where a resumed call starts this line again
        else:
            s = starts[li]
        for t in range(ntab + 2):
            saved[t] = counts[t]
        ntouched = 0
        pos = s
        c = _ld1(bp + pos)
        while c <= 32 and (c == 32 or c == 9 or c == 13):
            pos += 1
            c = _ld1(bp + pos)
        lerr[li - lo] = 0
        lpos[li - lo] = 0
        if c == 10:  # blank line (a line's end is its newline; the padding's after the last)
            ltype[li - lo] = T_ABSENT
            if discover:
                ends[li] = pos
                next_line = pos + 1
            continue
        ltype[li - lo] = T_OBJECT
        depth = 0
        err = 0
        state = _S_VALUE
        pend = -1
        while True:
            # Blocks in the order a member goes through them (key, value,
            # separator): each falls through to the next; only going back jumps
            # (measured: 4% fewer instructions than one branch per state).
            if state == _S_KEY or state == _S_KEY_FIRST:
                c = _ld1(bp + pos)
                while c <= 32 and (c == 32 or c == 9 or c == 13):
                    pos += 1
                    c = _ld1(bp + pos)
                d = depth - 1
                if c != 34:
                    if state == _S_KEY_FIRST and c == 125:  # {}
                        pos += 1
                        raw = fr[_F_RAW, d]
                        if raw >= 0:
                            slot = nodes[raw, N_SPAN]
                            sp0[slot, fr[_F_RAWROW, d]] = fr[_F_RAWPOS, d]
                            sp1[slot, fr[_F_RAWROW, d]] = pos
                        depth = d
                        state = _S_AFTER
                        continue
                    err = E_KEY
                    break
                ks = pos + 1
                pos, flag = _scan_string(bp, ks)
                if flag < 0:
                    err = -flag
                    break
                scope = fr[_F_SCOPE, d]
                pend = -1
                if scope >= 0:
                    ka = bp + ks
                    kl = pos - ks
                    if flag and kl <= 6 * KEY_MAX:  # an escaped key: match its decoded bytes
                        kl = _unescape(ka, bp + pos, scr)
                        ka = scr
                    if kl <= KEY_MAX:
                        w0 = _ld8(ka)
                        if kl < 8:
                            w0 &= (_U(1) << _U(8 * kl)) - _U(1)
                        w1 = _ld8(ka + kl - 8) if kl > 8 else _U(0)
                        i = np.int64(_key_hash(w0, w1, kl, scope) >> hshift)
                        while True:
                            node = ht[0, i]
                            if node < 0:
                                break
                            if ht[1, i] == scope and ht[2, i] == kl and htw[0, i] == w0 and htw[1, i] == w1:
                                same = True
                                if kl > 16:
                                    k0 = kp + nodes[node, N_KSTART]
                                    for j in range(kl):
                                        if _ld1(k0 + j) != _ld1(ka + j):
                                            same = False
                                            break
                                if same:
                                    pend = node
                                    break
                            i = (i + 1) & hmask
                pos += 1
                c = _ld1(bp + pos)
                while c <= 32 and (c == 32 or c == 9 or c == 13):
                    pos += 1
                    c = _ld1(bp + pos)
                if c != 58:
                    err = E_COLON
                    break
                pos += 1
                state = _S_VALUE
            if state == _S_ITEM_FIRST:
                c = _ld1(bp + pos)
                while c <= 32 and (c == 32 or c == 9 or c == 13):
                    pos += 1
                    c = _ld1(bp + pos)
                if c == 93:  # []
                    pos += 1
                    d = depth - 1
                    raw = fr[_F_RAW, d]
                    if raw >= 0:
                        slot = nodes[raw, N_SPAN]
                        sp0[slot, fr[_F_RAWROW, d]] = fr[_F_RAWPOS, d]
                        sp1[slot, fr[_F_RAWROW, d]] = pos
                    depth = d
                    state = _S_AFTER
                else:
                    state = _S_VALUE
            if state == _S_VALUE:
                c = _ld1(bp + pos)
                while c <= 32 and (c == 32 or c == 9 or c == 13):
                    pos += 1
                    c = _ld1(bp + pos)
                # -- where the value goes: (vnode, vrow) of record rec, or nowhere (vnode -1)
                d = depth - 1
                vnode = -1
                vrow = -1
                rec = -1
                prow = -1
                item = -1
                act = A_RECORD
                if depth == 0:
                    if c == 91:  # a top-level array: its items are records
                        ltype[li - lo] = T_ARRAY
                        fr[_F_OBJ, 0] = 0
                        fr[_F_ACT, 0] = A_RECORD
                        fr[_F_ANODE, 0] = -1
                        fr[_F_PROW, 0] = -1
                        fr[_F_REC, 0] = -1
                        fr[_F_CNT, 0] = 0
                        fr[_F_RAW, 0] = -1
                        depth = 1
                        pos += 1
                        state = _S_ITEM_FIRST
                        continue
                else:
                    rec = fr[_F_REC, d]
                    if fr[_F_OBJ, d]:
                        act = A_FIELD
                        vnode = pend
                        vrow = fr[_F_ROW, d]
                    else:
                        act = fr[_F_ACT, d]
                        item = fr[_F_CNT, d]
                        fr[_F_CNT, d] = item + 1
                        prow = fr[_F_PROW, d]
                if act == A_RECORD:
                    r = counts[0]
                    if r >= cap:
                        err = E_CAPACITY
                        need[0] = 1
                        break
                    counts[0] = r + 1
                    rparent[0, r] = prow
                    ritem[0, r] = item
                    rline[r] = li
                    rmask[r] = 0
                    vnode = 0
                    vrow = r
                    rec = r
                elif act == A_CHILD_SCALAR or (act == A_CHILD_OBJ and c == 123):
                    an = fr[_F_ANODE, d]
                    t = nodes[an, N_CTABLE]
                    r = counts[t]
                    if r >= cap:
                        err = E_CAPACITY
                        need[0] = 1
                        break
                    counts[t] = r + 1
                    rparent[t, r] = prow
                    ritem[t, r] = item
                    vrow = r
                    vnode = nodes[an, N_ITEM] if act == A_CHILD_SCALAR else -2  # -2: an item object
                elif act == A_CHILD_OBJ and c != 110:  # not an object, not null: warn on the array
                    k = counts[wi]
                    counts[wi] = k + 1
                    if k < wcap:
                        warn[0, k] = fr[_F_ANODE, d]
                        warn[1, k] = prow
                        warn[2, k] = W_ITEM
                        warn[3, k] = pos
                # -- the value: scan it, learn its type
                q = pos
                man = _U(0)
                exp = 0
                neg = False
                trunc = False
                nd = 0
                if c == 123:
                    code = T_OBJECT
                    pos += 1
                elif c == 91:
                    code = T_ARRAY
                    pos += 1
                elif c == 34:
                    pos, flag = _scan_string(bp, pos + 1)
                    if flag < 0:
                        err = -flag
                        break
                    pos += 1
                    code = T_STR + flag
                elif c == 45 or 48 <= c <= 57:
                    pos, nerr, man, exp, neg, is_int, trunc, nd = _scan_number(bp, pos)
                    if nerr:
                        err = nerr
                        break
                    code = T_FLOAT
                    if is_int:
                        code = T_BIGINT
                        if exp == 0 and (man < _TWO63 or (neg and man == _TWO63)):
                            code = T_INT
                            if man == _U(0):
                                neg = False  # -0 is the integer 0 (orjson), not the double -0.0
                elif c == 116 and _ld1(bp + pos + 1) == 114 and _ld1(bp + pos + 2) == 117 and _ld1(bp + pos + 3) == 101:
                    code = T_TRUE
                    pos += 4
                elif (
                    c == 102
                    and _ld1(bp + pos + 1) == 97
                    and _ld1(bp + pos + 2) == 108
                    and _ld1(bp + pos + 3) == 115
                    and _ld1(bp + pos + 4) == 101
                ):
                    code = T_FALSE
                    pos += 5
                elif c == 110 and _ld1(bp + pos + 1) == 117 and _ld1(bp + pos + 2) == 108 and _ld1(bp + pos + 3) == 108:
                    code = T_NULL
                    pos += 4
                elif c == 116 or c == 102 or c == 110:
                    err = E_LITERAL
                    break
                else:
                    err = E_VALUE
                    break
                # -- record the type; accepted?
                ok = vnode == -2
                if vnode >= 0:
                    if vt[vnode, vrow] != 0:
                        k = counts[wi]
                        counts[wi] = k + 1
                        if k < wcap:
                            warn[0, k] = vnode
                            warn[1, k] = vrow
                            warn[2, k] = W_DUP
                            warn[3, k] = q
                    vt[vnode, vrow] = code
                    if code != T_NULL:
                        rmask[rec] |= node_mask[vnode]
                        if (nodes[vnode, N_ACCEPT] >> code) & 1:
                            ok = True
                        else:
                            k = counts[wi]
                            counts[wi] = k + 1
                            if k < wcap:
                                warn[0, k] = vnode
                                warn[1, k] = vrow
                                warn[2, k] = W_TYPE
                                warn[3, k] = q
                # -- containers: push a frame
                if code == T_OBJECT or code == T_ARRAY:
                    if depth > MAX_DEPTH - 1:
                        err = E_DEPTH
                        break
                    scope = -1
                    row = vrow
                    raw = -1
                    aact = A_SKIP
                    if vnode == -2:  # an item of an array of objects: its own row
                        scope = nodes[fr[_F_ANODE, d], N_CSCOPE]
                    elif ok:
                        kind = nodes[vnode, N_KIND]
                        if nodes[vnode, N_RAW]:
                            raw = vnode
                        if code == T_OBJECT:
                            if kind == K_OBJECT or kind == K_ROOT:
                                scope = nodes[vnode, N_CSCOPE]
                            elif kind == K_CHILD_OBJECT:  # one object as one child row
                                t = nodes[vnode, N_CTABLE]
                                r = counts[t]
                                if r >= cap:
                                    err = E_CAPACITY
                                    need[0] = 1
                                    break
                                counts[t] = r + 1
                                rparent[t, r] = vrow
                                ritem[t, r] = -1
                                scope = nodes[vnode, N_CSCOPE]
                                row = r
                        elif kind == K_ARRAY_OBJ:
                            aact = A_CHILD_OBJ
                        elif kind == K_ARRAY_SCALAR:
                            aact = A_CHILD_SCALAR
                        elif kind == K_RECORDS:
                            aact = A_RECORD
                    fr[_F_OBJ, depth] = 1 if code == T_OBJECT else 0
                    fr[_F_SCOPE, depth] = scope
                    fr[_F_ROW, depth] = row
                    fr[_F_REC, depth] = rec
                    fr[_F_ACT, depth] = aact
                    fr[_F_ANODE, depth] = vnode
                    fr[_F_PROW, depth] = vrow
                    fr[_F_CNT, depth] = 0
                    fr[_F_RAW, depth] = raw
                    fr[_F_RAWPOS, depth] = q
                    fr[_F_RAWROW, depth] = vrow
                    depth += 1
                    state = _S_KEY_FIRST if code == T_OBJECT else _S_ITEM_FIRST
                    continue
                # -- scalars: store
                if code == T_INT or code == T_FLOAT or code == T_BIGINT:
                    fslot = nodes[vnode, N_FLOAT] if ok else -1
                    if fslot >= 0:
                        # A number beyond the range of a double is +-infinity here, not a line
                        # error (JSON allows it; the normalizer drops it with a row warning).
                        v, st = _to_double(man, exp, neg, trunc)
                        fl[fslot, vrow] = v
                        if st == 1:  # more than 19 digits near a rounding boundary: float() finishes it
                            k = counts[fi]
                            counts[fi] = k + 1
                            if k < fcap:
                                fix[0, k] = vnode
                                fix[1, k] = vrow
                                fix[2, k] = q
                                fix[3, k] = pos
                    if ok and code == T_INT:
                        islot = nodes[vnode, N_INT]
                        if islot >= 0:
                            iv[islot, vrow] = -np.int64(man - _U(1)) - 1 if neg else np.int64(man)
                if ok:
                    slot = nodes[vnode, N_SPAN]
                    if slot >= 0:
                        if nodes[vnode, N_RAW]:
                            sp0[slot, vrow] = q
                            sp1[slot, vrow] = pos
                        elif code == T_STR or code == T_STR_ESC:
                            o = apos[slot]
                            if slot_line[slot] != li:
                                slot_line[slot] = li
                                saved_apos[slot] = o
                                touched[ntouched] = slot
                                ntouched += 1
                            ln = pos - 1 - (q + 1)
                            if o + ln + 8 > alimit[slot]:
                                err = E_CAPACITY
                                need[0] = 2
                                need[1] = slot
                                break
                            dst = ap + abase[slot] + o
                            if code == T_STR:
                                for j in range(0, ln, 8):  # may write 7 bytes past: the next string's place
                                    _st8(dst + j, _ld8(bp + q + 1 + j))
                            else:
                                ln = _unescape(bp + q + 1, bp + pos - 1, dst)
                            sp0[slot, vrow] = o
                            sp1[slot, vrow] = o + ln
                            apos[slot] = o + ln
                state = _S_AFTER
            if state == _S_AFTER:
                c = _ld1(bp + pos)
                while c <= 32 and (c == 32 or c == 9 or c == 13):
                    pos += 1
                    c = _ld1(bp + pos)
                if depth == 0:
                    if c != 10:
                        err = E_TRAILING
                    break
                d = depth - 1
                if c == 44:
                    pos += 1
                    state = _S_KEY if fr[_F_OBJ, d] else _S_VALUE
                    continue
                elif c == (125 if fr[_F_OBJ, d] else 93):
                    pos += 1
                    raw = fr[_F_RAW, d]
                    if raw >= 0:
                        slot = nodes[raw, N_SPAN]
                        sp0[slot, fr[_F_RAWROW, d]] = fr[_F_RAWPOS, d]
                        sp1[slot, fr[_F_RAWROW, d]] = pos
                    depth = d
                    continue
                else:
                    err = E_OBJ_SEP if fr[_F_OBJ, d] else E_ARR_SEP
                    break
        if err == E_CAPACITY or counts[wi] > wcap or counts[fi] > fcap:
            if err != E_CAPACITY:
                need[0] = 3
            _rollback(vt, nodes, counts, saved, ntab)
            for k in range(ntouched):
                apos[touched[k]] = saved_apos[touched[k]]
            return li
        if discover:
            e = pos if err == 0 else _next_newline(bp, pos)
            ends[li] = e
            next_line = e + 1
        if err:
            if _ld1(bp + pos) == 10:  # the line ended first
                err = E_END
            lerr[li - lo] = err
            lpos[li - lo] = pos - s
            _rollback(vt, nodes, counts, saved, ntab)
            for k in range(ntouched):
                apos[touched[k]] = saved_apos[touched[k]]
        elif ltype[li - lo] != T_ARRAY:
            ltype[li - lo] = vt[0, saved[0]]  # the JSON type of the line's one value
    _alive(scratch)  # escaped keys are decoded into it through its address
    return hi


@njit(cache=True)
def _rollback(vt, nodes, counts, saved, ntab):
    """Forget the rows and warnings of the current line (vt back to absent)."""
    for n in range(nodes.shape[0]):
        t = nodes[n, N_TABLE]
        for r in range(saved[t], counts[t]):
            vt[n, r] = 0
    for t in range(ntab + 2):
        counts[t] = saved[t]


# --------------------------------------------------------------------------- to Arrow


@njit(nogil=True, cache=True)
def gather_strings(buf, vt, s0, s1, rows):
    """Some rows of one string column -> (int32 offsets, UTF-8 data, validity bitmap, null
    count), one value per row asked for. Valid: vt is T_STR or T_STR_ESC, the bytes at
    buf[s0:s1] taken as they are (spans into an arena region hold strings unescaped already).
    Bytes move 8 at a time: a copy may write up to 7 bytes past its string (the next string
    overwrites them; data has 8 spare bytes) and read past its span (buf is padded)."""
    m = len(rows)
    total = 0
    for i in range(m):
        r = rows[i]
        if vt[r] == T_STR or vt[r] == T_STR_ESC:
            total += s1[r] - s0[r]
    offsets = np.empty(m + 1, np.int32)
    data = np.empty(total + 8, np.uint8)
    bitmap = np.zeros((m + 7) >> 3, np.uint8)
    bp = _addr(buf)
    dp = _addr(data)
    o = 0
    nulls = 0
    offsets[0] = 0
    for i in range(m):
        r = rows[i]
        t = vt[r]
        if t == T_STR or t == T_STR_ESC:
            a = bp + s0[r]
            ln = s1[r] - s0[r]
            for j in range(0, ln, 8):
                _st8(dp + o + j, _ld8(a + j))
            o += ln
            bitmap[i >> 3] |= np.uint8(1 << (i & 7))
        else:
            nulls += 1
        offsets[i + 1] = o
    return offsets, data[:o], bitmap, nulls


@njit(nogil=True, cache=True)
def string_offsets(vt, s0, s1, n):
    """Arena spans of one string column -> (int32 offsets, validity bitmap, null
    count, contiguous). Contiguous: the valid strings lie back to back from
    the region start in row order (always, unless a key repeated or an
    envelope had string keys after its items), so the region itself is the
    Arrow data buffer; else call gather_strings."""
    offsets = np.empty(n + 1, np.int32)
    bitmap = np.zeros((n + 7) >> 3, np.uint8)
    o = 0
    nulls = 0
    contiguous = True
    offsets[0] = 0
    for i in range(n):
        t = vt[i]
        if t == T_STR or t == T_STR_ESC:
            if s0[i] != o:
                contiguous = False
            o += s1[i] - s0[i]
            bitmap[i >> 3] |= np.uint8(1 << (i & 7))
        else:
            nulls += 1
        offsets[i + 1] = o
    return offsets, bitmap, nulls, contiguous


@njit(nogil=True, cache=True)
def validity(vt, n, accept):
    """Validity bitmap (and null count) of a column: vt's code is in the accept mask."""
    bitmap = np.zeros((n + 7) >> 3, np.uint8)
    nulls = 0
    for i in range(n):
        if (accept >> vt[i]) & 1:
            bitmap[i >> 3] |= np.uint8(1 << (i & 7))
        else:
            nulls += 1
    return bitmap, nulls


@njit(nogil=True, cache=True)
def find_lines(a, n, out):
    """Positions of newlines in a[:n] into out; -> count, or -1 if out is too
    small. a[n] is a newline and 8 bytes past it are readable (a ScanBuffer's
    padding): _next_newline stops there."""
    k = 0
    cap = out.size
    ap = _addr(a)
    j = _next_newline(ap, 0)
    while j < n:
        if k >= cap:
            return -1
        out[k] = j
        k += 1
        j = _next_newline(ap, j + 1)
    return k

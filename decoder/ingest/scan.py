"""Line-level numba kernels of the JSON Lines reader: newlines, first keys, in-place rewrites.

Each works on the raw bytes of a chunk (a uint8 array) and releases the GIL,
so the reader's threads scan chunks in parallel. ``line_bounds`` is the
Python face of the newline scan.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["line_bounds", "first_keys", "unquote_reported_at", "gather_lines", "REPORTED_AT_KEY"]

_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_NEWLINES = np.uint64(0x0A0A0A0A0A0A0A0A)


@numba.njit(cache=True, nogil=True)
def newlines(a, out):
    """Positions of b'\\n' in a, written to out; returns (count, any byte >= 0x80).
    count is -1 if out is too small. Eight bytes at a time (SWAR): a word
    without a newline costs a handful of integer operations."""
    n = a.size
    nw = n // 8
    w = a[: nw * 8].view(np.uint64)
    cap = out.size
    k = 0
    hi = np.uint64(0)
    for j in range(nw):
        x = w[j]
        hi |= x
        y = x ^ _NEWLINES
        if ((y - _ONES) & ~y & _HIGH) != 0:  # some byte of the word is a newline
            base = j * 8
            for i in range(base, base + 8):
                if a[i] == 10:
                    if k >= cap:
                        return -1, True
                    out[k] = i
                    k += 1
    for i in range(nw * 8, n):
        hi |= np.uint64(a[i])
        if a[i] == 10:
            if k >= cap:
                return -1, True
            out[k] = i
            k += 1
    return k, (hi & _HIGH) != 0


REPORTED_AT_KEY = np.frombuffer(b'"reported_at"', dtype=np.uint8).copy()


_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_UNDERSCORES = np.uint64(0x5F5F5F5F5F5F5F5F)
_AS = np.uint64(0x6161616161616161)
_TS = np.uint64(0x7474747474747474)


@numba.njit(cache=True, nogil=True, inline="always")
def _zero_bytes(v):
    # high bit set in each byte of v that is zero (exact, no false positives)
    return ~(((v & _LOW7) + _LOW7) | v | _LOW7)


@numba.njit(cache=True, nogil=True)
def _unquote_at(a, start, pattern):
    """Check for `"reported_at": "<digits>"` with the '_' at a[start]; rewrite it.
    Returns 1 if rewritten."""
    n = a.size
    m = pattern.size  # 13; '_' is pattern[9]
    s0 = start - 9
    if s0 < 0 or s0 + m > n:
        return 0
    for k in range(m):
        if a[s0 + k] != pattern[k]:
            return 0
    j = s0 + m
    while j < n and (a[j] == 32 or a[j] == 9):
        j += 1
    if j >= n or a[j] != 58:  # ':'
        return 0
    j += 1
    while j < n and (a[j] == 32 or a[j] == 9):
        j += 1
    if j >= n or a[j] != 34:  # '"'
        return 0
    q1 = j
    j += 1
    if j < n and a[j] == 45:  # '-'
        j += 1
    d0 = j
    while j < n and 48 <= a[j] <= 57:
        j += 1
    if j < n and a[j] == 34 and 0 < j - d0 <= 18:
        a[q1] = 32
        a[j] = 32
        return 1
    return 0


@numba.njit(cache=True, nogil=True)
def unquote_reported_at(a, pattern):
    """In place: every `"reported_at": "<digits>"` becomes `"reported_at":  <digits> `
    (the two quotes turned into spaces), so epoch milliseconds printed as a
    string read as the same JSON number. Same length, so line positions hold.
    Returns the number of values changed.

    Eight bytes at a time: a word is looked at closely only if it holds the
    start of "_at" (the keys ending in _at are few)."""
    n = a.size
    nw = n // 8
    count = 0
    if nw >= 2:
        w = a[: nw * 8].view(np.uint64)
        for j in range(nw - 1):
            x = w[j]
            y = w[j + 1]
            z1 = (x >> np.uint64(8)) | (y << np.uint64(56))
            z2 = (x >> np.uint64(16)) | (y << np.uint64(48))
            hit = _zero_bytes(x ^ _UNDERSCORES) & _zero_bytes(z1 ^ _AS) & _zero_bytes(z2 ^ _TS)
            if hit != 0:
                base = j * 8
                for k in range(8):
                    if a[base + k] == 95 and a[base + k + 1] == 97 and a[base + k + 2] == 116:
                        count += _unquote_at(a, base + k, pattern)
        tail = (nw - 1) * 8
    else:
        tail = 0
    for i in range(tail, n - 2):
        if a[i] == 95 and a[i + 1] == 97 and a[i + 2] == 116:
            count += _unquote_at(a, i, pattern)
    return count


@numba.njit(cache=True, nogil=True)
def first_keys(a, starts, ends):
    """For each line: a hash of the first key of the JSON object it holds
    (the text between the quotes after the opening brace, at most 32 bytes);
    0 when the line does not start with an object and a key. Lines of one
    shape tend to share their first key, so this groups a mixed batch by
    shape without parsing it."""
    n = starts.size
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        j = starts[i]
        e = ends[i]
        while j < e and (a[j] == 32 or a[j] == 9 or a[j] == 13):
            j += 1
        if j >= e or a[j] != 123:  # '{'
            continue
        j += 1
        while j < e and (a[j] == 32 or a[j] == 9 or a[j] == 13):
            j += 1
        if j >= e or a[j] != 34:  # '"'
            continue
        j += 1
        h = np.uint64(14695981039346656037)
        k = 0
        while j < e and a[j] != 34 and k < 32:
            h = (h ^ np.uint64(a[j])) * np.uint64(1099511628211)
            j += 1
            k += 1
        out[i] = np.int64(h & np.uint64(0x7FFFFFFFFFFFFFFF)) | 1
    return out


@numba.njit(cache=True, nogil=True)
def gather_lines(a, starts, ends, sel, out, new_starts, new_ends):
    """Copy the lines sel[k] of a, each followed by a newline, to out; returns
    the bytes written. new_starts/new_ends: where each landed."""
    o = 0
    for k in range(sel.size):
        i = sel[k]
        s = starts[i]
        e = ends[i]
        new_starts[k] = o
        out[o : o + (e - s)] = a[s:e]
        o += e - s
        new_ends[k] = o
        out[o] = 10
        o += 1
    return o


def line_bounds(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(starts, ends, non_ascii) of the lines of a uint8 buffer: line i is
    a[starts[i]:ends[i]] without its newline; no line after a final newline.
    non_ascii: some byte is >= 0x80 (the text then needs a UTF-8 check)."""
    n = len(a)
    if n == 0:
        z = np.zeros(0, np.int64)
        return z, z, False
    out = np.empty(n // 32 + 64, dtype=np.int64)
    k, high = newlines(a, out)
    if k < 0:  # very short lines: more than out holds
        nl = np.flatnonzero(a == 10).astype(np.int64)
        high = bool(a.max() >= 128)
    else:
        nl = out[:k]
    last = n if a[n - 1] != 10 else None
    starts = np.empty(len(nl) + (last is not None), dtype=np.int64)
    ends = np.empty_like(starts)
    starts[0] = 0
    starts[1:] = nl[: len(starts) - 1] + 1
    ends[: len(nl)] = nl
    if last is not None:
        ends[-1] = n
    return starts, ends, bool(high)

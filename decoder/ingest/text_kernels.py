"""numba kernels over Arrow string columns: ISO 8601 times, numbers printed as text, prefixes.

Each takes a string column's buffers (``offsets`` int32, ``data`` uint8, and
a bool ``valid`` per row) and loops once over the rows, releasing the GIL.
Imported by ``timestamps`` and ``fields`` only (the ingest package imports
numba for every line it reads anyway).
"""

from __future__ import annotations

import numba
import numpy as np

# Status codes of a parsed value.
OK, UNREADABLE, OUT_OF_RANGE = 0, 1, 2
# What a text holding a number holds.
NOT_A_NUMBER, INTEGER, FRACTION = 0, 1, 2

_NS_MAX_S, _NS_MAX_F = 9223372036, 854775807  # 2**63 - 1 ns: 2262-04-11T23:47:16.854775807
_NS_MIN_S, _NS_MIN_F = -9223372037, 145224192  # -2**63 ns: 1677-09-21T00:12:43.145224192
_DAYS_IN_MONTH = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)


@numba.njit(cache=True, inline="always")
def _trimmed(data, pos, end):
    """data[pos:end] without the spaces and tabs around it, as (pos, end)."""
    while pos < end and (data[pos] == 32 or data[pos] == 9):
        pos += 1
    while end > pos and (data[end - 1] == 32 or data[end - 1] == 9):
        end -= 1
    return pos, end


@numba.njit(cache=True, inline="always")
def _digits(data, pos, k, end):
    """The value of k decimal digits at data[pos:], or -1."""
    if pos + k > end:
        return -1
    v = 0
    for i in range(pos, pos + k):
        c = data[i]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


@numba.njit(cache=True, inline="always")
def _days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@numba.njit(cache=True, nogil=True)
def iso_to_ns(offsets, data, valid, out, status):
    """ISO 8601 / RFC 3339 text -> epoch nanoseconds (UTC), per row.

    Accepted: ``YYYY-MM-DD``, then optionally ``T``, ``t`` or a space and
    ``HH:MM[:SS[.fraction]]`` (up to 9 fraction digits are kept, more are
    cut), then optionally ``Z``, ``z``, ``+HH:MM``, ``+HHMM`` or ``+HH``; no
    zone means UTC. Blanks around the text are ignored. status[i]: OK,
    UNREADABLE (out[i] = 0) or OUT_OF_RANGE (a valid time a timestamp[ns]
    cannot hold: before 1677-09-21 or after 2262-04-11; out[i] = 0)."""
    n = valid.size
    for i in range(n):
        out[i] = 0
        if not valid[i]:
            status[i] = UNREADABLE
            continue
        pos, end = _trimmed(data, offsets[i], offsets[i + 1])
        status[i] = UNREADABLE
        y = _digits(data, pos, 4, end)
        if y < 0 or pos + 10 > end or data[pos + 4] != 45 or data[pos + 7] != 45:
            continue
        mo = _digits(data, pos + 5, 2, end)
        d = _digits(data, pos + 8, 2, end)
        if mo < 1 or mo > 12 or d < 1 or d > _DAYS_IN_MONTH[mo]:
            continue
        if mo == 2 and d == 29 and not (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)):
            continue
        pos += 10
        hh = mm = ss = 0
        frac = 0
        zone = 0  # seconds east of UTC
        bad = False
        if pos < end:
            c = data[pos]
            if not (c == 84 or c == 116 or c == 32):  # T t space
                continue
            hh = _digits(data, pos + 1, 2, end)
            if hh < 0 or pos + 6 > end or data[pos + 3] != 58:
                continue
            mm = _digits(data, pos + 4, 2, end)
            if mm < 0:
                continue
            pos += 6
            if pos < end and data[pos] == 58:
                ss = _digits(data, pos + 1, 2, end)
                if ss < 0:
                    continue
                pos += 3
                if pos < end and (data[pos] == 46 or data[pos] == 44):
                    pos += 1
                    k = 0
                    while pos < end and 48 <= data[pos] <= 57:
                        if k < 9:
                            frac = frac * 10 + (data[pos] - 48)
                            k += 1
                        pos += 1
                    if k == 0:
                        continue
                    while k < 9:
                        frac *= 10
                        k += 1
            if hh > 23 or mm > 59 or ss > 59:
                continue
            if pos < end:
                c = data[pos]
                if (c == 90 or c == 122) and pos + 1 == end:  # Z z
                    pos += 1
                elif c == 43 or c == 45:  # + -
                    zh = _digits(data, pos + 1, 2, end)
                    zm = 0
                    q = pos + 3
                    if zh < 0:
                        bad = True
                    elif q < end:
                        if data[q] == 58:
                            q += 1
                        zm = _digits(data, q, 2, end)
                        q += 2
                        if zm < 0 or zm > 59 or q != end:
                            bad = True
                    if zh > 23:
                        bad = True
                    zone = (zh * 3600 + zm * 60) * (1 if c == 43 else -1)
                    pos = end
                else:
                    bad = True
        if bad or pos != end:
            continue
        secs = _days_from_civil(y, mo, d) * 86400 + hh * 3600 + mm * 60 + ss - zone
        if secs > _NS_MAX_S or (secs == _NS_MAX_S and frac > _NS_MAX_F):
            status[i] = OUT_OF_RANGE
            continue
        if secs < _NS_MIN_S or (secs == _NS_MIN_S and frac < _NS_MIN_F):
            status[i] = OUT_OF_RANGE
            continue
        out[i] = secs * 1_000_000_000 + frac
        status[i] = OK


@numba.njit(cache=True, nogil=True)
def parse_numbers(offsets, data, valid, ints, floats, kind):
    """Decimal numbers printed as text -> (int64, float64) per row; kind[i]: NOT_A_NUMBER,
    INTEGER (ints[i] and floats[i] set; at most 18 digits) or FRACTION (a number with a
    fraction, an exponent or more digits: floats[i] is approximate, the caller reads
    such rows again with float()). Blanks around the text are ignored."""
    n = valid.size
    for i in range(n):
        kind[i] = NOT_A_NUMBER
        ints[i] = 0
        floats[i] = 0.0
        if not valid[i]:
            continue
        pos, end = _trimmed(data, offsets[i], offsets[i + 1])
        neg = False
        if pos < end and (data[pos] == 45 or data[pos] == 43):
            neg = data[pos] == 45
            pos += 1
        start = pos
        v = 0
        while pos < end and 48 <= data[pos] <= 57:
            if pos - start < 18:
                v = v * 10 + (data[pos] - 48)
            pos += 1
        digits = pos - start
        if digits == 0:
            # ".5" is not JSON, but "0.5" is: a number needs a digit before anything else
            continue
        if pos == end and digits <= 18:
            ints[i] = -v if neg else v
            floats[i] = float(ints[i])
            kind[i] = INTEGER
            continue
        # a fraction, an exponent or a long integer: checked here, computed by float() in Python
        ok = True
        if pos < end and data[pos] == 46:
            pos += 1
            q = pos
            while pos < end and 48 <= data[pos] <= 57:
                pos += 1
            ok = pos > q
        if ok and pos < end and (data[pos] == 101 or data[pos] == 69):
            pos += 1
            if pos < end and (data[pos] == 43 or data[pos] == 45):
                pos += 1
            q = pos
            while pos < end and 48 <= data[pos] <= 57:
                pos += 1
            ok = pos > q
        if ok and pos == end:
            kind[i] = FRACTION


@numba.njit(cache=True, nogil=True)
def first_with_prefix(parent, offsets, data, valid, prefix, out):
    """For each parent p (0 <= p < out.size) with out[p] == -1: the first of its rows
    (parent[j] == p, in row order) whose text starts with prefix, else -1 stays."""
    m = prefix.size
    for j in range(parent.size):
        p = parent[j]
        if p < 0 or p >= out.size or out[p] >= 0 or not valid[j]:
            continue
        s = offsets[j]
        if offsets[j + 1] - s < m:
            continue
        same = True
        for k in range(m):
            if data[s + k] != prefix[k]:
                same = False
                break
        if same:
            out[p] = j

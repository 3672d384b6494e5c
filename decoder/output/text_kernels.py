"""numba kernels that print columns as text for the text outputs (CSV, JSON Lines).

Imported by ``text`` only. Each loops once over a column's rows and releases the GIL.
"""

from __future__ import annotations

import numba

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND
ISO_MAX = len("2262-04-11T23:47:16.854775807Z")  # the longest text of a nanosecond time


@numba.njit(cache=True, inline="always")
def _digits(out, pos, value, width):
    """value as width decimal digits at out[pos:pos + width]."""
    for k in range(width - 1, -1, -1):
        out[pos + k] = 48 + value % 10
        value //= 10


@numba.njit(cache=True, nogil=True)
def iso_utc(ns, valid, offsets, out):
    """Nanoseconds since the epoch -> ``YYYY-MM-DDTHH:MM:SS[.fraction]Z`` in UTC, the fraction
    without trailing zeros (none when whole), written one after another into ``out`` (room for
    ISO_MAX bytes a row); ``offsets[i]:offsets[i + 1]`` is row i's text, empty where not valid.
    Days to a civil date: H. Hinnant's ``civil_from_days``; ``//`` and ``%`` floor, as in Python,
    so times before 1970 come out right too."""
    pos = 0
    offsets[0] = 0
    for i in range(ns.size):
        if valid[i]:
            t = ns[i]
            days = t // NS_PER_DAY
            in_day = t - days * NS_PER_DAY
            z = days + 719468
            era = z // 146097
            doe = z - era * 146097
            yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
            doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
            mp = (5 * doy + 2) // 153
            day = doy - (153 * mp + 2) // 5 + 1
            month = mp + 3 if mp < 10 else mp - 9
            year = yoe + era * 400 + (1 if month <= 2 else 0)
            seconds = in_day // NS_PER_SECOND
            fraction = in_day - seconds * NS_PER_SECOND
            _digits(out, pos, year, 4)
            out[pos + 4] = 45  # -
            _digits(out, pos + 5, month, 2)
            out[pos + 7] = 45
            _digits(out, pos + 8, day, 2)
            out[pos + 10] = 84  # T
            _digits(out, pos + 11, seconds // 3600, 2)
            out[pos + 13] = 58  # :
            _digits(out, pos + 14, (seconds // 60) % 60, 2)
            out[pos + 16] = 58
            _digits(out, pos + 17, seconds % 60, 2)
            pos += 19
            if fraction:
                width = 9
                while fraction % 10 == 0:
                    fraction //= 10
                    width -= 1
                out[pos] = 46  # .
                _digits(out, pos + 1, fraction, width)
                pos += 1 + width
            out[pos] = 90  # Z
            pos += 1
        offsets[i + 1] = pos
    return pos

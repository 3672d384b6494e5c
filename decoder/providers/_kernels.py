"""numba kernels of the ingestion layer (imported lazily: see _common.kernels)."""

from __future__ import annotations

import numba
import numpy as np

_POW10 = np.array([10.0**k for k in range(23)], dtype=np.float64)  # exact doubles


@numba.njit(cache=True, nogil=True)
def _f32_one(fd):
    """Shortest decimal (as the nearest double) reading back as the float32 fd;
    NaN when the answer needs Python (magnitude outside 1e-12..1e22, or two
    candidates so near a tie that double arithmetic cannot tell them apart)."""
    a = abs(fd)
    if a < 1e-12 or a >= 1e22:
        return np.nan
    fa = np.float32(a)
    e = int(np.floor(np.log10(a)))
    res = np.nan
    for k in range(12):
        q = e + 1 - k
        if q >= 0:
            if q > 22:
                continue
            s = _POW10[q]
            n = np.floor(a / s)
            lo = n * s
            hi = (n + 1.0) * s
        else:
            if -q > 22:
                break
            s = _POW10[-q]
            n = np.floor(a * s)
            lo = n / s
            hi = (n + 1.0) / s
        lo_ok = lo > 0.0 and np.float32(lo) == fa
        hi_ok = np.float32(hi) == fa
        if lo_ok and hi_ok:
            dl = a - lo
            dh = hi - a
            if abs(dl - dh) <= 1e-6 * (hi - lo):
                return np.nan  # (near) tie: digits round half to even, decided in Python
            res = lo if dl < dh else hi
            break
        if lo_ok:
            res = lo
            break
        if hi_ok:
            res = hi
            break
    return res if fd > 0 else -res


@numba.njit(cache=True, nogil=True)
def f32_shortest(f, bits, out):
    """out[i] = the shortest decimal (as the nearest double) that reads back as
    the float32 f[i] (bits: the same array viewed as uint32); NaN in, NaN out. Values the kernel cannot settle are left NaN
    and counted in the return value (the caller finishes them in Python).

    Radio values repeat a lot (a few channel frequencies, RSSI in whole dB, SNR
    in tenths), so results are memoized in a small direct-mapped table keyed by
    the float32 bits."""
    todo = 0
    size = 4096
    keys = np.full(size, np.uint32(0xFFFFFFFF), dtype=np.uint32)  # a NaN pattern: never a key
    vals = np.empty(size, dtype=np.float64)
    for i in range(f.size):
        fd = np.float64(f[i])
        if fd != fd or fd == 0.0 or fd - fd != 0.0:  # NaN, zero or infinite
            out[i] = fd
            continue
        b = bits[i]
        h = int(((np.uint64(b) * np.uint64(2654435761)) >> np.uint64(20)) & np.uint64(size - 1))
        if keys[h] == b:
            out[i] = vals[h]
            continue
        r = _f32_one(fd)
        if r != r:
            todo += 1
        else:
            keys[h] = b
            vals[h] = r
        out[i] = r
    return todo


@numba.njit(cache=True, nogil=True)
def _ranked(value):
    """NaN ranks below every number."""
    return -np.inf if value != value else value


@numba.njit(cache=True, nogil=True)
def _beats(rssi, snr, best_rssi, best_snr):
    """The best-gateway rule: higher RSSI, then higher SNR; a full tie keeps the earlier one."""
    return rssi > best_rssi or (rssi == best_rssi and snr > best_snr)


@numba.njit(cache=True, nogil=True)
def best_by_parent(parent, rssi, snr, n):
    """Index of the best reception per packet, receptions in any order
    (parent[j]: the packet of reception j): highest RSSI, then highest SNR,
    the earlier one on a full tie; NaN ranks below every number. -1: none."""
    out = np.full(n, -1, dtype=np.int64)
    br = np.empty(n, dtype=np.float64)
    bs = np.empty(n, dtype=np.float64)
    for j in range(parent.size):
        p = parent[j]
        r = _ranked(rssi[j])
        s = _ranked(snr[j])
        if out[p] < 0 or _beats(r, s, br[p], bs[p]):
            out[p] = j
            br[p] = r
            bs[p] = s
    return out


@numba.njit(cache=True, nogil=True)
def best_index(counts, rssi, snr):
    """Index of the best reception per packet: highest RSSI, then highest SNR,
    first on a full tie; NaN ranks below every number. -1 when counts[i] == 0."""
    n = counts.size
    out = np.empty(n, dtype=np.int64)
    pos = 0
    for i in range(n):
        c = counts[i]
        best = -1
        br = -np.inf
        bs = -np.inf
        for j in range(pos, pos + c):
            r = _ranked(rssi[j])
            s = _ranked(snr[j])
            if best < 0 or _beats(r, s, br, bs):
                best = j
                br = r
                bs = s
        out[i] = best
        pos += c
    return out


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


_PATTERN = np.frombuffer(b'"reported_at"', dtype=np.uint8).copy()


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
        out[o:o + (e - s)] = a[s:e]
        o += e - s
        new_ends[k] = o
        out[o] = 10
        o += 1
    return o

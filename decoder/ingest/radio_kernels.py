"""numba kernels of the radio columns: the best gateway per uplink, float32 values to their shortest decimal.

Imported by ``radio`` only (this module imports numba, which the package imports lazily).
"""

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
    the float32 f[i] (bits: the same array viewed as uint32); NaN in, NaN out.
    Values the kernel cannot settle are left NaN and counted in the return
    value (the caller finishes them in Python).

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

"""Bit-field readers for generated kernels (numba, nopython).

Bit order is big-endian: bit 0 is the most significant bit of byte 0. All
arithmetic is done in uint64 on purpose: numba turns a mix of uint64 and
int64 operands into float64, which would lose bits above 2**53.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = [
    "uniform_stride",
    "read_bits",
    "read_bits_le",
    "read_bytes_le",
    "sign_extend",
    "f64_from_bits",
    "f32_from_bits",
    "f16_from_bits",
]

_U1 = np.uint64(1)


@numba.njit(cache=True, nogil=True)
def read_bits(data, base, bit_offset, nbits):
    """Unsigned value of `nbits` (1..64) bits starting `bit_offset` bits after byte `base`."""
    value = np.uint64(0)
    pos = bit_offset
    remaining = nbits
    while remaining > 0:
        byte = np.uint64(data[base + (pos >> 3)])
        used = pos & 7
        avail = 8 - used
        take = avail if avail < remaining else remaining
        chunk = (byte >> np.uint64(avail - take)) & ((_U1 << np.uint64(take)) - _U1)
        value = (value << np.uint64(take)) | chunk
        pos += take
        remaining -= take
    return value


@numba.njit(cache=True, nogil=True)
def read_bytes_le(data, start, nbytes):
    """Unsigned value of `nbytes` whole bytes stored least significant first."""
    value = np.uint64(0)
    for k in range(nbytes - 1, -1, -1):
        value = (value << np.uint64(8)) | np.uint64(data[start + k])
    return value


@numba.njit(cache=True, nogil=True)
def sign_extend(value, nbits):
    """Two's complement value of the low `nbits` bits of a uint64."""
    if nbits >= 64:
        return np.int64(value)
    if (value >> np.uint64(nbits - 1)) & _U1:
        return np.int64(value) - np.int64(1 << nbits)
    return np.int64(value)


@intrinsic
def _bitcast_u64_f64(typingctx, value):
    if value != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.uint64), codegen


@intrinsic
def _bitcast_u32_f32(typingctx, value):
    if value != types.uint32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@numba.njit(cache=True, nogil=True)
def f64_from_bits(value):
    """IEEE 754 binary64 with the given bit pattern."""
    return _bitcast_u64_f64(value)


@numba.njit(cache=True, nogil=True)
def f32_from_bits(value):
    """IEEE 754 binary32 with the given bit pattern, as float64 (exact)."""
    return np.float64(_bitcast_u32_f32(np.uint32(value)))


@numba.njit(cache=True, nogil=True)
def f16_from_bits(value):
    """IEEE 754 binary16 with the given bit pattern, as float64 (exact)."""
    bits = np.int64(value)
    sign = -1.0 if bits & 0x8000 else 1.0
    exponent = (bits >> 10) & 0x1F
    mantissa = bits & 0x3FF
    if exponent == 0x1F:
        return sign * math.inf if mantissa == 0 else math.nan
    if exponent == 0:
        return sign * math.ldexp(float(mantissa), -24)
    return sign * math.ldexp(float(mantissa | 0x400), exponent - 25)


@numba.njit(cache=True, nogil=True)
def read_bits_le(data, base, bit_offset, nbytes):
    """Like read_bytes_le, for bytes that start at any bit: byte k is the k-th 8 bits from `bit_offset`."""
    value = np.uint64(0)
    for k in range(nbytes - 1, -1, -1):
        value = (value << np.uint64(8)) | read_bits(data, base, bit_offset + 8 * k, 8)
    return value


@numba.njit(cache=True, nogil=True)
def uniform_stride(offsets, in_err):
    """The one payload length of a batch with no conversion errors, else -1."""
    n = offsets.shape[0] - 1
    if n < 1:
        return -1
    stride = offsets[1] - offsets[0]
    for i in range(n):
        if in_err[i] != 0 or offsets[i + 1] - offsets[i] != stride:
            return -1
    return stride

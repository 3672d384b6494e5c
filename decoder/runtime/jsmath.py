"""Scalar functions with exact JavaScript number semantics, for generated kernels.

Every JS number is an IEEE double, so every function here takes and returns
float64, except ``to_int32``/``to_uint32`` (int64 holding the converted value)
and ``js_truthy`` (bool).

All functions are ``numba.njit(cache=True, error_model="numpy")``: a numba
function keeps its own error model when called from another jitted function,
so these never raise ZeroDivisionError whatever the caller uses. The caller's
OWN arithmetic is another matter: the generated kernel must be compiled with
``error_model="numpy"`` so that plain ``a / b`` gives +-Infinity or NaN for a
zero divisor, exactly like JS (checked: 1/0, -1/0, 0/0, 1/-0 give Inf, -Inf,
NaN, -Inf; there is therefore no ``js_div``). Unary minus (``-x``) is exact in
numba (``-(0.0)`` is ``-0.0``), and ``+ - * /`` and the comparisons
``== != < <= > >=`` on float64 already are JS's operators on numbers.

Exactness: ECMA-262 fully specifies the operators and abs, ceil, floor,
round, trunc, sign, sqrt, min, max; these match a JS engine bit for bit
(including -0 and NaN). sin, cos, tan, asin, acos, atan, atan2, exp, log,
log2, log10, cbrt, hypot and pow are "implementation-approximated" in the
spec: here they are libm's (glibc) results, exact on the special values
(NaN, +-Inf, +-0 and the spec's special-case tables) and within 1 ulp of
other engines elsewhere (QuickJS's own cbrt(27) is 3.0000000000000004).

Folding: ``Math.min(a, b, c)`` == ``js_min2(js_min2(a, b), c)`` exactly
(NaN propagates, -0 < +0); likewise max. ``Math.hypot(a, b, c)`` folds as
``js_hypot2(js_hypot2(a, b), c)``: exact on special values (any Infinity
gives Infinity even with NaN, else any NaN gives NaN, all zeros give +0), and
it is how QuickJS evaluates Math.hypot; V8 uses a scaled sum, so the folded
value may differ from V8 in the last bit(s) for 3+ arguments. Math.hypot()
is +0 and Math.hypot(x) is js_abs(x), Math.min() is Infinity, Math.max() is
-Infinity: the code generator folds those itself.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "to_int32",
    "to_uint32",
    "js_bitand",
    "js_bitor",
    "js_bitxor",
    "js_bitnot",
    "js_shl",
    "js_sar",
    "js_shr",
    "js_mod",
    "js_pow",
    "js_abs",
    "js_ceil",
    "js_floor",
    "js_round",
    "js_trunc",
    "js_sign",
    "js_sqrt",
    "js_cbrt",
    "js_exp",
    "js_log",
    "js_log2",
    "js_log10",
    "js_sin",
    "js_cos",
    "js_tan",
    "js_asin",
    "js_acos",
    "js_atan",
    "js_atan2",
    "js_hypot2",
    "js_min2",
    "js_max2",
    "js_select",
    "js_truthy",
]

_jit = numba.njit(cache=True, error_model="numpy")

_TWO32 = 4294967296.0
_TWO31 = 2147483648.0
_NAN = math.nan


# ---------------------------------------------------------------- ToInt32 ----


@_jit
def to_uint32(x):
    """ECMA-262 ToUint32 of a double, as an int64 in [0, 2**32)."""
    if x >= 0.0 and x < _TWO32:
        return np.int64(x)  # truncates toward zero
    if not np.isfinite(x):
        return np.int64(0)
    # fmod by a power of two is exact for every finite double.
    m = np.fmod(np.trunc(x), _TWO32)
    if m < 0.0:
        m += _TWO32
    return np.int64(m)


@_jit
def to_int32(x):
    """ECMA-262 ToInt32 of a double, as an int64 in [-2**31, 2**31)."""
    if x > -_TWO31 - 1.0 and x < _TWO31:
        return np.int64(x)  # truncates toward zero
    u = to_uint32(x)
    if u >= np.int64(2147483648):
        u -= np.int64(4294967296)
    return u


@_jit
def _wrap32(v):
    """Low 32 bits of an int64, as a signed int32 value (int64)."""
    v = v & np.int64(0xFFFFFFFF)
    if v >= np.int64(2147483648):
        v -= np.int64(4294967296)
    return v


# -------------------------------------------------------------- bitwise ----


@_jit
def js_bitand(a, b):
    return np.float64(to_int32(a) & to_int32(b))


@_jit
def js_bitor(a, b):
    return np.float64(to_int32(a) | to_int32(b))


@_jit
def js_bitxor(a, b):
    return np.float64(to_int32(a) ^ to_int32(b))


@_jit
def js_bitnot(a):
    return np.float64(~to_int32(a))


@_jit
def js_shl(a, b):
    s = to_uint32(b) & np.int64(31)
    return np.float64(_wrap32(to_uint32(a) << s))


@_jit
def js_sar(a, b):
    s = to_uint32(b) & np.int64(31)
    return np.float64(to_int32(a) >> s)


@_jit
def js_shr(a, b):
    s = to_uint32(b) & np.int64(31)
    return np.float64(to_uint32(a) >> s)


# ------------------------------------------------------------- % and ** ----


@_jit
def js_mod(a, b):
    """JS ``a % b``: sign of the dividend, exact (C fmod)."""
    if np.isnan(a) or np.isnan(b) or np.isinf(a) or b == 0.0:
        return _NAN
    if np.isinf(b) or a == 0.0:
        return a
    return np.fmod(a, b)


@_jit
def js_pow(a, b):
    """JS ``a ** b`` and Math.pow(a, b)."""
    if np.isnan(b):
        return _NAN
    if b == 0.0:
        return 1.0
    if np.isnan(a):
        return _NAN
    if np.isinf(b) and abs(a) == 1.0:
        return _NAN
    return math.pow(a, b)


# ---------------------------------------------- exactly specified Math.* ----


@_jit
def js_abs(x):
    return np.abs(x)


@_jit
def js_ceil(x):
    return np.ceil(x)


@_jit
def js_floor(x):
    return np.floor(x)


@_jit
def js_trunc(x):
    return np.trunc(x)


@_jit
def js_round(x):
    """Math.round: half rounds up (toward +Infinity), -0 kept for x in [-0.5, -0]."""
    if not np.isfinite(x):
        return x
    r = np.floor(x)
    if x - r >= 0.5:  # exact: x - floor(x) is representable for every double
        r += 1.0
    if r == 0.0:
        return math.copysign(0.0, x)
    return r


@_jit
def js_sign(x):
    if x > 0.0:
        return 1.0
    if x < 0.0:
        return -1.0
    return x  # +-0 and NaN


@_jit
def js_sqrt(x):
    return np.sqrt(x)


@_jit
def js_min2(a, b):
    if np.isnan(a) or np.isnan(b):
        return _NAN
    if a < b:
        return a
    if b < a:
        return b
    # equal: only +-0 can differ
    if np.signbit(a):
        return a
    return b


@_jit
def js_max2(a, b):
    if np.isnan(a) or np.isnan(b):
        return _NAN
    if a > b:
        return a
    if b > a:
        return b
    if np.signbit(a):
        return b
    return a


# ------------------------------------- implementation-approximated Math.* ----

# libm's cbrt itself. numba's np.cbrt is a fastmath pow(x, 1/3) that LLVM turns
# into a cbrt call at run time but constant-folds as pow with a constant
# argument: up to 3 ulps apart, and +0 for cbrt(-0). A call by name is folded
# (if at all) with the same libm, so a constant gives what a column gives.
_libm_cbrt = numba.types.ExternalFunction("cbrt", numba.types.float64(numba.types.float64))


@_jit
def js_cbrt(x):
    return _libm_cbrt(x)


@_jit
def js_exp(x):
    return np.exp(x)


@_jit
def js_log(x):
    return np.log(x)


@_jit
def js_log2(x):
    return np.log2(x)


@_jit
def js_log10(x):
    return np.log10(x)


@_jit
def js_sin(x):
    return np.sin(x)


@_jit
def js_cos(x):
    return np.cos(x)


@_jit
def js_tan(x):
    return np.tan(x)


@_jit
def js_asin(x):
    return np.arcsin(x)


@_jit
def js_acos(x):
    return np.arccos(x)


@_jit
def js_atan(x):
    return np.arctan(x)


@_jit
def js_atan2(y, x):
    return np.arctan2(y, x)


@_jit
def js_hypot2(a, b):
    """Math.hypot(a, b): Infinity if either is infinite (even with NaN), then NaN."""
    if np.isinf(a) or np.isinf(b):
        return np.inf
    return np.hypot(a, b)


# ------------------------------------------------------------- truthiness ----


@_jit
def js_truthy(x):
    """ToBoolean of a number: false for +0, -0 and NaN."""
    return x == x and x != 0.0


@_jit
def js_select(test, then, otherwise):
    """``test ? then : otherwise`` over values already computed: a call where a conditional
    expression would be a branch. Kernels select this way so that a formula's chain of
    ternaries (a lookup table) does not become hundreds of basic blocks, which numba's
    SSA pass walks recursively; LLVM inlines the call back into a select."""
    return then if test else otherwise

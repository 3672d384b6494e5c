"""Constant folding with exact JavaScript semantics, in plain Python.

Only operators whose result Python can compute bit for bit are folded
(ToInt32 arithmetic, IEEE + - * / on floats, fmod); everything else is left
to the kernel. Folding matters: without it `gps.latitude / (1 << 23)` calls
the shift helper on every row.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fold_arith", "fold_negate"]


def _to_uint32(x: float) -> int:
    return int(math.trunc(x)) % 2**32 if math.isfinite(x) else 0


def _to_int32(x: float) -> int:
    v = _to_uint32(x)
    return v - 2**32 if v >= 2**31 else v


def fold_arith(op: str, a: float, b: float) -> float | None:
    """The value of `a op b` in JavaScript, or None when it is not folded here."""
    if op in ("+", "-", "*", "/"):
        with np.errstate(all="ignore"):
            x, y = np.float64(a), np.float64(b)
            return float({"+": x + y, "-": x - y, "*": x * y, "/": x / y}[op])
    if op == "%":
        if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
            return None
        return math.fmod(a, b)
    count = _to_uint32(b) & 31
    if op == "<<":
        return float(_to_int32(float(_to_int32(a) << count)))
    if op == ">>":
        return float(_to_int32(a) >> count)
    if op == ">>>":
        return float(_to_uint32(a) >> count)
    if op in ("&", "|", "^"):
        x, y = _to_int32(a), _to_int32(b)
        return float(_to_int32(float({"&": x & y, "|": x | y, "^": x ^ y}[op])))
    return None


def fold_negate(a: float) -> float:
    return -a

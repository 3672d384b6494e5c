"""QuickJS as the reference for JavaScript number semantics.

Shared by test_jsmath.py (scalar functions) and test_differential.py (whole
formulas). Conversions of the ``quickjs`` package (1.19) to keep in mind:
Python ints are truncated to int32 on the way into JS (so only floats, or
source text, are passed), -0.0 / NaN / +-Inf pass through as floats, and
int32-valued results come back as Python ints. Whole-formula results are
returned through JSON with every number encoded as the hex of its IEEE bits,
so -0, NaN and +-Inf survive the trip.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import quickjs

__all__ = [
    "EDGES",
    "js_function",
    "to_js",
    "same_number",
    "ulp_distance",
    "close_number",
    "js_literal",
    "JsError",
    "evaluate_program",
    "same_value",
]

EDGES = [
    0.0,
    -0.0,
    0.5,
    -0.5,
    2.5,
    -2.5,
    1.0,
    -1.0,
    1.5,
    -1.5,
    2.0**31,
    2.0**31 - 1,
    -(2.0**31),
    -(2.0**31) - 1,
    2.0**32,
    2.0**32 + 1,
    -(2.0**32),
    2.0**53,
    2.0**53 + 2,
    2.0**52 + 1,
    -(2.0**52) - 1,
    1e308,
    -1e308,
    5e-324,
    -5e-324,
    0.49999999999999994,
    -0.49999999999999994,
    4294967295.5,
    -4294967295.5,
    math.inf,
    -math.inf,
    math.nan,
    31.0,
    32.0,
    33.0,
    -1e-300,
    2.0**63,
    2.0**64,
    struct.unpack(">d", bytes.fromhex("7ff0000000000001"))[0],  # signalling NaN
]

_ctx = quickjs.Context()
# QuickJS's parser recurses per nesting level and guards its C stack with a limit (256 KB by
# default) that a 256-entry lookup ternary exceeds; the main thread has megabytes.
_ctx.set_max_stack_size(4 << 20)
_ctx.eval(
    r"""
var __dv = new DataView(new ArrayBuffer(8));
function __enc(v) {
    if (v === null) return ["n"];
    if (v === undefined) return ["u"];
    if (typeof v === "boolean") return ["b", v];
    if (typeof v === "string") return ["s", v];
    if (typeof v === "number") {
        __dv.setFloat64(0, v);
        var h = "";
        for (var i = 0; i < 8; i++) h += (__dv.getUint8(i) + 256).toString(16).slice(1);
        return ["d", h];
    }
    return ["?", String(v)];
}
"""
)


class JsError(Exception):
    """The JS engine threw (a SyntaxError for text JS does not accept)."""


def js_function(src: str):
    """A QuickJS function from its source, e.g. ``(function(a,b){return a<<b})``."""
    return _ctx.eval(src)


def to_js(x: float) -> float:
    """JS has one NaN: hand QuickJS the quiet one (it passes other bits to libm)."""
    return math.nan if math.isnan(x) else float(x)


def same_number(ours, theirs) -> bool:
    """JS number identity: NaN equals NaN, -0 differs from +0, int == float."""
    if isinstance(theirs, bool) or isinstance(ours, bool):
        return isinstance(theirs, bool) and isinstance(ours, bool) and ours == theirs
    if ours is None or theirs is None:
        return False
    ours, theirs = float(ours), float(theirs)
    if math.isnan(ours) or math.isnan(theirs):
        return math.isnan(ours) and math.isnan(theirs)
    return ours == theirs and math.copysign(1.0, ours) == math.copysign(1.0, theirs)


def _ordered(x: float) -> int:
    i = struct.unpack("<q", struct.pack("<d", x))[0]
    return i if i >= 0 else -(i & 0x7FFFFFFFFFFFFFFF)


def ulp_distance(a: float, b: float) -> int:
    return abs(_ordered(float(a)) - _ordered(float(b)))


def _special(x: float) -> bool:
    return math.isnan(x) or math.isinf(x) or x == 0.0


def close_number(ours, theirs, args: Iterable[float] = ()) -> bool:
    """The 1-ulp policy for implementation-approximated functions.

    Exact when any argument is special (NaN, +-Inf, +-0); otherwise both
    results finite, non-NaN, same sign, at most 1 ulp apart.
    """
    if same_number(ours, theirs):
        return True
    if isinstance(ours, bool) or isinstance(theirs, bool) or ours is None or theirs is None:
        return False
    ours, theirs = float(ours), float(theirs)
    if any(_special(float(a)) for a in args):
        return False
    if math.isnan(ours) or math.isnan(theirs) or math.isinf(ours) or math.isinf(theirs):
        return False
    if math.copysign(1.0, ours) != math.copysign(1.0, theirs):
        return False
    return ulp_distance(ours, theirs) <= 1


def same_value(ours: Any, theirs: Any, ulps: int = 0) -> bool:
    """A decoded value against a JS value: None/bool/str exactly, numbers as same_number.

    ``ulps`` > 0 allows that many ulps between finite numbers of one sign
    (formulas using implementation-approximated Math functions).
    """
    if theirs is None or isinstance(theirs, (bool, str)):
        return type(ours) is type(theirs) and ours == theirs
    if not isinstance(ours, float):  # formula numbers come out as Python floats
        return False
    if same_number(ours, theirs):
        return True
    if (
        ulps
        and all(math.isfinite(v) for v in (ours, theirs))
        and (math.copysign(1.0, ours) == math.copysign(1.0, theirs))
    ):
        return ulp_distance(ours, theirs) <= ulps
    return False


def js_literal(value: Any) -> str:
    """JS source text that evaluates to exactly ``value`` (any NaN becomes NaN)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {js_literal(v)}" for k, v in value.items()) + "}"
    x = float(value)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0.0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    return repr(x)  # shortest round-trip text; JS parses it to the same double


def _decode(item: list) -> Any:
    tag = item[0]
    if tag == "n":
        return None
    if tag in ("b", "s"):
        return item[1]
    if tag == "d":
        return struct.unpack(">d", bytes.fromhex(item[1]))[0]
    raise AssertionError(f"unexpected JS value {item!r}")


def evaluate_program(
    env: dict[str, Any],
    assignments: Sequence[tuple[str, str]],
    outputs: Sequence[str],
) -> list[Any]:
    """Run ``var <env>; <target> = (<formula>); ...`` in JS and return ``outputs``.

    ``env`` maps top-level names to values (a dict value becomes an object,
    for dotted members). ``assignments`` are (target, formula) in order, as a
    device class's calculateElements: later formulas see earlier targets.
    ``outputs`` are expressions (targets) whose final values are returned as
    None, bool, str or float. Raises JsError when JS throws.
    """
    lines = ["(function(){"]
    for name, value in env.items():
        lines.append(f"var {name} = {js_literal(value)};")
    declared = set(env)
    for target, formula in assignments:
        root = target.split(".")[0]
        if root not in declared:
            lines.append(f"var {root} = {{}};" if "." in target else f"var {root};")
            declared.add(root)
        # newlines around the formula: a trailing // comment must not eat the ')'
        lines.append(f"{target} = (\n{formula}\n);")
    lines.append("return JSON.stringify([" + ", ".join(f"__enc({o})" for o in outputs) + "]);")
    lines.append("})()")
    try:
        text = _ctx.eval("\n".join(lines))
    except quickjs.JSException as err:
        raise JsError(str(err)) from None
    return [_decode(item) for item in json.loads(text)]

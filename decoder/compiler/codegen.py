"""Typed IR -> Python source of ONE fused numba kernel per device class.

The source is built from the IR alone. Script text never reaches it: every
variable becomes ``v<slot id>``, numbers are emitted with ``repr(float)``,
strings travel as integer codes into a table kept on the Python side.

Kernel signature (positional)::

    kernel(data, offsets, in_err, ports, err, bits_used, *outputs)

``data``/``offsets`` are the Arrow binary layout of the payloads, ``in_err``
marks rows whose text could not be converted, ``ports`` holds the FPort or -1
for unknown (read only when a formula uses ``port``). Per row the kernel
writes ``err`` (0 ok, 1 too short, 2 bad input), ``bits_used`` (bits
consumed, or needed when too short; only for layouts with conditional reads,
a fixed layout's size being known statically) and, for every output
column in :attr:`Program.outputs` order, a value array and, when the column
can be null, a uint8 validity array.

A second entry point, ``kernel_fixed(data, stride, n, ports, err, bits_used,
*outputs)``, serves the common batch whose payloads all have one length and
converted cleanly: row ``i`` starts at ``i * stride``, which spares the
offsets loads and lets LLVM treat the batch as a matrix.
"""

from __future__ import annotations

import math
from functools import singledispatchmethod

from ..runtime.abi import ERR_INPUT, ERR_OK, ERR_TOO_SHORT
from .formula import nesting_allowance
from .ir import (
    AndOr,
    Arith,
    Assign,
    BitNot,
    Builtin,
    Compare,
    Const,
    Equals,
    Expr,
    KernelLayout,
    Kind,
    MathCall,
    Negate,
    Not,
    Program,
    Read,
    Select,
    Slot,
    SlotRef,
    ToNumber,
    Truthy,
)

__all__ = ["generate", "KernelLayout"]

_ARITH_INFIX = {"+": "+", "-": "-", "*": "*", "/": "/"}
_ARITH_CALL = {
    "%": "js_mod",
    "**": "js_pow",
    "&": "js_bitand",
    "|": "js_bitor",
    "^": "js_bitxor",
    "<<": "js_shl",
    ">>": "js_sar",
    ">>>": "js_shr",
}
_ZERO = {Kind.NUM: "0.0", Kind.BOOL: "False", Kind.STR: "-1", Kind.NULL: "0.0"}


def _float_literal(value: float) -> str:
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INF" if value > 0 else "(-INF)"
    text = repr(float(value))
    return f"({text})" if text.startswith("-") else text


def _var_type(slot: Slot) -> str:
    """numba scalar type a slot is held in while a row is decoded."""
    if slot.storage == "bool":
        return "bool"
    if slot.storage == "uint64":
        return "np.uint64"
    if slot.storage.startswith(("int", "uint")) or slot.storage == "str":
        return "np.int64"
    return "np.float64"


class _Emitter:
    def __init__(self, program: Program):
        self.program = program
        self.lines: list[str] = []
        self.indent = 0
        self.temps = 0
        self.cache: dict[Expr, tuple[str, str | None]] = {}
        self.empty_code = program.strings.index("") if "" in program.strings else None

    def line(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    def temp(self, code: str) -> str:
        name = f"t{self.temps}"
        self.temps += 1
        self.line(f"{name} = {code}")
        return name

    # ---- expressions: (value code, null code or None when never null) ----
    def emit(self, expr: Expr) -> tuple[str, str | None]:
        if expr not in self.cache:
            self.cache[expr] = self._emit(expr)
        return self.cache[expr]

    def value(self, expr: Expr) -> str:
        return self.emit(expr)[0]

    def null(self, expr: Expr) -> str:
        return self.emit(expr)[1] or "False"

    @singledispatchmethod
    def _emit(self, expr: Expr) -> tuple[str, str | None]:
        raise NotImplementedError(type(expr).__name__)

    @_emit.register
    def _(self, expr: Const):
        kind = expr.type.kind
        if kind is Kind.NULL:
            return "0.0", "True"
        if kind is Kind.NUM:
            return _float_literal(expr.value), None
        if kind is Kind.BOOL:
            return ("True" if expr.value else "False"), None
        return str(int(expr.value)), None

    @_emit.register
    def _(self, expr: SlotRef):
        slot = expr.slot
        name = f"v{slot.id}"
        if slot.kind is Kind.NUM and slot.storage != "float64":
            name = f"np.float64({name})"
        return name, (f"v{slot.id}n" if slot.nullable else None)

    @_emit.register
    def _(self, expr: Builtin):
        if expr.name == "port":
            return "port_v", "port_n"
        return "length_v", None

    @_emit.register
    def _(self, expr: ToNumber):
        value, null = self.emit(expr.operand)
        kind = expr.operand.type.kind
        if kind is Kind.BOOL:
            value = self.temp(f"np.float64({value})")
        elif kind is Kind.NULL:
            value = "0.0"
        return value, (null if expr.type.nullable else None)

    @_emit.register
    def _(self, expr: Truthy):
        value, _ = self.emit(expr.operand)
        kind = expr.operand.type.kind
        if kind is Kind.NUM:
            return self.temp(f"js_truthy({value})"), None
        if kind is Kind.BOOL:
            return value, None
        if kind is Kind.STR:
            extra = f" & ({value} != {self.empty_code})" if self.empty_code is not None else ""
            return self.temp(f"({value} >= 0){extra}"), None
        return "False", None

    @_emit.register
    def _(self, expr: Not):
        return self.temp(f"not {self.value(expr.operand)}"), None

    @_emit.register
    def _(self, expr: Negate):
        return self.temp(f"-{self.value(expr.operand)}"), None

    @_emit.register
    def _(self, expr: BitNot):
        return self.temp(f"js_bitnot({self.value(expr.operand)})"), None

    @_emit.register
    def _(self, expr: Arith):
        a, b = self.value(expr.left), self.value(expr.right)
        if expr.op in _ARITH_INFIX:
            return self.temp(f"{a} {_ARITH_INFIX[expr.op]} {b}"), None
        return self.temp(f"{_ARITH_CALL[expr.op]}({a}, {b})"), None

    @_emit.register
    def _(self, expr: Compare):
        return self.temp(f"{self.value(expr.left)} {expr.op} {self.value(expr.right)}"), None

    # Boolean logic is written with & | and `not` on values already computed, never with
    # `and`/`or`/`x if c else y`: those are branches, and a formula of a few hundred of
    # them made numba's SSA pass (recursive per basic block) overflow Python's stack.
    @_emit.register
    def _(self, expr: Equals):
        left, right = expr.left, expr.right
        ln, rn = self.emit(left)[1], self.emit(right)[1]
        if not expr.same_kind:  # statically different kinds: equal only when both are null
            code = f"({ln} & {rn})" if ln and rn else "False"
        elif left.type.kind is Kind.NULL or right.type.kind is Kind.NULL:
            other_null = rn if left.type.kind is Kind.NULL else ln
            code = other_null or "False"
            if left.type.kind is Kind.NULL and right.type.kind is Kind.NULL:
                code = "True"
        else:
            same = f"({self.value(left)} == {self.value(right)})"
            if ln and rn:
                code = f"(({ln} & {rn}) | ((not {ln}) & (not {rn}) & {same}))"
            elif ln or rn:
                code = f"((not {ln or rn}) & {same})"
            else:
                code = same
        if expr.negate:
            code = f"not {code}"
        return self.temp(code), None

    @_emit.register
    def _(self, expr: AndOr):
        op = "&" if expr.op == "&&" else "|"
        return self.temp(f"{self.value(expr.left)} {op} {self.value(expr.right)}"), None

    @_emit.register
    def _(self, expr: Select):
        test = self.value(expr.test)
        kind = expr.type.kind
        then_v, then_n = self._branch(expr.then, kind)
        else_v, else_n = self._branch(expr.otherwise, kind)
        value = self.temp(f"js_select({test}, {then_v}, {else_v})")
        if not expr.type.nullable:
            return value, None
        # null flags are booleans: selected with & and | (no call for numba to type)
        return value, self.temp(f"({test} & {then_n}) | ((not {test}) & {else_n})")

    def _branch(self, expr: Expr, kind: Kind) -> tuple[str, str]:
        if expr.type.kind is Kind.NULL:
            return _ZERO[kind], "True"
        value, null = self.emit(expr)
        return value, (null or "False")

    @_emit.register
    def _(self, expr: MathCall):
        args = ", ".join(self.value(a) for a in expr.args)
        return self.temp(f"{expr.function}({args})"), None

    # ---- statements ------------------------------------------------------
    def read_code(self, st: Read, at: str) -> str:
        """Expression of the field's value, `at` being its bit offset code."""
        static = st.bit_offset is not None
        aligned = static and st.bit_offset % 8 == 0 and st.bits % 8 == 0
        if st.little_endian:
            if aligned:
                raw = f"read_bytes_le(data, base + {st.bit_offset // 8}, {st.bits // 8})"
            else:
                raw = f"read_bits_le(data, base, {at}, {st.bits // 8})"
        elif aligned and st.bits <= 56 and st.kind != "float":
            first = st.bit_offset // 8
            nbytes = st.bits // 8
            parts = [f"(np.int64(data[base + {first + k}]) << {8 * (nbytes - 1 - k)})" for k in range(nbytes)]
            raw = " | ".join(parts).replace(" << 0)", ")")
            if st.kind == "bool":
                return f"({raw}) != 0"
            if st.signed:  # two's complement over `bits`, branch-free
                half = 1 << (st.bits - 1)
                return f"((({raw}) ^ {half}) - {half})"
            return f"({raw})"
        else:
            raw = f"read_bits(data, base, {at}, {st.bits})"
        if st.kind == "bool":
            return f"{raw} != np.uint64(0)"
        if st.kind == "float":
            return {16: "f16_from_bits", 32: "f32_from_bits", 64: "f64_from_bits"}[st.bits] + f"({raw})"
        if st.signed:
            return f"sign_extend({raw}, {st.bits})"
        if st.slot.storage == "uint64":
            return raw
        return f"np.int64({raw})"

    def emit_read(self, st: Read, dynamic: bool) -> None:
        if st.slot is None:  # skip: only moves the cursor, and only where its condition holds
            if st.condition is not None:
                self.line(f"if {self.value(st.condition)}:")
                self.indent += 1
            if dynamic:
                self.emit_bounds(st)
                self.line(f"cur += {st.bits}")
            if st.condition is not None:
                self.indent -= 1
            return
        var = f"v{st.slot.id}"
        cast = _var_type(st.slot)
        if st.condition is None:
            if dynamic:
                self.emit_bounds(st)
                self.line(f"{var} = {cast}({self.read_code(st, 'cur')})")
                self.line(f"cur += {st.bits}")
            else:
                self.line(f"{var} = {cast}({self.read_code(st, str(st.bit_offset))})")
            return
        test = self.value(st.condition)
        self.line(f"if {test}:")
        self.indent += 1
        self.emit_bounds(st)
        self.line(f"{var} = {cast}({self.read_code(st, 'cur')})")
        if st.slot.nullable:
            self.line(f"{var}n = False")
        self.line(f"cur += {st.bits}")
        self.indent -= 1
        self.line("else:")
        self.indent += 1
        if st.previous is None:
            self.line(f"{var} = {cast}(0)")
        else:
            self.line(f"{var} = {cast}(v{st.previous.id})")
        if st.slot.nullable:
            self.line(
                f"{var}n = {f'v{st.previous.id}n' if st.previous is not None and st.previous.nullable else 'True'}"
            )
        self.indent -= 1

    def emit_bounds(self, st: Read) -> None:
        self.line(f"if cur + {st.bits} > nbits:")
        self.line(f"    status = {ERR_TOO_SHORT}")
        self.line(f"    need = cur + {st.remaining_bits}")
        self.line("    break")

    def emit_assign(self, st: Assign) -> None:
        value, null = self.emit(st.value)
        var = f"v{st.slot.id}"
        if st.value.type.kind is Kind.NULL:
            value = "0.0"
        self.line(f"{var} = {value}")
        if st.slot.nullable:
            self.line(f"{var}n = {null or 'False'}")


def _zero_init(slot: Slot) -> str:
    return f"{_var_type(slot)}(0)" if slot.storage != "bool" else "False"


def _emit_kernel(program: Program, outputs, fixed: bool) -> list[str]:
    """One entry point: rows by `offsets`, or (`fixed`) rows of one length `stride` with no input errors."""
    em = _Emitter(program)
    reads = [st for st in program.statements if isinstance(st, Read)]
    assigns = [st for st in program.statements if isinstance(st, Assign)]
    first_dynamic = next((k for k, st in enumerate(reads) if st.bit_offset is None or st.condition is not None), None)
    dynamic = first_dynamic is not None
    static_prefix = reads[first_dynamic].bit_offset if dynamic else (program.static_bits or 0)

    out_args: list[str] = []
    for j, (_, slot) in enumerate(outputs):
        out_args.append(f"o{j}")
        if slot.nullable:
            out_args.append(f"m{j}")
    rows = ["data", "stride", "n"] if fixed else ["data", "offsets", "in_err"]
    signature = ", ".join([*rows, "ports", "err", "bits_used", *out_args])

    em.line('@njit(cache=True, nogil=True, error_model="numpy")')
    em.line(f"def {'kernel_fixed' if fixed else 'kernel'}({signature}):")
    em.indent = 1
    if not fixed:
        em.line("n = offsets.shape[0] - 1")
    em.line("for i in range(n):")
    em.indent = 2
    if fixed:
        em.line("base = i * stride")
        em.line("nbytes = stride")
    else:
        em.line("if in_err[i] != 0:")
        em.line(f"    err[i] = {ERR_INPUT}")
        em.line("    continue")
        em.line("base = offsets[i]")
        em.line("nbytes = offsets[i + 1] - base")
    em.line("nbits = nbytes * 8")
    if program.uses_port:
        em.line("port_raw = ports[i]")
        em.line("port_n = port_raw < 0")
        em.line("port_v = 0.0 if port_n else np.float64(port_raw)")
    em.line("length_v = np.float64(nbytes)")
    em.line("status = 0")
    em.line("need = 0")
    for st in reads:
        if st.slot is not None:
            em.line(f"v{st.slot.id} = {_zero_init(st.slot)}")
            if st.slot.nullable:
                em.line(f"v{st.slot.id}n = True")
    if dynamic:
        em.line(f"cur = {static_prefix}")
    em.line("while True:")
    em.indent = 3
    if static_prefix:
        em.line(f"if nbits < {static_prefix}:")
        em.line(f"    status = {ERR_TOO_SHORT}")
        em.line(f"    need = {reads[0].remaining_bits}")
        em.line("    break")
    for k, st in enumerate(reads):
        em.emit_read(st, dynamic=dynamic and k >= first_dynamic)
    em.line("break")
    em.indent = 2
    em.line("if status != 0:")
    em.line("    err[i] = status")
    if dynamic:  # a fixed layout's need is its static size, known outside
        em.line("    bits_used[i] = need")
    em.line("    continue")
    for st in assigns:
        em.emit_assign(st)
    for j, (_, slot) in enumerate(outputs):
        em.line(f"o{j}[i] = v{slot.id}")
        if slot.nullable:
            em.line(f"m{j}[i] = not v{slot.id}n")
    em.line(f"err[i] = {ERR_OK}")
    if dynamic:
        em.line("bits_used[i] = cur")
    return em.lines


def generate(program: Program) -> tuple[str, KernelLayout]:
    """Return the kernel module source and the layout of its output arguments."""
    outputs = tuple(program.outputs.items())
    reads = [st for st in program.statements if isinstance(st, Read)]
    dynamic = any(st.bit_offset is None or st.condition is not None for st in reads)
    header = [
        "# Generated by decoder.codegen from a device-class script's IR. Do not edit.",
        "import math",
        "import numpy as np",
        "from numba import njit",
        "from decoder.runtime.bits import (f16_from_bits, f32_from_bits, f64_from_bits, read_bits, read_bits_le,",
        "                           read_bytes_le, sign_extend)",
        "from decoder.runtime.jsmath import *  # noqa: F401,F403 - the js_* runtime",
        "",
        "INF = math.inf",
        "NAN = math.nan",
        "",
        "",
    ]
    with nesting_allowance():  # the emitter recurses once per level of an expression
        body = _emit_kernel(program, outputs, fixed=False) + ["", ""] + _emit_kernel(program, outputs, fixed=True)
    return "\n".join(header + body) + "\n", KernelLayout(outputs=outputs, dynamic=dynamic)

"""AST + parse elements -> typed IR (see ``ir.py``), with every type rule of docs/script-language.md.

Errors are ScriptErrors that point at the offending token; the compiler adds
the class name and the element label.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ScriptError
from . import formula as ast
from .fold import fold_arith
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
    JsType,
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
from .script import ClassSpec

__all__ = ["lower"]

NUM = JsType(Kind.NUM)
BOOL = JsType(Kind.BOOL)
NULL = JsType(Kind.NULL, True)

MATH_CONSTANTS = {
    "PI": math.pi,
    "E": math.e,
    "LN2": math.log(2),
    "LN10": math.log(10),
    "LOG2E": math.log2(math.e),
    "LOG10E": math.log10(math.e),
    "SQRT2": math.sqrt(2),
    "SQRT1_2": math.sqrt(0.5),
}
GLOBAL_CONSTANTS = {"NaN": math.nan, "Infinity": math.inf}
UNARY_MATH = (
    "abs",
    "ceil",
    "floor",
    "round",
    "trunc",
    "sign",
    "sqrt",
    "cbrt",
    "exp",
    "log",
    "log2",
    "log10",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
)
BINARY_MATH = ("atan2", "pow")
VARIADIC_MATH = {"min": math.inf, "max": -math.inf, "hypot": 0.0}  # value with no arguments
BUILTINS = {"port": JsType(Kind.NUM, True), "length": NUM}


def _int_storage(bits: int, signed: bool) -> str:
    for width in (8, 16, 32, 64):
        if bits <= width:
            return f"{'int' if signed else 'uint'}{width}"
    raise AssertionError(bits)


def _read_storage(kind: str, bits: int, signed: bool) -> str:
    if kind == "bool":
        return "bool"
    if kind == "float":
        return "float64" if bits == 64 else "float32"
    return _int_storage(bits, signed)


def _merge_storage(a: str, b: str) -> str | None:
    """Storage that holds both, for a conditional read that keeps an earlier value."""
    if a == b:
        return a
    if "bool" in (a, b) or "str" in (a, b):
        return None
    merged = np.promote_types(a, b).name
    return (
        merged
        if merged in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64")
        else "float64"
    )


class _Lowerer:
    def __init__(self, spec: ClassSpec):
        self.spec = spec
        self.program = Program()
        self.env: dict[tuple[str, ...], Slot] = {}
        self.next_slot = 0
        self.source = ""
        self._strings: dict[str, int] = {}

    # ---- errors --------------------------------------------------------
    def fail(self, node: ast.Node, message: str) -> ScriptError:
        return ScriptError(message, source=self.source, line=node.line, column=node.column)

    # ---- names ---------------------------------------------------------
    def new_slot(self, path: tuple[str, ...], storage: str, nullable: bool) -> Slot:
        self._check_shape(path)
        slot = Slot(self.next_slot, path, storage, nullable)
        self.next_slot += 1
        self.env[path] = slot
        self.program.outputs[path] = slot  # an update keeps its place: columns follow first assignment
        return slot

    def _check_shape(self, path: tuple[str, ...]) -> None:
        for known in self.env:
            if known == path:
                continue
            shorter, longer = sorted((known, path), key=len)
            if longer[: len(shorter)] == shorter:
                raise ScriptError(
                    f"target {'.'.join(path)!r} conflicts with {'.'.join(known)!r}: "
                    f"{'.'.join(shorter)!r} cannot be both a value and an object"
                )

    def string_code(self, value: str) -> int:
        if value not in self._strings:
            self._strings[value] = len(self.program.strings)
            self.program.strings.append(value)
        return self._strings[value]

    def resolve(self, node: ast.Name) -> Expr:
        path = node.path
        if path in self.env:
            slot = self.env[path]
            return SlotRef(slot.type, slot)
        if path[0] == "Math":
            if len(path) == 2 and path[1] in MATH_CONSTANTS:
                return Const(NUM, MATH_CONSTANTS[path[1]])
            if len(path) == 2 and (path[1] in UNARY_MATH or path[1] in BINARY_MATH or path[1] in VARIADIC_MATH):
                raise self.fail(node, f"Math.{path[1]} is a function; call it, e.g. Math.{path[1]}(x)")
            raise self.fail(node, f"{node.dotted} is not supported")
        for known in self.env:
            if known[: len(path)] == path:
                raise self.fail(node, f"{node.dotted!r} is an object; use a member such as {'.'.join(known)!r}")
            if path[: len(known)] == known:
                raise self.fail(
                    node,
                    f"{'.'.join(known)!r} is a {self.env[known].kind.value}; it has no member {path[len(known)]!r}",
                )
        if len(path) == 1 and path[0] in BUILTINS:
            self.program.uses_port |= path[0] == "port"
            return Builtin(BUILTINS[path[0]], path[0])
        if len(path) == 1 and path[0] in GLOBAL_CONSTANTS:
            return Const(NUM, GLOBAL_CONSTANTS[path[0]])
        raise self.fail(node, f"unknown name {node.dotted!r} (not defined by an earlier element)")

    # ---- expressions ---------------------------------------------------
    def number(self, expr: Expr, node: ast.Node, what: str) -> Expr:
        """JavaScript ToNumber for operands of arithmetic, bitwise and relational operators."""
        kind = expr.type.kind
        if kind is Kind.STR:
            raise self.fail(node, f"{what} needs numbers, but this operand is a string")
        if kind is Kind.NUM and not expr.type.nullable and not isinstance(expr, SlotRef):
            return expr
        return ToNumber(NUM, expr)  # drops null (JavaScript's null -> 0) and converts stored ints

    def test(self, node: ast.Node) -> Expr:
        """Lower `node` where only its truthiness matters; mixed && / || operands are fine here."""
        if isinstance(node, ast.Logical):
            return AndOr(BOOL, node.op, self.test(node.left), self.test(node.right))
        if isinstance(node, ast.Unary) and node.op == "!":
            return Not(BOOL, self.test(node.operand))
        if isinstance(node, ast.Conditional):
            return Select(BOOL, self.test(node.test), self.test(node.then), self.test(node.otherwise))
        return self.truthy(self.value(node))

    @staticmethod
    def truthy(expr: Expr) -> Expr:
        if expr.type == BOOL:
            return expr
        return Truthy(BOOL, expr)

    def merge_types(self, node: ast.Node, a: JsType, b: JsType, what: str) -> JsType:
        if a.kind is Kind.NULL:
            return JsType(b.kind, True)
        if b.kind is Kind.NULL:
            return JsType(a.kind, True)
        if a.kind is not b.kind:
            raise self.fail(
                node,
                f"{what} give different types ({a.kind.value} and {b.kind.value}); "
                "a formula's result must have one type (apart from null)",
            )
        return JsType(a.kind, a.nullable or b.nullable)

    def value(self, node: ast.Node) -> Expr:
        method = getattr(self, f"_v_{type(node).__name__}")
        return method(node)

    def _v_Number(self, node: ast.Number) -> Expr:
        return Const(NUM, node.value)

    def _v_String(self, node: ast.String) -> Expr:
        return Const(JsType(Kind.STR), self.string_code(node.value))

    def _v_Boolean(self, node: ast.Boolean) -> Expr:
        return Const(BOOL, node.value)

    def _v_Null(self, node: ast.Null) -> Expr:
        return Const(NULL, None)

    def _v_Name(self, node: ast.Name) -> Expr:
        return self.resolve(node)

    def _v_Unary(self, node: ast.Unary) -> Expr:
        if node.op == "!":
            return Not(BOOL, self.test(node.operand))
        operand = self.number(self.value(node.operand), node, f"unary {node.op}")
        if node.op == "-":
            if isinstance(operand, Const) and operand.type == NUM:
                return Const(NUM, -operand.value)
            return Negate(NUM, operand)
        if node.op == "~":
            return BitNot(NUM, operand)
        return operand  # unary +

    def _v_Logical(self, node: ast.Logical) -> Expr:
        left, right = self.value(node.left), self.value(node.right)
        result = self.merge_types(node, left.type, right.type, f"the operands of {node.op!r}")
        # a && b is b where a is truthy, else a; a || b is a where a is truthy, else b.
        left_truthy = self.truthy(left)
        if node.op == "&&":
            return Select(result, left_truthy, right, left)
        return Select(result, left_truthy, left, right)

    def _v_Conditional(self, node: ast.Conditional) -> Expr:
        test = self.test(node.test)
        then, otherwise = self.value(node.then), self.value(node.otherwise)
        result = self.merge_types(node, then.type, otherwise.type, "the branches of '?:'")
        return Select(result, test, then, otherwise)

    def _v_Binary(self, node: ast.Binary) -> Expr:
        op = node.op
        left, right = self.value(node.left), self.value(node.right)
        if op in ("==", "!=", "===", "!=="):
            return self.equality(node, left, right)
        if op == "+" and Kind.STR in (left.type.kind, right.type.kind):
            raise self.fail(node, "'+' with a string operand is not supported (no string concatenation)")
        what = f"operator {op!r}"
        a, b = self.number(left, node.left, what), self.number(right, node.right, what)
        if op in ("<", "<=", ">", ">="):
            return Compare(BOOL, op, a, b)
        if isinstance(a, Const) and isinstance(b, Const) and a.type == NUM and b.type == NUM:
            folded = fold_arith(op, a.value, b.value)
            if folded is not None:
                return Const(NUM, folded)
        return Arith(NUM, op, a, b)

    def equality(self, node: ast.Binary, left: Expr, right: Expr) -> Expr:
        strict = len(node.op) == 3
        negate = node.op.startswith("!")
        lk, rk = left.type.kind, right.type.kind
        if Kind.NULL in (lk, rk) or lk is rk:
            return Equals(BOOL, left, right, negate, same_kind=True)
        if Kind.STR in (lk, rk):
            if strict:  # a string is never === a number or boolean; only null === null
                return Equals(BOOL, left, right, negate, same_kind=False)
            raise self.fail(
                node,
                f"{node.op!r} between a string and a {(rk if lk is Kind.STR else lk).value} "
                "is not supported; compare strings with strings",
            )
        if strict:  # number vs boolean
            return Equals(BOOL, left, right, negate, same_kind=False)
        # number == boolean: JavaScript converts the boolean to a number
        return Equals(BOOL, self._num_keep_null(left), self._num_keep_null(right), negate, same_kind=True)

    @staticmethod
    def _num_keep_null(expr: Expr) -> Expr:
        if expr.type.kind is Kind.BOOL:
            return ToNumber(JsType(Kind.NUM, expr.type.nullable), expr)
        return expr

    def _v_Call(self, node: ast.Call) -> Expr:
        path = node.callee.path
        if len(path) != 2 or path[0] != "Math":
            raise self.fail(node, f"{node.callee.dotted}() is not supported; only Math functions can be called")
        fn = path[1]
        args = [self.number(self.value(a), a, f"Math.{fn}") for a in node.args]
        if fn in UNARY_MATH:
            if len(args) != 1:
                raise self.fail(node, f"Math.{fn} takes 1 argument, got {len(args)}")
            return MathCall(NUM, f"js_{fn}", tuple(args))
        if fn in BINARY_MATH:
            if len(args) != 2:
                raise self.fail(node, f"Math.{fn} takes 2 arguments, got {len(args)}")
            return MathCall(NUM, "js_pow" if fn == "pow" else f"js_{fn}", tuple(args))
        if fn in VARIADIC_MATH:
            if not args:
                return Const(NUM, VARIADIC_MATH[fn])
            if len(args) == 1:
                return (
                    MathCall(NUM, "js_abs", (args[0],))
                    if fn == "hypot"
                    else MathCall(NUM, f"js_{fn}2", (args[0], args[0]))
                )
            folded = args[0]
            for arg in args[1:]:
                folded = MathCall(NUM, f"js_{fn}2", (folded, arg))
            return folded
        raise self.fail(node.callee, f"Math.{fn} is not supported")

    # ---- elements ------------------------------------------------------
    def formula(self, text: str) -> Expr:
        self.source = text
        return ast.parse_formula(text)

    def lower_parse(self) -> None:
        offset: int | None = 0
        elements = self.spec.parse_elements
        # bits still needed from element k on, counting only unconditional reads: the "needs N" of an error
        suffix = [0] * (len(elements) + 1)
        for k in range(len(elements) - 1, -1, -1):
            suffix[k] = suffix[k + 1] + (0 if elements[k].condition else elements[k].bits)
        for k, el in enumerate(elements):
            try:
                condition = None
                if el.condition is not None:
                    condition = self.test(self.formula(el.condition))
                slot = previous = None
                if el.target is not None:
                    storage = _read_storage(el.kind, el.bits, el.signed)
                    if condition is not None:
                        previous = self.env.get(el.target)
                        if previous is not None:
                            merged = _merge_storage(previous.storage, storage)
                            if merged is None:
                                raise ScriptError(
                                    f"target {'.'.join(el.target)!r} was a {previous.kind.value} before; "
                                    f"a conditional {el.kind} read cannot keep that value"
                                )
                            storage = merged
                    nullable = condition is not None and (previous is None or previous.nullable)
                    slot = self.new_slot(el.target, storage, nullable)
                self.program.statements.append(
                    Read(
                        element=el.index,
                        kind=el.kind,
                        bits=el.bits,
                        signed=el.signed,
                        little_endian=el.little_endian,
                        bit_offset=offset,
                        slot=slot,
                        condition=condition,
                        previous=previous,
                        remaining_bits=el.bits + suffix[k + 1],
                    )
                )
                if condition is not None:
                    offset = None
                elif offset is not None:
                    offset += el.bits
            except ScriptError as err:
                raise err.located(element=el.label) from None
        self.program.static_bits = offset

    def lower_calc(self) -> None:
        for el in self.spec.calculate_elements:
            try:
                value = self.value(self.formula(el.formula))
                kind = value.type.kind
                storage = {Kind.NUM: "float64", Kind.BOOL: "bool", Kind.STR: "str", Kind.NULL: "float64"}[kind]
                slot = self.new_slot(el.target, storage, value.type.nullable)
                self.program.statements.append(Assign(el.index, slot, value))
            except ScriptError as err:
                raise err.located(element=el.label) from None


def lower(spec: ClassSpec) -> Program:
    """Type-check a class's script and lower it to a row program."""
    lowerer = _Lowerer(spec)
    with ast.nesting_allowance():  # the walks recurse once per nesting level of a formula
        lowerer.lower_parse()
        lowerer.lower_calc()
    return lowerer.program

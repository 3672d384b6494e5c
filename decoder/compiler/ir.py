"""The typed IR between the AST and the kernel source.

Every value has a static JavaScript type (number, boolean, string or the
literal null) and a static null-ability. Variables are in SSA form: each
assignment of a target makes a new :class:`Slot`, so a later formula sees
the latest value and a column's dtype is that of its last assignment.

Invariant the code generator relies on: a null value is stored as the zero
of its kind (0.0, False, string code -1), so arithmetic on a nullable
operand is arithmetic on its value (JavaScript's null -> 0) with no check.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Kind(enum.Enum):
    NUM = "number"
    BOOL = "boolean"
    STR = "string"
    NULL = "null"


@dataclass(frozen=True)
class JsType:
    kind: Kind
    nullable: bool = False

    def __str__(self) -> str:
        return self.kind.value + (" or null" if self.nullable and self.kind is not Kind.NULL else "")


@dataclass(frozen=True)
class Slot:
    """One SSA version of a target; `storage` is its numpy dtype (or 'str')."""

    id: int
    path: tuple[str, ...]
    storage: str
    nullable: bool

    @property
    def kind(self) -> Kind:
        if self.storage == "bool":
            return Kind.BOOL
        if self.storage == "str":
            return Kind.STR
        return Kind.NUM

    @property
    def type(self) -> JsType:
        return JsType(self.kind, self.nullable)


# ---- expressions -----------------------------------------------------------


def _expr(cls: type) -> type:
    """A frozen dataclass whose hash is computed once, when it is made.

    The code generator looks every expression up in a dict (equal
    subexpressions share one temporary). A generated dataclass hash walks the
    whole subtree on every lookup: a 400-term sum took seconds, and deep trees
    recursed in C. Children are made before their parent, so each hash here
    combines hashes already known.
    """
    full_hash = None  # the dataclass's own field hash, known once the dataclass is made

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", full_hash(self))  # not a field: equality and repr ignore it

    def __hash__(self) -> int:
        return self._hash

    cls.__post_init__ = __post_init__  # set before dataclass(), whose __init__ then calls it
    cls = dataclass(frozen=True)(cls)
    full_hash = cls.__hash__
    cls.__hash__ = __hash__
    return cls


@_expr
class Expr:
    type: JsType


@_expr
class Const(Expr):
    value: float | bool | int | None  # string constants hold their code in the string table


@_expr
class SlotRef(Expr):
    slot: Slot


@_expr
class Builtin(Expr):
    name: str  # "port" | "length"


@_expr
class ToNumber(Expr):
    operand: Expr


@_expr
class Truthy(Expr):
    operand: Expr


@_expr
class Not(Expr):
    operand: Expr


@_expr
class Negate(Expr):
    operand: Expr  # a number


@_expr
class Arith(Expr):
    op: str  # + - * / % ** & | ^ << >> >>> on numbers
    left: Expr
    right: Expr


@_expr
class BitNot(Expr):
    operand: Expr


@_expr
class Compare(Expr):
    op: str  # < <= > >= on numbers
    left: Expr
    right: Expr


@_expr
class Equals(Expr):
    """JavaScript ==/=== after static type checks: `numeric` compares numbers."""

    left: Expr
    right: Expr
    negate: bool
    same_kind: bool  # False: the kinds differ statically, so equal only if both are null


@_expr
class AndOr(Expr):
    """Boolean && / || over tests (used where only truthiness matters)."""

    op: str
    left: Expr
    right: Expr


@_expr
class Select(Expr):
    test: Expr  # boolean, never null
    then: Expr
    otherwise: Expr


@_expr
class MathCall(Expr):
    function: str  # name in decoder._jsmath, e.g. "js_floor"
    args: tuple[Expr, ...]


# ---- statements ------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    """Read a bit field. `bit_offset` is static when no conditional read precedes it."""

    element: int
    kind: str  # int | uint | bool | float | skip
    bits: int
    signed: bool
    little_endian: bool
    bit_offset: int | None
    slot: Slot | None  # None for skip
    condition: Expr | None = None
    previous: Slot | None = None  # value kept where the condition is false
    remaining_bits: int = 0  # bits this and the unconditional elements after it need


@dataclass(frozen=True)
class Assign:
    element: int
    slot: Slot
    value: Expr


@dataclass
class Program:
    """A class's whole row program plus what the batch needs to build columns."""

    statements: list = field(default_factory=list)
    outputs: dict[tuple[str, ...], Slot] = field(default_factory=dict)  # leaf path -> final slot
    strings: list[str] = field(default_factory=list)  # string table, code = index
    static_bits: int | None = 0  # total bits when the layout has no conditional read, else None
    uses_port: bool = False


@dataclass(frozen=True)
class KernelLayout:
    """What the Python side must allocate for a class's kernel and how to read it back."""

    outputs: tuple[tuple[tuple[str, ...], Slot], ...]  # leaf path, final slot; arrays in this order
    dynamic: bool  # bits_used is written for every row

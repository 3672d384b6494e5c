"""Formula text -> frozen AST nodes that carry line and column.

The grammar is ``formula.lark`` beside this module; this module only turns Lark's
parse tree into the small node set below and turns Lark's errors into
:class:`ScriptError` with a caret under the bad token.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from ..errors import ScriptError

__all__ = [
    "Node",
    "Number",
    "String",
    "Boolean",
    "Null",
    "Name",
    "Unary",
    "Binary",
    "Logical",
    "Conditional",
    "Call",
    "parse_formula",
    "MAX_NESTING",
    "nesting_allowance",
]

# How deep a formula may nest: every operator, call and pair of parentheses is one
# level. Lookup tables written as chained ternaries (`a == 0 ? 0 : a == 1 ? 10 : ...`)
# and long sums are real and need a few hundred; beyond this a formula is refused.
MAX_NESTING = 1000

# The parser (Lark's LALR) is iterative, but turning its tree into our AST, lowering
# the AST and emitting the kernel are recursive walks, each a few Python frames per
# level (at most 2 IR levels per AST level). Rather than rewrite them as explicit
# stacks, the interpreter's recursion limit is raised around them, by what MAX_NESTING
# needs, and restored after (see nesting_allowance).
_FRAMES_PER_LEVEL = 16
_allowance_lock = threading.Lock()
_allowance_users = 0
_saved_limit = 0


@contextlib.contextmanager
def nesting_allowance(levels: int = MAX_NESTING) -> Iterator[None]:
    """Within: Python's recursion limit leaves room for our walks over a formula nested ``levels`` deep.

    The limit is process-wide; it is raised on the first entry and restored
    when the last one (of any thread) leaves.
    """
    global _allowance_users, _saved_limit
    with _allowance_lock:
        if _allowance_users == 0:
            _saved_limit = sys.getrecursionlimit()
        _allowance_users += 1
        wanted = _saved_limit + levels * _FRAMES_PER_LEVEL
        if sys.getrecursionlimit() < wanted:
            sys.setrecursionlimit(wanted)
    try:
        yield
    finally:
        with _allowance_lock:
            _allowance_users -= 1
            if _allowance_users == 0:
                sys.setrecursionlimit(_saved_limit)


@dataclass(frozen=True)
class Node:
    line: int
    column: int


@dataclass(frozen=True)
class Number(Node):
    value: float


@dataclass(frozen=True)
class String(Node):
    value: str


@dataclass(frozen=True)
class Boolean(Node):
    value: bool


@dataclass(frozen=True)
class Null(Node):
    pass


@dataclass(frozen=True)
class Name(Node):
    path: tuple[str, ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Logical(Node):
    op: str  # "&&" or "||": returns an operand, not a boolean
    left: Node
    right: Node


@dataclass(frozen=True)
class Conditional(Node):
    test: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True)
class Call(Node):
    callee: Name
    args: tuple[Node, ...]


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v"}
_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|u\{[0-9a-fA-F]+\}|0(?![0-9])|[0-9]+|.)", re.S)


def _unescape(token: Token) -> str:
    """JavaScript string escapes; legacy octal escapes and lone surrogates are rejected."""
    body = str(token)[1:-1]

    def one(m: re.Match) -> str:
        esc = m.group(1)
        if esc[0] in "xu" and len(esc) > 1:
            return chr(int(esc[1:].strip("{}"), 16))
        if esc == "0":
            return "\0"
        if esc.isdigit():
            raise ScriptError(
                f"legacy octal escape '\\{esc}' in a string is not supported; use \\x or \\u",
                line=token.line,
                column=token.column + 1 + m.start(),
            )
        return _ESCAPES.get(esc, esc)

    text = _ESCAPE_RE.sub(one, body)
    try:  # JavaScript writes characters beyond U+FFFF as UTF-16 pairs: join them
        return text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        raise ScriptError("string has a lone UTF-16 surrogate escape", line=token.line, column=token.column) from None


def _number(token: Token) -> float:
    text = str(token)
    low = text.lower()
    for prefix, base in (("0x", 16), ("0b", 2), ("0o", 8)):
        if low.startswith(prefix):
            try:
                return float(int(text[2:], base))  # rounded to the nearest double, as JavaScript does
            except OverflowError:  # past the largest double: JavaScript's Infinity
                return math.inf
    if len(text) > 1 and text[0] == "0" and text[1].isdigit():
        raise ScriptError(
            f"number {text!r} has a leading zero (a legacy octal in JavaScript); write it without the zero",
            line=token.line,
            column=token.column,
        )
    return float(text)


def _no_increment(op: Token) -> None:
    if str(op) in ("++", "--"):
        raise ScriptError(
            f"{str(op)!r} (increment/decrement) is not supported; formulas cannot assign",
            line=op.line,
            column=op.column,
        )


def _at(token: Token) -> dict:
    return {"line": token.line, "column": token.column}


@v_args(inline=True)
class _ToAst(Transformer):
    def number(self, tok):
        return Number(value=_number(tok), **_at(tok))

    def string(self, tok):
        return String(value=_unescape(tok), **_at(tok))

    def true(self, tok):
        return Boolean(value=True, **_at(tok))

    def false(self, tok):
        return Boolean(value=False, **_at(tok))

    def null(self, tok):
        return Null(**_at(tok))

    def name(self, *parts):
        return Name(path=tuple(str(p) for p in parts), **_at(parts[0]))

    def call(self, callee, _lpar, *args):
        return Call(callee=callee, args=tuple(a for a in args if a is not None), line=callee.line, column=callee.column)

    def group(self, _lpar, inner):
        return inner

    def unary(self, op, operand):
        _no_increment(op)
        return Unary(op=str(op), operand=operand, **_at(op))

    def binary(self, left, op, right):
        _no_increment(op)
        return Binary(op=str(op), left=left, right=right, **_at(op))

    def logical(self, left, op, right):
        return Logical(op=str(op), left=left, right=right, **_at(op))

    def conditional(self, test, qmark, then, otherwise):
        return Conditional(test=test, then=then, otherwise=otherwise, **_at(qmark))


_GRAMMAR = Path(__file__).with_name("formula.lark")


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    # cache=True keeps the built LALR tables in a temp file keyed by the grammar: ~50 ms -> ~3 ms per process
    return Lark(_GRAMMAR.read_text(), parser="lalr", maybe_placeholders=True, cache=True)


def _describe_unexpected(err: UnexpectedInput, text: str) -> str:
    if isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END"):
        return "unexpected end of formula"
    if isinstance(err, UnexpectedToken):
        return f"unexpected {str(err.token)!r}"
    if isinstance(err, UnexpectedCharacters):
        return f"unexpected character {text[err.pos_in_stream]!r}"
    return "syntax error"


def _nesting(tree: Tree) -> tuple[int, Token | None]:
    """How many levels ``tree`` nests (0 for a lone name or number), and the first token at the
    deepest level; walked with a stack, so any depth is measured without recursion."""
    top, deepest = 0, None
    stack: list[tuple[Tree | Token | None, int]] = [(tree, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, Token):
            if level > top:
                top, deepest = level, node
        elif node is not None:
            stack.extend((child, level + 1) for child in reversed(node.children))
    return max(top - 1, 0), deepest


@functools.lru_cache(maxsize=4096)
def parse_formula(text: str) -> Node:
    """Parse one formula into an AST; raise ScriptError pointing at the bad token."""
    if not isinstance(text, str):
        raise ScriptError(f"formula must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ScriptError("formula is empty")
    try:
        tree = _parser().parse(text)
        depth, deepest = _nesting(tree)
        if depth > MAX_NESTING:
            raise ScriptError(
                f"formula nests {depth} levels deep; at most {MAX_NESTING} are allowed "
                "(every operator and pair of parentheses is one)",
                source=text,
                line=deepest.line if deepest is not None else None,
                column=deepest.column if deepest is not None else None,
            )
        with nesting_allowance(depth):
            return _ToAst().transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, ScriptError):
            inner = err.orig_exc
            raise ScriptError(inner.reason, source=text, line=inner.line, column=inner.column) from None
        raise
    except UnexpectedInput as err:
        line = getattr(err, "line", None)
        column = getattr(err, "column", None)
        at_end = isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END")
        if at_end or line is None or line < 1:  # point just past the last character
            lines = text.splitlines() or [""]
            line, column = len(lines), len(lines[-1]) + 1
        raise ScriptError(_describe_unexpected(err, text), source=text, line=line, column=column) from None

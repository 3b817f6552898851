"""Immutable syntax tree of condition expressions, and :func:`unparse`.

Why a separate tree: recipes are parsed once and checked against the plant before a run; the
tree is the one representation the checker, the compiler and the documentation tools share.
Source columns are kept for error messages but excluded from equality, so that
``parse(unparse(tree)) == tree`` holds for every tree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Binary",
    "BoolLit",
    "BoolOp",
    "Call",
    "Compare",
    "Expr",
    "Hold",
    "Neg",
    "Not",
    "Number",
    "Param",
    "Signal",
    "String",
    "unparse",
]

ArithOp = Literal["+", "-", "*", "/"]
CompareOp = Literal["<", "<=", ">", ">=", "==", "!="]
LogicOp = Literal["and", "or"]


@dataclass(frozen=True, slots=True)
class Number:
    """A number literal with an optional unit as written (``59.5 degC``, ``98 %``)."""

    value: float
    unit: str | None = None
    col: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class BoolLit:
    """``true`` or ``false``."""

    value: bool
    col: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class String:
    """A quoted string, used for state names (``"Execute"``)."""

    value: str
    col: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Signal:
    """A plant signal ``MODULE.NAME`` or ``MODULE.NAME.ATTRIBUTE``."""

    name: str
    col: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Param:
    """A recipe parameter reference ``${name}``; fixed when the condition is compiled."""

    name: str
    col: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Neg:
    """Unary minus."""

    operand: Expr
    col: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    """Logical ``not`` (three-valued: ``not unknown`` is unknown)."""

    operand: Expr
    col: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Binary:
    """Arithmetic ``+ - * /``."""

    op: ArithOp
    left: Expr
    right: Expr
    col: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Compare:
    """One comparison; chains such as ``a < b < c`` are rejected by the parser."""

    op: CompareOp
    left: Expr
    right: Expr
    col: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class BoolOp:
    """``and`` / ``or`` (three-valued, Kleene)."""

    op: LogicOp
    left: Expr
    right: Expr
    col: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    """A built-in function call such as ``mean(PAT.Purity, 30 s)``."""

    name: str
    args: tuple[Expr, ...]
    col: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Hold:
    """``condition for duration``: true once ``condition`` has been true that long."""

    condition: Expr
    duration: Expr
    col: int = field(default=0, compare=False)


Expr = (
    Number | BoolLit | String | Signal | Param | Neg | Not | Binary | Compare | BoolOp | Call | Hold
)

# Binding strength, loosest first. The parser and unparse must agree on these.
PREC_OR = 1
PREC_AND = 2
PREC_HOLD = 3
PREC_NOT = 4
PREC_CMP = 5
PREC_ADD = 6
PREC_MUL = 7
PREC_NEG = 8
PREC_ATOM = 9


def precedence(node: Expr) -> int:
    """Binding strength of the operator at the root of ``node``."""
    if isinstance(node, BoolOp):
        return PREC_OR if node.op == "or" else PREC_AND
    if isinstance(node, Hold):
        return PREC_HOLD
    if isinstance(node, Not):
        return PREC_NOT
    if isinstance(node, Compare):
        return PREC_CMP
    if isinstance(node, Binary):
        return PREC_ADD if node.op in "+-" else PREC_MUL
    if isinstance(node, Neg):
        return PREC_NEG
    return PREC_ATOM


def _number_text(value: float) -> str:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a number literal must be finite and non-negative, got {value!r}")
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unparse(node: Expr) -> str:
    """Canonical source text for ``node``, with only the parentheses that are needed."""
    return _unparse(node)


def _wrap(node: Expr, min_prec: int) -> str:
    text = _unparse(node)
    return f"({text})" if precedence(node) < min_prec else text


def _unparse(node: Expr) -> str:
    if isinstance(node, Number):
        num = _number_text(node.value)
        return f"{num} {node.unit}" if node.unit else num
    if isinstance(node, BoolLit):
        return "true" if node.value else "false"
    if isinstance(node, String):
        return _quote(node.value)
    if isinstance(node, Signal):
        return node.name
    if isinstance(node, Param):
        return "${" + node.name + "}"
    if isinstance(node, Neg):
        return "-" + _wrap(node.operand, PREC_NEG)
    if isinstance(node, Not):
        return "not " + _wrap(node.operand, PREC_NOT)
    if isinstance(node, Call):
        return node.name + "(" + ", ".join(_unparse(a) for a in node.args) + ")"
    if isinstance(node, Hold):
        return f"{_wrap(node.condition, PREC_NOT)} for {_wrap(node.duration, PREC_ADD)}"
    prec = precedence(node)
    if isinstance(node, Compare):
        # Comparisons do not chain: both sides must bind tighter.
        return f"{_wrap(node.left, prec + 1)} {node.op} {_wrap(node.right, prec + 1)}"
    # Left-associative binary operators: the right side needs parentheses at equal strength.
    return f"{_wrap(node.left, prec)} {node.op} {_wrap(node.right, prec + 1)}"

"""Tokenizer and recursive-descent parser for condition expressions.

Why hand-written: the language is tiny, errors must point at a column and say what was
expected, and input comes from recipe files, so nothing here may ever call ``eval`` or let an
odd input escape as anything other than :class:`ExprSyntaxError`. Size and nesting are
bounded so that parsing, checking and evaluating cannot exhaust the stack.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import pint

from modulecontrol.units import ureg

from ._ast import (
    ArithOp,
    Binary,
    BoolLit,
    BoolOp,
    Call,
    Compare,
    CompareOp,
    Expr,
    Hold,
    Neg,
    Not,
    Number,
    Param,
    Signal,
    String,
)

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "ExprSyntaxError", "parse"]

MAX_LENGTH = 2000
"""Longest accepted expression, in characters."""

MAX_DEPTH = 50
"""Deepest accepted nesting: operators, function calls and parentheses each add one level."""

KEYWORDS = frozenset({"and", "or", "not", "for", "true", "false"})


class ExprSyntaxError(ValueError):
    """The text is not a valid condition; ``col`` is the 1-based column of the problem."""

    def __init__(self, col: int, message: str) -> None:
        super().__init__(f"col {col}: {message}")
        self.col = col
        self.message = message


TokKind = Literal["num", "name", "str", "param", "op", "end"]


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokKind
    text: str
    col: int
    value: float = 0.0
    unit: str | None = None


_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_PARAM = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
# One unit factor: a name (µ, ° and Ω allowed) or %, with an optional integer exponent.
_UNIT_ATOM = re.compile(r"(?:[A-Za-zµμ°Ω][A-Za-z0-9_µμ°Ω]*|%)(?:(?:\^|\*\*)-?[0-9]+)?")
_DIGITS = "0123456789"
_DIGITS_NONEMPTY = tuple(_DIGITS)
_OPS = ("<=", ">=", "==", "!=", "<", ">", "+", "-", "*", "/", "(", ")", ",")


def _unit_at(text: str, pos: int) -> tuple[str, int] | None:
    """Unit text starting at ``pos`` (written without spaces, e.g. ``mL/min``), or None.

    A unit is only read right after a number. A name followed by ``(`` is a function and a
    keyword is an operator, so neither is taken as a unit; ``*`` or ``/`` continue the unit
    only when a unit factor follows without a space (``0.5 mL/min`` but ``2 * ${x}``).
    """
    m = _UNIT_ATOM.match(text, pos)
    if m is None:
        return None
    word = m.group()
    end = m.end()
    if word in KEYWORDS or text.startswith("(", end):
        return None
    if text.startswith(".", end) and _NAME.match(text, end + 1):
        return None  # 'R1.T' right after a number is a misplaced signal, not a unit

    while end < len(text) and text[end] in "*/":
        nxt = _UNIT_ATOM.match(text, end + 1)
        if nxt is None or text.startswith((".", "("), nxt.end()):
            break
        end = nxt.end()
    return text[pos:end], end


def _check_unit(unit: str, number: str, col: int) -> None:
    try:
        ureg.Quantity(1.0, unit).to_base_units()
    except pint.errors.OffsetUnitCalculusError:
        raise ExprSyntaxError(
            col, f"unit '{unit}' mixes an offset temperature; write e.g. 'K/min' for a rate"
        ) from None
    except Exception:  # pint raises many types for odd text; all mean "not a unit".
        raise ExprSyntaxError(
            col, f"expected a unit or operator after '{number}', got '{unit}' (unknown unit)"
        ) from None


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens; numbers carry their unit."""
    tokens: list[Token] = []
    pos = 0
    n = len(text)
    while pos < n:
        ch = text[pos]
        col = pos + 1
        if ch.isspace():
            pos += 1
            continue
        if ch in _DIGITS or (ch == "." and text[pos + 1 : pos + 2] in _DIGITS_NONEMPTY):
            m = _NUMBER.match(text, pos)
            assert m is not None
            number = m.group()
            value = float(number)
            if not math.isfinite(value):
                raise ExprSyntaxError(col, f"number '{number}' is too large")
            pos = m.end()
            if pos < n and (text[pos].isalpha() or text[pos] == "_"):
                # '5x', '2e', '1.2.3': letters glued to a number.
                m_unit = _unit_at(text, pos)
                if m_unit is None:
                    raise ExprSyntaxError(pos + 1, f"expected a space or operator after '{number}'")
            skip = pos
            while skip < n and text[skip] == " ":
                skip += 1
            unit: str | None = None
            found = _unit_at(text, skip) if skip < n else None
            if found is not None:
                unit, end = found
                _check_unit(unit, number, skip + 1)
                pos = end
            elif skip < n and text[skip] == "." and text[skip + 1 : skip + 2] in _DIGITS_NONEMPTY:
                raise ExprSyntaxError(skip + 1, f"malformed number after '{number}'")
            tokens.append(Token("num", number, col, value, unit))
            continue
        if ch.isalpha() or ch == "_":
            m = _NAME.match(text, pos)
            if m is None:
                raise ExprSyntaxError(col, f"unexpected character {ch!r}")
            pos = m.end()
            if pos < n and text[pos] == ".":
                raise ExprSyntaxError(pos + 1, f"a signal name cannot end with '.': '{m.group()}.'")
            tokens.append(Token("name", m.group(), col))
            continue
        if ch in "\"'":
            pos = _string(text, pos, tokens)
            continue
        if ch == "$":
            m = _PARAM.match(text, pos)
            if m is None:
                raise ExprSyntaxError(col, "a parameter is written '${name}'")
            tokens.append(Token("param", m.group(1), col))
            pos = m.end()
            continue
        for op in _OPS:
            if text.startswith(op, pos):
                tokens.append(Token("op", op, col))
                pos += len(op)
                break
        else:
            hint = ""
            if ch == "=":
                hint = " (use '==')"
            elif ch in "&|!":
                hint = " (use 'and', 'or', 'not')"
            raise ExprSyntaxError(col, f"unexpected character {ch!r}{hint}")
    tokens.append(Token("end", "", n + 1))
    return tokens


def _string(text: str, pos: int, tokens: list[Token]) -> int:
    quote = text[pos]
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in (quote, "\\"):
            out.append(text[i + 1])
            i += 2
            continue
        if c == quote:
            tokens.append(Token("str", "".join(out), pos + 1))
            return i + 1
        out.append(c)
        i += 1
    raise ExprSyntaxError(pos + 1, f"string starting here is not closed (missing {quote})")


_COMPARE_OPS = frozenset({"<", "<=", ">", ">=", "==", "!="})


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0
        # Tree depth of each node built so far, keyed by id(); nodes stay alive while parsing.
        self.depths: dict[int, int] = {}

    # -- helpers -------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def at(self, kind: TokKind, text: str | None = None) -> bool:
        t = self.tok
        return t.kind == kind and (text is None or t.text == text)

    def at_keyword(self, word: str) -> bool:
        return self.at("name", word)

    def advance(self) -> Token:
        t = self.tok
        if t.kind != "end":
            self.i += 1
        return t

    def describe(self, t: Token) -> str:
        if t.kind == "end":
            return "the end of the expression"
        if t.kind == "str":
            return f'"{t.text}"'
        if t.kind == "param":
            return "${" + t.text + "}"
        return f"'{t.text}'" + (f" {t.unit}" if t.unit else "")

    def expect_op(self, text: str, context: str) -> Token:
        if not self.at("op", text):
            raise ExprSyntaxError(
                self.tok.col, f"expected '{text}' {context}, got {self.describe(self.tok)}"
            )
        return self.advance()

    def node(self, node: Expr, *children: Expr) -> Expr:
        depth = 1 + max((self.depths.get(id(c), 1) for c in children), default=0)
        if depth > MAX_DEPTH:
            raise ExprSyntaxError(
                node.col, f"expression nests more than {MAX_DEPTH} levels deep; simplify it"
            )
        self.depths[id(node)] = depth
        return node

    def enter(self, col: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprSyntaxError(
                col, f"expression nests more than {MAX_DEPTH} levels deep; simplify it"
            )

    # -- grammar -------------------------------------------------------------
    def parse(self) -> Expr:
        expr = self.or_expr()
        if not self.at("end"):
            t = self.tok
            if t.kind == "op" and t.text in _COMPARE_OPS:
                msg = "comparisons cannot be chained; write 'a < b and b < c'"
            elif t.kind == "op" and t.text == ")":
                msg = "unbalanced ')'"
            elif t.kind == "name" and t.text == "for":
                msg = "'for' cannot follow another 'for'; add parentheses"
            else:
                msg = f"expected an operator or the end, got {self.describe(t)}"
            raise ExprSyntaxError(t.col, msg)
        return expr

    def or_expr(self) -> Expr:
        left = self.and_expr()
        while self.at_keyword("or"):
            col = self.advance().col
            right = self.and_expr()
            left = self.node(BoolOp("or", left, right, col), left, right)
        return left

    def and_expr(self) -> Expr:
        left = self.hold_expr()
        while self.at_keyword("and"):
            col = self.advance().col
            right = self.hold_expr()
            left = self.node(BoolOp("and", left, right, col), left, right)
        return left

    def hold_expr(self) -> Expr:
        cond = self.not_expr()
        if self.at_keyword("for"):
            col = self.advance().col
            duration = self.additive()
            return self.node(Hold(cond, duration, col), cond, duration)
        return cond

    def not_expr(self) -> Expr:
        if self.at_keyword("not"):
            col = self.advance().col
            self.enter(col)
            operand = self.not_expr()
            self.depth -= 1
            return self.node(Not(operand, col), operand)
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.additive()
        t = self.tok
        if t.kind == "op" and t.text in _COMPARE_OPS:
            self.advance()
            op: CompareOp = t.text  # type: ignore[assignment]
            right = self.additive()
            return self.node(Compare(op, left, right, t.col), left, right)
        return left

    def additive(self) -> Expr:
        left = self.multiplicative()
        while self.at("op", "+") or self.at("op", "-"):
            t = self.advance()
            op: ArithOp = t.text  # type: ignore[assignment]
            right = self.multiplicative()
            left = self.node(Binary(op, left, right, t.col), left, right)
        return left

    def multiplicative(self) -> Expr:
        left = self.unary()
        while self.at("op", "*") or self.at("op", "/"):
            t = self.advance()
            op: ArithOp = t.text  # type: ignore[assignment]
            right = self.unary()
            left = self.node(Binary(op, left, right, t.col), left, right)
        return left

    def unary(self) -> Expr:
        if self.at("op", "-"):
            col = self.advance().col
            self.enter(col)
            operand = self.unary()
            self.depth -= 1
            return self.node(Neg(operand, col), operand)
        if self.at("op", "+"):
            raise ExprSyntaxError(self.tok.col, "unary '+' is not supported; drop it")
        return self.primary()

    def primary(self) -> Expr:
        t = self.tok
        if t.kind == "num":
            self.advance()
            return self.node(Number(t.value, t.unit, t.col))
        if t.kind == "str":
            self.advance()
            return self.node(String(t.text, t.col))
        if t.kind == "param":
            self.advance()
            return self.node(Param(t.text, t.col))
        if t.kind == "op" and t.text == "(":
            self.advance()
            self.enter(t.col)
            inner = self.or_expr()
            self.depth -= 1
            self.expect_op(")", f"to close the '(' at col {t.col}")
            return inner
        if t.kind == "name":
            if t.text in ("true", "false"):
                self.advance()
                return self.node(BoolLit(t.text == "true", t.col))
            if t.text in KEYWORDS:
                raise ExprSyntaxError(t.col, f"expected a value, got keyword '{t.text}'")
            self.advance()
            if self.at("op", "("):
                return self.call(t)
            if "." not in t.text:
                raise ExprSyntaxError(
                    t.col,
                    f"'{t.text}' is not a signal (write MODULE.NAME) nor a function call;"
                    " parameters are written '${" + t.text + "}'",
                )
            return self.node(Signal(t.text, t.col))
        raise ExprSyntaxError(t.col, f"expected a value, got {self.describe(t)}")

    def call(self, name: Token) -> Expr:
        if "." in name.text:
            raise ExprSyntaxError(name.col, f"'{name.text}' is a signal, not a function")
        open_tok = self.advance()
        self.enter(open_tok.col)
        args: list[Expr] = []
        if not self.at("op", ")"):
            while True:
                args.append(self.or_expr())
                if self.at("op", ","):
                    self.advance()
                    continue
                break
        self.expect_op(")", f"to close the call of {name.text}() at col {name.col}")
        self.depth -= 1
        return self.node(Call(name.text, tuple(args), name.col), *args)


def parse(text: str) -> Expr:
    """Parse a condition such as ``R1.T > 59.5 degC for 30 s`` into a syntax tree.

    Raises :class:`ExprSyntaxError` (and nothing else) for any malformed or oversized input.
    """
    if not isinstance(text, str):
        raise ExprSyntaxError(1, f"expected the condition as text, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExprSyntaxError(
            MAX_LENGTH + 1,
            f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}",
        )
    if not text.strip():
        raise ExprSyntaxError(1, "empty condition")
    return _Parser(tokenize(text)).parse()

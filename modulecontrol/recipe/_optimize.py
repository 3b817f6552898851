"""The constraints of an ``optimize`` block: ``SIGNAL >= value`` on a window mean.

Why a shape of its own and not any condition: a derivative-free search needs by how much a
constraint holds or fails (a margin), not only whether; a comparison of one signal with one
constant gives that margin in the signal's unit. The text is still parsed and checked by the
condition language, so units and signal names are checked as everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from modulecontrol.expr import Compare, Expr, Neg, Number, Signal, parse, to_si


@dataclass(frozen=True)
class Constraint:
    """``signal`` (window mean, SI) at least (``sense`` +1) or at most (-1) ``bound`` (SI)."""

    text: str
    signal: str
    sense: int
    bound: float

    def margin(self, value: float) -> float:
        """How far ``value`` is inside (>= 0) or outside (< 0) the bound, relative to the
        bound's size, so constraints in different units weigh alike in the search."""
        return self.sense * (value - self.bound) / max(abs(self.bound), 1e-12)


class ConstraintShapeError(ValueError):
    """The text is a valid condition but not ``SIGNAL >= value`` (``col`` 1-based)."""

    def __init__(self, message: str, col: int) -> None:
        super().__init__(message)
        self.message = message
        self.col = col


def _constant(e: Expr) -> float | None:
    if isinstance(e, Number):
        return to_si(e.value, e.unit or "")
    if isinstance(e, Neg):
        inner = _constant(e.operand)
        return None if inner is None else -inner
    return None


def parse_constraint(text: str) -> Constraint:
    """Parse ``PAT1.Purity >= 90 %`` (or ``<=``, ``>``, ``<``, either side) into a
    :class:`Constraint`; syntax errors are the language's :class:`ExprSyntaxError`."""
    e = parse(text)
    shape = ("an optimize constraint compares one signal with a constant, e.g. "
             "'PAT1.Purity >= 90 %'")
    if not isinstance(e, Compare) or e.op not in ("<", "<=", ">", ">="):
        raise ConstraintShapeError(shape, max(getattr(e, "col", 1), 1))
    upper = e.op in ("<", "<=")
    if isinstance(e.left, Signal) and (bound := _constant(e.right)) is not None:
        return Constraint(text, e.left.name, -1 if upper else 1, bound)
    if isinstance(e.right, Signal) and (bound := _constant(e.left)) is not None:
        return Constraint(text, e.right.name, 1 if upper else -1, bound)
    raise ConstraintShapeError(shape, max(e.col, 1))

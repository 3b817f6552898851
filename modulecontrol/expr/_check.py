"""Static checking of condition expressions against the plant's signal catalogue.

Why before the run: a typo in a signal name or a pressure compared with a temperature must
stop a recipe when it is loaded, with the column of the mistake, not hours into a batch.
The checker infers for every node its kind (number, bool, str), its physical dimension and
whether a temperature is absolute or a difference; the compiler reuses that inference.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import pint
from pint.util import UnitsContainer

from modulecontrol.errors import did_you_mean_signal
from modulecontrol.units import UnitError, parse_quantity, parse_unit, ureg

from ._ast import (
    Binary,
    BoolLit,
    BoolOp,
    Call,
    Compare,
    Expr,
    Hold,
    Neg,
    Not,
    Number,
    Param,
    Signal,
    String,
    unparse,
)
from ._parse import MAX_DEPTH

__all__ = ["FUNCTIONS", "ParameterValue", "Problem", "SignalInfo", "check"]

Kind = Literal["number", "bool", "str"]
Value = float | bool | str


@dataclass(frozen=True, slots=True)
class SignalInfo:
    """What the checker needs to know about a signal: its unit and kind.

    ``unit`` is the unit the plant reports the signal in (``degC``, ``bar``, ``%``); values
    passed to a compiled :class:`Condition` are nevertheless SI floats (see ``to_si``).
    Also used to declare a recipe parameter whose value is not known yet.
    """

    unit: str = ""
    kind: Kind = "number"

    def __post_init__(self) -> None:
        if self.kind not in ("number", "bool", "str"):
            raise ValueError(f"kind must be 'number', 'bool' or 'str', got {self.kind!r}")
        if self.kind == "number":
            parse_unit(self.unit)  # raises UnitError with the offending text
        elif self.unit:
            raise ValueError(f"a {self.kind} signal has no unit, got {self.unit!r}")


ParameterValue: TypeAlias = "SignalInfo | pint.Quantity[Any] | float | int | bool | str"
"""A parameter is a value (``'0.5 mL/min'``, a pint quantity, a number, a bool, a state name
string) or, when only its type is known at check time, a :class:`SignalInfo`."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake found by :func:`check`; ``col`` is 1-based."""

    col: int
    message: str

    def __str__(self) -> str:
        return f"col {self.col}: {self.message}"


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """Signature of a built-in: argument roles and a one-line description for errors."""

    args: tuple[Literal["signal", "number", "band", "window"], ...]
    usage: str


FUNCTIONS: Mapping[str, FunctionSpec] = {
    "abs": FunctionSpec(("number",), "abs(x)"),
    "mean": FunctionSpec(("signal", "window"), "mean(SIGNAL, 30 s)"),
    "min": FunctionSpec(("signal", "window"), "min(SIGNAL, 30 s)"),
    "max": FunctionSpec(("signal", "window"), "max(SIGNAL, 30 s)"),
    "delta": FunctionSpec(("signal", "window"), "delta(SIGNAL, 30 s)"),
    "rate": FunctionSpec(("signal", "window"), "rate(SIGNAL, 30 s)"),
    "stable": FunctionSpec(("signal", "band", "window"), "stable(SIGNAL, 0.5 %, 2 min)"),
}

_TIME = ureg.Unit("s").dimensionality
_NONE_DIM = UnitsContainer({})

_DIM_NAMES: dict[UnitsContainer, str] = {}
for _unit, _name in (
    ("K", "temperature"),
    ("Pa", "pressure"),
    ("s", "time"),
    ("m^3/s", "volume flow"),
    ("kg/s", "mass flow"),
    ("m", "length"),
    ("kg", "mass"),
    ("m^3", "volume"),
    ("", "dimensionless"),
    ("K/s", "temperature rate"),
    ("Pa/s", "pressure rate"),
    ("1/s", "frequency"),
    ("kg/m^3", "density"),
    ("m/s", "speed"),
    ("W", "power"),
    ("J", "energy"),
    ("mol/m^3", "concentration"),
    ("mol", "amount"),
    ("A", "current"),
    ("V", "voltage"),
    ("Pa*s", "viscosity"),
    ("N", "force"),
):
    _DIM_NAMES[parse_unit(_unit).dimensionality] = _name


def dim_name(dim: UnitsContainer) -> str:
    """Human name of a dimension for error messages (``pressure``, not ``[mass]/...``)."""
    return _DIM_NAMES.get(dim) or str(dim)


@dataclass(frozen=True, slots=True)
class Type:
    """Inferred type of a node.

    ``kind`` None means unknown (an error was already reported below this node). ``dim``
    None means the dimension is unknown. ``temp`` tells absolute temperatures (from offset
    units such as degC) from differences, so ``R1.T - R2.T > 2 degC`` can be caught.
    ``scaled`` names a dimensionless unit that is not 1 (``%``), to catch ``Purity > 98``.
    ``value`` is the SI value of a constant sub-expression (no signals), else None.
    """

    kind: Kind | None
    dim: UnitsContainer | None = None
    temp: Literal["abs", "delta"] | None = None
    scaled: str | None = None
    value: Value | None = None
    const: bool = False
    unit: str = field(default="", compare=False)


_UNKNOWN = Type(None)


@dataclass(frozen=True, slots=True)
class _ParamSpec:
    type: Type


def _is_offset(unit: str) -> bool:
    return not ureg.Quantity(1.0, unit)._is_multiplicative


def _number_type(value: float, unit: str | None, const: bool) -> Type:
    """Type of a quantity in ``unit``; ``value`` is in that unit and converted to SI."""
    u = unit or ""
    q = ureg.Quantity(value, parse_unit(u))
    si = float(q.to_base_units().magnitude)
    dim = q.dimensionality
    temp: Literal["abs", "delta"] | None = None
    if dim == parse_unit("K").dimensionality:
        if _is_offset(u):
            temp = "abs"
        elif u.startswith("delta_"):
            temp = "delta"
    scaled = u if dim == _NONE_DIM and parse_unit(u) != ureg.dimensionless else None
    return Type("number", dim, temp, scaled, si if const else None, const, u)


def _param_spec(name: str, raw: Any) -> _ParamSpec | str:
    """Type (and value) of a parameter, or an error message."""
    if isinstance(raw, SignalInfo):
        if raw.kind != "number":
            return _ParamSpec(Type(raw.kind, const=True))
        t = _number_type(1.0, raw.unit, const=False)
        return _ParamSpec(Type("number", t.dim, t.temp, t.scaled, None, True, raw.unit))
    if isinstance(raw, bool):
        return _ParamSpec(Type("bool", value=raw, const=True))
    if isinstance(raw, pint.Quantity):
        try:
            magnitude = float(raw.magnitude)
            unit = str(raw.units)
            if not math.isfinite(magnitude):
                return f"parameter '{name}' must be finite, got {raw}"
            return _ParamSpec(_number_type(magnitude, unit, const=True))
        except (TypeError, ValueError, pint.errors.PintError) as exc:
            return f"parameter '{name}': {exc}"
    if isinstance(raw, int | float):
        if not math.isfinite(raw):
            return f"parameter '{name}' must be finite, got {raw!r}"
        return _ParamSpec(_number_type(float(raw), None, const=True))
    if isinstance(raw, str):
        try:
            q = parse_quantity(raw)
        except UnitError:
            return _ParamSpec(Type("str", value=raw, const=True))
        return _ParamSpec(_number_type(float(q.magnitude), str(q.units), const=True))
    return f"parameter '{name}' has unsupported type {type(raw).__name__}"


def _did_you_mean(name: str, known: Iterable[str], fmt: str = "{}") -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join("'" + fmt.format(c) + "'" for c in close) + "?)"


def _describe(node: Expr, t: Type) -> str:
    text = unparse(node)
    if len(text) > 40:
        text = text[:37] + "..."
    if t.kind == "number" and t.dim is not None:
        unit = f", {t.unit}" if t.unit else ""
        return f"'{text}' ({dim_name(t.dim)}{unit})"
    return f"'{text}' ({t.kind})"


def _children(node: Expr) -> tuple[Expr, ...]:
    if isinstance(node, Neg | Not):
        return (node.operand,)
    if isinstance(node, Binary | Compare | BoolOp):
        return (node.left, node.right)
    if isinstance(node, Hold):
        return (node.condition, node.duration)
    if isinstance(node, Call):
        return node.args
    return ()


def tree_depth(root: Expr) -> int:
    """Tree depth, computed without recursion so that any tree can be measured."""
    deepest = 0
    stack = [(root, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > MAX_DEPTH:
            break
        stack.extend((c, d + 1) for c in _children(node))
    return deepest


def start_col(node: Expr) -> int:
    """Column where the text of ``node`` starts (a binary node's own col is its operator)."""
    while isinstance(node, Binary | Compare | BoolOp | Hold):
        node = node.left if not isinstance(node, Hold) else node.condition
    return node.col


def _is_bare_number(node: Expr) -> bool:
    while isinstance(node, Neg):
        node = node.operand
    return isinstance(node, Number) and node.unit is None and node.value != 0


class Checker:
    """Walks a tree once, records problems, and remembers each node's type by id()."""

    def __init__(
        self, signals: Mapping[str, SignalInfo], parameters: Mapping[str, ParameterValue]
    ) -> None:
        self.signals = signals
        self.parameters = parameters
        self.problems: list[Problem] = []
        self.types: dict[int, Type] = {}
        self._params: dict[str, _ParamSpec | str] = {}

    def problem(self, col: int, message: str) -> Type:
        self.problems.append(Problem(col, message))
        return _UNKNOWN

    def run(self, expr: Expr) -> None:
        if tree_depth(expr) > MAX_DEPTH:
            # Trees built in Python skip the parser's limit; keep the recursion below bounded.
            self.problem(start_col(expr), f"expression nests more than {MAX_DEPTH} levels deep")
            return
        t = self.visit(expr)
        if t.kind not in (None, "bool"):
            self.problem(
                start_col(expr),
                f"a condition must be true or false, but {_describe(expr, t)} is a {t.kind};"
                " compare it with something",
            )

    def visit(self, node: Expr) -> Type:
        t = self._visit(node)
        self.types[id(node)] = t
        return t

    def _visit(self, node: Expr) -> Type:
        if isinstance(node, Number):
            t = _number_type(node.value, node.unit, const=True)
            if not (isinstance(t.value, float) and math.isfinite(t.value)):
                return self.problem(node.col, f"'{unparse(node)}' is too large in SI units")
            return t
        if isinstance(node, BoolLit):
            return Type("bool", value=node.value, const=True)
        if isinstance(node, String):
            return Type("str", value=node.value, const=True)
        if isinstance(node, Signal):
            return self._signal(node)
        if isinstance(node, Param):
            return self._param(node)
        if isinstance(node, Neg):
            t = self.visit(node.operand)
            if t.kind is None:
                return t
            if t.kind != "number":
                return self.problem(node.col, f"cannot negate {_describe(node.operand, t)}")
            value = -t.value if isinstance(t.value, float) else None
            return Type("number", t.dim, t.temp, t.scaled, value, t.const, t.unit)
        if isinstance(node, Not):
            t = self.visit(node.operand)
            if t.kind not in (None, "bool"):
                return self.problem(
                    node.col, f"'not' needs true/false, got {_describe(node.operand, t)}"
                )
            return Type("bool", const=t.const, value=None if t.value is None else not t.value)
        if isinstance(node, BoolOp):
            lt, rt = self.visit(node.left), self.visit(node.right)
            for side, st in ((node.left, lt), (node.right, rt)):
                if st.kind not in (None, "bool"):
                    self.problem(
                        start_col(side),
                        f"'{node.op}' needs true/false on both sides, got {_describe(side, st)}",
                    )
            return Type("bool")
        if isinstance(node, Hold):
            return self._hold(node)
        if isinstance(node, Compare):
            return self._compare(node)
        if isinstance(node, Binary):
            return self._binary(node)
        return self._call(node)

    def _signal(self, node: Signal) -> Type:
        info = self.signals.get(node.name)
        if info is None:
            return self.problem(
                node.col, f"unknown signal '{node.name}'"
                + did_you_mean_signal(node.name, self.signals)
            )
        if info.kind != "number":
            return Type(info.kind)
        t = _number_type(1.0, info.unit, const=False)
        return Type("number", t.dim, t.temp, t.scaled, None, False, info.unit)

    def _param(self, node: Param) -> Type:
        if node.name not in self._params:
            if node.name not in self.parameters:
                self._params[node.name] = f"undefined parameter '${{{node.name}}}'" + (
                    _did_you_mean(node.name, self.parameters, "${{{}}}")
                )
            else:
                self._params[node.name] = _param_spec(node.name, self.parameters[node.name])
        spec = self._params[node.name]
        if isinstance(spec, str):
            return self.problem(node.col, spec)
        return spec.type

    def _hold(self, node: Hold) -> Type:
        ct = self.visit(node.condition)
        if ct.kind not in (None, "bool"):
            self.problem(
                start_col(node.condition),
                "'for' needs a true/false condition before it,"
                f" got {_describe(node.condition, ct)}",
            )
        self._duration(node.duration, "'for'")
        return Type("bool")

    def _duration(self, node: Expr, what: str) -> None:
        t = self.visit(node)
        if t.kind is None:
            return
        if t.kind != "number" or (t.dim is not None and t.dim != _TIME):
            self.problem(
                start_col(node), f"{what} needs a duration such as '30 s', got {_describe(node, t)}"
            )
        elif not t.const:
            self.problem(
                start_col(node), f"{what} needs a fixed duration, not one that reads signals"
            )
        elif isinstance(t.value, float) and not t.value > 0:
            self.problem(start_col(node), f"{what} needs a positive duration, got {unparse(node)}")

    def _compare(self, node: Compare) -> Type:
        lt, rt = self.visit(node.left), self.visit(node.right)
        if lt.kind is None or rt.kind is None:
            return Type("bool")
        if lt.kind != rt.kind:
            return self.problem(
                node.col,
                f"cannot compare {_describe(node.left, lt)} with {_describe(node.right, rt)}",
            )
        if lt.kind != "number":
            if node.op not in ("==", "!="):
                return self.problem(
                    node.col, f"'{node.op}' needs numbers; {lt.kind} values allow only == and !="
                )
            return Type("bool")
        self._same_dimension(node, node.left, lt, node.right, rt, "compare")
        return Type("bool")

    def _same_dimension(
        self, node: Expr, left: Expr, lt: Type, right: Expr, rt: Type, verb: str
    ) -> bool:
        if lt.dim is not None and rt.dim is not None and lt.dim != rt.dim:
            self.problem(
                node.col,
                f"cannot {verb} {_describe(left, lt)} {'with' if verb == 'compare' else 'and'}"
                f" {_describe(right, rt)}:"
                " the units are not compatible",
            )
            return False
        if {lt.temp, rt.temp} == {"abs", "delta"} and verb == "compare":
            self.problem(
                node.col,
                f"cannot compare the temperature difference with an absolute temperature"
                f" ({unparse(left)} vs {unparse(right)}); write the difference in K or"
                " delta_degC",
            )
            return False
        for bare, other, ot in ((left, right, rt), (right, left, lt)):
            if _is_bare_number(bare) and ot.scaled:
                self.problem(
                    start_col(bare),
                    f"'{unparse(bare)}' has no unit but {unparse(other)} is in {ot.scaled};"
                    f" write '{unparse(bare)} {ot.scaled}'",
                )
                return False
        return True

    def _binary(self, node: Binary) -> Type:
        lt, rt = self.visit(node.left), self.visit(node.right)
        for side, st in ((node.left, lt), (node.right, rt)):
            if st.kind not in (None, "number"):
                self.problem(
                    start_col(side), f"'{node.op}' needs numbers, got {_describe(side, st)}"
                )
                return _UNKNOWN
        if lt.kind is None or rt.kind is None:
            return _UNKNOWN
        const = lt.const and rt.const
        value = _fold(node.op, lt.value, rt.value) if const else None
        if node.op in "+-":
            verb = "add" if node.op == "+" else "subtract"
            if not self._same_dimension(node, node.left, lt, node.right, rt, verb):
                return _UNKNOWN
            temp = _temp_sum(node.op, lt.temp, rt.temp)
            dim = lt.dim if lt.dim is not None else rt.dim
            unit = lt.unit or rt.unit
            if temp == "delta" and unit and _is_offset(unit):
                unit = "K"
            return Type("number", dim, temp, lt.scaled or rt.scaled, value, const, unit)
        dim = None
        if lt.dim is not None and rt.dim is not None:
            dim = lt.dim * rt.dim if node.op == "*" else lt.dim / rt.dim
        return Type("number", dim, None, None, value, const, "")

    def _call(self, node: Call) -> Type:
        spec = FUNCTIONS.get(node.name)
        if spec is None:
            return self.problem(
                node.col,
                f"unknown function '{node.name}'"
                + _did_you_mean(node.name, FUNCTIONS)
                + "; known: "
                + ", ".join(sorted(FUNCTIONS)),
            )
        if len(node.args) != len(spec.args):
            for arg in node.args:
                self.visit(arg)
            return self.problem(
                node.col,
                f"{node.name}() takes {len(spec.args)} argument"
                f"{'s' if len(spec.args) != 1 else ''}, got {len(node.args)}: write {spec.usage}",
            )
        types = [self.visit(a) for a in node.args]
        first, ft = node.args[0], types[0]
        if spec.args[0] == "signal" and not isinstance(first, Signal):
            return self.problem(
                start_col(first), f"{node.name}() reads the history of a signal: write {spec.usage}"
            )
        if ft.kind is None:
            return _UNKNOWN
        if ft.kind != "number":
            return self.problem(
                start_col(first), f"{node.name}() needs a number, got {_describe(first, ft)}"
            )
        for role, arg, at in zip(spec.args[1:], node.args[1:], types[1:], strict=True):
            if role == "window":
                self._duration(arg, f"the window of {node.name}()")
            elif role == "band" and at.kind is not None:
                if at.kind != "number":
                    self.problem(start_col(arg), f"the band of {node.name}() must be a number")
                elif not at.const:
                    self.problem(
                        start_col(arg), f"the band of {node.name}() must be fixed, not read signals"
                    )
                elif at.temp == "abs":
                    self.problem(
                        start_col(arg),
                        f"the band '{unparse(arg)}' is an absolute temperature;"
                        " write it in K or delta_degC",
                    )
                elif _is_bare_number(arg) and ft.scaled:
                    self.problem(
                        start_col(arg),
                        f"'{unparse(arg)}' has no unit: write '{unparse(arg)} {ft.scaled}'",
                    )
                elif ft.dim is not None and at.dim is not None and ft.dim != at.dim:
                    self.problem(
                        start_col(arg),
                        f"the band {_describe(arg, at)} does not match {_describe(first, ft)}",
                    )
                elif isinstance(at.value, float) and at.value < 0:
                    self.problem(start_col(arg), "the band must not be negative")
        if node.name == "stable":
            return Type("bool")
        if node.name == "rate":
            dim = ft.dim / _TIME if ft.dim is not None else None
            return Type("number", dim, None, None, None, False, "")
        if node.name == "delta":
            is_temp = ft.dim == parse_unit("K").dimensionality
            unit = "K" if ft.temp == "abs" else ft.unit
            temp: Literal["delta"] | None = "delta" if is_temp else None
            return Type("number", ft.dim, temp, ft.scaled, None, False, unit)
        if node.name == "abs":
            value = abs(ft.value) if isinstance(ft.value, float) else None
            return Type("number", ft.dim, ft.temp, ft.scaled, value, ft.const, ft.unit)
        return Type("number", ft.dim, ft.temp, ft.scaled, None, False, ft.unit)


def _temp_sum(
    op: str, a: Literal["abs", "delta"] | None, b: Literal["abs", "delta"] | None
) -> Literal["abs", "delta"] | None:
    """Absolute or difference temperature after ``a op b``; None when it cannot be told."""
    if a == "abs" and b == "abs":
        return "delta" if op == "-" else None
    if {a, b} == {"abs", "delta"}:
        return "abs"
    if a == b == "delta":
        return "delta"
    return None


def _fold(op: str, a: Value | None, b: Value | None) -> float | None:
    """Value of a constant arithmetic node, or None when it is not a finite number."""
    if not isinstance(a, float) or not isinstance(b, float):
        return None
    if op == "+":
        r = a + b
    elif op == "-":
        r = a - b
    elif op == "*":
        r = a * b
    elif b == 0:
        return None
    else:
        r = a / b
    return r if math.isfinite(r) else None


def check(
    expr: Expr,
    signals: Mapping[str, SignalInfo],
    parameters: Mapping[str, ParameterValue] | None = None,
) -> list[Problem]:
    """All problems of ``expr`` against the plant's signals and the recipe's parameters.

    An empty list means the condition can be compiled. Problems are sorted by column.
    """
    checker = Checker(signals, parameters or {})
    checker.run(expr)
    return sorted(checker.problems, key=lambda p: p.col)

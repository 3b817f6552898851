"""Recipe parameters: typed values with units, from defaults or ``--set name=value``.

Why a separate step before anything else: every ``${name}`` in a recipe is substituted from
these values, so a wrong unit or an out-of-range override must fail at load time, naming the
parameter and where it was given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import pint

from modulecontrol.errors import ConfigError, Location, Problem
from modulecontrol.recipe._model import ParameterSpec
from modulecontrol.units import UnitError, compatible, parse_quantity, parse_unit, ureg

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@dataclass(frozen=True, slots=True)
class ResolvedParameter:
    """A parameter's value for one run.

    ``value`` is what conditions and the orchestrator compute with: SI float for ``number``
    and ``duration`` (seconds), ``int`` for ``integer`` (a count in ``unit``), ``bool`` or
    ``str``. ``magnitude`` and ``unit`` are the value in the unit it was given in, for
    display and for writing it to an assembly in a unit-safe way (:meth:`text`).
    """

    name: str
    type: str
    value: float | int | bool | str
    magnitude: float | int | bool | str
    unit: str
    source: Literal["default", "override"]

    def text(self) -> str:
        """The value as a recipe would write it: ``'0.5 mL/min'``, ``'true'``, ``'3'``."""
        if isinstance(self.magnitude, bool):
            return "true" if self.magnitude else "false"
        if isinstance(self.magnitude, str):
            return self.magnitude
        mag = f"{self.magnitude:.15g}" if isinstance(self.magnitude, float) else str(self.magnitude)
        return f"{mag} {self.unit}" if self.unit else mag

    def substitute(self) -> Any:
        """The value put in place of an exact ``${name}``: a quantity string keeps its unit."""
        if self.type in ("bool", "string"):
            return self.value
        if self.unit:
            return self.text()
        return self.magnitude

    def for_check(self) -> Any:
        """The value in the form :func:`modulecontrol.expr.check` takes."""
        if self.type in ("bool", "string"):
            return self.value
        return ureg.Quantity(float(self.magnitude), parse_unit(self.unit))


def parse_set_options(items: list[str]) -> dict[str, str]:
    """``['flow=0.8 mL/min', 'n=3']`` from repeated ``--set`` options, as a mapping."""
    out: dict[str, str] = {}
    problems: list[Problem] = []
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            problems.append(Problem("expected --set NAME=VALUE", Location(f"--set {item}")))
            continue
        if name in out:
            problems.append(Problem(f"parameter '{name}' is set twice", Location(f"--set {item}")))
        out[name] = value.strip()
    if problems:
        raise ConfigError(problems)
    return out


def spec_problems(spec: ParameterSpec) -> list[tuple[str, str]]:
    """Problems of a declaration itself, as (key, message): units, limits, choices."""
    out: list[tuple[str, str]] = []
    if spec.type == "duration" and not compatible(spec.unit, "s"):
        out.append(("unit", f"a duration parameter needs a time unit, not '{spec.unit}'"))
    if spec.choices is not None and spec.type != "string":
        out.append(("choices", "'choices' apply only to string parameters"))
    if spec.type in ("bool", "string"):
        for key in ("min", "max"):
            if getattr(spec, key) is not None:
                out.append((key, f"'{key}' applies only to number, integer and duration"))
    else:
        for key in ("min", "max"):
            raw = getattr(spec, key)
            if raw is None:
                continue
            try:
                _magnitude(raw, spec.unit)
            except ValueError as exc:
                out.append((key, f"{key}: {exc}"))
    return out


def _magnitude(raw: Any, unit: str) -> tuple[float, str]:
    """``raw`` in ``unit`` and the unit text it was written in."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"expected a number or a quantity like '1.5 {unit or 'mL/min'}'")
    try:
        q = parse_quantity(raw, unit)
        value = float(q.to(parse_unit(unit)).magnitude)
    except UnitError as exc:
        raise ValueError(str(exc)) from None
    except pint.errors.DimensionalityError:
        raise ValueError(f"'{raw}' cannot be expressed in '{unit or 'dimensionless'}'") from None
    except (pint.errors.PintError, ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"'{raw}' is not a quantity: {exc}") from None
    if not math.isfinite(value):
        raise ValueError(f"'{raw}' is too large")
    given = raw.strip().partition(" ")[2].strip() if isinstance(raw, str) else ""
    return value, given or unit


def resolve_parameter(
    name: str, spec: ParameterSpec, raw: Any, source: Literal["default", "override"]
) -> ResolvedParameter:
    """Convert and check one value; ``ValueError`` says what is wrong with it."""
    if spec.type == "bool":
        if isinstance(raw, bool):
            return ResolvedParameter(name, "bool", raw, raw, "", source)
        if isinstance(raw, str) and raw.strip().lower() in (*_TRUE, *_FALSE):
            b = raw.strip().lower() in _TRUE
            return ResolvedParameter(name, "bool", b, b, "", source)
        if isinstance(raw, int) and raw in (0, 1):
            return ResolvedParameter(name, "bool", bool(raw), bool(raw), "", source)
        raise ValueError(f"{raw!r} is not true or false")
    if spec.type == "string":
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise ValueError(f"expected text, got {raw!r}")
        text = str(raw)
        if spec.choices is not None and text not in spec.choices:
            raise ValueError(f"'{text}' is not one of: {', '.join(spec.choices)}")
        return ResolvedParameter(name, "string", text, text, "", source)
    value, given = _magnitude(raw, spec.unit)
    bounds = []
    for key in ("min", "max"):
        limit = getattr(spec, key)
        try:
            bounds.append(None if limit is None else _magnitude(limit, spec.unit)[0])
        except ValueError:
            bounds.append(None)  # reported on the declaration
    lo, hi = bounds
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(
            f"{raw!r} is outside [{'-inf' if lo is None else f'{lo:g}'}, "
            f"{'inf' if hi is None else f'{hi:g}'}] {spec.unit}".rstrip()
        )
    if spec.type == "duration" and value <= 0:
        raise ValueError(f"a duration must be positive, got {raw!r}")
    if spec.type == "integer":
        if not value.is_integer():
            raise ValueError(f"{raw!r} is not a whole number")
        return ResolvedParameter(name, "integer", int(value), int(value), spec.unit, source)
    si = float(ureg.Quantity(value, parse_unit(spec.unit)).to_base_units().magnitude)
    given_value = float(parse_quantity(raw, spec.unit).magnitude) if given != spec.unit else value
    return ResolvedParameter(name, spec.type, si, given_value, given, source)

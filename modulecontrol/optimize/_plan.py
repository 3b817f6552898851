"""A validated ``optimize`` block compiled to numbers: bounds in the targets' units, KPI
formulas, constraint bounds in SI.

Why compiled once: every experiment maps a point of the unit box to set points and a window
of measured means to an objective; doing the unit work once keeps both exact and cheap, and
lets benches and tests build a plan without a recipe file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modulecontrol.recipe import Constraint, Optimize, ValidatedRecipe, parse_constraint
from modulecontrol.units import parse_quantity, to_si

KPIS = ("yield", "throughput", "space_time_yield")


@dataclass(frozen=True)
class Variable:
    """A decision variable: ``low``..``high`` in ``unit`` (what the targets are written in)."""

    name: str
    targets: tuple[str, ...]
    low: float
    high: float
    unit: str = ""
    start: float | None = None

    def value(self, u: float) -> float:
        return self.low + min(max(u, 0.0), 1.0) * (self.high - self.low)

    def unit_coordinate(self, value: float) -> float:
        return (value - self.low) / (self.high - self.low)


@dataclass(frozen=True)
class Plan:
    """What a campaign does, in numbers. ``maximize`` is a KPI name or ``weighted``.

    KPIs from the window means (SI) of ``product`` and ``feed``: throughput = product rate;
    yield = product molar rate / (feed flow x ``feed_concentration``), the product rate
    divided by ``product_molar_mass`` first when given (a mass rate); space-time yield =
    throughput / ``volume``. ``weighted`` sums ``weights[kpi] * kpi / kpi(first experiment)``.
    """

    name: str
    variables: tuple[Variable, ...]
    maximize: str
    product: str
    constraints: tuple[Constraint, ...] = ()
    feed: str | None = None
    feed_concentration: float | None = None
    product_molar_mass: float | None = None
    volume: float | None = None
    weights: Mapping[str, float] = field(default_factory=dict)
    experiments: int = 25
    steady: str = ""
    window: float = 600.0
    settle_timeout: float = 4 * 3600.0
    algorithm: str = "cobyla"
    step: float = 0.2
    tolerance: float = 0.01
    prior: str = "none"
    shown: Mapping[str, tuple[str, float]] = field(default_factory=dict)
    """The unit people read each KPI and ``objective`` in, and the factor from SI to it
    (:func:`shown_units`); a name not here is shown in SI."""

    def show(self, name: str, value: float | None) -> str:
        """``value`` (SI) of a KPI or of ``objective`` as people read it: ``107.6 mg/h``."""
        if value is None:
            return "none"
        unit, scale = self.shown.get(name, ("", 1.0))
        return f"{value * scale:.4g}" + (f" {unit}" if unit else "")

    @property
    def signals(self) -> tuple[str, ...]:
        """The signals an experiment must average over its window."""
        names = [self.product, *(c.signal for c in self.constraints)]
        if self.feed is not None:
            names.append(self.feed)
        return tuple(dict.fromkeys(names))

    def setpoints(self, x: Sequence[float]) -> dict[str, float]:
        """``TAG.Assembly`` -> value in the variable's unit, for a point of the unit box."""
        return {t: v.value(u) for v, u in zip(self.variables, x, strict=True)
                for t in v.targets}

    def start(self) -> tuple[float, ...]:
        return tuple(0.5 if v.start is None else v.unit_coordinate(v.start)
                     for v in self.variables)

    def kpis(self, means: Mapping[str, float]) -> dict[str, float]:
        """Every KPI the plan can compute from the window means (SI)."""
        rate = means[self.product]
        out = {"throughput": rate}
        if self.volume is not None:
            out["space_time_yield"] = rate / self.volume
        if self.feed is not None and self.feed_concentration is not None:
            molar = rate / self.product_molar_mass if self.product_molar_mass else rate
            fed = means[self.feed] * self.feed_concentration
            out["yield"] = molar / fed if fed > 0.0 else 0.0
        return out

    def objective(self, kpis: Mapping[str, float], reference: Mapping[str, float] | None
                  ) -> float:
        """The value maximised; ``reference`` are the first experiment's KPIs (weighted)."""
        if self.maximize != "weighted":
            return kpis[self.maximize]
        ref = reference or kpis
        return sum(w * kpis[k] / (ref[k] if ref[k] else 1.0) for k, w in self.weights.items())


def shown_units(maximize: str, product_unit: str) -> dict[str, tuple[str, float]]:
    """The display unit and SI factor of each KPI and of the objective, from the unit the
    plant reports the product signal in.

    Why: the KPIs and the objective are computed in SI (a crystal rate of 3.0e-08 kg/s), which
    no one on a line reads; throughput is shown in the product signal's own unit (mg/h),
    space-time yield in that unit per litre, yield in %. A weighted objective is a sum of
    KPIs relative to the first experiment's, a plain number.
    """
    def factor(unit: str) -> float:
        return 1.0 / to_si(1.0, unit) if unit else 1.0

    out = {"throughput": (product_unit, factor(product_unit)), "yield": ("%", 100.0)}
    sty = f"{product_unit}/L" if product_unit else "1/L"
    out["space_time_yield"] = (sty, factor(sty))
    out["objective"] = out.get(maximize, ("", 1.0))
    return out


def _number(raw: Any, unit: str) -> float:
    return float(parse_quantity(raw, unit or None).to(unit or "").magnitude)


def plan_from_recipe(recipe: ValidatedRecipe) -> Plan:
    """The plan of a validated recipe's ``optimize`` block (``${parameters}`` resolved)."""
    opt: Optimize | None = recipe.recipe.optimize
    if opt is None:
        raise ValueError(f"{recipe.file}: the recipe has no 'optimize' block")
    res = recipe.resolve
    obj = opt.objective
    variables = tuple(
        Variable(v.name, tuple(v.set), _number(res(v.min), v.unit), _number(res(v.max), v.unit),
                 v.unit, None if v.start is None else _number(res(v.start), v.unit))
        for v in opt.variables)

    def si(raw: Any) -> float | None:
        return None if raw is None else to_si(res(raw))

    return Plan(
        name=opt.name, variables=variables, maximize=obj.maximize, product=obj.product,
        constraints=tuple(parse_constraint(str(res(c))) for c in opt.constraints),
        feed=obj.feed, feed_concentration=si(obj.feed_concentration),
        product_molar_mass=si(obj.product_molar_mass), volume=si(obj.volume),
        weights={str(k): w for k, w in (obj.weights or {}).items()},
        experiments=opt.experiments, steady=opt.steady,
        window=recipe.seconds(opt.window), settle_timeout=recipe.seconds(opt.settle_timeout),
        algorithm=opt.algorithm, step=opt.step, tolerance=opt.tolerance, prior=opt.prior,
        shown=shown_units(obj.maximize, _product_unit(recipe, obj.product)))


def _product_unit(recipe: ValidatedRecipe, signal: str) -> str:
    info = recipe.signals.get(signal)
    return info.unit if info is not None and info.kind == "number" else ""

"""Experiments on the process models at steady state: the campaign's bench and test rig.

Why steady state instead of stepping the line until the detector fires: an experiment on a
line is "apply, wait for steady state, average a window"; on the models that window's mean
is the steady state itself, which :meth:`SimulatedPlant.steady_state` solves directly in a
fraction of a second instead of hours of dynamics. Measurement noise (relative standard
deviation per signal, seeded) stands in for what a window mean keeps of the analyzer's noise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from modulecontrol.clock import Clock
from modulecontrol.descriptors import PlantConfig
from modulecontrol.simulators import SimulatedPlant
from modulecontrol.units import to_si

from ._campaign import ExperimentFailed
from ._plan import Plan

LineFactory = Callable[[Mapping[str, Mapping[str, float]]], SimulatedPlant]
"""Builds the line running with these service parameters (``{tag: {assembly: value}}``)."""


class SteadyStateExperimenter:
    """Each experiment builds the line at the set points and reads the plan's signals at its
    steady state (SI), with relative noise ``noise[signal]`` drawn from ``seed``."""

    def __init__(self, line: LineFactory, noise: Mapping[str, float] | None = None,
                 seed: int = 0) -> None:
        self.line = line
        self.noise = dict(noise or {})
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def true_means(self, setpoints: Mapping[str, float], plan: Plan) -> dict[str, float]:
        """The noise-free steady-state means (brute-force references use these)."""
        params: dict[str, dict[str, float]] = {}
        for target, value in setpoints.items():
            tag, assembly = target.split(".")
            params.setdefault(tag, {})[assembly] = value
        sim = self.line(params)
        for target, value in setpoints.items():
            # a live set point (FlowSetpoint) is written as the line writes it; a service
            # parameter (TempSP) took effect through ``params`` when the services started
            tag, assembly = target.split(".")
            sim.view(tag).write(assembly, None, value)
        try:
            sim.steady_state()
        except (ValueError, RuntimeError) as exc:
            raise ExperimentFailed(f"no steady state at {dict(setpoints)}: {exc}") from exc
        out: dict[str, float] = {}
        for signal in plan.signals:
            tag, assembly = signal.split(".", 1)
            view = sim.view(tag)
            value = view.read(assembly)
            if value is None:
                raise ExperimentFailed(f"{signal} is not simulated")
            out[signal] = to_si(float(value), view.module_type.assembly(assembly).unit or None)
        return out

    async def run(self, setpoints: Mapping[str, float], plan: Plan) -> Mapping[str, float]:
        self.count += 1
        means = self.true_means(setpoints, plan)
        for signal, rel in self.noise.items():
            if signal in means:
                means[signal] *= 1.0 + rel * float(self.rng.standard_normal())
        return means


def line_on_models(config: PlantConfig, params: Mapping[str, Mapping[str, float]]
                   ) -> SimulatedPlant:
    """The plant's models running at ``params`` (services started), its divert valves to
    product as divert control keeps them once the line is on spec: a
    :data:`LineFactory` of the twin."""
    plant = SimulatedPlant.from_config(config, Clock.fast(), dt=10.0)
    plant.start_services(params)
    for tag, view in plant.views.items():
        if any(s.name == "Divert" for s in config.type_of(tag).services) \
                and view.link("Valve") is not None:
            view.write("Valve", None, True)
    return plant


def plan_prior(plan: Plan, config: PlantConfig) -> TwinPrior | None:
    """The prior a plan asks for (``prior: twin``: the plant's models, with the overlays the
    plant includes, on :func:`line_on_models`), or None: the one place a plan's ``prior``
    becomes a twin, for the line's optimize step and ``modulecontrol optimize`` alike."""
    if plan.prior != "twin":
        return None
    return TwinPrior(lambda p: line_on_models(config, p), plan)


class TwinPrior:
    """The twin as a search's prior (:class:`BayesSearch` ``prior``): the objective and
    margins the plan computes from the steady state of ``line`` at a point, ``None`` where
    there is none. A weighted objective is weighed against the twin's own KPIs at
    ``start``, as the campaign weighs against its first experiment. Deterministic (no
    noise), so a restored campaign samples the same prior."""

    def __init__(self, line: LineFactory, plan: Plan) -> None:
        self.plan = plan
        self.model = SteadyStateExperimenter(line)
        self._reference: dict[str, float] | None = None

    def _kpis(self, x: tuple[float, ...]) -> tuple[dict[str, float], dict[str, float]] | None:
        try:
            means = self.model.true_means(self.plan.setpoints(x), self.plan)
        except ExperimentFailed:
            return None
        return means, self.plan.kpis(means)

    def __call__(self, x: tuple[float, ...]) -> tuple[float, tuple[float, ...]] | None:
        if self._reference is None and self.plan.maximize == "weighted":
            first = self._kpis(self.plan.start())
            self._reference = first[1] if first is not None else {}
        got = self._kpis(x)
        if got is None:
            return None
        means, kpis = got
        return (self.plan.objective(kpis, self._reference or None),
                tuple(c.margin(means[c.signal]) for c in self.plan.constraints))

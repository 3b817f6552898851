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

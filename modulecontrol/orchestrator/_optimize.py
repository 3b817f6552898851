"""The ``optimize`` step on a running line: experiments through the proxies, waits on the
recipe's steady-state detector, window means from the supervisor's values.

Why here and not in :mod:`modulecontrol.optimize`: an experiment on the line is made of the
orchestrator's own parts (set points written as a ``set`` step writes them, the detector the
supervisor runs, Execute-time that stops counting while the recipe is held); the campaign,
its search and its records are the optimize package's, used through its public face.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from modulecontrol.clock import Clock
from modulecontrol.descriptors import residence_time
from modulecontrol.drivers import DriverError
from modulecontrol.events import EventKind, EventLog
from modulecontrol.mtpcore import PARAM_CLASSES, write_attribute
from modulecontrol.optimize import ExperimentFailed, ExperimentRecord, Plan
from modulecontrol.orchestrator._supervisor import Supervisor
from modulecontrol.proxy import ModuleProxy
from modulecontrol.recipe import ValidatedRecipe


class NotLive(ValueError):
    """A decision variable writes an assembly the module does not take while running."""


History = Callable[[str], Sequence[ExperimentRecord]]
"""The experiments already recorded for a campaign (by name): how a restart continues."""


def no_history(name: str) -> Sequence[ExperimentRecord]:
    return ()


class LineExperimenter:
    """Apply, wait for the detector, average a window; time held does not count."""

    def __init__(self, recipe: ValidatedRecipe, proxies: Mapping[str, ModuleProxy],
                 supervisor: Supervisor, clock: Clock, log: EventLog, tick: float,
                 gate_open: Callable[[], Awaitable[None]], gate_is_set: Callable[[], bool]
                 ) -> None:
        self.recipe = recipe
        self.proxies = proxies
        self.supervisor = supervisor
        self.clock = clock
        self.log = log
        self.tick = tick
        self.gate_open = gate_open
        self.gate_is_set = gate_is_set

    async def _sleep(self, seconds: float) -> float:
        await self.gate_open()
        t0 = self.clock.now()
        await self.clock.sleep(seconds)
        return self.clock.now() - t0 if self.gate_is_set() else 0.0

    def check_live(self, tag: str, assembly: str) -> None:
        """Refuse a target the module would not take while running.

        Why: a service parameter the device does not bind for writing (no ``VExt``) is only
        kept by the proxy until its service next starts; the experiment would then measure
        the unchanged plant and record it as the new point. That is a wrong record, so the
        step fails (the recipe holds) and says what to optimise instead.
        """
        proxy = self.proxies[tag]
        da = proxy.type.assembly(assembly)
        bound = proxy.driver.tags if proxy.driver is not None else {}
        if write_attribute(da.class_, assembly, bound) is None:
            live = [d.name for d in proxy.type.data_assemblies
                    if d.writable and d.class_ not in PARAM_CLASSES]
            raise NotLive(f"{tag}.{assembly} is a service parameter {tag} takes only when its "
                          "service starts, so an experiment would not change the plant; "
                          f"optimise a set point it takes while running ({', '.join(live)})")

    async def apply(self, setpoints: Mapping[str, float], plan: Plan) -> None:
        """Write the set points as a ``set`` step writes them (a ``parameter_write`` event
        each); :class:`ExperimentFailed` names a write the module refused."""
        units = {t: v.unit for v in plan.variables for t in v.targets}
        for target, value in setpoints.items():
            tag, assembly = target.split(".", 1)
            self.check_live(tag, assembly)
            given = f"{value!r} {units[target]}".strip()
            try:
                coerced = await self.proxies[tag].set(assembly, given)
            except (DriverError, ValueError) as exc:
                raise ExperimentFailed(f"set {target}: {exc}") from None
            self.log.emit(EventKind.PARAMETER_WRITE, target, f"{target} = {given}",
                          value=coerced, given=given)

    async def run(self, setpoints: Mapping[str, float], plan: Plan) -> Mapping[str, float]:
        await self.apply(setpoints, plan)
        detector = next(d for d in self.recipe.recipe.steady_state if d.name == plan.steady)
        n = float(self.recipe.resolve(detector.residence_times))
        # first let the detector's window fill with what follows the change, then wait for it
        elapsed, settled = 0.0, False
        steady = self.recipe.compile(f"steady.{plan.steady}")
        while elapsed < plan.settle_timeout:
            tau = residence_time(self.recipe.plant, detector.path, self.supervisor.feed_flows())
            if math.isfinite(tau) and elapsed >= n * tau and self.supervisor.evaluate(steady):
                settled = True
                break
            elapsed += await self._sleep(self.tick)
        if not settled:
            raise ExperimentFailed(f"no steady state ('{plan.steady}') within "
                                   f"{plan.settle_timeout:g} s")
        sums = dict.fromkeys(plan.signals, 0.0)
        count, elapsed = 0, 0.0
        while elapsed < plan.window:
            values = self.supervisor.values()
            for name in plan.signals:
                v = values.get(name)
                if not isinstance(v, int | float) or not math.isfinite(v):
                    raise ExperimentFailed(f"{name} has no good value in the window ({v!r})")
                sums[name] += float(v)
            count += 1
            elapsed += await self._sleep(min(self.tick, plan.window - elapsed))
        return {k: v / max(count, 1) for k, v in sums.items()}


class EventJournal:
    """The campaign's records as run events (the session stores and chains them)."""

    def __init__(self, log: EventLog, plan: Plan, history: History) -> None:
        self.log = log
        self.name = plan.name
        self.plan = plan
        self._history = history

    def history(self) -> Sequence[ExperimentRecord]:
        return self._history(self.name)

    async def applying(self, index: int, setpoints: Mapping[str, float]) -> None:
        """The writes themselves are ``parameter_write`` events of the experimenter."""

    async def finished(self, record: ExperimentRecord) -> None:
        payload: dict[str, Any] = record.payload()
        # how people read the SI figures (the report and the station show them so)
        # (flat: records keep an event's data one level deep)
        payload["units"] = {k: u for k, (u, _) in self.plan.shown.items()}
        payload["unit_factors"] = {k: f for k, (_, f) in self.plan.shown.items()}
        state = "failed: " + record.error if record.error else (
            f"objective {self.plan.show('objective', record.objective)}"
            + ("" if record.feasible else ", infeasible"))
        self.log.emit(EventKind.OPTIMIZE_EXPERIMENT, self.name,
                      f"experiment {record.index + 1}: {state}", **payload)

"""Fault injection: at run time through :class:`FaultInjector`, or from a scenario file.

Faults act where the real ones would: on the wire (a device that stops answering, answers
late, answers noise or errors, publishes bad status), on a sensor (stuck, noisy, drifting),
or in the process (a pump stalls or leaks, a thermostat fails, a coil fouls). Every start
and end is recorded with its simulated time, and told to listeners (the historian).

A scenario file::

    kind: Scenario
    name: pump trouble
    faults:
      - {at: 2 h, module: P1, fault: stall, duration: 10 min}
      - {at: 3 h, module: R1, fault: stuck, params: {variable: T}}
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import Field

from modulecontrol.clock import Clock
from modulecontrol.descriptors import Ident, Model, PlantConfig, Seconds
from modulecontrol.errors import ConfigError, Problem, did_you_mean
from modulecontrol.simulators._view import ModuleView, ViewError
from modulecontrol.simulators.models import FaultError
from modulecontrol.units import convert
from modulecontrol.yamlio import YamlDoc, load_yaml, validation_problems


class FaultTarget(Protocol):
    """What the injector needs of a simulated plant (``SimulatedPlant`` is one): its time, its
    clock and its module views. A protocol, so the plant may own an injector without the two
    modules importing each other."""

    @property
    def time(self) -> float: ...

    @property
    def clock(self) -> Clock: ...

    def view(self, tag: str) -> ModuleView: ...

__all__ = [
    "FAULTS",
    "FaultError",
    "FaultInjector",
    "FaultRecord",
    "Scenario",
    "ScenarioFault",
    "load_scenario",
    "scenario_from_doc",
]

TRANSPORT_FAULTS = ("silent", "slow", "garbage", "exception", "bad_status")
SENSOR_FAULTS = ("stuck", "noise", "drift")
PROCESS_FAULTS = ("stall", "leak", "thermostat_failure", "fouling", "deactivation")
FAULTS: tuple[str, ...] = (*TRANSPORT_FAULTS, *SENSOR_FAULTS, *PROCESS_FAULTS)
"""Every fault name a scenario or :meth:`FaultInjector.inject` accepts."""

BAD_SENSOR_FAILURE = 0x808C0000
"""OPC UA ``BadSensorFailure``, the default status of a ``bad_status`` fault."""
SLAVE_DEVICE_FAILURE = 4
"""Modbus exception code 4, the default of an ``exception`` fault."""


@dataclass(frozen=True)
class FaultRecord:
    """One fault starting or ending, at simulated time ``time`` (s)."""

    time: float
    module: str
    fault: str
    event: Literal["start", "end"]
    params: dict[str, Any] = field(default_factory=dict)


class ScenarioFault(Model):
    """One entry of a scenario: a fault on a module from ``at`` for ``duration``."""

    at: Seconds = Field(ge=0)
    module: Ident
    fault: str
    duration: Seconds | None = Field(default=None, gt=0)
    """None: the fault stays until cleared."""
    params: dict[str, Any] = Field(default_factory=dict)


class Scenario(Model):
    kind: Literal["Scenario"] = "Scenario"
    name: str = ""
    description: str = ""
    faults: list[ScenarioFault] = Field(default_factory=list)


def scenario_from_doc(doc: YamlDoc, plant: PlantConfig | None = None) -> Scenario:
    """Validate a scenario; with ``plant``, also its module tags (every problem located)."""
    if not isinstance(doc.data, dict):
        raise ConfigError.single("expected a mapping with 'kind: Scenario'", doc.locate(()))
    try:
        sc = Scenario.model_validate(doc.data)
    except Exception as exc:
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            raise ConfigError(validation_problems(exc, doc, Scenario)) from None
        raise
    problems: list[Problem] = []
    tags = [m.tag for m in plant.plant.modules] if plant is not None else None
    for i, f in enumerate(sc.faults):
        if f.fault not in FAULTS:
            problems.append(Problem(f"unknown fault '{f.fault}'{did_you_mean(f.fault, FAULTS)}",
                                    doc.locate(("faults", i, "fault"))))
        if tags is not None and f.module not in tags:
            problems.append(Problem(f"no module '{f.module}' in the plant"
                                    f"{did_you_mean(f.module, tags)}",
                                    doc.locate(("faults", i, "module"))))
    if problems:
        raise ConfigError(problems)
    return sc


def load_scenario(path: str | Path, plant: PlantConfig | None = None) -> Scenario:
    return scenario_from_doc(load_yaml(path), plant)


class FaultInjector:
    """Faults of a simulated plant: inject, clear, play scenarios, keep the record."""

    def __init__(self, plant: FaultTarget) -> None:
        self.plant = plant
        self.records: list[FaultRecord] = []
        self.active: dict[tuple[str, str], dict[str, Any]] = {}
        self._listeners: list[Callable[[FaultRecord], None]] = []

    def on_record(self, listener: Callable[[FaultRecord], None]) -> None:
        """Call ``listener(record)`` for every fault start and end (e.g. the historian)."""
        self._listeners.append(listener)

    def _record(self, module: str, fault: str, event: Literal["start", "end"],
                params: dict[str, Any]) -> FaultRecord:
        rec = FaultRecord(self.plant.time, module, fault, event, dict(params))
        self.records.append(rec)
        for listener in list(self._listeners):
            listener(rec)
        return rec

    def inject(self, module: str, fault: str, **params: Any) -> FaultRecord:
        """Start a fault now. Parameters by fault:

        ``slow`` (``delay`` s, default 2), ``exception`` (``code``: Modbus exception code
        or serial error text), ``bad_status`` (``status``: OPC UA status code),
        ``stuck`` / ``noise`` / ``drift`` (``variable``: an assembly or model variable;
        ``value`` / ``std`` / ``rate`` in that assembly's unit, rate per second),
        ``leak`` (``fraction``), ``fouling`` (``volume_fraction``), ``deactivation``
        (``activity``: the fraction of a coil reactor's rate constants left, default 0.5).
        """
        view = self.plant.view(module)
        if fault not in FAULTS:
            raise FaultError(f"unknown fault '{fault}'{did_you_mean(fault, FAULTS)}")
        t = view.transport
        if fault == "silent":
            t.silent = True
        elif fault == "slow":
            t.delay = float(params.get("delay", 2.0))
        elif fault == "garbage":
            t.garbage = True
        elif fault == "exception":
            t.error = params.get("code", SLAVE_DEVICE_FAILURE)
        elif fault == "bad_status":
            t.bad_status = int(params.get("status", BAD_SENSOR_FAILURE))
        elif fault in SENSOR_FAULTS:
            var, model_params = _sensor_params(view, fault, params)
            view.model.inject_fault(fault, variable=var, **model_params)
        elif fault == "thermostat_failure":
            target = view.thermostat or (view.model if view.model.kind == "thermostat" else None)
            if target is None:
                raise FaultError(f"{module} has no thermostat to fail")
            target.inject_fault("failure")
        else:
            model_kind = {"stall": "stall", "leak": "leak", "fouling": "fouling",
                          "deactivation": "deactivation"}[fault]
            if model_kind not in view.model.fault_kinds:
                raise FaultError(f"{module} ({view.model.kind}) cannot have fault '{fault}' "
                                 f"(it can: {', '.join(view.model.fault_kinds) or 'none'})")
            view.model.inject_fault(model_kind, **{k: float(v) for k, v in params.items()})
        self.active[(module, fault)] = dict(params)
        return self._record(module, fault, "start", params)

    def clear(self, module: str, fault: str) -> FaultRecord | None:
        """End a fault (None if it was not active)."""
        params = self.active.pop((module, fault), None)
        if params is None:
            return None
        view = self.plant.view(module)
        t = view.transport
        if fault == "silent":
            t.silent = False
        elif fault == "slow":
            t.delay = 0.0
        elif fault == "garbage":
            t.garbage = False
        elif fault == "exception":
            t.error = None
        elif fault == "bad_status":
            t.bad_status = None
        elif fault in SENSOR_FAULTS:
            var, _ = _sensor_params(view, fault, params)
            view.model.clear_fault(fault, var)
        elif fault == "thermostat_failure":
            target = view.thermostat or view.model
            target.clear_fault("failure")
        else:
            view.model.clear_fault(fault)
        return self._record(module, fault, "end", params)

    def clear_all(self) -> None:
        for module, fault in list(self.active):
            self.clear(module, fault)

    async def play(self, scenario: Scenario) -> None:
        """Run a scenario on the plant's clock, times relative to now; returns when the last
        fault has ended (faults without a duration stay active)."""
        clock = self.plant.clock
        t0 = clock.now()
        events: list[tuple[float, int, ScenarioFault, bool]] = []
        for i, f in enumerate(scenario.faults):
            events.append((f.at, i, f, True))
            if f.duration is not None:
                events.append((f.at + f.duration, i, f, False))
        events.sort(key=lambda e: (e[0], not e[3], e[1]))
        for at, _, f, start in events:
            await clock.sleep_until(t0 + at)
            if start:
                self.inject(f.module, f.fault, **f.params)
            else:
                self.clear(f.module, f.fault)

    def start_scenario(self, scenario: Scenario) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self.play(scenario), name="sim-faults")
        return task

    @staticmethod
    async def cancel(task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _sensor_params(view: ModuleView, fault: str,
                   params: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """Map an assembly-level sensor fault onto the model variable, in SI."""
    name = str(params.get("variable", ""))
    var = view.link(name) if name and name[:1].isupper() else None
    da_unit = ""
    if var is not None:
        da_unit = view.module_type.assembly(name).unit
    else:
        var = name
    try:
        si_unit = view.variable(var).unit
    except ViewError as exc:
        raise FaultError(f"{view.tag}: {fault} fault: {exc}") from None
    out: dict[str, float] = {}
    for key in ("value", "std", "rate"):
        if key not in params:
            continue
        v = float(params[key])
        if da_unit and si_unit and math.isfinite(v):  # a NaN/inf reading has no unit
            if key == "value":
                v = convert(v, si_unit, da_unit)
            else:  # a difference: scale without the offset (degC -> K)
                v = convert(v, si_unit, da_unit) - convert(0.0, si_unit, da_unit)
        out[key] = v
    return var, out

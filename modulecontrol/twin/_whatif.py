"""What-if: a proposed change simulated ahead from the state of a recorded run.

The start is the plant's steady state at the inputs the run held at its end (a line that
ran long enough to settle, as a production run does); the change (``TAG.Assembly=value``)
is written at t = 0 and the models are stepped for the horizon. The analyzer's purity and
product concentration are followed step by step: the time to the new steady state is the
last time either is outside ``tolerance`` of the step it makes (its new steady value minus
the old) (the models' steady solve
at the new inputs), the off-spec volume is what passes the analyzer while its purity is
below the spec, and yield, purity and throughput are those of the new steady state.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modulecontrol.clock import Clock
from modulecontrol.descriptors import PlantConfig
from modulecontrol.records import run_samples
from modulecontrol.simulators import ModuleView, SimulatedPlant, build_models
from modulecontrol.simulators.lomustine import PRODUCTS
from modulecontrol.twin._model import TwinError, is_input, recorded_inputs, segments, upstream
from modulecontrol.units import parse_quantity

__all__ = ["WhatIf", "duration_seconds", "whatif"]


@dataclass(frozen=True)
class WhatIf:
    """The outcome of one proposed change (SI-free units for people, as the report)."""

    changes: dict[str, float]
    start: dict[str, float]
    """The inputs held at the run's end (the starting point)."""
    start_from: str
    """Where the simulation starts: the run's end, or the operating point if the run ended
    with the line stopped."""
    horizon_s: float
    time_to_steady_s: float
    """inf when the horizon ends before the outputs settle."""
    purity_pct: float
    product_mol_l: float
    throughput_g_h: float
    yield_pct: float | None
    """Product at the analyzer per limiting reagent fed (None: the plant has no such line)."""
    off_spec_ml: float
    purity_spec_pct: float
    before: dict[str, float]
    """purity_pct, product_mol_l, throughput_g_h, yield_pct at the starting point."""

    def as_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isinf(v) else v)
                for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WhatIf:
        """Back from :meth:`as_dict` (e.g. the service's JSON answer)."""
        got = dict(data)
        if got.get("time_to_steady_s") is None:
            got["time_to_steady_s"] = math.inf
        try:
            return cls(**got)
        except TypeError as exc:
            raise TwinError(f"what-if: an answer of another shape ({exc})") from None


def _analyzer(views: Mapping[str, ModuleView], tag: str | None) -> ModuleView:
    found = [v for v in views.values() if v.model.kind == "pat_analyzer"]
    if tag is not None:
        found = [v for v in found if v.tag == tag]
    if not found:
        raise TwinError(f"what-if needs a simulated analyzer{f' {tag}' if tag else ''} "
                        "(a PATAnalyzer) to follow purity and product")
    return found[0]


def _levels(plant: SimulatedPlant, pat: ModuleView) -> dict[str, float]:
    """Purity, product, throughput and yield from the plant's last streams."""
    s = plant.flowsheet.stream(pat.model.name, "out")
    product = getattr(pat.model, "product", None)
    conc = s.concentration(product) if product else 0.0
    mm = float(s.table.molar_mass[s.table.index(product)]) if product else 0.0
    out = {"purity_pct": float(pat.read("Purity")), "product_mol_l": conc / 1000.0,
           "throughput_g_h": s.flow * conc * mm * 3600.0 * 1000.0}
    # yield on the route's limiting reagent (the amine), as simulators.lomustine.kpis
    route = next((p.route for p in PRODUCTS.values() if p.route.product == product), None)
    fed = sum(plant.flowsheet.stream(v.model.name, port).molar_flow(route.amine)
              for v in plant.views.values() if not v.model.inlets
              for port in v.model.outlets) if route is not None else 0.0
    out["yield_pct"] = (100.0 * s.flow * conc / fed) if fed > 0 else math.nan
    return out


def _settled(config: PlantConfig, inputs: Mapping[str, float], dt: float) -> SimulatedPlant:
    """The plant's models at their steady state with ``inputs`` over the services' defaults
    (noise-free). ValueError when there is none (no flow)."""
    plant = SimulatedPlant(config, *build_models(config), Clock(), dt)
    for view in plant.views.values():
        view.noise = {}
    plant.start_services()
    for s, v in inputs.items():
        tag, _, assembly = s.partition(".")
        plant.views[tag].write(assembly, None, float(v))
    plant.steady_state()
    return plant


def whatif(config: PlantConfig, db: str | Path, run: int, changes: Mapping[str, float],
           horizon: float, dt: float = 10.0, tolerance: float = 0.02,
           purity_spec: float = 90.0, analyzer: str | None = None) -> WhatIf:
    """Simulate ``changes`` for ``horizon`` s from the end state of ``run`` in ``db``."""
    if horizon <= 0 or dt <= 0:
        raise TwinError("what-if: --horizon and --dt must be > 0")
    rep = recorded_inputs(config, run_samples(db, run))
    start = segments(rep)[-1].inputs if rep.duration > 0 else {}
    return _ahead(config, start, f"the end of run {run}",
                  f"run {run} ended with the line stopped", changes,
                  horizon, dt, tolerance, purity_spec, analyzer)


def live_inputs(config: PlantConfig, read: Callable[[str, str], Any]) -> dict[str, float]:
    """The inputs a what-if starts from, read from a running line: ``read(tag, assembly)``
    gives the current value (None when unknown) of every linked, writable signal."""
    _, views = build_models(config)
    out = {}
    for tag in views:
        for da in config.type_of(tag).data_assemblies:
            name = f"{tag}.{da.name}"
            if is_input(views, name):
                v = read(tag, da.name)
                if isinstance(v, bool | int | float) and math.isfinite(float(v)):
                    out[name] = float(v)
    return out


def whatif_live(config: PlantConfig, inputs: Mapping[str, float],
                changes: Mapping[str, float], horizon: float, dt: float = 10.0,
                tolerance: float = 0.02, purity_spec: float = 90.0,
                analyzer: str | None = None) -> WhatIf:
    """Simulate ``changes`` for ``horizon`` s from a running line's ``inputs`` (see
    :func:`live_inputs`): the start is the steady state those inputs lead to."""
    if horizon <= 0 or dt <= 0:
        raise TwinError("what-if: --horizon and --dt must be > 0")
    return _ahead(config, dict(inputs), "the line's live inputs", "the line gives no flow",
                  changes, horizon, dt, tolerance, purity_spec, analyzer)


def _ahead(config: PlantConfig, held: Mapping[str, float], start_from: str, stopped: str,
           changes: Mapping[str, float], horizon: float, dt: float, tolerance: float,
           purity_spec: float, analyzer: str | None) -> WhatIf:
    """The what-if from the steady state at the inputs ``held``."""
    _, every = build_models(config)
    pat_tag = _analyzer(every, analyzer).tag
    config = upstream(config, [pat_tag])  # what the analyzer sees; not what is downstream
    _, views = build_models(config)
    for s in changes:
        if not is_input(every, s):
            raise TwinError(f"--set {s}: not a simulated set point (write TAG.Assembly of a "
                            "linked, writable signal, e.g. R1.TempSP)")
    # a change downstream of the analyzer cannot change what it sees: simulated without it
    applied = {s: v for s, v in changes.items() if is_input(views, s)}
    start = {s: v for s, v in held.items() if s.partition(".")[0] in views}
    try:
        plant = _settled(config, start, dt)
    except ValueError:
        # the run ended with the line stopped (no flow, no steady state): the change is
        # judged against the plant's operating point (its services' defaults) instead
        start, start_from = {}, f"the operating point ({stopped})"
        try:
            plant = _settled(config, start, dt)
        except ValueError as exc:
            raise TwinError(f"what-if: {exc}") from None
    try:
        target = _settled(config, {**start, **applied}, dt)
    except ValueError as exc:
        raise TwinError(f"what-if: the change gives {exc}") from None
    pat = plant.views[pat_tag]
    before = _levels(plant, pat)
    after = _levels(target, target.views[pat_tag])
    for s, v in applied.items():
        tag, _, assembly = s.partition(".")
        plant.views[tag].write(assembly, None, float(v))
    n = max(1, math.ceil(horizon / dt - 1e-9))
    band = {key: tolerance * abs(after[key] - before[key]) + 1e-9 * abs(after[key])
            for key in ("purity_pct", "product_mol_l")}
    last_out, off_spec = 0.0, 0.0
    for k in range(1, n + 1):
        plant.step()
        now = _levels(plant, pat)
        for key in ("purity_pct", "product_mol_l"):
            if not abs(now[key] - after[key]) <= band[key]:
                last_out = k * dt
        if not now["purity_pct"] >= purity_spec:  # NaN (analyzer not valid) counts off-spec
            off_spec += plant.flowsheet.stream(pat.model.name, "out").flow * dt * 1e6
    settled = last_out if last_out < n * dt else math.inf
    return WhatIf(dict(changes), start, start_from, n * dt, settled, after["purity_pct"],
                  after["product_mol_l"], after["throughput_g_h"],
                  None if np.isnan(after["yield_pct"]) else after["yield_pct"], off_spec,
                  purity_spec, before)


def duration_seconds(text: str, what: str = "duration") -> float:
    """``2 h``, ``90 min``, ``600`` (s) as seconds; the error says what to write."""
    m = re.fullmatch(r"\s*([0-9.]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if m is None:
        raise TwinError(f"{what} {text}: not a time (write e.g. 2h, 90 min or 600)")
    if not m[2]:
        return float(m[1])
    q = parse_quantity(f"{m[1]} {m[2]}")
    if isinstance(q, int | float):
        return float(q)
    try:
        return float(q.to("s").magnitude)
    except Exception:  # pint's DimensionalityError: any unit that is not a time
        raise TwinError(f"{what} {text}: not a time (write e.g. 2h, 90 min or 600)") from None

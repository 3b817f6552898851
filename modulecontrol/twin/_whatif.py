"""What-if: a proposed change simulated ahead from the state of a recorded run or a live line.

Where it starts. By default from the run's *state* at its end, estimated by the twin: the
models replay the run's recorded inputs (what was written, when) up to its end, so a line
still settling after a change, or part-way through a start-up, is where the what-if begins.
The replay covers the run's last :data:`START_WINDOW` (the line forgets what came before:
its residence times are minutes) from the steady state at the inputs held then; a shorter
run is replayed whole, from rest, unless its first analyzer samples say it began on a line
already in production (the test the transient fit uses), then from the steady state at its
first inputs. The analyzer's last recorded values beside the twin's at the same time are
the estimate's check (:attr:`WhatIf.estimate`): a twin that disagrees with the line there
starts from the wrong state, and the answer says so instead of hiding it. ``start="steady"``
starts from the plant's steady state at the inputs held at the end instead (a line that ran
long enough to settle, as a production run does; the earlier behaviour). A live what-if
replays the run in progress, then writes the inputs the line holds now; with no run in
progress, it starts from the steady state at those inputs.

The change (``TAG.Assembly=value``) is written at t = 0 and the models are stepped for the
horizon. The analyzer's purity and product concentration are followed step by step: the
time to the new steady state is the last time either is outside ``tolerance`` of the step it
makes (its new steady value, the models' steady solve at the new inputs, minus the larger
of its value at the start and its old steady value: a line still settling is judged on how
far it has yet to go), the off-spec volume is what passes the analyzer while its purity is
below the spec, and yield, purity and throughput are those of the new steady state.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from modulecontrol.clock import Clock
from modulecontrol.descriptors import PlantConfig
from modulecontrol.records import RunSamples, run_samples
from modulecontrol.simulators import ModuleView, SimulatedPlant, build_models
from modulecontrol.simulators.lomustine import PRODUCTS
from modulecontrol.twin._fit import off_rest
from modulecontrol.twin._model import (
    START_WINDOW,
    TwinError,
    drive,
    held_at,
    is_input,
    recorded_inputs,
    segments,
    upstream,
)
from modulecontrol.units import parse_quantity

__all__ = ["START_WINDOW", "Start", "WhatIf", "duration_seconds", "whatif"]

Start = Literal["state", "steady"]
"""Where a what-if starts: the run's state at its end (the twin's replay), or the steady
state at the inputs it held there."""

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
    estimate: dict[str, dict[str, float]] = field(default_factory=dict)
    """The check of a start from a run's state: per analyzer signal the run recorded, over
    its last :data:`CHECK_SAMPLES` samples in the replay (``samples`` of them, the last at
    ``t_s`` s since the run start), the mean ``recorded`` value and the ``twin``'s at the
    same times. Empty for a start from a steady state."""

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


def _fresh(config: PlantConfig, dt: float) -> SimulatedPlant:
    """The plant's models at rest with their services started (noise-free)."""
    plant = SimulatedPlant(config, *build_models(config), Clock(), dt)
    for view in plant.views.values():
        view.noise = {}
    plant.start_services()
    return plant


def _write(plant: SimulatedPlant, inputs: Mapping[str, float]) -> None:
    for s, v in inputs.items():
        tag, _, assembly = s.partition(".")
        if tag in plant.views:
            plant.views[tag].write(assembly, None, float(v))


def _settled(config: PlantConfig, inputs: Mapping[str, float], dt: float) -> SimulatedPlant:
    """The plant's models at their steady state with ``inputs`` over the services' defaults
    (noise-free). ValueError when there is none (no flow)."""
    plant = _fresh(config, dt)
    _write(plant, inputs)
    plant.steady_state()
    return plant


CHECK_SAMPLES = 5
"""Last analyzer samples of a run whose mean the estimate's check compares with the twin's
at the same times: one sample is as noisy as the analyzer, five a little over twice as
sure, and still within the last minutes of a run sampled every minute."""

_State = tuple[SimulatedPlant, str, dict[str, dict[str, float]]]
"""A run's estimated state: the plant there, how it was reached, the estimate's check."""


def _span(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"


def _run_state(config: PlantConfig, data: RunSamples, pat: str, dt: float) -> _State | None:
    """The twin's estimate of the state at the end of a recorded run (module docstring);
    None for a run with no duration. ``config``: the modules upstream of the analyzer."""
    window = START_WINDOW
    _, views = build_models(config)
    rep = recorded_inputs(config, data, list(views))
    if rep.duration <= 0:
        return None
    t0 = data.run.t_start
    ana = views[pat]
    signals = [s for s in sorted(data.series) if s.partition(".")[0] == pat
               and ana.link(s.partition(".")[2]) is not None and not is_input(views, s)
               and s.partition(".")[2] not in ("Valid", "Method")]
    samples = {}
    for s in signals:
        ts, vs = data.series[s]
        ok = (ts >= t0 + dt) & (ts <= t0 + rep.duration) & np.isfinite(vs)
        if ok.any():
            samples[s] = (ts[ok] - t0, vs[ok])
    start = max(0.0, rep.duration - window)
    if start > 0.0:
        try:
            plant = _settled(config, held_at(rep, start), dt)
            how = (f"its last {_span(window)} replayed from the steady state at the inputs "
                   "held then")
        except ValueError:
            plant = _fresh(config, dt)
            how = f"its last {_span(window)} replayed from rest (no flow then)"
    else:
        off = off_rest(config, rep, list(samples), dt, {s: t for s, (t, _) in samples.items()},
                       {s: v for s, (_, v) in samples.items()})
        plant = _fresh(config, dt)
        how = "replayed from rest"
        if off:
            try:
                plant = _settled(config, held_at(rep, 0.0), dt)
                o = off[0]
                how = (f"replayed from the steady state at its first inputs: it began on a line "
                       f"in production ({o.signal} read {o.recorded:.4g} at {o.t:g} s, an "
                       f"empty line {o.replayed:.4g})")
            except ValueError:
                pass
    last = {s: ts[ts > start][-CHECK_SAMPLES:] for s, (ts, _) in samples.items()}
    last = {s: ts for s, ts in last.items() if len(ts)}
    twin = drive(plant, rep, list(last), dt, last, start=start)
    estimate = {s: {"t_s": float(ts[-1]), "samples": float(len(ts)),
                    "recorded": float(samples[s][1][-len(ts):].mean()),
                    "twin": float(twin[s].mean())} for s, ts in last.items()}
    return plant, how, estimate


def whatif(config: PlantConfig, db: str | Path, run: int, changes: Mapping[str, float],
           horizon: float, dt: float = 10.0, tolerance: float = 0.02,
           purity_spec: float = 90.0, analyzer: str | None = None,
           start: Start = "state") -> WhatIf:
    """Simulate ``changes`` for ``horizon`` s from the end of ``run`` in ``db``: its state
    (the twin's replay, the default) or the steady state at the inputs it held there."""
    _check(horizon, dt, start)
    data = run_samples(db, run)
    rep = recorded_inputs(config, data)
    held = segments(rep)[-1].inputs if rep.duration > 0 else {}

    def state(sub: PlantConfig, pat: str) -> _State | None:
        return _run_state(sub, data, pat, dt)

    return _ahead(config, held, f"the end of run {run}",
                  f"run {run} ended with the line stopped", changes,
                  horizon, dt, tolerance, purity_spec, analyzer,
                  state if start == "state" else None)


def _check(horizon: float, dt: float, start: str) -> None:
    if horizon <= 0 or dt <= 0:
        raise TwinError("what-if: --horizon and --dt must be > 0")
    if start not in ("state", "steady"):
        raise TwinError(f"what-if: start {start!r}: write state (the run's state, the "
                        "twin's replay) or steady (the steady state at its inputs)")


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
                analyzer: str | None = None, *,
                running: tuple[str | Path, int] | None = None) -> WhatIf:
    """Simulate ``changes`` for ``horizon`` s from a running line's ``inputs`` (see
    :func:`live_inputs`). ``running``: the records database and id of the run in progress,
    whose recorded inputs the twin replays to its state before it writes ``inputs``;
    without one, the start is the steady state ``inputs`` lead to."""
    _check(horizon, dt, "state")
    state = None
    if running is not None:
        db, run = running

        def state(sub: PlantConfig, pat: str) -> _State | None:
            return _run_state(sub, run_samples(db, run), pat, dt)

    where = f"the line's live inputs (run {running[1]} in progress)" if running else \
        "the line's live inputs"
    return _ahead(config, dict(inputs), where, "the line gives no flow",
                  changes, horizon, dt, tolerance, purity_spec, analyzer, state)


def _ahead(config: PlantConfig, held: Mapping[str, float], start_from: str, stopped: str,
           changes: Mapping[str, float], horizon: float, dt: float, tolerance: float,
           purity_spec: float, analyzer: str | None,
           state: Callable[[PlantConfig, str], _State | None] | None) -> WhatIf:
    """The what-if from the state ``state`` estimates (then ``held`` written), or without
    one from the steady state at the inputs ``held``."""
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
    estimate: dict[str, dict[str, float]] = {}
    try:
        old = _settled(config, start, dt)
    except ValueError:
        # the line stopped (no flow, no steady state): the change is judged against the
        # plant's operating point (its services' defaults) instead, from its steady state
        start, start_from, state = {}, f"the operating point ({stopped})", None
        try:
            old = _settled(config, start, dt)
        except ValueError as exc:
            raise TwinError(f"what-if: {exc}") from None
    found = state(config, pat_tag) if state is not None else None
    if found is None:
        plant = old
    else:
        plant, how, estimate = found
        _write(plant, start)
        start_from = f"the state at {start_from}, {how}"
    try:
        target = _settled(config, {**start, **applied}, dt)
    except ValueError as exc:
        raise TwinError(f"what-if: the change gives {exc}") from None
    pat = plant.views[pat_tag]
    before = _levels(plant, pat)
    steady_before = _levels(old, old.views[pat_tag])
    after = _levels(target, target.views[pat_tag])
    _write(plant, applied)
    n = max(1, math.ceil(horizon / dt - 1e-9))
    band = {}
    for key in ("purity_pct", "product_mol_l"):
        way = max(abs(after[key] - before[key]), abs(after[key] - steady_before[key]))
        band[key] = tolerance * (way if math.isfinite(way) else
                                 abs(after[key] - steady_before[key])) + 1e-9 * abs(after[key])
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
                  purity_spec, before, estimate)


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

"""The plant's models with chosen parameters, driven by recorded inputs.

A parameter is named ``TAG.path.to.value`` inside the instance's merged simulator parameters
(``R1.reactions.carbamylation.k_ref``): list items are chosen by their ``name`` (or index).
Values keep the unit they were written in; the twin changes only the magnitude.
"""

from __future__ import annotations

import copy
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from modulecontrol.clock import Clock
from modulecontrol.descriptors import THERMOSTAT_KEY, PlantConfig
from modulecontrol.mtpcore import Command
from modulecontrol.records import RunSamples
from modulecontrol.simulators import ModuleView, SimulatedPlant, build_models
from modulecontrol.simulators.models import MODELS, Thermostat
from modulecontrol.units import parse_quantity

FloatArray = npt.NDArray[np.float64]

__all__ = ["START_WINDOW", "ParamRef", "Replay", "Segment", "TwinError", "drive", "held_at",
           "recorded_inputs", "replay", "segments", "steady_outputs"]


START_WINDOW = 2 * 3600.0
"""s of a run's end the twin replays to estimate its state (the what-if's start and the twin
taken up after a restart, :func:`held_at`). Two hours are many times the residence times of
a flow line (the lomustine line's coils: minutes); the replay's cost grows with it."""


class TwinError(ValueError):
    """A fit that cannot be made as asked; the message names what to change."""


@dataclass(frozen=True)
class ParamRef:
    """One model parameter: module tag, path inside what the instance's
    ``overrides.simulator`` can set (the model parameters, and ``thermostat`` for a jacketed
    module's thermostat: ``R1.thermostat.tau``), written value."""

    name: str
    tag: str
    path: tuple[str | int, ...]
    value: float
    unit: str
    integer: bool = False
    """A whole number of the model (a coil's ``n_tanks``): fitted by a profile over its
    values, never moved by least squares (see :func:`~modulecontrol.twin.fit`)."""

    @classmethod
    def resolve(cls, config: PlantConfig, name: str) -> ParamRef:
        """Find ``name`` in the plant; the error lists what exists where it stopped."""
        tag, _, rest = name.partition(".")
        try:
            mt = config.type_of(tag)
        except (KeyError, ValueError):
            raise TwinError(f"--param {name}: no module '{tag}' in {config.file}") from None
        if mt.simulator is None or not rest:
            raise TwinError(f"--param {name}: give TAG.path to a simulator parameter of "
                            f"{tag} (e.g. {tag}.reactions.<name>.k_ref)")
        node: Any = mt.simulator.overridable()
        path: list[str | int] = []
        for key in rest.split("."):
            step: str | int | None = None
            if isinstance(node, Mapping):
                step = key if key in node else None
                known = ", ".join(map(str, node))
            elif isinstance(node, list):
                names = [i.get("name") if isinstance(i, Mapping) else None for i in node]
                if key in names:
                    step = names.index(key)
                elif key.isdigit() and int(key) < len(node):
                    step = int(key)
                known = ", ".join(str(n) for n in names)
            else:
                known = "nothing (a value)"
            if step is None:
                where = ".".join([tag, *map(str, path)])
                raise TwinError(f"--param {name}: '{key}' not found under {where} "
                                f"(known: {known})")
            path.append(step)
            node = node[step]
        try:
            q = parse_quantity(node)
        except ValueError as exc:
            raise TwinError(f"--param {name}: value {node!r} is not a number: {exc}") from None
        integer = _integer_field(mt.simulator.model, tuple(path))
        if isinstance(q, int | float):
            return cls(name, tag, tuple(path), float(q), "", integer)
        return cls(name, tag, tuple(path), float(q.magnitude), f"{q.units:~}", integer)

    def written(self, value: float) -> float | str:
        """``value`` as the plant file writes it (with the original unit; a whole number
        as one)."""
        if self.integer:
            return round(value)
        return f"{value:.10g} {self.unit}" if self.unit else value


def _integer_field(model: str, path: tuple[str | int, ...]) -> bool:
    """Whether the model declares the parameter at ``path`` a whole number (its pydantic
    field is ``int``): a top-level model parameter, or a thermostat's."""
    if len(path) == 2 and path[0] == THERMOSTAT_KEY:
        kind, key = Thermostat.kind, path[1]
    elif len(path) == 1:
        kind, key = model, path[0]
    else:
        return False
    cls = MODELS.get(kind)
    field = cls.Params.model_fields.get(str(key)) if cls is not None else None
    if field is None:
        return False
    kinds = typing.get_args(field.annotation) or (field.annotation,)
    return int in kinds and float not in kinds


def with_parameters(config: PlantConfig, values: Mapping[ParamRef, float]) -> PlantConfig:
    """A copy of ``config`` whose instance types carry ``values`` (the original is untouched)."""
    types = dict(config.instance_types)
    by_tag: dict[str, list[tuple[ParamRef, float]]] = {}
    for ref, v in values.items():
        by_tag.setdefault(ref.tag, []).append((ref, v))
    for tag, items in by_tag.items():
        mt = config.type_of(tag)
        assert mt.simulator is not None
        params = copy.deepcopy(mt.simulator.overridable())
        for ref, v in items:
            node: Any = params
            for key in ref.path[:-1]:
                node = node[key]
            node[ref.path[-1]] = ref.written(v)
        jacket = params.pop(THERMOSTAT_KEY, mt.simulator.thermostat)
        sim = mt.simulator.model_copy(update={"parameters": params, "thermostat": jacket})
        types[tag] = mt.model_copy(update={"simulator": sim})
    return replace(config, instance_types=types)


def upstream(config: PlantConfig, tags: Sequence[str]) -> PlantConfig:
    """Only the modules that feed ``tags`` (and they themselves): a fit simulates no more."""
    feeds: dict[str, set[str]] = {}
    for c in config.plant.connections:
        feeds.setdefault(c.target[0], set()).add(c.source[0])
    keep: set[str] = set()
    todo = list(tags)
    while todo:
        t = todo.pop()
        if t not in keep:
            keep.add(t)
            todo.extend(feeds.get(t, ()))
    plant = config.plant.model_copy(update={
        "modules": [m for m in config.plant.modules if m.tag in keep],
        "connections": [c for c in config.plant.connections
                        if c.source[0] in keep and c.target[0] in keep]})
    return replace(config, plant=plant)


@dataclass
class Replay:
    """What a recorded run gives the twin: input signals (replayed) and the outputs to
    compare, each ``TAG.Assembly`` -> (times since the run start, values)."""

    inputs: dict[str, tuple[FloatArray, FloatArray]]
    duration: float


def _link(views: Mapping[str, ModuleView], signal: str) -> tuple[ModuleView, str] | None:
    tag, _, assembly = signal.partition(".")
    view = views.get(tag)
    if view is None or view.link(assembly) is None:
        return None
    return view, assembly


def is_input(views: Mapping[str, ModuleView], signal: str) -> bool:
    """A signal the twin replays: an assembly the operator or a recipe writes (a set point,
    a service parameter, a run command), linked to a model variable that can be written.

    A measurement linked to a model input (``R1.JacketT``, the jacket temperature the coil
    model takes) is not one: its value is what the plant did with the written set point
    (the thermostat's response), a model output to compare, never a value to impose. Both
    at once pinned the answer: replayed, it overrode (or was overridden by) the model's own
    thermostat, and every poll of it cut the run into stretches (see :func:`segments`).
    """
    found = _link(views, signal)
    if found is None:
        return False
    view, assembly = found
    name = view.link(assembly)
    assert name is not None
    try:
        da = view.module_type.assembly(assembly)
    except (KeyError, ValueError):
        return False
    return da.writable and view.variable(name).set is not None


WRITTEN_EVENTS = ("command", "parameter_write")
"""Event kinds in a run's record that carry values a recipe or operator wrote: a service
command with its parameters (``{"parameters": {"TempSP": "50 degC"}}``; the session does not
sample service parameters) and a ``set`` step's write (``value``, in the assembly's unit)."""
_STARTS = (Command.START.label, Command.RESTART.label)
"""The commands whose service parameters a run's command events carry."""
SAME = 1e-6
"""Relative difference below which two recorded values of an input are the same write (a
float32 register reads back 2.4 as 2.4000001; a command said 2.4)."""


def recorded_inputs(config: PlantConfig, data: RunSamples,
                    tags: Sequence[str] | None = None) -> Replay:
    """The inputs of a recorded run as the twin replays them: what was written, when.

    Two records hold written values: the samples of writable assemblies (a set point polled
    back, a pump's ``Run``) and the run's events (a service's parameters at its start, a
    ``set`` step). Each input keeps only its *changes* (the first value, then every value
    that differs from the one before): the session records a polled flag again and again
    (a 9 h campaign gave 11 806 stretches when every sample cut one), and a poll that
    repeats what was written is no new write. ``tags``: only these modules' inputs (the
    ones the fit simulates; a divert valve downstream of the analyzer cuts nothing).
    """
    _, views = build_models(config)
    keep = set(tags) if tags is not None else set(views)
    t0 = data.run.t_start
    raw: dict[str, list[tuple[float, float]]] = {}
    for s, (ts, vs) in data.series.items():
        if s.partition(".")[0] in keep and is_input(views, s):
            raw.setdefault(s, []).extend((float(t), float(v)) for t, v in zip(ts, vs,
                                                                              strict=True))
    for t, kind, source, payload in data.events:
        if kind not in WRITTEN_EVENTS or t < t0:
            continue
        tag, _, rest = source.partition(".")
        if tag not in keep:
            continue
        if kind == "command":
            if payload.get("command") not in _STARTS:
                continue
            given = dict(payload.get("parameters") or {})
        else:
            given = {rest: payload.get("value")}
        for name, value in given.items():
            s = f"{tag}.{name}"
            if not is_input(views, s):
                continue
            try:
                v = views[tag].module_type.assembly(name).coerce(value, what="recorded value")
            except (ValueError, TypeError):
                raise TwinError(f"run {data.run.id}: {kind} event of {source} at {t:.3f}: "
                                f"{name}={value!r} is not a value of {s}") from None
            raw.setdefault(s, []).append((float(t), float(v)))
    inputs: dict[str, tuple[FloatArray, FloatArray]] = {}
    for s, pts in raw.items():
        pts.sort(key=lambda p: p[0])
        kept: list[tuple[float, float]] = []
        for t, v in pts:
            if not math.isfinite(v):
                continue
            if kept and abs(v - kept[-1][1]) <= SAME * max(abs(v), abs(kept[-1][1])):
                continue
            kept.append((t - t0, v))
        if kept:
            arr = np.array(kept, dtype=float)
            inputs[s] = (arr[:, 0], arr[:, 1])
    return Replay(inputs, data.t_end - t0)


def replay(config: PlantConfig, data: Replay, outputs: Sequence[str], dt: float,
           times: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
    """Simulate the run with its inputs replayed (zero-order hold, applied before each step
    of ``dt``); each output's model value (noise-free), interpolated at its sample ``times``.

    The twin starts where the plant's models start, with every service at its defaults, as
    a recorded run starts from a plant at rest; recorded inputs then replace the defaults.
    """
    fs, views = build_models(config)
    for view in views.values():
        view.noise = {}  # the twin predicts the true value; the data carry the noise
    plant = SimulatedPlant(config, fs, views, Clock(), dt)
    plant.start_services()
    return drive(plant, data, outputs, dt, times)


def drive(plant: SimulatedPlant, data: Replay, outputs: Sequence[str], dt: float,
          times: Mapping[str, FloatArray], start: float = 0.0) -> dict[str, FloatArray]:
    """Step ``plant`` from ``start`` to the end of ``data`` (s since the run start) with the
    recorded inputs replayed, as :func:`replay` does from rest; each output's model value at
    its sample ``times`` (interpolated on the steps; a time before the first step takes the
    first step's value). The plant is left at the end: the what-if starts from there."""
    views = plant.views
    links = {s: _link(views, s) for s in [*data.inputs, *outputs]}
    for s in outputs:
        if links[s] is None:
            raise TwinError(f"output {s}: no simulated module signal of that name")
    n = max(1, math.ceil((data.duration - start) / dt - 1e-9))
    grid = start + np.arange(1, n + 1, dtype=float) * dt
    track = np.empty((len(outputs), n))
    held: dict[str, float] = {}
    for k in range(n):
        t = start + k * dt
        for s, (ts, vs) in data.inputs.items():
            i = int(np.searchsorted(ts, t, side="right")) - 1
            if i < 0 or not math.isfinite(vs[i]) or held.get(s) == vs[i]:
                continue
            held[s] = float(vs[i])
            found = links[s]
            if found is not None:
                found[0].write(found[1], None, held[s])
        plant.flowsheet.step(dt)
        for j, s in enumerate(outputs):
            found = links[s]
            assert found is not None
            track[j, k] = float(found[0].read(found[1]))
    return {s: np.interp(times[s], grid, track[j]) for j, s in enumerate(outputs)}


def held_at(data: Replay, t: float) -> dict[str, float]:
    """The replayed inputs held at ``t`` s since the run start (zero-order hold, as
    :func:`replay` applies them)."""
    out = {}
    for s, (ts, vs) in data.inputs.items():
        i = int(np.searchsorted(ts, t, side="right")) - 1
        if i >= 0 and math.isfinite(vs[i]):
            out[s] = float(vs[i])
    return out


@dataclass(frozen=True)
class Segment:
    """A stretch of a run with constant inputs: ``[start, end)`` s since the run start, and
    the inputs held over it (``TAG.Assembly`` -> value)."""

    start: float
    end: float
    inputs: dict[str, float]


def segments(data: Replay) -> list[Segment]:
    """The run cut where a replayed input *changes* (zero-order hold, as :func:`replay`).

    A sample that repeats the value held (a poll of an unchanged set point) cuts nothing:
    adjacent stretches with the same inputs are one.
    """
    cuts = sorted({0.0, *(float(t) for ts, _ in data.inputs.values() for t in ts
                          if 0.0 < t < data.duration)})
    out: list[Segment] = []
    for a, b in zip(cuts, [*cuts[1:], data.duration], strict=True):
        held = {}
        for s, (ts, vs) in data.inputs.items():
            i = int(np.searchsorted(ts, a, side="right")) - 1
            if i >= 0 and math.isfinite(vs[i]):
                held[s] = float(vs[i])
        if out and out[-1].inputs == held:
            out[-1] = Segment(out[-1].start, b, held)
        else:
            out.append(Segment(a, b, held))
    return out


def steady_outputs(config: PlantConfig, inputs: Mapping[str, float],
                   outputs: Sequence[str]) -> dict[str, float]:
    """The outputs at the plant's steady state with ``inputs`` held (the models' own steady
    solve: a Newton solve per tank, smooth in the parameters, unlike a finite simulation)."""
    fs, views = build_models(config)
    plant = SimulatedPlant(config, fs, views, Clock(), 1.0)
    plant.start_services()
    for s, v in inputs.items():
        found = _link(views, s)
        if found is not None:
            found[0].write(found[1], None, v)
    plant.steady_state()
    out = {}
    for s in outputs:
        found = _link(views, s)
        if found is None:
            raise TwinError(f"output {s}: no simulated module signal of that name")
        out[s] = float(found[0].read(found[1]))
    return out

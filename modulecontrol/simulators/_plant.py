"""A plant of process models built from a plant file, stepped on the shared clock.

One model per simulated (or passive) module instance, from its type's ``simulator`` section
plus the instance's ``overrides.simulator``; connections from the plant's flow connections
(module port names mapped to model port names by ``simulator.ports``); a thermostat on the
jacket where the type asks for one. The protocol servers only see :class:`ModuleView` s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modulecontrol.clock import Clock
from modulecontrol.descriptors import ModuleInstance, ModuleType, PlantConfig
from modulecontrol.errors import did_you_mean
from modulecontrol.mtpcore import State
from modulecontrol.simulators._faults import FaultInjector
from modulecontrol.simulators._view import ModuleView, ViewError
from modulecontrol.simulators.models import (
    MODELS,
    Flowsheet,
    ParameterError,
    Species,
    SpeciesTable,
    Stream,
    Thermostat,
    create_model,
)

__all__ = ["DEFAULT_SPECIES", "PlantBuildError", "SimulatedPlant", "StreamReport",
           "build_models", "default_species", "plant_species"]

DEFAULT_SPECIES: tuple[dict[str, Any], ...] = (
    {"name": "THF", "molar_mass": "72.11 g/mol", "density": "889 kg/m**3",
     "viscosity": "0.46 mPa*s", "heat_capacity": "1720 J/(kg*K)"},
    {"name": "heptane", "molar_mass": "100.2 g/mol", "density": "684 kg/m**3",
     "viscosity": "0.39 mPa*s", "heat_capacity": "2240 J/(kg*K)"},
    {"name": "water", "molar_mass": "18.015 g/mol", "density": "997 kg/m**3",
     "viscosity": "0.89 mPa*s", "heat_capacity": "4180 J/(kg*K)"},
    {"name": "product", "molar_mass": "233.7 g/mol", "density": "1300 kg/m**3"},
    {"name": "intermediate", "molar_mass": "190.7 g/mol", "density": "1200 kg/m**3"},
    {"name": "impurity", "molar_mass": "250 g/mol", "density": "1250 kg/m**3"},
)
"""Used when the plant names no ``species:`` file: three solvents and three placeholder
solutes that the built-in analyzer and crystallizer parameters refer to."""


def default_species() -> SpeciesTable:
    return SpeciesTable(Species.model_validate(s) for s in DEFAULT_SPECIES)


_log = logging.getLogger(__name__)


class PlantBuildError(ValueError):
    """The plant cannot be simulated as written; the message names the module and the fix.

    ``tag``, ``section`` and ``path`` say where the offending value was written, so
    :func:`~modulecontrol.simulators.check_plant` can point at its line: ``section`` is
    ``parameters`` (``path`` inside the merged simulator parameters), ``thermostat``,
    ``links``, ``services``, ``simulated``, ``connection`` (``path`` = its index) or
    ``species``. ``cause`` keeps a pydantic error so each of its items is reported.
    """

    def __init__(self, message: str, tag: str | None = None, section: str = "",
                 path: tuple[str | int, ...] = (), cause: ValidationError | None = None) -> None:
        super().__init__(message)
        self.tag = tag
        self.section = section
        self.path = path
        self.cause = cause


@dataclass(frozen=True)
class StreamReport:
    """A module outlet at steady state, in engineering units for people."""

    module: str
    port: str
    flow_ml_min: float
    temperature_c: float
    pressure_bar: float
    concentrations: dict[str, float]
    """mol/L of every species present."""

    def as_dict(self) -> dict[str, Any]:
        return {"module": self.module, "port": self.port, "flow_mL_min": self.flow_ml_min,
                "T_degC": self.temperature_c, "p_bar": self.pressure_bar,
                "c_mol_L": self.concentrations}


class SimulatedPlant:
    """Process models of a plant, their flowsheet, and the task that steps it every ``dt``."""

    def __init__(self, config: PlantConfig, flowsheet: Flowsheet, views: dict[str, ModuleView],
                 clock: Clock, dt: float) -> None:
        if dt <= 0:
            raise ValueError(f"dt must be > 0 simulated seconds, got {dt!r}")
        self.config = config
        self.flowsheet = flowsheet
        self.views = views
        """Every modelled module (passive ones too) by tag."""
        self.clock = clock
        self.dt = dt
        self._warned = False
        self.faults = FaultInjector(self)
        self._listeners: list[Callable[[SimulatedPlant], None]] = []
        self._task: asyncio.Task[None] | None = None

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: PlantConfig, clock: Clock, species: SpeciesTable | None = None,
                    dt: float = 1.0) -> SimulatedPlant:
        """Models for every simulated or passive module of ``config``, wired as the plant is.

        Modules that are neither (real hardware) are left out together with their
        connections. The species table is ``species``, else the plant's ``species:`` file
        (relative to the plant file), else :func:`default_species`.
        """
        fs, views = build_models(config, species)
        return cls(config, fs, views, clock, dt)

    # -- access -----------------------------------------------------------------------------
    def view(self, tag: str) -> ModuleView:
        try:
            return self.views[tag]
        except KeyError:
            raise KeyError(f"no simulated module '{tag}' (simulated: "
                           f"{', '.join(self.views)})") from None

    @property
    def time(self) -> float:
        """Simulated seconds the flowsheet has advanced."""
        return self.flowsheet.time

    def on_step(self, listener: Callable[[SimulatedPlant], None]) -> None:
        """Call ``listener(plant)`` after every step (servers publish values from it)."""
        self._listeners.append(listener)

    # -- stepping ---------------------------------------------------------------------------
    def step(self, n: int = 1, dt: float | None = None) -> None:
        h = self.dt if dt is None else dt
        for _ in range(n):
            self.flowsheet.step(h)
            for listener in list(self._listeners):
                listener(self)

    max_catch_up: float = 4.0
    """Largest step, in multiples of ``dt``, taken to catch up with the clock."""

    async def run(self, duration: float | None = None) -> None:
        """Follow the clock for ``duration`` simulated seconds (or forever).

        Normally one step of ``dt`` per ``dt`` of clock time. When the event loop was busy
        and the plant fell behind, it catches up with longer steps (up to ``max_catch_up``
        x ``dt``; the models sub-step internally) instead of a burst of short ones, so plant
        time stays with the clock that the orchestrator's waits use.
        """
        c0 = self.clock.now()
        p0 = self.flowsheet.time
        while True:
            done = self.flowsheet.time - p0
            if duration is not None and done >= duration - 1e-9:
                return
            target = self.clock.now() - c0
            if duration is not None:
                target = min(target, duration)
            lag = target - done
            if lag >= self.dt - 1e-9:
                h = min(lag, self.max_catch_up * self.dt)
                if duration is not None:
                    h = min(h, duration - done)
                self.step(dt=h)
                if lag > 20 * self.dt and not self._warned:
                    self._warned = True
                    _log.warning("simulated plant is %.0f s behind the clock: the machine "
                                 "cannot keep up with this speed factor", lag)
                await asyncio.sleep(0)
                continue
            await self.clock.sleep_until(c0 + done + self.dt)
            await asyncio.sleep(0)

    def start(self) -> None:
        """Run the stepping task in the background (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="sim-plant")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def start_services(
        self, parameters: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        """Put every module in the state its services reach when started with their default
        procedure and parameter defaults: the type's ``actions`` for Starting (devices run by
        a proxy) or its ``simulator.services`` settings for Execute (PEAs).

        ``parameters`` replaces defaults per module, in the assemblies' units (``{"R2":
        {"TempSP": 15}, "P1": {"InletSP": 2}}``): an operating point without a recipe.
        """
        given = dict(parameters or {})
        unknown = set(given) - set(self.views)
        if unknown:
            raise KeyError(f"parameters for modules that are not simulated: {sorted(unknown)}")
        for view in self.views.values():
            mt = view.module_type
            defaults = {d.name: d.default for d in mt.data_assemblies if d.default is not None}
            for name, value in given.get(view.tag, {}).items():
                defaults[name] = mt.assembly(name).coerce(value, what="parameter")
            for svc in mt.services:
                sim = view.spec.services.get(svc.name)
                if sim is not None:
                    view.apply_settings(sim.get(State.EXECUTE.label, {}), defaults)
                    continue
                for w in svc.actions.get(State.STARTING.label, []):
                    value = defaults.get(w.param) if w.param is not None else w.value
                    if value is not None:
                        view.write(w.assembly, w.attribute, value)

    # -- steady state -----------------------------------------------------------------------
    def steady_state(self) -> list[StreamReport]:
        """Solve the plant's steady state at the current set points; one report per outlet
        of every modelled module (by the module's own port names)."""
        try:
            self.flowsheet.steady_state()
        except ValueError as exc:
            raise ValueError(f"no steady state: {exc} (start the feeds, or route the flow "
                             "there, e.g. --set V1.Valve=true)") from None
        out: list[StreamReport] = []
        for tag, view in self.views.items():
            mt = view.module_type
            back = {v: k for k, v in view.spec.ports.items()}
            for port in view.model.outlets:
                s = self.flowsheet.streams.get((view.model.name, port))
                if s is None:
                    continue
                name = back.get(port, port)
                if mt.ports and name not in {p.name for p in mt.ports}:
                    continue
                out.append(_report(tag, name, s))
        return out


def plant_species(config: PlantConfig) -> SpeciesTable:
    """The plant's ``species:`` file (relative to the plant file), else the defaults."""
    if not config.plant.species:
        return default_species()
    path = config.resolve(config.plant.species)
    try:
        return SpeciesTable.from_yaml(path)
    except (OSError, ValueError) as exc:
        raise PlantBuildError(f"{config.file}: species file {path}: {exc}",
                              section="species") from None


def build_models(
    config: PlantConfig, species: SpeciesTable | None = None,
    on_error: Callable[[PlantBuildError], None] | None = None,
) -> tuple[Flowsheet, dict[str, ModuleView]]:
    """The flowsheet and module views of every simulated or passive module, wired as the
    plant is: the one builder behind ``sim``, ``run`` and ``validate``.

    Without ``on_error`` the first problem raises; with it (``validate``) every problem is
    handed over and the build goes on with the modules that could be built.
    """

    def fail(exc: PlantBuildError) -> None:
        if on_error is None:
            raise exc
        on_error(exc)

    if species is None:
        species = plant_species(config)
    fs = Flowsheet(species)
    views: dict[str, ModuleView] = {}
    for inst in config.plant.modules:
        if not (inst.simulated or inst.endpoint is None):
            continue
        try:
            views[inst.tag] = _build_view(inst, config.type_of(inst.tag), species, fs)
        except PlantBuildError as exc:
            fail(exc)
    for k, c in enumerate(config.plant.connections):
        (a, pa), (b, pb) = c.source, c.target
        if a not in views or b not in views:
            continue
        src = (a, views[a].spec.ports.get(pa, pa))
        dst = (b, views[b].spec.ports.get(pb, pb))
        try:
            fs.connect(src, dst)
        except (KeyError, ValueError) as exc:
            fail(PlantBuildError(
                f"connection {c.from_} -> {c.to}: {exc.args[0]}; map the module's port "
                "names to the model's with 'simulator.ports' in the module type",
                section="connection", path=(k,)))
    return fs, views


def _report(tag: str, port: str, s: Stream) -> StreamReport:
    conc = {n: float(c) / 1000.0 for n, c in zip(s.table.names, s.conc, strict=True) if c > 0}
    return StreamReport(tag, port, s.flow * 6e7, s.temperature - 273.15, s.pressure / 1e5, conc)


def _brief(exc: Exception) -> str:
    """One line per problem of a model's parameters, without pydantic's multi-line dump."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'parameters'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False))
    return str(exc)


def _build_view(inst: ModuleInstance, mt: ModuleType, species: SpeciesTable,
                fs: Flowsheet) -> ModuleView:
    spec = mt.simulator
    tag = inst.tag
    if spec is None:
        raise PlantBuildError(
            f"module {tag}: type {mt.name} has no 'simulator' section, so it cannot be "
            "simulated; set 'simulated: false' or give the type a simulator",
            tag, "simulated")
    if spec.model not in MODELS:
        raise PlantBuildError(
            f"module {tag}: unknown simulator model '{spec.model}'"
            f"{did_you_mean(spec.model, MODELS)}", tag, "model")
    params = dict(spec.parameters)
    roles = params.pop("roles", {}) if spec.model == "pat_analyzer" else {}
    fields = MODELS[spec.model].Params.model_fields
    for key, value in mt.properties.items():
        if key in fields and key not in params:
            params[key] = value
    section = "parameters"
    try:
        model = create_model(spec.model, tag, species, params, units_required=True)
        thermostat = None
        if spec.thermostat is not None:
            section = "thermostat"
            made = create_model("thermostat", f"{tag}.jacket", species, spec.thermostat,
                                units_required=True)
            assert isinstance(made, Thermostat)
            thermostat = made
    except ValidationError as exc:
        raise PlantBuildError(f"module {tag} ({mt.name}): simulator {section}: {exc}",
                              tag, section, cause=exc) from None
    except ParameterError as exc:
        raise PlantBuildError(f"module {tag} ({mt.name}): simulator {section}: {exc}",
                              tag, section, exc.path) from None
    except (KeyError, ValueError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise PlantBuildError(f"module {tag} ({mt.name}): simulator {section}: {text}",
                              tag, section) from None
    fs.add(model)
    if thermostat is not None:
        fs.add(thermostat)
        fs.link_jacket(thermostat, model)
    view = ModuleView(tag, mt, model, thermostat, dict(roles))
    for signal, var in spec.links.items():
        try:
            view.variable(var)
        except ViewError as exc:
            raise PlantBuildError(f"module type {mt.name}: simulator link {signal}: "
                                  f"{exc}", tag, "links", (signal,)) from None
    for svc, states in spec.services.items():
        for state, sets in states.items():
            for var in sets:
                try:
                    view.variable(var)
                except ViewError as exc:
                    raise PlantBuildError(f"module type {mt.name}: simulator services."
                                          f"{svc}.{state}: {exc}", tag, "services",
                                          (svc, state, var)) from None
    return view

"""``validate`` of a plant's simulation: every check ``sim`` and ``run`` would make, located.

The models are built by :func:`~modulecontrol.simulators._plant.build_models`, the same builder
``sim steady``, ``sim serve`` and ``run`` use, without starting a server or a clock, so a plant
that validates also simulates. On top of what building checks (each model's own schema:
unknown keys, units, species, balanced reactions, rate-constant dimensions), two rules make
every accepted value mean exactly one thing:

* **one home**: a simulator parameter that would be overwritten before it acts (a pump's
  ``flow_setpoint``, which acts only while the pump runs, and the Dosing service that starts
  it writes the ``FlowSP`` default first; a reactor's ``jacket_temperature`` that its
  thermostat drives) is an error naming the key that takes effect;
* **limits**: a model limit narrower than the setting that drives it (``max_flow`` 10 mL/min
  under a ``FlowSetpoint`` allowed up to 66.7 mL/min) is an error naming both places, since
  the simulated device would silently clamp.

Errors point at the YAML key that gave the value: a calibrated overlay the plant includes
(``calibrations:``), the plant's ``overrides`` or the module type file's ``simulator``
section.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

from pydantic import BaseModel

from modulecontrol.descriptors import DataAssembly, ModuleType, PlantConfig
from modulecontrol.errors import ConfigError, Location, Problem
from modulecontrol.mtpcore import State
from modulecontrol.simulators._plant import PlantBuildError, build_models, plant_species
from modulecontrol.simulators._view import ModuleView, setting_target
from modulecontrol.simulators.models import MODELS
from modulecontrol.units import convert
from modulecontrol.yamlio import PathKey, YamlDoc, load_yaml, load_yaml_text, validation_problems

__all__ = ["check_plant", "plant_problems"]

MODEL_LIMITS: dict[tuple[str, str], str] = {
    ("hplc_pump", "flow_setpoint"): "max_flow",
}
"""(model kind, input variable) -> the model parameter that caps it."""

IDLE_INERT: dict[tuple[str, str], str] = {
    ("hplc_pump", "flow_setpoint"): "running",
    ("syringe_pump", "flow_setpoint"): "running",
}
"""Model inputs that act only while another input is on (a pump's set flow only while it
runs). When the service that switches it on also writes the input, a simulator parameter
for it never acts. Inputs not listed act from power-on (a back-pressure regulator's preset,
an unthermostatted jacket) and are the device's state before any service starts."""


class _Locator:
    """Finds the YAML key behind a value of a module's simulator: the plant file's
    ``overrides`` or the type file's ``simulator`` section (types are read once)."""

    def __init__(self, config: PlantConfig) -> None:
        self.config = config
        self.plant = load_yaml(config.file)
        self._types: dict[str, YamlDoc | None] = {}

    def type_doc(self, type_name: str) -> YamlDoc | None:
        if type_name not in self._types:
            origin = self.config.library.origins.get(type_name, "")
            doc: YamlDoc | None = None
            if origin.startswith("builtin/"):
                res = resources.files("modulecontrol.descriptors").joinpath(origin)
                doc = load_yaml_text(res.read_text("utf-8"), f"modulecontrol/descriptors/{origin}")
            elif origin and Path(origin).is_file():
                doc = load_yaml(origin)
            self._types[type_name] = doc
        return self._types[type_name]

    def index(self, tag: str) -> int:
        return next(i for i, m in enumerate(self.config.plant.modules) if m.tag == tag)

    def module(self, tag: str, *path: str | int) -> Location:
        return self.plant.locate(("modules", self.index(tag), *path))

    def in_type(self, tag: str, path: PathKey) -> Location:
        doc = self.type_doc(self.config.instance(tag).type)
        return doc.locate(path) if doc is not None else self.module(tag)

    def parameter(self, tag: str, path: PathKey, *, key: bool = False) -> Location:
        """Where the simulator parameter at ``path`` (inside the merged parameters) was
        written: a calibrated overlay the plant includes, the instance's
        ``overrides.simulator`` or ``overrides.properties``, else the type's
        ``simulator.parameters`` or ``properties``."""
        inst = self.config.instance(tag)
        i = self.index(tag)
        base = self.config.library.types.get(inst.type)
        spec = base.simulator if base is not None else None
        doc = self.type_doc(inst.type)
        first = path[0] if path else None
        overlay = self.config.calibration_of(tag, first) if isinstance(first, str) else None
        if overlay is not None:  # a calibrated overlay's value replaced the plant's
            return overlay.locate(tag, path, key=key)
        if first in inst.overrides.simulator:
            return self.plant.locate(("modules", i, "overrides", "simulator", *path), key=key)
        if doc is not None and spec is not None and first in spec.parameters:
            return doc.locate(("simulator", "parameters", *path), key=key)
        if first in inst.overrides.properties:
            return self.plant.locate(("modules", i, "overrides", "properties", *path), key=key)
        if doc is not None and base is not None and first in base.properties:
            return doc.locate(("properties", *path), key=key)
        if inst.overrides.simulator or doc is None:
            return self.plant.locate(("modules", i, "overrides", "simulator"))
        return doc.locate(("simulator", "parameters"))

    def where(self, tag: str, path: PathKey) -> str:
        """``file:line:col`` of a parameter, for messages that name a second place."""
        loc = self.parameter(tag, path)
        return f"{loc.file}:{loc.line}:{loc.col}"


class _ParamDoc(YamlDoc):
    """A view for :func:`validation_problems` whose paths are inside one module's simulator
    parameters, each located in the file that gave it."""

    def __init__(self, locate: Callable[[PathKey, bool], Location]) -> None:
        super().__init__(None, "")
        self._locate = locate

    def locate(self, path: PathKey, *, key: bool = False) -> Location:
        return self._locate(path, key)


def _build_problems(exc: PlantBuildError, where: _Locator) -> list[Problem]:
    config = where.config
    tag = exc.tag
    if exc.section == "species":
        return [Problem(str(exc), where.plant.locate(("species",)))]
    if exc.section == "connection":
        return [Problem(str(exc), where.plant.locate(("connections", *exc.path)))]
    if tag is None:
        return [Problem(str(exc), where.plant.locate(()))]
    if exc.section == "simulated":
        inst = config.instance(tag)
        return [Problem(str(exc), where.module(tag, "simulated" if inst.simulated else "type"))]
    if exc.section == "model":
        return [Problem(str(exc), where.in_type(tag, ("simulator", "model")))]
    if exc.section in ("links", "services"):
        return [Problem(str(exc), where.in_type(tag, ("simulator", exc.section, *exc.path)))]
    prefix = f"module {tag}: simulator {exc.section}"
    if exc.section == "thermostat":

        def locate(path: PathKey, key: bool) -> Location:
            return where.in_type(tag, ("simulator", "thermostat", *path))

        model: type[BaseModel] = MODELS["thermostat"].Params
    else:

        def locate(path: PathKey, key: bool) -> Location:
            return where.parameter(tag, path, key=key)

        mt = config.type_of(tag)
        assert mt.simulator is not None
        model = MODELS[mt.simulator.model].Params
    if exc.cause is not None:
        return [Problem(f"{prefix}: {p.message}", p.location)
                for p in validation_problems(exc.cause, _ParamDoc(locate), model)]
    detail = str(exc).split(": ", 2)[-1]
    return [Problem(f"{prefix}: {detail}", locate(exc.path, False))]


_RUNNING = (State.STARTING.label, State.EXECUTE.label)
"""The states whose actions run when a service starts (their writes are what it holds)."""


def _writers(mt: ModuleType, assembly: str) -> list[tuple[str, str]]:
    """(service, parameter) of every action that writes ``assembly`` from a parameter when a
    service starts: that parameter's value (its default, unless a recipe gives one) is then
    what the assembly holds whenever the service runs."""
    out: list[tuple[str, str]] = []
    for svc in mt.services:
        sets = [w for label in _RUNNING for w in svc.actions.get(label, [])]
        for proc in svc.procedures:
            sets += [w for label in _RUNNING for w in proc.actions.get(label, [])]
        out += [(svc.name, w.param) for w in sets if w.assembly == assembly and w.param]
    return out


def _sim_writers(mt: ModuleType, variable: str) -> list[tuple[str, str]]:
    """(service, parameter) of every ``simulator.services`` setting of ``variable``."""
    assert mt.simulator is not None
    out: list[tuple[str, str]] = []
    for svc, states in mt.simulator.services.items():
        for label in _RUNNING:
            value = states.get(label, {}).get(variable)
            if isinstance(value, dict) and "param" in value:
                out.append((svc, str(value["param"])))
    return out


def _default(da: DataAssembly) -> str:
    return "no default" if da.default is None else f"default {da.default:g} {da.unit}".rstrip()


def _home_problems(view: ModuleView, where: _Locator) -> list[Problem]:
    """Simulator parameters that never act, with the key that takes effect instead."""
    out: list[Problem] = []
    mt = view.module_type
    spec = view.spec
    tag = view.tag
    given = set(spec.parameters)
    for name in sorted(given & set(view.model.inputs)):
        takes: str | None = None
        if view.thermostat is not None and name == "jacket_temperature":
            takes = ("the jacket follows the thermostat of 'simulator.thermostat', whose set "
                     "point is the temperature set point")
        writers: list[tuple[str, str, DataAssembly]] = []
        for signal, var in spec.links.items():
            if setting_target(view, var) != name:
                continue
            assembly = signal.split(".", 1)[0]
            writers += [(s, p, mt.assembly(p)) for s, p in _writers(mt, assembly)]
            writers += [(s, p, mt.assembly(p)) for s, p in _sim_writers(mt, var)]
        for svc in spec.services:
            for var in spec.services[svc].get(State.EXECUTE.label, {}):
                if setting_target(view, var) == name:
                    writers += [(s, p, mt.assembly(p)) for s, p in _sim_writers(mt, var)
                                if s == svc]
        gate = IDLE_INERT.get((view.model.kind, name))
        inert = gate is not None and not spec.parameters.get(gate)
        if writers and (takes is not None or inert):
            svc, param, da = writers[0]
            takes = (f"{takes + '; ' if takes else ''}service {svc} sets it from its parameter "
                     f"{param} ({_default(da)}); give the value as "
                     f"'overrides.assemblies.{param}.default' (or in the recipe)")
        if takes is not None:
            out.append(Problem(
                f"module {tag}: simulator parameter '{name}' is ignored: {takes}",
                where.parameter(tag, (name,), key=True)))
    return out


def _limit_problems(view: ModuleView, where: _Locator) -> list[Problem]:
    """Model limits narrower than the settings (and their parameters) that drive them."""
    out: list[Problem] = []
    mt = view.module_type
    tag = view.tag
    kind = view.model.kind
    params = view.model.params
    for signal, var in view.spec.links.items():
        limit_key = MODEL_LIMITS.get((kind, setting_target(view, var) or var))
        if limit_key is None:
            continue
        limit = float(getattr(params, limit_key))
        unit = view.variable(var).unit
        assembly = signal.split(".", 1)[0]
        das = [mt.assembly(assembly), *(mt.assembly(p) for _, p in _writers(mt, assembly))]
        for da in das:
            for what, value in (("max", da.max), ("default", da.default)):
                if not isinstance(value, int | float) or isinstance(value, bool):
                    continue
                si_value = convert(float(value), unit, da.unit)
                if si_value <= limit * (1 + 1e-9):
                    continue
                shown = convert(limit, da.unit, unit)
                out.append(Problem(
                    f"module {tag}: {da.name} {what} {value:g} {da.unit} is above what the "
                    f"simulated device can do: '{limit_key}' {shown:g} {da.unit} "
                    f"({where.where(tag, (limit_key,))}); the simulator would silently run "
                    f"at {shown:g} {da.unit}. Lower the setting's {what}, or raise "
                    f"'{limit_key}' if the device can do it",
                    _assembly_location(where, tag, da.name, what)))
    return out


def _assembly_location(where: _Locator, tag: str, name: str, attr: str) -> Location:
    inst = where.config.instance(tag)
    if name in inst.overrides.assemblies:
        return where.module(tag, "overrides", "assemblies", name, attr)
    base = where.config.library.types.get(inst.type)
    if base is not None:
        for k, da in enumerate(base.data_assemblies):
            if da.name == name:
                return where.in_type(tag, ("data_assemblies", k, attr))
    return where.module(tag)


def plant_problems(config: PlantConfig) -> list[Problem]:
    """Every problem the simulated plant of ``config`` has, each at its YAML key."""
    where = _Locator(config)
    problems: list[Problem] = []

    def collect(exc: PlantBuildError) -> None:
        problems.extend(_build_problems(exc, where))

    try:
        species = plant_species(config)
    except PlantBuildError as exc:
        collect(exc)
        return problems
    _, views = build_models(config, species, on_error=collect)
    for view in views.values():
        problems.extend(_home_problems(view, where))
        problems.extend(_limit_problems(view, where))
    return problems


def check_plant(config: PlantConfig) -> None:
    """Raise :class:`ConfigError` with every problem of the plant's simulation (see
    :func:`plant_problems`); ``validate`` calls it after the plant itself validated."""
    problems = plant_problems(config)
    if problems:
        raise ConfigError(problems)

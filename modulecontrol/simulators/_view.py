"""A module's read/write view of its process model, in the terms of its descriptor.

The protocol servers know data assemblies and attributes (``FlowSetpoint.VMan`` in mL/min);
the models know variables in SI (``flow_setpoint`` in m3/s). A :class:`ModuleView` joins
them through the type's ``simulator.links`` and converts units with
:mod:`modulecontrol.units`, so every server (Modbus, OPC UA, serial) shares one mapping.

Some descriptor signals are not plain model variables: a pump's ``Fault`` bit is "tripped or
stalled", a valve's ``to_product`` is the negation of the model's ``to_waste``, a coil
reactor's temperature set point lives in the thermostat on its jacket. Those are *virtual
variables*, defined per model kind in :func:`_virtual_variables`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zlib import crc32

from modulecontrol.descriptors import DataAssembly, ModuleType, SimulatorSpec, delta_in
from modulecontrol.mtpcore import VALUE_ATTRIBUTES
from modulecontrol.simulators.models import Thermostat, UnitModel
from modulecontrol.units import UnitError, convert, to_si

__all__ = ["ModuleView", "TransportFaults", "Variable", "ViewError", "setting_target"]

_VALUE_ATTRIBUTES = VALUE_ATTRIBUTES
"""Attributes that carry the assembly's value, so an ``Assembly`` link applies to them."""


class ViewError(ValueError):
    """A descriptor signal that the model cannot serve (unknown variable, wrong direction)."""


@dataclass
class Variable:
    """One named variable of a module view; ``unit`` is SI (``""`` for flags and ratios)."""

    unit: str
    get: Callable[[], float] | None = None
    set: Callable[[Any], None] | None = None
    boolean: bool = False


@dataclass
class TransportFaults:
    """How the module's protocol server misbehaves now; each server honours what it can.

    ``silent``: no reply at all; ``delay``: seconds (wall clock) before each reply;
    ``garbage``: replies replaced by noise; ``error``: every request answered with an error
    (a Modbus exception code, a serial ``?`` code); ``bad_status``: OPC UA values carry a
    bad status code.
    """

    silent: bool = False
    delay: float = 0.0
    garbage: bool = False
    error: int | str | None = None
    bad_status: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.silent or self.delay or self.garbage or self.error is not None
                    or self.bad_status is not None)


@dataclass
class ModuleView:
    """The model of one simulated module, seen through its module type."""

    tag: str
    module_type: ModuleType
    model: UnitModel
    thermostat: Thermostat | None = None
    roles: Mapping[str, str] = field(default_factory=dict)
    """For analyzers: signal name -> species (``intermediate: urea``)."""
    transport: TransportFaults = field(default_factory=TransportFaults)
    variables: dict[str, Variable] = field(default_factory=dict, init=False)
    stored: dict[str, Any] = field(default_factory=dict, init=False)
    """Values of settings the model has no physics for (a ramp rate, an interval)."""

    def __post_init__(self) -> None:
        self.variables = _model_variables(self.model)
        self.variables.update(_virtual_variables(self))
        self._links = dict(self.spec.links)
        self.noise: dict[str, float] = {
            name: delta_in(self.module_type.assembly(name).unit, std)
            for name, std in self.spec.noise.items()}
        """Measurement noise (standard deviation in the assembly's unit) per assembly."""
        self._rng = random.Random(crc32(self.tag.encode()))  # reproducible per module

    @property
    def spec(self) -> SimulatorSpec:
        assert self.module_type.simulator is not None
        return self.module_type.simulator

    # -- variables (SI) -----------------------------------------------------------------------
    def variable(self, name: str) -> Variable:
        try:
            return self.variables[name]
        except KeyError:
            raise ViewError(
                f"{self.tag}: model '{self.model.kind}' has no variable '{name}' "
                f"(known: {', '.join(sorted(self.variables))})"
            ) from None

    def read_var(self, name: str) -> float:
        var = self.variable(name)
        if var.get is None:
            raise ViewError(f"{self.tag}: variable '{name}' cannot be read")
        return var.get()

    def write_var(self, name: str, value: Any) -> None:
        """Set a variable; quantity strings (``'60 degC'``) are converted to its SI unit."""
        var = self.variable(name)
        if var.set is None:
            raise ViewError(f"{self.tag}: variable '{name}' cannot be written")
        if var.boolean:
            var.set(bool(value))
        elif isinstance(value, str):
            var.set(to_si(value) if var.unit else float(value))
        else:
            var.set(float(value))

    # -- data assemblies (engineering units) ---------------------------------------------------
    def link(self, assembly: str, attribute: str | None = None) -> str | None:
        """The model variable behind ``Assembly.Attribute`` (None if it has none)."""
        if attribute is not None and f"{assembly}.{attribute}" in self._links:
            return self._links[f"{assembly}.{attribute}"]
        if assembly in self._links and (attribute is None or attribute in _VALUE_ATTRIBUTES):
            return self._links[assembly]
        return None

    def read(self, assembly: str, attribute: str | None = None) -> Any:
        """Engineering value of a linked signal, in the assembly's unit (None if unlinked)."""
        name = self.link(assembly, attribute)
        if name is None:
            return None
        da = self.module_type.assembly(assembly)
        raw = self.read_var(name)
        faults: Any = getattr(self.model, "_sensor_faults", {})
        if not math.isfinite(raw) and name in faults and da.kind == "number":
            return raw  # an injected failed sensor reads NaN/inf on the wire, as a real one
        value = _to_engineering(da, self.variable(name), raw)
        std = self.noise.get(assembly)
        if std and (attribute is None or attribute in _VALUE_ATTRIBUTES):
            fault = faults.get(name)
            if fault is None or fault.kind != "stuck":  # a frozen sensor does not flicker
                value = _noisy(da, value, self._rng.gauss(0.0, std))
        return value

    def write(self, assembly: str, attribute: str | None, value: Any) -> bool:
        """Apply an engineering value; returns False when the signal has no link."""
        name = self.link(assembly, attribute)
        if name is None:
            return False
        da = self.module_type.assembly(assembly)
        var = self.variable(name)
        if var.boolean or da.kind == "bool":
            self.write_var(name, bool(value))
        elif da.kind == "number":
            self.write_var(name, _convert(float(value), var.unit, da.unit))
        else:
            self.write_var(name, value)
        return True

    def apply_settings(self, settings: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        """Apply ``simulator.services`` settings: ``var: value`` or ``var: {param: Name}``
        (the parameter's value in its assembly's unit)."""
        for var, value in settings.items():
            if isinstance(value, Mapping) and "param" in value:
                name = str(value["param"])
                raw = params.get(name)
                if raw is None:
                    continue
                da = self.module_type.assembly(name)
                unit = self.variable(var).unit
                if da.kind == "number" and (unit or da.unit):
                    self.write_var(var, _convert(float(raw), unit, da.unit))
                else:
                    self.write_var(var, raw)
            else:
                self.write_var(var, value)


def _noisy(da: DataAssembly, value: float, noise: float) -> float:
    """``value + noise``, reflected back into the assembly's scale range when the value was
    inside: noise on a reading of 0 bar must not make it an out-of-range (bad) value, and
    reflecting (rather than clipping) keeps readings at the range end from repeating
    exactly, which a stale-value watchdog would take for a frozen sensor."""
    out = value + noise
    lo, hi = da.scale_min, da.scale_max
    if lo is not None and value >= lo and out < lo:
        out = 2.0 * float(lo) - out
    if hi is not None and value <= hi and out > hi:
        out = 2.0 * float(hi) - out
    if lo is not None and hi is not None and lo <= value <= hi:
        out = min(max(out, float(lo)), float(hi))  # noise wider than the whole range
    return out


def _convert(value: float, to_unit: str, from_unit: str) -> float:
    if not to_unit and not from_unit:
        return value
    key = (to_unit, from_unit)
    if key not in _AFFINE:
        _AFFINE[key] = _affine(to_unit, from_unit)
    affine = _AFFINE[key]
    if affine is None:
        return _convert_checked(value, to_unit, from_unit)
    out = value * affine[0] + affine[1]
    if not math.isfinite(out):
        return _convert_checked(value, to_unit, from_unit)  # the refusal, with its message
    return out


_AFFINE: dict[tuple[str, str], tuple[float, float] | None] = {}
"""Scale and offset of a conversion (degC to K has an offset), kept per unit pair: a view
reads its signals every step (a what-if: every 10 s of a 24 h horizon) and pint takes about
80 µs per conversion. None: not affine (a logarithmic unit) or not convertible; pint then."""


def _affine(to_unit: str, from_unit: str) -> tuple[float, float] | None:
    try:
        # probes away from zero: a logarithmic unit takes the log of the value
        one, two, far = (_convert_checked(v, to_unit, from_unit) for v in (1.0, 2.0, 1000.0))
    except ViewError:
        return None
    # affine: f(1000) = f(2) + 998 (f(2) - f(1)); written with 999, the probe refused every
    # pair (the identity too), so every reading went through pint after all
    if not math.isclose(far, 998.0 * (two - one) + two, rel_tol=1e-12, abs_tol=1e-300):
        return None
    offset = _convert_checked(0.0, to_unit, from_unit)  # affine: zero is safe, and exact
    return one - offset, offset


def _convert_checked(value: float, to_unit: str, from_unit: str) -> float:
    try:
        return convert(value, to_unit or "dimensionless", from_unit or "dimensionless")
    except UnitError as exc:
        raise ViewError(f"cannot convert {from_unit or '1'} to {to_unit or '1'}: {exc}") from None


def _to_engineering(da: DataAssembly, var: Variable, si_value: float) -> Any:
    if da.kind == "bool":
        return bool(si_value)
    if da.kind == "str":
        return str(si_value)
    if not math.isfinite(si_value):
        return 0.0
    return _convert(float(si_value), da.unit, var.unit)


def _model_variables(model: UnitModel) -> dict[str, Variable]:
    out: dict[str, Variable] = {}

    def getter(name: str) -> Callable[[], float]:
        return lambda: float(model.measurements().get(name, math.nan))

    def setter(name: str) -> Callable[[Any], None]:
        return lambda v: model.set_input(name, v)

    for name in model.state():
        out[name] = Variable(model.state_unit(name), getter(name))
    for name, unit in model.inputs.items():
        boolean = unit == "bool"
        u = "" if unit in ("bool", "str") else unit
        var = out.get(name) or Variable(u)
        var.set, var.boolean, var.unit = setter(name), boolean, u
        out[name] = var
    return out


_SETS: dict[tuple[str, str], str] = {
    ("coil_reactor", "temperature_setpoint"): "jacket_temperature",
    ("msmpr", "temperature_setpoint"): "jacket_temperature",
    ("bpr", "pressure_setpoint"): "setpoint",
    ("thermostat", "temperature_setpoint"): "setpoint",
    ("divert_valve", "to_product"): "to_waste",
}
"""Virtual variables (see :func:`_virtual_variables`) that set a model input, by model kind.
With a thermostat, a reactor's set point drives the jacket through it."""


def setting_target(view: ModuleView, variable: str) -> str | None:
    """The model input that writing ``variable`` ends up setting (None: none)."""
    if variable in view.model.inputs:
        return variable
    return _SETS.get((view.model.kind, variable))


def _stored(view: ModuleView, name: str, unit: str, initial: float = 0.0,
            boolean: bool = False, on_set: Callable[[Any], None] | None = None) -> Variable:
    view.stored.setdefault(name, initial)

    def set_(v: Any) -> None:
        view.stored[name] = v
        if on_set is not None:
            on_set(v)

    return Variable(unit, lambda: float(view.stored[name]), set_, boolean)


def _virtual_variables(view: ModuleView) -> dict[str, Variable]:
    """Descriptor-level signals each model kind needs beyond its own variables."""
    m: Any = view.model
    kind = view.model.kind
    out: dict[str, Variable] = {}
    if kind in ("hplc_pump", "syringe_pump"):

        def fault() -> float:
            return float(m.tripped or "stall" in m.faults)

        def run(v: Any) -> None:
            if v:
                m.reset()  # starting again acknowledges a trip, as pump controllers do
            m.running = bool(v)

        def reset_total(v: Any) -> None:
            if v:
                m.reset_totaliser()
                m.reset()
            view.stored["reset_total"] = False

        out["running"] = Variable("", lambda: float(m.running), run, boolean=True)
        out["fault"] = Variable("", fault, boolean=True)
        out["stalled"] = Variable("", fault, boolean=True)
        view.stored["reset_total"] = False
        out["reset_total"] = Variable("", lambda: 0.0, reset_total, boolean=True)
        out["dispensed"] = Variable("m**3", lambda: float(m.delivered_volume))

        def set_max_pressure(v: Any) -> None:
            m.p.max_pressure = float(v)

        if kind == "hplc_pump":
            out["max_pressure"] = Variable(
                "Pa", lambda: float(m.p.max_pressure), set_max_pressure)
        else:

            def set_diameter(v: Any) -> None:
                m.area = math.pi * float(v) ** 2 / 4.0

            out["diameter"] = Variable(
                "m", lambda: math.sqrt(4.0 * m.area / math.pi), set_diameter)
    elif kind in ("coil_reactor", "msmpr"):
        therm = view.thermostat
        if therm is not None:
            out["temperature_setpoint"] = Variable(
                "K", lambda: float(therm.setpoint), lambda v: therm.set_input("setpoint", v))
            # a heater's power is the heating part of the thermostat's signed power (which
            # is negative while it cools); the thermostat type shows the signed value
            out["heater_power"] = Variable("W", lambda: float(therm.state()["heating_power"]))
        else:
            out["temperature_setpoint"] = Variable(
                "K", lambda: float(m.jacket_temperature),
                lambda v: m.set_input("jacket_temperature", v))
            out["heater_power"] = Variable("W", lambda: 0.0)
        out["ramp_rate"] = _stored(view, "ramp_rate", "K/s", 5.0 / 60.0)
        if kind == "coil_reactor":
            out["fouled"] = Variable("", lambda: float(m.fouling > 0), boolean=True)
            out["pressure"] = Variable("Pa", lambda: float(m.inlet_pressure))
        else:
            out["cooling_rate"] = _stored(view, "cooling_rate", "K/s", 0.5 / 60.0)
            out["stirrer_speed"] = _stored(view, "stirrer_speed", "1/s", 0.0)
            out["level"] = Variable("m**3", lambda: float(m.p.volume))
            out["mean_size"] = Variable("m", lambda: float(m.state()["L43"]))
    elif kind == "divert_valve":
        out["to_product"] = Variable(
            "", lambda: float(not m.to_waste), lambda v: m.set_input("to_waste", not v),
            boolean=True)
        out["waste_volume"] = Variable("m**3", lambda: float(m.diverted_volume))
    elif kind == "bpr":
        out["pressure_setpoint"] = Variable(
            "Pa", lambda: float(m.setpoint), lambda v: m.set_input("setpoint", v))
        out["pressure"] = Variable("Pa", lambda: float(m.inlet_pressure))
    elif kind == "pat_analyzer":
        out["interval"] = _stored(view, "interval", "s", 10.0)
        out["measuring"] = _stored(view, "measuring", "", 0.0, boolean=True)

        def valid() -> float:
            return float(bool(m.valid) and bool(view.stored["measuring"]))

        out["valid"] = Variable("", valid, boolean=True)
        # the species behind a role follows the selected method (a changeover switches the
        # product); the type's ``roles`` apply where the method names none
        for role in {"product", *view.roles, *(r for me in m.methods.values() for r in me.roles)}:

            def conc(role: str = role) -> float:
                species = m.role(role) or view.roles.get(role)
                if species is None:
                    return 0.0
                return float(m.measurements().get(f"c_{species}", 0.0))

            out[role] = Variable("mol/m**3", conc)
    elif kind == "thermostat":
        out["temperature_setpoint"] = Variable(
            "K", lambda: float(m.setpoint), lambda v: m.set_input("setpoint", v))
        out["running"] = _stored(view, "running", "", 1.0, boolean=True)
        out["failed"] = Variable("", lambda: float("failure" in m.faults), boolean=True)
    return out

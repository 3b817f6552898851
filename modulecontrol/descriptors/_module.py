"""Module types: what an MTP Process Equipment Assembly (PEA) offers, as data."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from modulecontrol.descriptors._assemblies import DataAssembly
from modulecontrol.descriptors._base import Ident, Model, delta_in
from modulecontrol.descriptors._bindings import AttributeBinding, OpcUaBinding
from modulecontrol.errors import did_you_mean
from modulecontrol.expr import ExprSyntaxError, SignalInfo, check, parse
from modulecontrol.mtpcore import (
    DA_ATTRIBUTES,
    PARAM_CLASSES,
    SERVICE_CONTROL_ATTRIBUTES,
    StateLabel,
)

PathKey = tuple[str | int, ...]

NOISY_CLASSES = frozenset({"AnaView", "AnaMon"})
"""Classes whose simulated value may carry measurement noise (``simulator.noise``)."""

class Port(Model):
    """A material connection point (inlet or outlet) of a module."""

    name: Ident
    direction: Literal["in", "out"]
    required: bool = True
    merge: bool = False
    """An inlet that accepts several streams (a manifold). Without it, two streams into one
    inlet are rejected: they need a mixer module."""


class Write(Model):
    """One write done by a proxy when a service enters a state (for devices without a PEA)."""

    write: str
    """``Assembly`` (its setpoint attribute) or ``Assembly.Attribute``."""
    value: Any = None
    param: Ident | None = None
    """Take the value from this service parameter instead of ``value``."""

    @model_validator(mode="after")
    def _one(self) -> Write:
        if (self.value is None) == (self.param is None):
            raise ValueError("a write needs exactly one of 'value' or 'param'")
        return self

    @property
    def assembly(self) -> str:
        return self.write.split(".", 1)[0]

    @property
    def attribute(self) -> str | None:
        parts = self.write.split(".", 1)
        return parts[1] if len(parts) == 2 else None


class Procedure(Model):
    """A procedure of a service: one way of running it (e.g. Continuous, Volume)."""

    name: Ident
    id: int = Field(ge=1, le=2**31 - 1)
    description: str = ""
    self_completing: bool = False
    default: bool = False
    parameters: list[Ident] = Field(default_factory=list)
    report_values: list[Ident] = Field(default_factory=list)
    process_values_in: list[Ident] = Field(default_factory=list)
    """Data assemblies the procedure reads from outside while it runs (MTP ProcessValueIn:
    e.g. a flow measured by another module); kept so that an imported manifest re-exports
    unchanged and an orchestrator can see what a procedure depends on."""
    process_values_out: list[Ident] = Field(default_factory=list)
    """Data assemblies the procedure provides to others while it runs (ProcessValueOut)."""
    actions: dict[StateLabel, list[Write]] = Field(default_factory=dict)
    """Writes for this procedure only; they replace the service's actions for that state."""
    complete_when: str | None = None
    """For self-completing procedures on devices without a PEA: a condition over the module's
    own signals (condition language) after which the proxy leaves Execute."""


class Service(Model):
    """An MTP service with its procedures and parameters."""

    name: Ident
    description: str = ""
    procedures: list[Procedure] = Field(min_length=1)
    config_parameters: list[Ident] = Field(default_factory=list)
    actions: dict[StateLabel, list[Write]] = Field(default_factory=dict)
    bindings: dict[str, AttributeBinding] = Field(default_factory=dict)

    @field_validator("bindings")
    @classmethod
    def _attrs(cls, v: dict[str, AttributeBinding]) -> dict[str, AttributeBinding]:
        for attr in v:
            if attr not in SERVICE_CONTROL_ATTRIBUTES:
                raise ValueError(
                    f"'{attr}' is not a ServiceControl attribute"
                    f"{did_you_mean(attr, SERVICE_CONTROL_ATTRIBUTES)}"
                )
        return v

    @model_validator(mode="after")
    def _unique(self) -> Service:
        _unique_names([p.name for p in self.procedures], "procedure")
        ids = [p.id for p in self.procedures]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"procedure id {sorted(dup)[0]} is used twice in service {self.name}")
        if sum(p.default for p in self.procedures) > 1:
            raise ValueError(f"service {self.name} has more than one default procedure")
        return self

    def procedure(self, name_or_id: str | int) -> Procedure:
        for p in self.procedures:
            if p.name == name_or_id or p.id == name_or_id:
                return p
        raise KeyError(
            f"unknown procedure '{name_or_id}' of service {self.name}"
            f"{did_you_mean(str(name_or_id), [p.name for p in self.procedures])}"
        )

    @property
    def default_procedure(self) -> Procedure:
        for p in self.procedures:
            if p.default:
                return p
        return self.procedures[0]

    def parameters(self, procedure: Procedure | None = None) -> list[str]:
        """What a command of ``procedure`` may set: the configuration parameters, then the
        procedure's own; without a procedure (a service-wide action, or a procedure that is
        not known) those of every procedure."""
        procs = self.procedures if procedure is None else [procedure]
        out = list(self.config_parameters)
        out += [p for proc in procs for p in proc.parameters if p not in out]
        return out

    def not_a_parameter(
        self, name: str, procedure: Procedure | None = None, module: str = ""
    ) -> str | None:
        """None when ``name`` is a parameter of ``procedure`` of this service, else the one
        message that says so (the descriptor check, the recipe validator and the proxy all
        use it), naming ``module`` when given and listing what is allowed."""
        allowed = self.parameters(procedure)
        if name in allowed:
            return None
        hint = did_you_mean(name, allowed)
        hint = hint if hint.startswith(" (did you mean") else ""
        where = f"{module}.{self.name}" if module else f"service {self.name}"
        if procedure is not None:
            where += f" procedure {procedure.name}"
        return (f"'{name}' is not a parameter of {where}{hint}; "
                f"parameters: {', '.join(allowed) or 'none'}")


class OpcUaDefaults(Model):
    """How attributes without an explicit OPC UA binding are found on a PEA's server."""

    namespace_uri: str
    node_id_template: str = "{assembly}.{attribute}"

    @field_validator("node_id_template")
    @classmethod
    def _tmpl(cls, v: str) -> str:
        for field in ("{assembly}", "{attribute}"):
            if field not in v:
                raise ValueError(f"node_id_template must contain {field}")
        stripped = v.replace("{assembly}", "").replace("{attribute}", "")
        if "{" in stripped or "}" in stripped:
            raise ValueError("node_id_template may only use {assembly} and {attribute}")
        return v

    def binding(self, assembly: str, attribute: str, writable: bool) -> OpcUaBinding:
        ident = self.node_id_template.replace("{assembly}", assembly).replace(
            "{attribute}", attribute
        )
        return OpcUaBinding(
            namespace_uri=self.namespace_uri,
            identifier=f"s={ident}",
            access="readwrite" if writable else "read",
        )


class SimulatorSpec(Model):
    """Which process model stands in for this module type, and how its variables map."""

    model: Ident
    parameters: dict[str, Any] = Field(default_factory=dict)
    """Model parameters (values may carry units). Parameters the model takes but that are
    missing here are taken from the type's ``properties`` of the same name (e.g. ``volume``)."""
    links: dict[str, str] = Field(default_factory=dict)
    """``Assembly`` or ``Assembly.Attribute`` -> model variable name."""
    ports: dict[str, str] = Field(default_factory=dict)
    """Module port -> model port, where the names differ (``outlet: out``)."""
    thermostat: dict[str, Any] | None = None
    """Parameters of a thermostat model that drives the jacket (``{}`` for its defaults);
    ``None`` when the module has no jacket of its own."""
    def overridable(self) -> dict[str, Any]:
        """What ``overrides.simulator`` can set, with the values in effect: the model
        parameters, and the thermostat's under ``thermostat`` when the type has a jacket
        (:func:`merge_simulator_overrides`)."""
        out = dict(self.parameters)
        if self.thermostat is not None:
            out[THERMOSTAT_KEY] = dict(self.thermostat)
        return out

    services: dict[str, dict[StateLabel, dict[str, Any]]] = Field(default_factory=dict)
    """What a service does to the model when it enters a state, for modules that run their
    own state machine (a PEA): ``{Tempering: {Execute: {temperature_setpoint: {param:
    TempSP}}, Stopping: {temperature_setpoint: 20 degC}}}``. A value ``{param: Name}`` takes
    the parameter's applied value (VOut)."""
    noise: dict[str, Any] = Field(default_factory=dict)
    """Measurement noise of simulated sensors: measured assembly -> standard deviation of
    Gaussian noise in its unit (``Pressure: 0.02 bar``). None by default, so simulated values
    are exactly reproducible; give it where a stale-value watchdog (``stale_after``) watches a
    simulated value that is constant at steady state, as a real sensor's never is."""


THERMOSTAT_KEY = "thermostat"
"""The key of ``overrides.simulator`` that holds the jacket thermostat's parameters
(``{thermostat: {tau: 90 s}}``): the one place a plant (or a twin calibration) changes the
thermostat of one instance, merged into the type's ``simulator.thermostat`` key by key."""


def merge_simulator_overrides(simulator: dict[str, Any], given: dict[str, Any]) -> None:
    """Apply ``overrides.simulator`` to a dumped :class:`SimulatorSpec` in place: every key
    replaces the model parameter of that name, and :data:`THERMOSTAT_KEY`'s mapping is
    merged into the thermostat's parameters. The one merge behind a plant's instance
    overrides and a twin calibration's, so both accept the same keys."""
    rest = dict(given)
    jacket = rest.pop(THERMOSTAT_KEY, None)
    if jacket is not None:
        if simulator.get("thermostat") is None:
            raise ValueError(f"'{THERMOSTAT_KEY}': the simulator of this type has no jacket "
                             "thermostat to set")
        if not isinstance(jacket, dict):
            raise ValueError(f"'{THERMOSTAT_KEY}' must be a mapping of thermostat parameters "
                             f"(e.g. {{tau: 90 s}}), got {jacket!r}")
        simulator["thermostat"] = {**simulator["thermostat"], **jacket}
    if rest:
        simulator.setdefault("parameters", {}).update(rest)


class ModuleType(Model):
    """A module type, the way a Module Type Package describes a PEA."""

    kind: Literal["ModuleType"] = "ModuleType"
    name: Ident
    vendor: str = ""
    version: str = "1.0.0"
    description: str = ""
    category: str = ""
    ports: list[Port] = Field(default_factory=list)
    properties: dict[str, Any] = Field(default_factory=dict)
    """Static facts, e.g. ``volume: 10 mL`` of a reactor, used for residence times."""
    opcua: OpcUaDefaults | None = None
    data_assemblies: list[DataAssembly] = Field(default_factory=list)
    services: list[Service] = Field(default_factory=list)
    safe_state: list[Write] = Field(default_factory=list)
    simulator: SimulatorSpec | None = None

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> ModuleType:
        if info.context and info.context.get("defer_references"):
            return self
        problems = self.reference_problems()
        if problems:
            raise ValueError(problems[0][1])
        return self

    def reference_problems(self) -> list[tuple[PathKey, str]]:
        """Cross-references inside the type, each with the path of the offending item.

        Kept out of field validators so a loader can report every problem at its own line.
        """
        out: list[tuple[PathKey, str]] = []
        for what, names, key in (
            ("port", [p.name for p in self.ports], "ports"),
            ("data assembly", [d.name for d in self.data_assemblies], "data_assemblies"),
            ("service", [s.name for s in self.services], "services"),
        ):
            seen: set[str] = set()
            for i, n in enumerate(names):
                if n in seen:
                    out.append(((key, i, "name"), f"{what} name '{n}' is used twice"))
                seen.add(n)
        das = {d.name: d for d in self.data_assemblies}
        for si, svc in enumerate(self.services):
            base: PathKey = ("services", si)
            for k, pname in enumerate(svc.config_parameters):
                msg = self._param_problem(das, pname, f"service {svc.name}")
                if msg:
                    out.append(((*base, "config_parameters", k), msg))
            for pi, proc in enumerate(svc.procedures):
                pbase: PathKey = (*base, "procedures", pi)
                for k, pname in enumerate(proc.parameters):
                    msg = self._param_problem(das, pname, f"procedure {svc.name}.{proc.name}")
                    if msg:
                        out.append(((*pbase, "parameters", k), msg))
                for key, what, names in (
                        ("report_values", "report value", proc.report_values),
                        ("process_values_in", "process value", proc.process_values_in),
                        ("process_values_out", "process value", proc.process_values_out)):
                    for k, rname in enumerate(names):
                        if rname not in das:
                            out.append((
                                (*pbase, key, k),
                                f"procedure {svc.name}.{proc.name}: {what} '{rname}' is not "
                                f"a data assembly{did_you_mean(rname, das)}",
                            ))
                if proc.complete_when is not None:
                    for col, msg in _condition_problems(proc.complete_when, das):
                        out.append(((*pbase, "complete_when"), f"complete_when col {col}: {msg}"))
            action_sets: list[tuple[PathKey, str, Procedure | None, dict[str, list[Write]]]] = [
                (
                    (*base, "actions"),
                    f"service {svc.name}",
                    None,
                    {str(k): v for k, v in svc.actions.items()},
                )
            ]
            for pi, proc in enumerate(svc.procedures):
                if proc.actions:
                    action_sets.append(
                        (
                            (*base, "procedures", pi, "actions"),
                            f"procedure {svc.name}.{proc.name}",
                            proc,
                            {str(k): v for k, v in proc.actions.items()},
                        )
                    )
            for apath, owner, owner_proc, actions in action_sets:
                for state, writes in actions.items():
                    for wi, w in enumerate(writes):
                        where = f"{owner} action on {state}"
                        wpath: PathKey = (*apath, state, wi)
                        msg = self._write_problem(das, w, where)
                        if msg:
                            out.append((wpath, msg))
                        if w.param is not None:
                            wrong = svc.not_a_parameter(w.param, owner_proc)
                            if wrong:
                                out.append(((*wpath, "param"), f"{where}: {wrong}"))
        if self.simulator is not None:
            for name, std in self.simulator.noise.items():
                msg = self._noise_problem(das, name, std)
                if msg:
                    out.append((("simulator", "noise", name), msg))
        for wi, w in enumerate(self.safe_state):
            msg = self._write_problem(das, w, "safe_state")
            if msg:
                out.append((("safe_state", wi), msg))
            if w.param is not None:
                out.append(
                    (
                        ("safe_state", wi, "param"),
                        "safe_state writes take fixed values, not parameters",
                    )
                )
        return out

    @staticmethod
    def _param_problem(das: dict[str, DataAssembly], name: str, where: str) -> str | None:
        if name not in das:
            return f"{where}: parameter '{name}' is not a data assembly{did_you_mean(name, das)}"
        if das[name].class_ not in PARAM_CLASSES:
            return (
                f"{where}: parameter '{name}' is a {das[name].class_}; parameters must be "
                f"one of {', '.join(sorted(PARAM_CLASSES))}"
            )
        return None

    def _noise_problem(self, das: dict[str, DataAssembly], name: str, std: Any) -> str | None:
        if name not in das:
            return f"noise: '{name}' is not a data assembly{did_you_mean(name, das)}"
        da = das[name]
        if da.class_ not in NOISY_CLASSES:
            return (f"noise: {name} is a {da.class_}; noise applies to measured analog values "
                    f"({', '.join(sorted(NOISY_CLASSES))})")
        assert self.simulator is not None
        if name not in self.simulator.links:
            return f"noise: {name} has no simulator link, so it has no simulated value"
        try:
            value = delta_in(da.unit, std)
        except ValueError as exc:
            return f"noise of {name}: {exc}"
        if not (math.isfinite(value) and value >= 0):
            return f"noise of {name} must be a standard deviation >= 0, got {std!r}"
        return None

    @staticmethod
    def _write_problem(das: dict[str, DataAssembly], w: Write, where: str) -> str | None:
        if w.assembly not in das:
            return f"{where}: '{w.assembly}' is not a data assembly{did_you_mean(w.assembly, das)}"
        da = das[w.assembly]
        if w.attribute is not None and w.attribute not in DA_ATTRIBUTES[da.class_]:
            return (
                f"{where}: '{w.attribute}' is not an attribute of {da.class_}"
                f"{did_you_mean(w.attribute, DA_ATTRIBUTES[da.class_])}"
            )
        if not da.writable:
            return f"{where}: {w.assembly} is a {da.class_}, which cannot be written"
        if w.value is not None:
            try:
                da.coerce(w.value, what=f"{where} value")
            except ValueError as exc:
                return str(exc)
        return None

    def assembly(self, name: str) -> DataAssembly:
        for d in self.data_assemblies:
            if d.name == name:
                return d
        raise KeyError(
            f"module type {self.name} has no data assembly '{name}'"
            f"{did_you_mean(name, [d.name for d in self.data_assemblies])}"
        )

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(
            f"module type {self.name} has no service '{name}'"
            f"{did_you_mean(name, [s.name for s in self.services])}"
        )

    def port(self, name: str) -> Port:
        for p in self.ports:
            if p.name == name:
                return p
        raise KeyError(
            f"module type {self.name} has no port '{name}'"
            f"{did_you_mean(name, [p.name for p in self.ports])}"
        )


def _unique_names(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{what} name '{n}' is used twice")
        seen.add(n)


def _condition_problems(text: str, das: dict[str, DataAssembly]) -> list[tuple[int, str]]:
    """Problems of a module-local condition, where the module calls itself ``this``."""
    signals = {
        f"this.{d.name}": SignalInfo(d.unit if d.kind == "number" else "", d.kind)
        for d in das.values()
    }
    try:
        expr = parse(text)
    except ExprSyntaxError as exc:
        return [(exc.col, exc.message)]
    return [(p.col, p.message) for p in check(expr, signals)]

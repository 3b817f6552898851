"""Module instances, endpoints and plants (instances joined by flow connections).

The endpoint models of the built-in transports live here; which models a plant may use is
decided by the transport registry (:mod:`._transports`), filled by the composition root from
the installed drivers, so a plug-in's ``protocol: acme`` is as valid as ``modbus-tcp``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PlainValidator,
    SerializeAsAny,
    StringConstraints,
    field_validator,
    model_validator,
)

from modulecontrol.descriptors._base import Ident, Model, Seconds, quantity_in
from modulecontrol.descriptors._module import ModuleType
from modulecontrol.descriptors._transports import EndpointBase, transport_of, validate_endpoint
from modulecontrol.errors import did_you_mean

PathKey = tuple[str | int, ...]
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ModbusTcpEndpoint(EndpointBase):
    protocol: Literal["modbus-tcp"]
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=247)
    read_retries: int = Field(default=1, ge=0, le=10)
    """Reads may be retried; writes never are, unless the assembly is marked idempotent."""
    reconnect_max_delay: Seconds = Field(default=10.0, gt=0, le=300)
    max_gap: int = Field(default=8, ge=0, le=124)
    """Coalescing: registers or bits allowed between two tags read in one request."""


class ModbusRtuEndpoint(EndpointBase):
    protocol: Literal["modbus-rtu"]
    port: str
    baudrate: int = Field(default=19200, gt=0)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    unit_id: int = Field(default=1, ge=0, le=247)
    read_retries: int = Field(default=1, ge=0, le=10)
    reconnect_max_delay: Seconds = Field(default=10.0, gt=0, le=300)
    max_gap: int = Field(default=8, ge=0, le=124)


PeaRole = Literal["viewer", "operator", "engineer", "admin"]
"""Roles of a served PEA's users: viewer reads; operator also commands services (Command*,
Procedure*, State*/Src* mode requests); engineer also writes parameters (VExt, ApplyExt, VOp,
VMan, ...); admin writes everything."""


class PeaUser(Model):
    """One user a served (simulated or virtual) PEA admits, with its role."""

    name: str = Field(min_length=1, max_length=64)
    role: PeaRole
    password_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Environment variable holding this user's password (never the password itself)."""


class OpcUaEndpoint(EndpointBase):
    protocol: Literal["opcua"]
    url: str
    namespace_uri: str | None = None
    """Overrides the module type's namespace URI (a vendor PEA with its own)."""
    security_policy: Literal["None", "Basic256Sha256"] = "Basic256Sha256"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: str | None = None
    private_key: str | None = None
    server_certificate: str | None = None
    trust_list: list[str] = Field(default_factory=list)
    verify_server: bool = True
    username: str | None = None
    password_env: str | None = None
    """Name of the environment variable that holds the password: never the password itself."""
    sampling_interval: Seconds = Field(default=0.1, gt=0)
    session_timeout: Seconds = Field(default=60.0, ge=10, le=3600)
    """Session lifetime asked of the server. After a lost link the old session cannot be
    closed; the server keeps it (and one of its session slots) until this runs out, so it is
    short: the driver's keep-alive renews a live session every ``timeout`` / 2."""
    users: list[PeaUser] = Field(default_factory=list)
    """Served PEAs only (``sim serve``): further users with roles. The endpoint's own
    ``username`` (the controller) is ``admin`` unless listed here with another role."""

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^opc\.tcp://[^/:\s]+(:\d+)?(/.*)?$", v):
            raise ValueError(f"'{v}' is not an OPC UA endpoint URL (opc.tcp://host:port/path)")
        return v

    @model_validator(mode="after")
    def _security(self) -> OpcUaEndpoint:
        if (self.security_policy == "None") != (self.security_mode == "None"):
            raise ValueError("security_policy and security_mode must both be 'None' or neither")
        if self.users and self.security_policy == "None":
            raise ValueError("'users' need a secured endpoint (security_policy: Basic256Sha256): "
                             "without security there is no user identity to give a role")
        names = [u.name for u in self.users]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate user names in 'users': {names}")
        return self


Terminator = Annotated[str, StringConstraints(strip_whitespace=False, min_length=1)]
"""Line terminators are whitespace by nature: exempt from the models' whitespace stripping."""


class SerialEndpoint(EndpointBase):
    protocol: Literal["serial"]
    port: str
    baudrate: int = Field(default=9600, gt=0)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    write_terminator: Terminator = "\r"
    read_terminator: Terminator = "\r"
    address: int | None = Field(default=None, ge=0, le=99)
    """Device address on a daisy chain: sent as a two-digit prefix of every request and
    expected at the start of every reply."""
    checksum: Literal["none", "sum8", "xor", "crc16-modbus"] = "none"
    """Appended to requests (and checked on replies) as uppercase hex before the terminator."""
    error_pattern: str | None = r"^[A-Z]?(?P<code>\?[A-Z]*)$"
    """A reply matching this regular expression is a device error; group ``code`` (or the
    whole match) becomes ``DeviceRejected.code``. The default reads ``?``, ``?OOR`` or
    ``S?NA`` (one status letter, then the code). ``null`` turns error detection off."""
    range_errors: list[str] = Field(default_factory=lambda: ["?OOR"])
    """Error codes with which the device refuses a value as out of range; the driver reports
    them as ``ValueRefused`` naming the setting and its limits (other codes stay
    ``DeviceRejected``)."""

    @field_validator("error_pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(
                f"error_pattern '{v}' is not a valid regular expression: {exc}"
            ) from None
        return v


Endpoint = Annotated[SerializeAsAny[EndpointBase], PlainValidator(validate_endpoint)]
"""An endpoint of any registered protocol, validated by the model its ``protocol`` names."""


class AssemblyOverride(Model):
    """Per-instance changes to a data assembly of the type (tighter limits, other safe value)."""

    min: Any = None
    max: Any = None
    default: Any = None
    safe_value: Any = None
    stale_after: Seconds | Literal["off"] | None = None
    """Stale-value watchdog of this instance's value; ``off`` turns the type's off."""
    deadband: Any = None


class Overrides(Model):
    assemblies: dict[str, AssemblyOverride] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)
    simulator: dict[str, Any] = Field(default_factory=dict)
    """Parameters of the simulator model for this instance."""
    simulator_noise: dict[str, Any] = Field(default_factory=dict)
    """Measurement noise of this simulated instance: assembly -> standard deviation, merged
    into the type's ``simulator.noise``."""


class ModuleInstance(Model):
    """A module in a plant: a tag, its type, and how to reach it."""

    tag: Ident
    type: Ident
    description: str = ""
    endpoint: Endpoint | None = None
    """How to reach the module; passive modules (a T-mixer, tubing) have none."""
    simulated: bool = False
    """Start a simulator for this module on its endpoint instead of talking to hardware."""
    overrides: Overrides = Field(default_factory=Overrides)

    @property
    def transport(self) -> str | None:
        return None if self.endpoint is None else transport_of(self.endpoint.protocol)


class Connection(Model):
    """A flow connection from an outlet port to an inlet port (``P1.outlet`` -> ``M1.in_a``)."""

    from_: str = Field(alias="from")
    to: str
    volume: Any = 0.0
    """Internal volume of the tubing, for residence times (e.g. ``'0.2 mL'``)."""

    @field_validator("from_", "to")
    @classmethod
    def _port_ref(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z_]\w*\.[A-Za-z_]\w*$", v):
            raise ValueError(f"'{v}' must name a module port as MODULE.PORT")
        return v

    @field_validator("volume", mode="before")
    @classmethod
    def _vol(cls, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise ValueError("volume must be a quantity like '0.2 mL'")
        m3 = quantity_in("m**3", v) if isinstance(v, str) else float(v)
        if m3 < 0:
            raise ValueError("volume must not be negative")
        return m3

    @property
    def source(self) -> tuple[str, str]:
        a, b = self.from_.split(".")
        return a, b

    @property
    def target(self) -> tuple[str, str]:
        a, b = self.to.split(".")
        return a, b


SinkKind = Literal["product", "waste", "sample"]
"""Where the material of a plant outlet goes."""


class Plant(Model):
    """Module instances and the flow connections between them."""

    kind: Literal["Plant"] = "Plant"
    name: str
    description: str = ""
    types: list[str] = Field(default_factory=list)
    """Extra module-type files, relative to the plant file."""
    species: str | None = None
    """Species table (YAML) for the simulators, relative to the plant file."""
    modules: list[ModuleInstance] = Field(default_factory=list)
    connections: list[Connection] = Field(default_factory=list)
    sinks: dict[str, SinkKind] = Field(default_factory=dict)
    """Outlets where material leaves the plant, ``MODULE.PORT: product | waste | sample``
    (``R1.outlet: product``): a plant may end in any module, not only in a valve or a
    crystallizer. A required outlet must be connected or declared a sink."""
    shutdown: list[Annotated[list[Ident], Field(min_length=1)]] = Field(default_factory=list)
    """The safe stop order: stages of module tags, stopped one stage after the other (each
    waits for its modules' final states). Feeds come first; modules not listed stop in a
    last stage of their own. Empty: derived from the plant (see
    :func:`modulecontrol.descriptors.shutdown_stages`)."""

    def module(self, tag: str) -> ModuleInstance:
        for m in self.modules:
            if m.tag == tag:
                return m
        raise KeyError(
            f"no module '{tag}' in plant {self.name}"
            f"{did_you_mean(tag, [m.tag for m in self.modules])}"
        )

    def topology_problems(self, types: dict[str, ModuleType]) -> list[tuple[PathKey, str]]:
        """Unknown types and ports, wrong directions, shared inlets and outlets, open ports."""
        out: list[tuple[PathKey, str]] = []
        tags: dict[str, ModuleInstance] = {}
        for i, m in enumerate(self.modules):
            if m.tag in tags:
                out.append((("modules", i, "tag"), f"module tag '{m.tag}' is used twice"))
                continue
            tags[m.tag] = m
            if m.type not in types:
                out.append(
                    (
                        ("modules", i, "type"),
                        f"unknown module type '{m.type}'{did_you_mean(m.type, types)}",
                    )
                )
                continue
            mt = types[m.type]
            for name, ov in m.overrides.assemblies.items():
                try:
                    mt.assembly(name)
                except KeyError as exc:
                    out.append((("modules", i, "overrides", "assemblies", name), str(exc.args[0])))
                    continue
                _ = ov
            if m.endpoint is None:
                if mt.data_assemblies or mt.services:
                    out.append(
                        (
                            (("modules", i, "tag")),
                            f"module {m.tag} ({mt.name}) has signals and needs an 'endpoint'",
                        )
                    )
                continue
            if m.simulated and hasattr(m.endpoint, "host") and m.endpoint.host not in _LOOPBACK:
                out.append(
                    (
                        ("modules", i, "endpoint", "host"),
                        "a simulated module listens on loopback (127.0.0.1) only; to reach it "
                        "from another host, forward the port on purpose (e.g. an SSH tunnel)",
                    )
                )
            if m.transport not in _transports(mt) and (mt.data_assemblies or mt.services):
                out.append(
                    (
                        ("modules", i, "endpoint"),
                        f"module type {mt.name} has no {m.transport} bindings; "
                        f"use one of its transports: {', '.join(_transports(mt)) or 'none'}",
                    )
                )
        used_in: dict[tuple[str, str], int] = {}
        used_out: dict[tuple[str, str], int] = {}
        for ci, c in enumerate(self.connections):
            for end, (tag, port), want in (("from", c.source, "out"), ("to", c.target, "in")):
                if tag not in tags:
                    out.append(
                        (
                            ("connections", ci, end),
                            f"unknown module '{tag}'{did_you_mean(tag, tags)}",
                        )
                    )
                    continue
                mtype = types.get(tags[tag].type)
                if mtype is None:
                    continue
                names = [p.name for p in mtype.ports]
                if port not in names:
                    out.append(
                        (
                            ("connections", ci, end),
                            f"module {tag} ({mtype.name}) has no port '{port}'"
                            f"{did_you_mean(port, names)}",
                        )
                    )
                    continue
                p = mtype.port(port)
                if p.direction != want:
                    out.append(
                        (
                            ("connections", ci, end),
                            f"{tag}.{port} is an {'inlet' if p.direction == 'in' else 'outlet'}"
                            f"; '{end}' needs an {'outlet' if want == 'out' else 'inlet'}",
                        )
                    )
                    continue
                book = used_out if want == "out" else used_in
                if (tag, port) in book and not (want == "in" and p.merge):
                    first = book[(tag, port)]
                    msg = (
                        f"{tag}.{port} already receives a stream (connection {first + 1}): "
                        "two streams into one inlet need a mixer module"
                        if want == "in"
                        else f"{tag}.{port} already feeds connection {first + 1}: "
                        "splitting a stream needs a splitter or valve module"
                    )
                    out.append((("connections", ci, end), msg))
                else:
                    book.setdefault((tag, port), ci)
        sinks: set[tuple[str, str]] = set()
        for key in self.sinks:
            problem = self._sink_problem(key, tags, types, used_out)
            if problem:
                out.append((("sinks", key), problem))
            else:
                tag, _, port = key.partition(".")
                sinks.add((tag, port))
        for i, m in enumerate(self.modules):
            mtype = types.get(m.type)
            if mtype is None or tags.get(m.tag) is not m:
                continue
            for p in mtype.ports:
                if not p.required:
                    continue
                book = used_in if p.direction == "in" else used_out
                if (m.tag, p.name) not in book and (m.tag, p.name) not in sinks:
                    out.append(
                        (
                            ("modules", i, "tag"),
                            f"required {'inlet' if p.direction == 'in' else 'outlet'} "
                            f"{m.tag}.{p.name} is not connected"
                            + ("" if p.direction == "in" else
                               f"; connect it, or declare where it ends: 'sinks: "
                               f"{{{m.tag}.{p.name}: product}}' (or waste, sample)"),
                        )
                    )
        return out

    @staticmethod
    def _sink_problem(key: str, tags: dict[str, ModuleInstance],
                      types: dict[str, ModuleType],
                      used_out: dict[tuple[str, str], int]) -> str | None:
        tag, dot, port = key.partition(".")
        if not dot or not tag or not port:
            return f"sink '{key}' must name a module outlet as MODULE.PORT"
        if tag not in tags:
            return f"sink {key}: unknown module '{tag}'{did_you_mean(tag, tags)}"
        mtype = types.get(tags[tag].type)
        if mtype is None:
            return None
        outlets = [p.name for p in mtype.ports if p.direction == "out"]
        if port not in outlets:
            return (f"sink {key}: module {tag} ({mtype.name}) has no outlet '{port}'"
                    f"{did_you_mean(port, outlets)}")
        if (tag, port) in used_out:
            return (f"sink {key}: {key} already feeds connection {used_out[(tag, port)] + 1}; "
                    "an outlet goes to one place")
        return None


def _transports(mt: ModuleType) -> list[str]:
    found: set[str] = set()
    bound = [b for d in mt.data_assemblies for b in d.bindings.values()]
    bound += [b for s in mt.services for b in s.bindings.values()]
    for b in bound:
        found.update(b.by_transport)
    if mt.opcua is not None:
        found.add("opcua")
    return sorted(found)

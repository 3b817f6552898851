"""The registry of transports: which binding and endpoint models a plant may use.

Why a registry at this layer: a module type says ``modbus:`` (or ``acme:``) under an attribute,
and a plant says ``protocol: modbus-tcp`` (or ``protocol: acme``). What those keys may hold is
declared by the driver that speaks the protocol, but descriptors must not import drivers. So
each driver names its models (``binding_model``, ``endpoint_models``) and the composition root
(:func:`modulecontrol.bootstrap.configure`) registers every installed driver here before any
plant is loaded. The built-in transports come in the same way; nothing is registered on import.

An unknown transport or protocol is an error that lists the installed ones and, when a driver
package is installed but failed to load, says which package and why.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationError
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from modulecontrol.descriptors._base import Model, Seconds
from modulecontrol.errors import did_you_mean


class Binding(Model):
    """Base of every transport's binding model: where one attribute lives on that transport.

    A subclass is pure data (a register, a node id, a command template) that its driver
    interprets. ``writable`` is what the driver's write check enforces, ``readable`` what its
    reads and subscriptions may ask for.
    """

    @property
    def writable(self) -> bool:
        """Whether the attribute can be written over this binding; read-only unless a
        transport says otherwise (a binding that forgets to say fails closed)."""
        return False

    @property
    def readable(self) -> bool:
        """Whether the attribute can be read (a write-only serial command cannot)."""
        return True


class EndpointBase(Model):
    """Base of every transport's endpoint model: how a plant reaches one module instance.

    A subclass declares ``protocol`` as a ``Literal`` of its protocol name; that name is what
    a plant writes (``protocol: modbus-tcp``) and what the registry is keyed by.
    """

    protocol: str
    timeout: Seconds = Field(default=1.0, gt=0, le=600)
    """Every I/O on this endpoint gives up after this long."""


@dataclass(frozen=True)
class Transport:
    """One registered transport: its binding key, binding model and endpoint models."""

    name: str
    """The binding key in module types (``modbus``) and the driver's entry-point name."""
    binding: type[Binding]
    endpoints: Mapping[str, type[EndpointBase]]
    """Endpoint models by protocol name (``modbus-tcp``, ``modbus-rtu``)."""
    origin: str = ""
    """The distribution that provides it, for messages (``modulecontrol``, ``acme-driver``)."""


class UnknownTransport(LookupError):
    """A binding key or protocol that no registered transport provides."""


_TRANSPORTS: dict[str, Transport] = {}
_PROTOCOLS: dict[str, str] = {}
_UNAVAILABLE: dict[str, str] = {}
"""Drivers that are installed but could not be loaded: name -> 'distribution: reason'."""


def endpoint_protocol(model: type[EndpointBase]) -> str:
    """The protocol name an endpoint model declares as ``protocol: Literal['name']``."""
    field = model.model_fields.get("protocol")
    args = typing.get_args(field.annotation) if field is not None else ()
    if (
        field is None
        or typing.get_origin(field.annotation) is not typing.Literal
        or len(args) != 1
        or not isinstance(args[0], str)
    ):
        raise TypeError(
            f"endpoint model {model.__name__} must declare protocol: Literal['<name>'] "
            "(the name a plant writes after 'protocol:')"
        )
    return args[0]


def register_transport(
    name: str,
    binding: type[Binding],
    endpoints: tuple[type[EndpointBase], ...],
    *,
    origin: str = "",
) -> Transport:
    """Register a transport's models; registering the same models again changes nothing.

    Two drivers claiming one binding key or one protocol name with different models is a
    configuration error of the installation, raised rather than resolved by load order.
    """
    if not (isinstance(binding, type) and issubclass(binding, Binding)):
        raise TypeError(f"transport '{name}': binding model must subclass Binding")
    by_protocol: dict[str, type[EndpointBase]] = {}
    for model in endpoints:
        if not (isinstance(model, type) and issubclass(model, EndpointBase)):
            raise TypeError(f"transport '{name}': endpoint models must subclass EndpointBase")
        by_protocol[endpoint_protocol(model)] = model
    if not by_protocol:
        raise TypeError(f"transport '{name}' declares no endpoint model")
    new = Transport(name, binding, by_protocol, origin)
    old = _TRANSPORTS.get(name)
    if old is not None and (old.binding, dict(old.endpoints)) != (binding, by_protocol):
        raise ValueError(
            f"transport '{name}' is registered twice with different models "
            f"({old.origin or '?'} and {origin or '?'}): uninstall one of the two packages"
        )
    for protocol in by_protocol:
        owner = _PROTOCOLS.get(protocol)
        if owner is not None and owner != name:
            raise ValueError(
                f"protocol '{protocol}' is provided by two transports, '{owner}' and '{name}': "
                "uninstall one of the two packages"
            )
    _TRANSPORTS[name] = new
    _PROTOCOLS.update(dict.fromkeys(by_protocol, name))
    _UNAVAILABLE.pop(name, None)
    return new


def unregister_transport(name: str) -> None:
    """Remove a transport, or the note that it failed to load (tests, and the composition
    root undoing itself)."""
    _UNAVAILABLE.pop(name, None)
    gone = _TRANSPORTS.pop(name, None)
    if gone is not None:
        for protocol in gone.endpoints:
            _PROTOCOLS.pop(protocol, None)


def note_unavailable(name: str, reason: str) -> None:
    """Remember an installed driver that failed to load, so errors can say why it is missing."""
    _UNAVAILABLE[name] = reason


def transports() -> dict[str, Transport]:
    """The registered transports by binding key (a copy)."""
    return dict(_TRANSPORTS)


def _missing(what: str, given: str, known: list[str]) -> UnknownTransport:
    if not _TRANSPORTS:
        return UnknownTransport(
            f"unknown {what} '{given}': no transports are registered; the program must call "
            "modulecontrol.bootstrap.configure() before loading module types or plants "
            "(the CLI and the test fixtures do)"
        )
    hint = did_you_mean(given, known)
    hint = hint if "did you mean" in hint else ""
    broken = "".join(
        f"; the installed driver '{n}' could not be loaded ({why})"
        for n, why in sorted(_UNAVAILABLE.items())
    )
    return UnknownTransport(
        f"unknown {what} '{given}'{hint}; installed: {', '.join(sorted(known))}{broken}. "
        "Another protocol needs a driver package that registers it under the entry-point "
        "group 'modulecontrol.drivers' (see docs/writing-a-driver.md)"
    )


def binding_model(name: str) -> type[Binding]:
    """The binding model of transport ``name``; an unknown name lists the installed ones."""
    found = _TRANSPORTS.get(name)
    if found is None:
        raise _missing("transport", name, list(_TRANSPORTS))
    return found.binding


def endpoint_model(protocol: str) -> type[EndpointBase]:
    """The endpoint model of ``protocol``; an unknown protocol lists the installed ones."""
    name = _PROTOCOLS.get(protocol)
    if name is None:
        raise _missing("protocol", protocol, list(_PROTOCOLS))
    return _TRANSPORTS[name].endpoints[protocol]


def transport_of(protocol: str) -> str:
    """The transport (binding key) that serves ``protocol`` (``modbus-rtu`` -> ``modbus``)."""
    name = _PROTOCOLS.get(protocol)
    if name is None:
        raise _missing("protocol", protocol, list(_PROTOCOLS))
    return name


def validate_endpoint(value: Any) -> EndpointBase:
    """Validate a plant's ``endpoint:`` against the model its ``protocol`` names."""
    if isinstance(value, EndpointBase):
        endpoint_model(value.protocol)  # still registered?
        return value
    if not isinstance(value, Mapping):
        raise ValueError("an endpoint is a mapping with a 'protocol' key")
    protocol = value.get("protocol")
    if not isinstance(protocol, str):
        raise ValueError(f"missing 'protocol' (one of: {', '.join(sorted(_PROTOCOLS))})")
    try:
        model = endpoint_model(protocol)
    except UnknownTransport as exc:
        raise located_error("Endpoint", ("protocol",), protocol, str(exc)) from None
    return model.model_validate(value)


def relocated(errors: list[ErrorDetails], prefix: tuple[str | int, ...]) -> list[InitErrorDetails]:
    """Errors of a nested validation, moved below ``prefix``, type, message and context kept."""
    out: list[InitErrorDetails] = []
    for e in errors:
        ctx = {**e.get("ctx", {}), "message": e["msg"]}
        out.append(
            InitErrorDetails(
                type=PydanticCustomError(e["type"], "{message}", ctx),
                loc=(*prefix, *e["loc"]),
                input=e["input"],
            )
        )
    return out


def located_error(
    title: str, loc: tuple[str | int, ...], given: Any, message: str
) -> ValidationError:
    """A validation error at ``loc`` below the value being validated, with ``message`` as is.

    Why not ``ValueError``: that would point at the whole mapping; the user's mistake is one
    key (``protocol: acme``), and the loader turns this location into ``file:line:col``.
    """
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("unknown_transport", "{message}", {"message": message}),
                loc=loc,
                input=given,
            )
        ],
    )

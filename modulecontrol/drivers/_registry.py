"""Driver discovery through the ``modulecontrol.drivers`` entry-point group.

Why entry points: an integrator ships a driver in their own package and it appears in
``modulecontrol drivers list`` without a change to this repository (as pytest plugins do).
:func:`register_transports` (called by the composition root, never on import) loads every
installed driver and registers its binding and endpoint models with the descriptors, so a
plant may name its protocol; the built-ins take the same path as any plug-in.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from modulecontrol.descriptors import (
    Binding,
    EndpointBase,
    ModbusBinding,
    ModbusRtuEndpoint,
    ModbusTcpEndpoint,
    OpcUaBinding,
    OpcUaEndpoint,
    SerialBinding,
    SerialEndpoint,
    note_unavailable,
    register_transport,
)
from modulecontrol.errors import did_you_mean

GROUP = "modulecontrol.drivers"

_BUILTIN: dict[str, str] = {
    "modbus": "modulecontrol.drivers.modbus:ModbusDriver",
    "opcua": "modulecontrol.drivers.opcua:OpcUaDriver",
    "serial": "modulecontrol.drivers.serial:SerialDriver",
}

_BUILTIN_MODELS: dict[str, tuple[type[Binding], tuple[type[EndpointBase], ...]]] = {
    "modbus": (ModbusBinding, (ModbusTcpEndpoint, ModbusRtuEndpoint)),
    "opcua": (OpcUaBinding, (OpcUaEndpoint,)),
    "serial": (SerialBinding, (SerialEndpoint,)),
}
"""The built-in drivers' models (they live in descriptors), registered without importing the
drivers: a driver module imports its protocol stack (asyncua, pymodbus, pyserial: about half
a second together), which ``validate`` and ``describe`` never use. A test checks that each
entry is what its driver class declares."""


def available_drivers() -> dict[str, EntryPoint]:
    """Installed drivers by name; the built-ins are present even without an install."""
    found = {name: EntryPoint(name, target, GROUP) for name, target in _BUILTIN.items()}
    for ep in entry_points(group=GROUP):
        found[ep.name] = ep
    return dict(sorted(found.items()))


class UnknownDriver(LookupError):
    pass


def load_driver(name: str) -> Any:
    """The driver class registered as ``name``; unknown names list the known ones."""
    drivers = available_drivers()
    if name not in drivers:
        raise UnknownDriver(
            f"unknown driver '{name}'{did_you_mean(name, drivers)}; "
            f"installed: {', '.join(drivers)}"
        )
    return drivers[name].load()


def driver_origin(name: str, ep: EntryPoint) -> str:
    """'built-in', or the distribution (name and version) that provides driver ``name``."""
    dist = getattr(ep, "dist", None)
    dist_name = getattr(dist, "name", None) if dist is not None else None
    if dist_name is None or (dist_name == "modulecontrol" and _BUILTIN.get(name) == ep.value):
        return "built-in"
    return f"{dist_name} {getattr(dist, 'version', '')}".strip()


def register_transports(drivers: Mapping[str, EntryPoint] | None = None) -> dict[str, str]:
    """Load every installed driver and register its models; returns problems by driver name.

    A driver that fails to load is reported, not fatal: the rest of the installation still
    works, and a plant that names its protocol gets an error saying which package failed and
    why. A driver whose class does not declare its models, or whose entry-point name differs
    from its ``transport``, is a packaging bug of that driver and reported the same way.
    ``drivers`` defaults to :func:`available_drivers`.
    """
    problems: dict[str, str] = {}
    for name, ep in (available_drivers() if drivers is None else drivers).items():
        origin = driver_origin(name, ep)
        if _BUILTIN.get(name) == ep.value:
            binding_model, endpoint_models = _BUILTIN_MODELS[name]
            register_transport(name, binding_model, endpoint_models, origin=origin)
            continue
        try:
            cls = ep.load()
            transport = getattr(cls, "transport", None)
            binding: Any = getattr(cls, "binding_model", None)
            endpoints = getattr(cls, "endpoint_models", ())
            if transport != name:
                raise TypeError(
                    f"{ep.value} declares transport {transport!r}, but is registered as '{name}'"
                )
            if not (isinstance(endpoints, tuple) and endpoints):
                raise TypeError(f"{ep.value} declares no endpoint_models")
            register_transport(
                name,
                binding,
                tuple(endpoints),
                origin=origin,
            )
        except Exception as exc:  # any import or declaration error of a third-party package
            reason = f"{origin}: {type(exc).__name__}: {exc}"
            note_unavailable(name, reason)
            problems[name] = reason
    return problems

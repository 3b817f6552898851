"""Driver discovery through the ``modulecontrol.drivers`` entry-point group.

Why entry points: an integrator ships a driver in their own package and it appears in
``modulecontrol drivers list`` without a change to this repository (as pytest plugins do).
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from modulecontrol.errors import did_you_mean

GROUP = "modulecontrol.drivers"

_BUILTIN: dict[str, str] = {
    "modbus": "modulecontrol.drivers.modbus:ModbusDriver",
    "opcua": "modulecontrol.drivers.opcua:OpcUaDriver",
    "serial": "modulecontrol.drivers.serial:SerialDriver",
}


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

"""Test helpers shipped with modulecontrol, for integrators testing their own drivers.

- :class:`DriverConformance`: the transport-neutral suite a driver should pass.
- :class:`ModuleTypeConformance`: the same suite for a module type (a descriptor-only device
  included), served by its own simulator and spoken to through the installed driver.
- :class:`ServedModule`: one module type served by its simulator on a free port.
- ``modulecontrol.testing.modbus``: a recording Modbus TCP device and an RTU responder.
- :class:`TcpRelay`: pulls, stalls, slows or garbles a TCP link between a driver and its
  server, to test fault handling against the real device or simulator.
- ``modulecontrol.testing.plugin``: pytest fixtures, loaded automatically when installed.
- ``modulecontrol.testing.service``: the control service in a thread (``ServiceThread``) or
  as ``modulecontrol serve`` in a process of its own (``ServeProcess``, for restart tests).

Install the kit with ``pip install 'modulecontrol[testing]'`` (pytest, pytest-asyncio,
hypothesis); see docs/writing-a-driver.md.
"""

from modulecontrol.testing.conformance import (
    DriverConformance,
    DriverFactory,
    Misspelling,
    ModuleTypeConformance,
    Outage,
    WritableCase,
    safe_state_writes,
)
from modulecontrol.testing.devices import ServedModule, SimulatedDevice, resolve_module_type
from modulecontrol.testing.relay import TcpRelay

__all__ = [
    "DriverConformance",
    "DriverFactory",
    "Misspelling",
    "ModuleTypeConformance",
    "Outage",
    "ServedModule",
    "SimulatedDevice",
    "TcpRelay",
    "WritableCase",
    "resolve_module_type",
    "safe_state_writes",
]

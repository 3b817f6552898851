"""Test helpers shipped with modulecontrol, for integrators testing their own drivers.

- :class:`DriverConformance`: the transport-neutral suite a driver should pass.
- ``modulecontrol.testing.modbus``: a recording Modbus TCP device and an RTU responder.
- :class:`TcpRelay`: pulls, stalls, slows or garbles a TCP link between a driver and its
  server, to test fault handling against the real device or simulator.
- ``modulecontrol.testing.plugin``: pytest fixtures, loaded automatically when installed.
- ``modulecontrol.testing.service``: the control service in a thread (``ServiceThread``) or
  as ``modulecontrol serve`` in a process of its own (``ServeProcess``, for restart tests).
"""

from modulecontrol.testing.conformance import (
    DriverConformance,
    DriverFactory,
    Misspelling,
    Outage,
    WritableCase,
    safe_state_writes,
)
from modulecontrol.testing.relay import TcpRelay

__all__ = [
    "DriverConformance",
    "DriverFactory",
    "Misspelling",
    "Outage",
    "TcpRelay",
    "WritableCase",
    "safe_state_writes",
]

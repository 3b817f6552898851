"""Test helpers shipped with modulecontrol, for integrators testing their own drivers.

- :class:`DriverConformance`: the transport-neutral suite a driver should pass.
- ``modulecontrol.testing.modbus``: a recording Modbus TCP device and an RTU responder.
- ``modulecontrol.testing.plugin``: pytest fixtures, loaded automatically when installed.
"""

from modulecontrol.testing.conformance import (
    DriverConformance,
    DriverFactory,
    Misspelling,
    Outage,
    WritableCase,
    safe_state_writes,
)

__all__ = [
    "DriverConformance",
    "DriverFactory",
    "Misspelling",
    "Outage",
    "WritableCase",
    "safe_state_writes",
]

"""Serial simulation: the SYR-1 syringe-pump emulator on a pty, driven by a module view.

The plant's serial port of a simulated module (``/dev/ttyUSB0``) cannot be created by us;
the emulator opens a pseudo-terminal instead and the served plant configuration carries its
path, so drivers open the right device.
"""

from __future__ import annotations

import math

from modulecontrol.simulators._view import ModuleView, TransportFaults
from modulecontrol.simulators.syringe_serial import Faults, SyringeSerialEmulator

__all__ = ["ViewSyringe", "serial_emulator", "sync_faults"]


class ViewSyringe:
    """The :class:`~modulecontrol.simulators.syringe_serial.SyringeModel` protocol (mm,
    mL/min, mL, bar) over a module view of the ``syringe_pump`` model."""

    def __init__(self, view: ModuleView) -> None:
        self.view = view

    def _limits(self, assembly: str) -> tuple[float, float] | None:
        """The assembly's (min, max): the served pump refuses (``?OOR``) what its descriptor
        does, so a driver meets the same limits on the simulator as on the device (None:
        the type has no such assembly, the emulator's own range applies)."""
        try:
            da = self.view.module_type.assembly(assembly)
        except KeyError:
            return None
        lo = -math.inf if da.min is None else float(da.min)
        hi = math.inf if da.max is None else float(da.max)
        return lo, hi

    @property
    def rate_range(self) -> tuple[float, float] | None:
        return self._limits("Rate")

    @property
    def diameter_range(self) -> tuple[float, float] | None:
        return self._limits("Diameter")

    def _get(self, assembly: str) -> float:
        value = self.view.read(assembly)
        return 0.0 if value is None else float(value)

    @property
    def diameter(self) -> float:
        return self._get("Diameter")

    @diameter.setter
    def diameter(self, value: float) -> None:
        self.view.write("Diameter", None, value)

    @property
    def flow_setpoint(self) -> float:
        return self._get("Rate")

    @flow_setpoint.setter
    def flow_setpoint(self, value: float) -> None:
        self.view.write("Rate", None, value)

    @property
    def running(self) -> bool:
        return bool(self.view.read("Run")) and not self.stalled

    @running.setter
    def running(self, value: bool) -> None:
        self.view.write("Run", None, value)

    @property
    def dispensed(self) -> float:
        return self._get("Dispensed")

    @property
    def volume_left(self) -> float:
        return self._get("VolumeLeft")

    @property
    def pressure(self) -> float:
        return self._get("Pressure")

    @property
    def stalled(self) -> bool:
        return bool(self.view.read("Stalled"))


def sync_faults(t: TransportFaults, faults: Faults) -> None:
    """Copy a module's transport faults onto the emulator's switches."""
    faults.silent = t.silent
    faults.delay = t.delay
    faults.garbage = b"\x07\x1b#%garbage\r" if t.garbage else None
    if t.error is None:
        faults.error = None
    else:
        faults.error = t.error if isinstance(t.error, str) and t.error.startswith("?") else "?"


def serial_emulator(view: ModuleView) -> SyringeSerialEmulator:
    """An emulator (not started) serving the module at address 0 (no daisy-chain prefix)."""
    return SyringeSerialEmulator(pumps={0: ViewSyringe(view)})

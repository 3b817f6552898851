"""Serial simulation: the SYR-1 syringe-pump emulator on a pty, driven by a module view.

The plant's serial port of a simulated module (``/dev/ttyUSB0``) cannot be created by us;
the emulator opens a pseudo-terminal instead and the served plant configuration carries its
path, so drivers open the right device.
"""

from __future__ import annotations

from modulecontrol.simulators._view import ModuleView, TransportFaults
from modulecontrol.simulators.syringe_serial import Faults, SyringeSerialEmulator

__all__ = ["ViewSyringe", "serial_emulator", "sync_faults"]


class ViewSyringe:
    """The :class:`~modulecontrol.simulators.syringe_serial.SyringeModel` protocol (mm,
    mL/min, mL, bar) over a module view of the ``syringe_pump`` model."""

    def __init__(self, view: ModuleView) -> None:
        self.view = view

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

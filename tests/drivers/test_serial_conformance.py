"""The serial driver against the transport-neutral driver conformance suite.

The device is the SYR-1 syringe pump emulator on a real pseudo-terminal, reached through a
symlink that survives the port vanishing and coming back (a USB adapter pulled and replugged).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modulecontrol.descriptors import ModuleInstance, builtin_types
from modulecontrol.drivers.serial import SerialDriver
from modulecontrol.simulators.syringe_serial import BuiltinSyringe, SyringeSerialEmulator
from modulecontrol.testing import (
    DriverConformance,
    DriverFactory,
    Misspelling,
    Outage,
    WritableCase,
    safe_state_writes,
)

PUMP = builtin_types().get("SyringePump")


def _driver(port: str) -> SerialDriver:
    inst = ModuleInstance.model_validate(
        {"tag": "P1", "type": "SyringePump",
         "endpoint": {"protocol": "serial", "port": port, "timeout": 0.2}})
    return SerialDriver(PUMP, inst)


class TestSerialConformance(DriverConformance):
    @pytest.fixture
    async def device(self, tmp_path: Path) -> AsyncIterator[SyringeSerialEmulator]:
        async with SyringeSerialEmulator(pumps={0: BuiltinSyringe()},
                                         link=tmp_path / "ttyPUMP") as emu:
            yield emu

    @pytest.fixture
    def driver_factory(self, device: SyringeSerialEmulator) -> DriverFactory:
        return lambda: _driver(device.port)

    @pytest.fixture
    def writable_tag(self) -> WritableCase:
        return WritableCase("Diameter.VMan", 12.06, 9.5, readback="Diameter.VRbk")

    @pytest.fixture
    def readonly_tag(self) -> str:
        return "Pressure.V"

    @pytest.fixture
    def out_of_range(self) -> tuple[str, Any]:
        return ("Rate.VMan", 51.0)

    @pytest.fixture
    def misspelled_tag(self) -> Misspelling:
        return Misspelling("Rate.VMn", "Rate.VMan")

    @pytest.fixture
    def stall(self, device: SyringeSerialEmulator) -> Outage:
        @contextlib.asynccontextmanager
        async def silent() -> AsyncIterator[None]:
            device.faults.silent = True
            try:
                yield
            finally:
                device.faults.silent = False

        return silent

    @pytest.fixture
    def outage(self, device: SyringeSerialEmulator) -> Outage:
        @contextlib.asynccontextmanager
        async def unplugged() -> AsyncIterator[None]:
            device.vanish()
            await asyncio.sleep(0.05)  # the kernel tells the open port it is gone
            try:
                yield
            finally:
                device.reappear()

        return unplugged

    @pytest.fixture
    def safe_state(self) -> list[tuple[str, Any]]:
        writes = safe_state_writes(PUMP, set(_driver("/dev/null").tags))
        assert writes  # the pump's safe state (Run off) is bound over serial
        return writes

    @pytest.fixture
    def readbacks(self) -> dict[str, str]:
        return {"Run.VMan": "Run.VRbk", "Rate.VMan": "Rate.VRbk",
                "Diameter.VMan": "Diameter.VRbk"}


def test_serial_errors_are_shared_driver_errors() -> None:
    from modulecontrol import drivers
    from modulecontrol.drivers import serial

    assert serial.BadReply is drivers.BadReply and serial.BadRequest is drivers.BadRequest
    assert issubclass(drivers.BadReply, drivers.DriverError)
    err = drivers.BadReply("does not match", reply="S1.0", tag="Rate.VRbk", module="P1")
    assert err.reply == "S1.0" and str(err) == "P1 Rate.VRbk: does not match"

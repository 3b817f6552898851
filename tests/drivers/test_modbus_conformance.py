"""The Modbus driver against the transport-neutral driver conformance suite."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modulecontrol.descriptors import builtin_types
from modulecontrol.testing import (
    DriverConformance,
    DriverFactory,
    Misspelling,
    Outage,
    WritableCase,
    safe_state_writes,
)
from modulecontrol.testing.modbus import RecordingStore, TcpDevice
from tests.drivers._modbus_fixtures import tcp_driver

PUMP = builtin_types().get("HPLCPump")


class TestModbusConformance(DriverConformance):
    @pytest.fixture
    async def device(self) -> AsyncIterator[TcpDevice]:
        async with TcpDevice(RecordingStore()) as dev:
            yield dev

    @pytest.fixture
    def driver_factory(self, device: TcpDevice) -> DriverFactory:
        return lambda: tcp_driver(device.port, mt=PUMP, timeout=0.2)

    @pytest.fixture
    def writable_tag(self) -> WritableCase:
        return WritableCase("FlowSetpoint.VMan", 2.5, 7.25, readback="FlowSetpoint.VRbk")

    @pytest.fixture
    def readonly_tag(self) -> str:
        return "Pressure.V"

    @pytest.fixture
    def out_of_range(self) -> tuple[str, Any]:
        return ("FlowSetpoint.VMan", 11.0)

    @pytest.fixture
    def misspelled_tag(self) -> Misspelling:
        return Misspelling("FlowSetpoint.VMn", "FlowSetpoint.VMan")

    @pytest.fixture
    def stall(self, device: TcpDevice) -> Outage:
        @contextlib.asynccontextmanager
        async def stalled() -> AsyncIterator[None]:
            device.store.silent.add(1)
            try:
                yield
            finally:
                device.store.silent.discard(1)
                device.store.wake()

        return stalled

    @pytest.fixture
    def outage(self, device: TcpDevice) -> Outage:
        @contextlib.asynccontextmanager
        async def down() -> AsyncIterator[None]:
            await device.stop()
            try:
                yield
            finally:
                await device.start()

        return down

    @pytest.fixture
    def safe_state(self) -> list[tuple[str, Any]]:
        tags = {n for n in tcp_driver(1, mt=PUMP).tags}
        writes = safe_state_writes(PUMP, tags)
        assert writes  # the pump has a safe state bound over Modbus
        return writes

"""The OPC UA driver against the transport-neutral driver conformance suite.

The device is a real asyncua server on 127.0.0.1 serving the CoilReactor's PEA address space,
reached through the fault matrix's TCP relay so that it can stall (the relay holds the bytes)
and vanish (the relay drops the connection and refuses new ones). A background task moves the
reactor temperature as a live sensor does: an OPC UA subscription reports changes only, so a
constant value would be published once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modulecontrol.drivers.opcua import OpcUaDriver
from modulecontrol.simulators.opcua_pea import PeaServer, build_pea_server
from modulecontrol.testing import (
    DriverConformance,
    DriverFactory,
    Misspelling,
    Outage,
    TcpRelay,
    WritableCase,
)
from tests.drivers._opcua_pea import coil_reactor, instance


@contextlib.asynccontextmanager
async def _live_temperature(server: PeaServer) -> AsyncIterator[None]:
    async def wander() -> None:
        step = 0
        while True:
            step += 1
            await server.set("T.V", 25.0 + 0.01 * (step % 100))
            await asyncio.sleep(0.02)

    task = asyncio.get_running_loop().create_task(wander())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class TestOpcUaConformance(DriverConformance):
    @pytest.fixture
    async def device(self) -> AsyncIterator[tuple[PeaServer, TcpRelay]]:
        server = await build_pea_server(coil_reactor())
        async with server, _live_temperature(server), TcpRelay.for_url(server.url) as relay:
            yield server, relay

    @pytest.fixture
    def driver_factory(self, device: tuple[PeaServer, TcpRelay]) -> DriverFactory:
        server, relay = device
        url = relay.relayed(server.url)
        return lambda: OpcUaDriver(coil_reactor(), instance(url, timeout=0.3))

    @pytest.fixture
    def writable_tag(self) -> WritableCase:
        # VExt is the external channel's request: readable, and without a PEA behind the
        # node it keeps what was written (VFbk would need the Apply handshake)
        return WritableCase("TempSP.VExt", 40.0, 65.5)

    @pytest.fixture
    def readonly_tag(self) -> str:
        return "T.V"

    @pytest.fixture
    def out_of_range(self) -> tuple[str, Any]:
        return ("TempSP.VExt", 500.0)

    @pytest.fixture
    def misspelled_tag(self) -> Misspelling:
        return Misspelling("TempSP.VExtt", "TempSP.VExt")

    @pytest.fixture
    def stall(self, device: tuple[PeaServer, TcpRelay]) -> Outage:
        _, relay = device
        return relay.stall

    @pytest.fixture
    def outage(self, device: tuple[PeaServer, TcpRelay]) -> Outage:
        _, relay = device

        @contextlib.asynccontextmanager
        async def down() -> AsyncIterator[None]:
            relay.cut()
            await asyncio.sleep(0.05)  # the client's socket sees the connection closed
            try:
                yield
            finally:
                relay.restore()

        return down

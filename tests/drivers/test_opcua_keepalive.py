"""The OPC UA driver's keep-alive: a link that stops answering (or answers garbage) inside an
open session is declared lost and reconnected; a server that answers late but within the
endpoint's timeout is not dropped. The link goes through the fault matrix's TCP relay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from modulecontrol.drivers import Quality, TagValue
from modulecontrol.drivers.opcua import OpcUaDriver
from modulecontrol.simulators.opcua_pea import PeaServer, build_pea_server
from modulecontrol.testing import TcpRelay
from tests._poll import until
from tests.drivers._opcua_pea import coil_reactor, instance


@pytest.fixture
async def served() -> AsyncIterator[tuple[PeaServer, TcpRelay]]:
    server = await build_pea_server(coil_reactor())
    async with server, TcpRelay.for_url(server.url) as relay:
        yield server, relay


@pytest.mark.parametrize("fault", ["stall", "garbage"])
async def test_silent_or_garbled_link_is_lost_and_reconnected(
        served: tuple[PeaServer, TcpRelay], fault: str) -> None:
    server, relay = served
    got: list[dict[str, TagValue]] = []

    def on_change(values: Mapping[str, TagValue]) -> None:
        got.append(dict(values))

    drv = OpcUaDriver(coil_reactor(), instance(relay.relayed(server.url), timeout=0.3))
    async with drv:
        await drv.subscribe(["T.V"], 0.05, on_change)
        assert await until(lambda: bool(got), 3) is not None
        if fault == "stall":
            relay.stalled.clear()
        else:
            relay.garbage = True
        try:
            # a subscription with nothing new to publish is silent; only the keep-alive
            # read can notice (asyncua's own watchdog would, after seconds)
            assert await until(lambda: not drv.health().connected, 3) is not None
            if fault == "stall":
                assert "keep-alive" in (drv.health().last_error or "")
            assert await until(lambda: any(b.get("T.V") is not None
                                           and b["T.V"].quality is Quality.BAD for b in got),
                               3) is not None
        finally:
            relay.stalled.set()
            relay.garbage = False
        assert await until(lambda: drv.health().connected, 10) is not None
        assert drv.health().reconnects == 1
        await server.set("T.V", 4.5)
        assert (await drv.read(["T.V"]))["T.V"].value == 4.5
        assert await until(lambda: any(b.get("T.V") is not None and b["T.V"].value == 4.5
                                       for b in got), 3) is not None


async def test_late_answers_within_timeout_keep_the_link(
        served: tuple[PeaServer, TcpRelay]) -> None:
    """Replies 1.2 s late with a 3 s timeout: no loss. asyncua's watchdog used to probe
    with a fixed 1 s timeout and dropped such a server every few seconds."""
    server, relay = served
    drv = OpcUaDriver(coil_reactor(), instance(relay.relayed(server.url), timeout=3.0))
    async with drv:
        relay.delay = 1.2
        try:
            await server.set("T.V", 7.5)
            deadline = time.monotonic() + 4.0
            while time.monotonic() < deadline:  # several keep-alives and watchdog probes
                assert (await drv.read(["T.V"]))["T.V"].value == 7.5
            assert drv.health().connected
            assert drv.health().reconnects == 0
        finally:
            relay.delay = 0.0


async def test_a_keepalive_read_asyncua_cancels_is_a_lost_link_then_reconnected(
        served: tuple[PeaServer, TcpRelay]) -> None:
    """asyncua cancels a request's future itself when its connection resets; in the
    keep-alive that raised CancelledError as if the watch had been closed, and it ended
    without a word (no keep-alive any more). It is a lost link, and the driver reconnects."""
    server, _ = served
    drv = OpcUaDriver(coil_reactor(), instance(server.url, timeout=0.3))
    async with drv:
        client: Any = drv._client
        node = client.nodes.server_state  # the node the keep-alive reads
        real = node.read_value
        dropped: list[bool] = []

        async def dropped_by_asyncua() -> Any:
            if not dropped:
                dropped.append(True)
                raise asyncio.CancelledError  # what awaiting a cancelled request gives
            return await real()

        node.read_value = dropped_by_asyncua
        assert await until(lambda: bool(dropped), 3) is not None
        assert await until(lambda: drv.health().reconnects == 1 and drv.health().connected,
                           10) is not None
        assert "dropped by asyncua" in (drv.health().last_error or "")
        await server.set("T.V", 3.25)
        assert (await drv.read(["T.V"]))["T.V"].value == 3.25


async def test_a_reconnect_asyncua_cancels_is_tried_again(
        served: tuple[PeaServer, TcpRelay]) -> None:
    """A CancelledError from asyncua while the reconnect opens a fresh client ended the
    reconnect task for good (the driver stayed disconnected); it is one failed attempt."""
    server, relay = served
    drv = OpcUaDriver(coil_reactor(), instance(relay.relayed(server.url), timeout=0.3))
    async with drv:
        real = drv._open_client
        dropped: list[bool] = []

        async def dropped_by_asyncua() -> Any:
            if not dropped:
                dropped.append(True)
                raise asyncio.CancelledError
            return await real()

        drv._open_client = dropped_by_asyncua  # type: ignore[method-assign]
        relay.stalled.clear()
        try:
            assert await until(lambda: not drv.health().connected, 3) is not None
        finally:
            relay.stalled.set()
        assert await until(lambda: drv.health().connected, 15) is not None
        assert dropped == [True] and drv.health().reconnects == 1

"""Reconnect after the server stops and comes back on the same port: a fresh client."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from modulecontrol.drivers import Disconnected, Quality, TagValue
from modulecontrol.drivers.opcua import OpcUaDriver
from modulecontrol.simulators import astart_on_free_port
from modulecontrol.simulators.opcua_pea import PeaServer, build_pea_server
from tests._poll import until
from tests.drivers._opcua_pea import coil_reactor, instance


async def test_reconnect_with_fresh_client_and_resubscribe() -> None:
    async def started(port: int) -> PeaServer:
        pea = await build_pea_server(coil_reactor(), port=port)
        await pea.start()
        return pea

    first = await astart_on_free_port(started)  # a port taken before the bind: another
    port = int(first.url.split("/")[2].rsplit(":", 1)[1])
    second = await build_pea_server(coil_reactor(), port=port)  # built now, started later
    got: list[dict[str, TagValue]] = []

    def on_change(values: Mapping[str, TagValue]) -> None:
        got.append(dict(values))

    drv = OpcUaDriver(coil_reactor(), instance(first.url, timeout=1.0))
    try:
        await drv.connect()
        old_client = drv._client
        sub = await drv.subscribe(["T.V"], 0.05, on_change)
        await first.set("T.V", 1.5)
        assert await until(lambda: any(
            b.get("T.V") == TagValue(1.5, Quality.GOOD, b["T.V"].timestamp, 1.5)
            for b in got), 3) is not None
        await first.stop()
        assert await until(lambda: not drv.health().connected, 5) is not None
        assert drv.health().reconnecting
        assert await until(lambda: any(b.get("T.V") is not None and b["T.V"].quality is Quality.BAD
                                       for b in got), 3) is not None
        with pytest.raises(Disconnected, match="reconnecting"):
            await drv.read(["T.V"])
        await second.set("T.V", 2.5)
        await asyncio.sleep(0.3)  # let at least one attempt fail against the closed port
        await second.start()
        assert await until(lambda: drv.health().connected, 15) is not None
        assert drv.health().reconnects == 1
        assert drv._client is not old_client
        assert (await drv.read(["T.V"]))["T.V"].value == 2.5
        await second.set("T.V", 3.5)
        assert await until(lambda: any(b.get("T.V") is not None and b["T.V"].value == 3.5
                                       for b in got), 3) is not None
        assert sub.report.revised_publishing_interval == pytest.approx(0.05)
        assert "connection lost" in (drv.health().last_error or "") or \
            "reconnect failed" in (drv.health().last_error or "")
    finally:
        await drv.close()
        await second.stop()


async def test_connect_to_nothing_is_disconnected(taken: int) -> None:
    # held by the test, never listening: nothing answers there, whoever else runs
    drv = OpcUaDriver(coil_reactor(), instance(f"opc.tcp://127.0.0.1:{taken}/x"))
    with pytest.raises(Disconnected, match="cannot reach"):
        await drv.connect()
    await drv.close()

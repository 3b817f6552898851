"""OPC UA driver against a real asyncua server on 127.0.0.1 (one server for this module)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping

import pytest
import pytest_asyncio
from asyncua.ua.status_codes import StatusCodes

from modulecontrol.drivers import (
    DeviceRejected,
    NotWritable,
    OutOfRange,
    Quality,
    TagValue,
    UnknownTag,
    ValueRefused,
)
from modulecontrol.drivers.opcua import NamespaceNotFound, OpcUaDriver
from modulecontrol.mtpcore import State
from modulecontrol.simulators.opcua_pea import PeaServer, build_pea_server
from tests.drivers._opcua_pea import MiniPea, coil_reactor, instance

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pea() -> AsyncIterator[tuple[PeaServer, MiniPea]]:
    server = await build_pea_server(coil_reactor())
    mini = MiniPea(server)
    await mini.install()
    async with server:
        yield server, mini


@pytest_asyncio.fixture(loop_scope="module")
async def driver(pea: tuple[PeaServer, MiniPea]) -> AsyncIterator[OpcUaDriver]:
    server, mini = pea
    await mini.reset_modes()
    drv = OpcUaDriver(coil_reactor(), instance(server.url))
    async with drv:
        yield drv


async def test_batched_read_is_one_request(pea: tuple[PeaServer, MiniPea],
                                           driver: OpcUaDriver) -> None:
    server, _ = pea
    await server.set("T.V", 42.5)
    await server.set("Fouled.V", True)
    names = ["T.V", "Fouled.V", "Tempering.StateCur"]
    names += [t for t in driver.tags if driver.tags[t].readable and t not in names][:37]
    assert len(names) == 40
    before_req, before_nodes = server.read_requests, server.read_nodes
    values = await driver.read(names)
    assert server.read_requests - before_req == 1
    assert server.read_nodes - before_nodes == len(names)
    assert values["T.V"] == TagValue(42.5, Quality.GOOD, values["T.V"].timestamp, 42.5)
    assert (await driver.read(["Fouled.V"]))["Fouled.V"].value is True
    assert State.from_code(values["Tempering.StateCur"].value) is not None


async def test_write_round_trip_uses_node_type(pea: tuple[PeaServer, MiniPea],
                                               driver: OpcUaDriver) -> None:
    server, _ = pea
    await driver.write("TempSP.VExt", 61.25)
    assert server.get("TempSP.VExt") == 61.25
    assert (await driver.read(["TempSP.VExt"]))["TempSP.VExt"].value == 61.25
    # A UInt32 node gets an int even when a float with an integral value is written.
    await driver.write("Tempering.ProcedureExt", 1.0)
    assert server.get("Tempering.ProcedureExt") == 1
    assert isinstance(server.get("Tempering.ProcedureExt"), int)
    assert driver._vtypes["Tempering.ProcedureExt"].name == "UInt32"


async def test_write_checks(driver: OpcUaDriver) -> None:
    with pytest.raises(NotWritable):
        await driver.write("T.V", 1.0)
    with pytest.raises(OutOfRange, match="outside its limits"):
        await driver.write("TempSP.VExt", 500)
    with pytest.raises(OutOfRange, match="whole number"):
        await driver.write("Tempering.ProcedureExt", 1.5)
    with pytest.raises(UnknownTag, match="did you mean"):
        await driver.read(["TempSP.VExtt"])


async def test_bad_write_status_is_device_rejected(pea: tuple[PeaServer, MiniPea]) -> None:
    server, _ = pea
    await server.set_read_only("RampRate.VExt")
    async with OpcUaDriver(coil_reactor(), instance(server.url)) as drv:
        with pytest.raises(DeviceRejected, match=r"BadNotWritable|BadUserAccessDenied") as exc:
            await drv.write("RampRate.VExt", 2.0)
    assert exc.value.code in ("BadNotWritable", "BadUserAccessDenied")
    assert exc.value.tag == "RampRate.VExt"


async def test_out_of_range_write_is_refused_by_the_pea_not_clipped(
        pea: tuple[PeaServer, MiniPea], driver: OpcUaDriver) -> None:
    """Issue 16: a PEA answers a set point outside its published VMin..VMax with
    BadOutOfRange and keeps its value; the driver names the setting and the limits."""
    server, _ = pea
    await driver.write("TempSP.VExt", 40.0)
    await server.set("TempSP.VMax", 100.0)  # the PEA's range is narrower than the type's
    try:
        with pytest.raises(ValueRefused, match=r"TempSP = 120 degC refused by the device "
                           r"\(OPC UA BadOutOfRange\), although the descriptor allows") as exc:
            await driver.write("TempSP.VExt", 120.0)
        assert exc.value.code == "BadOutOfRange"
        assert server.get("TempSP.VExt") == 40.0
        await driver.write("TempSP.VExt", 100.0)  # the limit itself is inside
        assert server.get("TempSP.VExt") == 100.0
    finally:
        await server.set("TempSP.VMax", 150.0)


async def test_bad_read_status_is_bad_quality(pea: tuple[PeaServer, MiniPea],
                                              driver: OpcUaDriver) -> None:
    server, _ = pea
    await server.set_status("PressureDrop.V", StatusCodes.BadSensorFailure)
    values = await driver.read(["PressureDrop.V", "T.V"])
    assert values["PressureDrop.V"].quality is Quality.BAD
    assert values["PressureDrop.V"].raw == "BadSensorFailure"
    assert values["T.V"].good


async def test_missing_namespace_lists_server_namespaces(pea: tuple[PeaServer, MiniPea]) -> None:
    server, _ = pea
    drv = OpcUaDriver(coil_reactor(),
                      instance(server.url, namespace_uri="urn:example:not-there"))
    with pytest.raises(NamespaceNotFound, match="urn:modulecontrol:pea:coilreactor"):
        await drv.connect()
    await drv.close()


async def test_subscription_delivers_and_reports_revisions(
        pea: tuple[PeaServer, MiniPea], driver: OpcUaDriver,
        caplog: pytest.LogCaptureFixture) -> None:
    server, _ = pea
    got: list[dict[str, TagValue]] = []
    changed = asyncio.Event()

    def on_change(values: Mapping[str, TagValue]) -> None:
        got.append(dict(values))
        if any(v.value == 77.0 for v in values.values()):
            changed.set()

    with caplog.at_level(logging.WARNING, logger="modulecontrol.drivers.opcua"):
        # asyncua's server samples at the publishing interval: asking for a faster
        # sampling interval gets revised, which the driver must notice.
        sub = await driver.subscribe(["T.V", "JacketT.V"], 0.05, on_change,
                                     sampling_interval=0.01, queue_size=4)
    assert sub.report.revised_publishing_interval == pytest.approx(0.05)
    assert sub.report.revised_sampling_interval["T.V"] == pytest.approx(0.05)
    assert sub.report.revised_queue_size["T.V"] == 4
    assert any("sampling interval revised" in w for w in driver.health().warnings)
    assert "sampling interval revised" in caplog.text
    assert sub.report in driver.health().subscriptions
    await server.set("T.V", 77.0)
    await asyncio.wait_for(changed.wait(), 3)
    seen = {k for batch in got for k in batch}
    assert seen == {"T.V", "JacketT.V"}
    await sub.cancel()
    assert sub.report not in driver.health().subscriptions


async def test_failing_callback_does_not_stop_delivery(pea: tuple[PeaServer, MiniPea],
                                                      driver: OpcUaDriver) -> None:
    server, _ = pea
    seen: list[float] = []
    third = asyncio.Event()

    def broken(values: Mapping[str, TagValue]) -> None:
        seen.append(values["T.V"].value)
        if 12.0 in seen:
            third.set()
        raise RuntimeError("a broken callback must not kill delivery")

    sub = await driver.subscribe(["T.V"], 0.05, broken)
    for i in range(3):
        await server.set("T.V", 10.0 + i)
        await asyncio.sleep(0.1)
    await asyncio.wait_for(third.wait(), 3)
    assert len(seen) >= 2
    assert (await driver.read(["T.V"]))["T.V"].value == 12.0
    await sub.cancel()


async def test_session_timeout_is_asked_of_the_server(pea: tuple[PeaServer, MiniPea]) -> None:
    # A lost link leaves its session on the server until the session times out: ask for a
    # short one (asyncua would ask for an hour), and see the server grant it.
    server, _ = pea
    drv = OpcUaDriver(coil_reactor(), instance(server.url, session_timeout=15))
    async with drv:
        client = drv._client
        assert client is not None
        assert client.session_timeout == 15000
        assert (await drv.read(["T.V"]))["T.V"].quality is Quality.GOOD

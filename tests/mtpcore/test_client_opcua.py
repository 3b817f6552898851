"""The service client over the OPC UA driver against a real asyncua PEA on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from modulecontrol.drivers.opcua import OpcUaDriver
from modulecontrol.mtpcore import (
    Command,
    CommandNotEnabled,
    ModeRefused,
    ServiceClient,
    ServiceStateError,
    ServiceTimeout,
    State,
)
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


def tempering(driver: OpcUaDriver, timeout: float = 10.0) -> ServiceClient:
    svc = driver.module_type.service("Tempering")
    return ServiceClient(driver, svc.name, now=time.monotonic, sleep=asyncio.sleep,
                         timeout=timeout, poll=0.02,
                         procedures={p.name: p.id for p in svc.procedures},
                         default_procedure=svc.default_procedure.id, module=driver.tag_name)


async def test_handshake_tempering(pea: tuple[PeaServer, MiniPea], driver: OpcUaDriver) -> None:
    server, mini = pea
    client = tempering(driver)
    # values are in the assembly's unit (degC): the client compares VFbk with what it wrote
    state = await client.run(Command.START, parameters={"TempSP": 60.0})
    assert state is State.EXECUTE
    assert server.get("Tempering.StateAutAct") is True
    assert server.get("Tempering.SrcExtAct") is True
    assert server.get("Tempering.ProcedureReq") == 1
    assert server.get("TempSP.VFbk") == pytest.approx(60.0)
    assert server.get("TempSP.SrcExtAct") is True
    assert await client.run(Command.STOP) is State.STOPPED
    assert await client.run(Command.RESET) is State.IDLE
    assert [c for _, c in mini.commands[-3:]] == ["Start", "Stop", "Reset"]
    status = await client.status()
    assert status.state is State.IDLE and Command.START in status.enabled


async def test_handshake_uses_aut_channel(pea: tuple[PeaServer, MiniPea],
                                          driver: OpcUaDriver) -> None:
    server, _ = pea
    await server.set("Tempering.StateChannel", True)
    await server.set("Tempering.SrcChannel", True)
    await tempering(driver).ensure_automatic_external()
    assert server.get("Tempering.StateAutAut") is True
    assert server.get("Tempering.StateAutAct") is True
    assert server.get("Tempering.SrcExtAct") is True


async def test_command_not_enabled_names_state(pea: tuple[PeaServer, MiniPea],
                                               driver: OpcUaDriver) -> None:
    _, mini = pea
    with pytest.raises(CommandNotEnabled, match="Tempering is in Idle") as exc:
        await tempering(driver).run(Command.RESUME)
    assert exc.value.state is State.IDLE
    assert Command.START in exc.value.enabled and Command.RESUME not in exc.value.enabled
    assert ("Tempering", "Resume") not in mini.commands


async def test_refusals_and_timeouts_carry_pea_state(pea: tuple[PeaServer, MiniPea],
                                                     driver: OpcUaDriver) -> None:
    _, mini = pea
    mini.locked.add("Tempering")
    try:
        with pytest.raises(ModeRefused, match=r"Tempering did not switch to Automatic.*"
                                              r"StateOpAct=True"):
            await tempering(driver, timeout=0.2).ensure_automatic_external()
    finally:
        mini.locked.discard("Tempering")
    client = tempering(driver)
    await client.ensure_automatic_external()
    await mini.set_state("Tempering", "Execute")
    short = tempering(driver, timeout=0.2)
    with pytest.raises(ModeRefused, match=r"did not accept procedure Hold.*is in Execute"):
        await short.select_procedure(short.procedure_id("Hold"))
    with pytest.raises(ServiceTimeout, match=r"did not reach Held.*last seen Execute"):
        await short.wait_for_state([State.HELD])
    waiter = asyncio.ensure_future(client.wait_for_state([State.COMPLETED],
                                                         start_state=State.EXECUTE))
    await asyncio.sleep(0.05)
    await mini.set_state("Tempering", "Aborting")
    with pytest.raises(ServiceStateError, match="went to Aborting while waiting for Completed"):
        await waiter

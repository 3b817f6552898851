"""A PEA service behind a proxy: commands run the MTP core's ServiceClient over the driver."""

from __future__ import annotations

import asyncio

import pytest

from modulecontrol.mtpcore import Command, ModeRefused, MtpError, State
from modulecontrol.proxy import ModuleProxy, ProxyOptions
from modulecontrol.simulators.opcua_pea import build_pea_server
from tests.drivers._opcua_pea import MiniPea, coil_reactor, instance
from tests.mtpcore._memory_pea import FakeTime


async def test_remote_service_runs_the_handshake_with_the_descriptors_rules() -> None:
    server = await build_pea_server(coil_reactor())
    mini = MiniPea(server)
    await mini.install()
    async with server:
        proxy = ModuleProxy(coil_reactor(), instance(server.url, timeout=1.0),
                            options=ProxyOptions(poll_interval=0.05, complete_poll=0.02))
        await proxy.start()
        try:
            svc = proxy.services["Tempering"]
            assert type(svc).__name__ == "RemoteService"
            with pytest.raises(MtpError, match=r"R1: 'T' is not a parameter of Tempering "
                                               r"\(parameters: .*TempSP"):
                await svc.command(Command.START, parameters={"T": 1.0})
            with pytest.raises(MtpError, match="unknown procedure 'Nope'"):
                await svc.command(Command.START, procedure="Nope")
            assert not mini.commands  # nothing was sent for either
            # a recipe's quantity is converted to the assembly's unit before the handshake
            await svc.command(Command.START, parameters={"TempSP": "140 degF"})
            assert await svc.wait_for(State.EXECUTE, timeout=5) is State.EXECUTE
            assert server.get("TempSP.VFbk") == pytest.approx(60.0)
            assert proxy.parameters["TempSP"] == pytest.approx(60.0)
            await svc.command(Command.STOP)
            assert await svc.wait_for(State.STOPPED, timeout=5) is State.STOPPED
        finally:
            await proxy.close()


async def test_remote_handshake_bounds_run_on_the_injected_link_clock() -> None:
    server = await build_pea_server(coil_reactor())
    mini = MiniPea(server)
    await mini.install()
    mini.locked.add("Tempering")
    clock = FakeTime()

    async def pause(dt: float) -> None:
        await clock.sleep(dt)
        await asyncio.sleep(0.001)  # the driver's reads need the loop

    async with server:
        proxy = ModuleProxy(coil_reactor(), instance(server.url, timeout=1.0),
                            options=ProxyOptions(poll_interval=0.05, complete_poll=0.5,
                                                 link_clock=clock.now,
                                                 link_sleep=pause))
        await proxy.start()
        try:
            with pytest.raises(ModeRefused, match="Tempering did not switch to Automatic"):
                await proxy.services["Tempering"].command(Command.START)
            assert clock.t >= 10.0  # the handshake's bound, measured on the given clock
        finally:
            await proxy.close()

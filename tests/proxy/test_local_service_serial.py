"""A syringe pump on a real pseudo-terminal (the SYR-1 emulator) behind a proxy that runs
its MTP state machine: what a lost and restored link does to a service being started."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from modulecontrol.descriptors import ModuleInstance, builtin_types
from modulecontrol.proxy import ModuleProxy, ProxyOptions
from modulecontrol.simulators.syringe_serial import BuiltinSyringe, SyringeSerialEmulator
from modulecontrol.statemachine import Command, State
from tests._poll import until

TIMEOUT = 0.3


@pytest.fixture
async def emu(tmp_path: Path) -> AsyncIterator[SyringeSerialEmulator]:
    async with SyringeSerialEmulator(pumps={0: BuiltinSyringe()},
                                     link=tmp_path / "ttySP") as e:
        yield e


@pytest.fixture
async def proxy(emu: SyringeSerialEmulator) -> AsyncIterator[ModuleProxy]:
    inst = ModuleInstance.model_validate(
        {"tag": "SP1", "type": "SyringePump",
         "endpoint": {"protocol": "serial", "port": emu.port, "timeout": TIMEOUT}})
    p = ModuleProxy(builtin_types().get("SyringePump"), inst,
                    options=ProxyOptions(poll_interval=0.05))
    await p.start()
    yield p
    await p.close()


async def test_a_start_while_the_link_recovers_waits_for_the_recovery(
        proxy: ModuleProxy, emu: SyringeSerialEmulator) -> None:
    # The service bench's stuck start: the link came back and the proxy began its recovery
    # (safe state, then Abort of every service not at rest); the recipe's Start of
    # SP1.Dosing came in between, and the recovery aborted the service it had just started
    # ("SP1.Dosing went to Aborting", the recipe held for an operator).
    dosing = proxy.services["Dosing"]
    started: list[asyncio.Task[State]] = []

    def on_fault(tag: str, fault: str | None) -> None:
        if fault is None and not started:  # restored: the recovery begins now
            started.append(asyncio.get_running_loop().create_task(dosing.command(
                Command.START, procedure="Continuous", parameters={"FlowSP": 0.5})))

    proxy.on_fault(on_fault)
    emu.faults.silent = True
    assert await until(lambda: proxy.fault == "communication lost", 30.0) is not None
    emu.faults.silent = False
    assert await until(lambda: bool(started), 30.0) is not None
    await asyncio.wait_for(started[0], 30.0)
    state = await dosing.wait_for(State.EXECUTE, State.ABORTING, State.ABORTED, timeout=30.0)
    assert state is State.EXECUTE
    await asyncio.sleep(0)
    assert dosing.state is State.EXECUTE  # and stays so: the recovery is over
    pump = emu.pumps[0]
    assert pump.running and pump.flow_setpoint == pytest.approx(0.5)
    assert [line for line in emu.log if line == b"RUN"] == [b"RUN"]

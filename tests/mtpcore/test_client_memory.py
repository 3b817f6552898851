"""The service client over a transport that is not OPC UA: a PEA in a dictionary."""

from __future__ import annotations

import asyncio

import pytest

from modulecontrol.mtpcore import (
    Command,
    CommandNotEnabled,
    ModeRefused,
    MtpError,
    OperationMode,
    ServiceClient,
    ServiceStateError,
    ServiceTimeout,
    State,
)
from modulecontrol.statemachine import WorkContext
from tests.mtpcore._memory_pea import PROCEDURES, SERVICE, FakeTime, MemoryPea


def client(pea: MemoryPea, clock: FakeTime, timeout: float = 5.0) -> ServiceClient:
    return ServiceClient(pea, SERVICE, now=clock.now, sleep=clock.sleep, timeout=timeout,
                         poll=0.5, procedures={p.name: p.id for p in PROCEDURES},
                         default_procedure=1, module="P1")


async def test_the_whole_handshake_in_order() -> None:
    pea, clock = MemoryPea(), FakeTime()
    state = await client(pea, clock).run(Command.START, procedure=2, parameters={"Rate": 2.5})
    assert state is State.EXECUTE
    assert pea.machine.procedure_cur == 2
    assert pea.values["Rate.VFbk"] == 2.5
    assert pea.machine.operation_mode is OperationMode.AUTOMATIC
    written = [t for t, v in pea.writes if v]
    # mode, procedure, the parameter in its own mode, Apply, and the command last
    assert written == ["Dosing.StateAutOp", "Dosing.SrcExtOp", "Dosing.ProcedureExt",
                       "Rate.StateAutOp", "Rate.SrcExtOp", "Rate.VExt", "Rate.ApplyExt",
                       "Dosing.CommandExt"]
    assert await client(pea, clock).run(Command.STOP) is State.STOPPED
    assert await client(pea, clock).run(Command.RESET) is State.IDLE


async def test_start_selects_the_default_procedure() -> None:
    pea, clock = MemoryPea(), FakeTime()
    pea.machine.request_procedure(2)  # an operator left another one requested
    await client(pea, clock).run(Command.START)
    assert pea.machine.procedure_cur == 1


async def test_the_level_channel_is_used_when_the_pea_asks_for_it() -> None:
    pea, clock = MemoryPea(), FakeTime()
    pea.values["Dosing.StateChannel"] = True
    await client(pea, clock).ensure_automatic_external()
    assert ("Dosing.StateAutAut", True) in pea.writes
    assert pea.values["Dosing.StateAutAct"] is True


async def test_a_disabled_command_is_not_sent_and_names_state_and_enabled() -> None:
    pea, clock = MemoryPea(), FakeTime()
    with pytest.raises(CommandNotEnabled, match="Resume is not enabled: Dosing is in Idle") as exc:
        await client(pea, clock).run(Command.RESUME)
    assert exc.value.state is State.IDLE
    assert Command.START in exc.value.enabled and Command.RESUME not in exc.value.enabled
    assert not [t for t, _ in pea.writes if t.endswith("CommandExt")]


async def test_a_failed_state_ends_the_wait_at_once() -> None:
    pea, clock = MemoryPea(), FakeTime()
    pea.abort_on_start = True
    with pytest.raises(ServiceStateError, match="went to Aborted while waiting for Execute") as e:
        await client(pea, clock, timeout=60).run(Command.START)
    assert e.value.state is State.ABORTED
    assert clock.t == 0  # failed on the first read, not after the timeout


async def test_failed_states_on_the_way_or_at_the_start_are_no_failure() -> None:
    pea, clock = MemoryPea(), FakeTime()
    c = client(pea, clock)
    await c.run(Command.START)
    gate = asyncio.Event()

    async def stopping(ctx: WorkContext) -> None:
        await gate.wait()

    pea.machine.set_work(State.STOPPING, stopping)
    clock.on_sleep = lambda n: gate.set() if n == 3 else None
    seen: list[State] = []
    real_state = c.state

    async def spy() -> State | None:
        state = await real_state()
        if state is not None:
            seen.append(state)
        return state

    c.state = spy  # type: ignore[method-assign]
    assert await c.run(Command.STOP) is State.STOPPED
    assert State.STOPPING in seen  # passed on the way, not taken for a failure
    # waiting for Idle from Stopped: Stopped is where it began, not a failure
    seen.clear()
    clock.on_sleep = lambda n: pea.command(Command.RESET) if n == 5 else None
    assert await c.wait_for_state([State.IDLE], start_state=State.STOPPED) is State.IDLE
    assert seen[0] is State.STOPPED
    await pea.machine.aclose()


async def test_every_wait_is_bounded_on_the_injected_clock() -> None:
    # an hour of timeout would hang the test if any wait used the process's own clock
    pea, clock = MemoryPea(), FakeTime()
    pea.locked.add(SERVICE)
    c = client(pea, clock, timeout=3600)
    with pytest.raises(ModeRefused, match=r"Dosing did not switch to Automatic within 3600 s "
                                          r"after StateAutOp=true \(.*StateOpAct=True"):
        await c.ensure_automatic_external()
    assert clock.t >= 3600
    pea.locked.clear()
    await c.ensure_automatic_external()
    await c.send_command(Command.START)
    clock.t = 0.0
    with pytest.raises(ServiceTimeout, match=r"did not reach Held within 3600 s; "
                                             r"last seen Execute"):
        await c.wait_for_state([State.HELD])
    assert clock.t >= 3600


async def test_refused_procedure_and_parameter() -> None:
    pea, clock = MemoryPea(), FakeTime()
    c = client(pea, clock, timeout=2)
    with pytest.raises(MtpError, match=r"Dosing has no procedure id 7 \(procedures: "
                                       r"Continuous \(1\), Volume \(2\)\)"):
        await c.select_procedure(7)
    with pytest.raises(MtpError, match=r"unknown procedure 'Volumes'.*did you mean 'Volume'"):
        c.procedure_id("Volumes")
    await c.ensure_automatic_external()
    await c.send_command(Command.START)
    pea.locked.add(SERVICE)  # a PEA that ignores ProcedureExt
    with pytest.raises(ModeRefused, match=r"did not accept procedure Volume \(id 2\).*"
                                          r"Dosing is in Execute"):
        await c.select_procedure(2)
    pea.locked.clear()
    pea.locked.add("Rate")
    with pytest.raises(ModeRefused, match="Rate did not switch to Automatic"):
        await c.apply_parameters({"Rate": 1.0})
    with pytest.raises(MtpError, match="parameter Flow has no VExt"):
        await c.apply_parameters({"Flow": 1.0})

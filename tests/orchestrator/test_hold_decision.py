"""A hold for an operator's decision is not ended by a cause that clears (issue #16's
fail-safe rules): a step whose command failed as a module's link was lost holds the recipe
for a decision, and the link's return, which unholds a recipe held only for the link,
must not run the step (and send its command) again with no one having decided. Seen in
the station's browser test: 'R2.Tempering Start' failed with R2's link, the link came
back, the recipe unheld by itself and the Start was sent again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modulecontrol.drivers import DriverError
from modulecontrol.events import EventKind
from modulecontrol.orchestrator import RunResult
from modulecontrol.orchestrator._holds import HoldArbiter
from modulecontrol.statemachine import (
    Channel,
    Command,
    OperationMode,
    Procedure,
    ServiceStateMachine,
    SourceMode,
    State,
)
from tests.orchestrator.test_orchestrator import Rig, _close, _orchestrator, rig  # noqa: F401


def _recipe() -> tuple[ServiceStateMachine, HoldArbiter, list[Command]]:
    m = ServiceStateMachine("recipe", procedures=[Procedure(1, "r", self_completing=False,
                                                            is_default=True)],
                            operation_mode=OperationMode.AUTOMATIC,
                            source_mode=SourceMode.EXTERNAL)
    sent: list[Command] = []

    def command(cmd: Command, reason: str) -> bool:
        if m.check(cmd, Channel.EXTERNAL) is not None:
            return False
        sent.append(cmd)
        m.command(cmd, Channel.EXTERNAL)
        return True

    return m, HoldArbiter(m, command, 5.0), sent


async def _settle(m: Any, *states: State) -> State:
    async with asyncio.timeout(10):
        state: State = await m.wait_for(*states)
        return state


async def test_a_link_that_comes_back_does_not_end_a_hold_for_a_decision() -> None:
    m, holds, sent = _recipe()
    m.command(Command.START, Channel.EXTERNAL)
    await _settle(m, State.EXECUTE)
    holds.request("module:R2", "R2: connection lost")  # the link: a cause that clears
    await _settle(m, State.HELD)
    holds.await_decision("R2.Tempering start: R2 Start: connection lost")  # the step
    holds.release("module:R2", auto=True)
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert m.state is State.HELD and Command.UNHOLD not in sent
    assert holds.decision is not None and not holds.held
    # the operator decides: resumed, and from then on causes unhold as before
    holds.decided()
    m.command(Command.UNHOLD, Channel.EXTERNAL)
    await _settle(m, State.EXECUTE)
    holds.request("module:R2", "R2: connection lost")
    await _settle(m, State.HELD)
    holds.release("module:R2", auto=True)
    assert await _settle(m, State.EXECUTE) is State.EXECUTE
    assert sent == [Command.HOLD, Command.HOLD, Command.UNHOLD]


async def test_a_decision_awaited_while_holding_is_kept_once_held() -> None:
    """The cause clears while the hold is still under way (Holding): the unhold that would
    follow once Held is not commanded either."""
    m, holds, sent = _recipe()
    m.command(Command.START, Channel.EXTERNAL)
    await _settle(m, State.EXECUTE)
    holds.request("module:R2", "R2: connection lost")
    holds.await_decision("a step failed")
    for _ in range(5):
        await asyncio.sleep(0)
        if m.state is State.HOLDING:
            break
    holds.release("module:R2", auto=True)
    await _settle(m, State.HELD)
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert m.state is State.HELD and Command.UNHOLD not in sent


@pytest.mark.parametrize("resumed_by", ["operator", "link"])
async def test_a_command_whose_answer_was_lost_is_verified_after_the_resume(
        rig: Rig, monkeypatch: pytest.MonkeyPatch, resumed_by: str) -> None:  # noqa: F811
    """The pump carried out the Start, its answer was lost with the link: the recipe holds;
    resumed (by the operator, or by the link's return: the failure was the link, not a
    step to decide on), the step finds the pump in Execute and moves on instead of sending
    Start again (which a PEA refuses in Execute, holding the run again)."""
    orch = await _orchestrator(rig.write("1 min"), speed=600.0)
    svc = orch.proxies["P1"].services["Dosing"]
    command = svc.command
    lost: list[Command] = []

    async def answer_lost(cmd: Command, **kw: Any) -> None:
        await command(cmd, **kw)
        if cmd is Command.START and not lost:
            lost.append(cmd)
            raise DriverError("P1: connection lost: no answer within 0.3 s")

    monkeypatch.setattr(svc, "command", answer_lost)
    task = asyncio.create_task(orch.run())
    try:
        await _settle(orch.machine, State.HELD)
        assert any("connection lost" in r for r in orch.held_by()), orch.held_by()
        assert orch.awaits_operator()
        # carried out, as the pump reports (held with the recipe's hold)
        await _settle(svc, State.EXECUTE, State.HELD)
        if resumed_by == "operator":
            orch.command(Command.UNHOLD)
        else:  # the link's hold (supervisor's module cause), then its return
            orch.holds.request("module:P1", "P1: connection lost")
            orch.holds.release("module:P1", auto=True)
        async with asyncio.timeout(30):
            assert await task is RunResult.COMPLETED
    finally:
        if not task.done():
            task.cancel()
        await _close(orch)
    starts = [e for e in orch.log.of_kind(EventKind.COMMAND)
              if e.source == "P1.Dosing" and e.data.get("command") == "Start"]
    assert len(starts) == 1
    assert any("was carried out; not sent again" in e.message
               for e in orch.log.of_kind(EventKind.MESSAGE))

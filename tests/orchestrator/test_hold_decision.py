"""A hold for an operator's decision is not ended by a cause that clears (issue #16's
fail-safe rules): a step whose command failed as a module's link was lost holds the recipe
for a decision, and the link's return, which unholds a recipe held only for the link,
must not run the step (and send its command) again with no one having decided. Seen in
the station's browser test: 'R2.Tempering Start' failed with R2's link, the link came
back, the recipe unheld by itself and the Start was sent again."""

from __future__ import annotations

import asyncio

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


async def _settle(m: ServiceStateMachine, *states: State) -> State:
    async with asyncio.timeout(10):
        return await m.wait_for(*states)


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

"""Operator commands on a running recipe from each of its resting states, and determinism."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from modulecontrol.events import EventKind
from modulecontrol.orchestrator import Orchestrator, RunResult
from modulecontrol.statemachine import Command, State
from tests._poll import until
from tests.orchestrator.test_orchestrator import Rig, _close, _orchestrator, rig  # noqa: F401

# (state to reach first, command, state expected, final result if the run then ends)
CASES = [
    (State.EXECUTE, Command.HOLD, State.HELD),
    (State.EXECUTE, Command.PAUSE, State.PAUSED),
    (State.EXECUTE, Command.STOP, State.STOPPED),
    (State.EXECUTE, Command.ABORT, State.ABORTED),
    (State.HELD, Command.UNHOLD, State.EXECUTE),
    (State.HELD, Command.STOP, State.STOPPED),
    (State.HELD, Command.ABORT, State.ABORTED),
    (State.PAUSED, Command.RESUME, State.EXECUTE),
    (State.PAUSED, Command.STOP, State.STOPPED),
    (State.PAUSED, Command.ABORT, State.ABORTED),
]


async def _reach(orch: Orchestrator, state: State) -> None:
    for _ in range(500):
        if orch.progress.step == "campaign":
            break
        await asyncio.sleep(0.01)
    if state is State.HELD:
        orch.command(Command.HOLD, "test")
    elif state is State.PAUSED:
        orch.command(Command.PAUSE, "test")
    await asyncio.wait_for(orch.machine.wait_for(state), 10)


@pytest.mark.parametrize(("start", "command", "expected"), CASES,
                         ids=[f"{s.label}-{c.label}" for s, c, _ in CASES])
async def test_command_from_state(rig: Rig, start: State, command: Command,  # noqa: F811
                                  expected: State) -> None:
    orch = await _orchestrator(rig.write("30 min"), speed=300.0)
    task = asyncio.create_task(orch.run())
    try:
        await _reach(orch, start)
        orch.command(command, "test")
        await asyncio.wait_for(orch.machine.wait_for(expected), 10)
        pump = orch.proxies["P1"].services["Dosing"]
        if expected is State.HELD:
            assert pump.state is State.HELD  # hold fans out to the module services
        if expected is State.PAUSED:
            assert pump.state is State.EXECUTE  # pause freezes only the sequence
        if expected in (State.STOPPED, State.ABORTED):
            result = await asyncio.wait_for(task, 10)
            assert result is (RunResult.STOPPED if expected is State.STOPPED
                              else RunResult.ABORTED)
            assert pump.state is expected
            assert rig.pump.store.get(1, "coil", 0) == [0]
        else:
            orch.command(Command.ABORT, "end of test")
            assert await asyncio.wait_for(task, 10) is RunResult.ABORTED
    finally:
        if not task.done():
            task.cancel()
        await _close(orch)


async def test_command_not_enabled_is_refused(rig: Rig) -> None:  # noqa: F811
    orch = await _orchestrator(rig.write("30 min"), speed=300.0)
    task = asyncio.create_task(orch.run())
    try:
        await _reach(orch, State.EXECUTE)
        assert not orch.try_command(Command.RESUME, "test")  # not enabled in Execute
        assert orch.machine.state is State.EXECUTE
        orch.command(Command.ABORT, "end of test")
        await asyncio.wait_for(task, 10)
    finally:
        if not task.done():
            task.cancel()
        await _close(orch)


async def test_same_recipe_gives_same_event_sequence(rig: Rig, tmp_path: Path) -> None:  # noqa: F811
    """Kinds, sources and messages in the same order on two runs (times differ)."""
    runs: list[list[tuple[str, str, str]]] = []
    for _ in range(2):
        orch = await _orchestrator(rig.write("5 min"), speed=600.0)
        try:
            assert await asyncio.wait_for(orch.run(), 20) is RunResult.COMPLETED
        finally:
            await _close(orch)
        runs.append([e.brief() for e in orch.log.events if e.kind != "service_state"])
    assert runs[0] == runs[1]


FAILING = """\
kind: Recipe
name: failing-step
version: 1.0.0
plant: plant.yaml
procedure:
  - name: start
    steps:
      - name: dose
        service: {module: P1, service: Dosing, procedure: Volume,
                  parameters: {FlowSP: 1 mL/min, VolumeSP: 5 mL}}
        timeout: 1 min
        on_timeout: hold
      - name: campaign
        wait: {duration: 20 min}
"""


async def test_a_failed_step_holds_before_it_is_tried_again(rig: Rig) -> None:  # noqa: F811
    """A step that fails with handler ``hold`` (a timeout here; the delivered volume never
    comes, the device is no pump) is tried again only after
    the operator's resume: not sent again at once while the hold was still being carried
    out (the bench's records showed 'SP1.Dosing start' failing three times in 5 ms, its
    Start sent three times, before the recipe was Holding)."""
    path = rig.write()
    path.write_text(FAILING)
    orch = await _orchestrator(path)
    task = asyncio.create_task(orch.run())
    try:
        assert await until(lambda: orch.machine.state is State.HELD, 30) is not None
        sent = [e for e in orch.log.of_kind(EventKind.COMMAND)
                if e.source == "P1.Dosing" and e.data.get("command") == "Start"]
        failed = orch.log.of_kind(EventKind.STEP_FAILED, EventKind.STEP_TIMEOUT)
        assert len(sent) == 1 and len(failed) == 1, (sent, failed)
        # the station and the API say why: no interlock or lost module holds it, the step's
        # decision does (it showed an empty list)
        assert orch.status()["awaits_operator"]
        (why,) = orch.status()["held_by"]
        assert why.startswith(failed[0].source) and "timed out" in why, why
        assert orch.position()["held_by"] == [why]  # and a resumed run says so again
        orch.command(Command.UNHOLD, "operator")  # resume: the step runs again
        assert await until(lambda: orch.machine.state is State.HELD, 30) is not None
    finally:
        orch.command(Command.ABORT, "test over")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        await _close(orch)

"""A run taken up where a previous process left it (issue #17): the procedure resumes at
its position against the modules as they are, each step kind as RESUMABILITY declares,
over real Modbus servers on 127.0.0.1; the position itself round-trips exactly."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modulecontrol.clock import Clock
from modulecontrol.events import EventKind
from modulecontrol.orchestrator import (
    OperatorChannel,
    Orchestrator,
    Position,
    Resume,
    RunResult,
)
from modulecontrol.proxy import ProxyOptions, proxies_for
from modulecontrol.recipe import load_recipe
from modulecontrol.statemachine import Command, State
from tests.orchestrator.test_orchestrator import Rig, _close, _orchestrator, rig  # noqa: F401

_keys = st.text(alphabet="abcdefgh0123456789/", min_size=1, max_size=12)
_leaf = st.fixed_dictionaries({
    "kind": st.sampled_from(["wait", "service", "set", "prompt", "optimize"]),
    "t0": st.floats(0, 1e7), "elapsed": st.floats(0, 1e7),
    "phase": st.sampled_from(["started", "commanded"])})


@given(st.sampled_from(["procedure", "cleanup"]), st.integers(0, 50),
       st.dictionaries(_keys, st.integers(0, 100)), st.dictionaries(_keys, st.integers(0, 1000)),
       st.dictionaries(_keys, _leaf))
def test_a_position_round_trips(section: str, block: int, cursors: dict[str, int],
                                iterations: dict[str, int],
                                leaves: dict[str, dict[str, Any]]) -> None:
    pos = Position(section, block, cursors, iterations, leaves)
    assert Position.from_dict(pos.as_dict()) == pos


@given(st.dictionaries(st.text(max_size=8), st.integers() | st.text() | st.none()))
def test_anything_else_is_refused_with_a_clear_error(data: dict[str, Any]) -> None:
    with contextlib.suppress(ValueError):
        Position.from_dict(data)  # never another exception
        assert {"section", "block", "cursors", "iterations", "leaves"} <= set(data)


async def _crash(orch: Orchestrator, task: asyncio.Task[RunResult]) -> dict[str, Any]:
    """The process dies: its position as last written, its links gone, nothing commanded."""
    position = copy.deepcopy(orch.position())
    procedure = orch._procedure  # the process dies with all its tasks
    for t in (task, procedure):
        if t is not None:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
    await _close(orch)
    return position


def _not_executing(orch: Orchestrator, t0: float, t1: float) -> float:
    """Simulated seconds between ``t0`` and ``t1`` the recipe spent outside Execute (held
    on a lost link): a wait does not count them, by design."""
    out, since = 0.0, None
    for e in orch.log.of_kind(EventKind.RECIPE_STATE):
        if e.data["new"] != State.EXECUTE.label and since is None:
            since = max(e.t, t0)
        elif e.data["new"] == State.EXECUTE.label and since is not None:
            out += max(0.0, min(e.t, t1) - since)
            since = None
    return out + (max(0.0, t1 - since) if since is not None else 0.0)


async def _taken_up(rig: Rig, position: dict[str, Any], gap: float,  # noqa: F811
                    operator: OperatorChannel | None = None,
                    late: float | None = None) -> Orchestrator:
    """``late``: simulated seconds from the gap's measurement to the orchestrator's start
    (the record read, the twin replayed), which count into the gap too."""
    vr = load_recipe(rig.folder / "recipe.yaml")
    proxies = proxies_for(vr.plant, options=ProxyOptions(
        poll_interval=0.02, complete_poll=0.01, adopt_running=True))
    for p in proxies.values():
        await p.start()
    clock = Clock.scaled(600.0)
    measured_at = None if late is None else clock.now() - late
    return Orchestrator(vr, proxies, clock=clock, tick=2.0,
                        operator=operator or OperatorChannel(auto_answer="ok"),
                        resume=Resume(position, gap, measured_at=measured_at))


@pytest.mark.parametrize(("gap", "late"), [(300.0, None), (60.0, 240.0)])
async def test_a_run_taken_up_in_its_wait_goes_on_where_it_was(
        rig: Rig, gap: float, late: float | None) -> None:  # noqa: F811
    """The wait counts the gap: 300 s measured at the restart, or 60 s measured then and
    240 s more until the procedure was taken up (in the service, the record read and the
    twin replayed: counted from the 150x clock, they had made a 2 h lot 12 min longer)."""
    orch = await _orchestrator(rig.write("20 min"), speed=600.0)
    task = asyncio.create_task(orch.run())
    try:
        for _ in range(2000):
            if orch.progress.step == "campaign" and orch.progress.step_elapsed > 120:
                break
            await asyncio.sleep(0.01)
        assert orch.progress.step == "campaign"
    finally:
        position = await _crash(orch, task)
    assert rig.pump.store.get(1, "coil", 0) == [1], "the pump stopped with its controller"
    leaf = position["interpreter"]["leaves"]["procedure/0/steps/2"]
    assert leaf["kind"] == "wait" and leaf["elapsed"] > 0

    again = await _taken_up(rig, position, gap=gap, late=late)
    # read from the devices, written nowhere: both services run
    assert again.proxies["P1"].services["Dosing"].state is State.EXECUTE
    assert again.proxies["V1"].services["Divert"].state is State.EXECUTE
    try:
        assert await asyncio.wait_for(again.run(), 30) is RunResult.COMPLETED
    finally:
        await _close(again)
    started = [e.source for e in again.log.of_kind(EventKind.STEP_STARTED)]
    assert started == ["campaign", "stop_feed", "confirm"]  # feed and to_product not again
    assert EventKind.RUN_STARTED not in [e.kind for e in again.log.events]
    starts = [e for e in again.log.of_kind(EventKind.COMMAND) if e.data.get("command") == "Start"]
    assert not starts
    # the wait counted the time before the crash and the gap: what is left of 20 min, in
    # Execute time (a read timed out on a loaded machine holds the run a while, CI)
    begun = next(e for e in again.log.of_kind(EventKind.STEP_STARTED) if e.source == "campaign")
    ended = next(e for e in again.log.of_kind(EventKind.STEP_FINISHED) if e.source == "campaign")
    executing = ended.t - begun.t - _not_executing(again, begun.t, ended.t)
    assert executing <= 1200 - leaf["elapsed"] - 300 + 60, [
        (round(e.t, 1), e.kind.value, e.source, e.message) for e in again.log.events]
    assert rig.pump.store.get(1, "coil", 0) == [0]  # the recipe stopped the feed at its end


async def test_an_unverifiable_command_holds_for_the_operator(rig: Rig) -> None:  # noqa: F811
    orch = await _orchestrator(rig.write("5 min"), speed=600.0)
    task = asyncio.create_task(orch.run())
    try:
        for _ in range(2000):
            if orch.progress.step == "campaign":
                break
            await asyncio.sleep(0.01)
    finally:
        position = await _crash(orch, task)
    # as if it died right after sending the feed's Start, which the pump never carried out
    pos = position["interpreter"]
    pos["cursors"] = {"procedure/0/steps": 0}
    pos["leaves"] = {"procedure/0/steps/0": {"kind": "service", "t0": position["t"],
                                             "elapsed": 0.0, "phase": "commanded"}}
    position["services"] = {}
    rig.pump.store.set(1, "coil", 0, [0])
    rig.valve.store.set(1, "coil", 0, [0])  # nor did it reach to_product

    operator = OperatorChannel(auto_answer="ok")
    again = await _taken_up(rig, position, gap=10.0, operator=operator)
    assert again.proxies["P1"].services["Dosing"].state is State.IDLE
    task = asyncio.create_task(again.run())
    try:
        await asyncio.wait_for(again.machine.wait_for(State.HELD), 10)
        why = [e.data.get("reason", "") for e in again.log.of_kind(EventKind.COMMAND)
               if e.data.get("command") == "Hold"]
        assert any("Start of P1.Dosing was sent before the restart" in w
                   and "cannot be verified" in w for w in why), why
        assert rig.pump.store.get(1, "coil", 0) == [0]  # nothing sent while it waits
        again.command(Command.UNHOLD, "operator: send it again")
        assert await asyncio.wait_for(task, 30) is RunResult.COMPLETED
    finally:
        if not task.done():
            task.cancel()
        await _close(again)
    started = [e.source for e in again.log.of_kind(EventKind.STEP_STARTED)]
    assert started[:2] == ["feed", "feed"] and "campaign" in started
    assert any(e.data.get("command") == "Start" and e.source == "P1.Dosing"
               for e in again.log.of_kind(EventKind.COMMAND))


def test_every_step_kind_declares_how_it_resumes() -> None:
    from modulecontrol.orchestrator import RESUMABILITY
    from modulecontrol.recipe._model import STEP_CLASSES

    assert set(RESUMABILITY) == set(STEP_CLASSES)

"""The recipe's Hold, Stop and Abort fan out in the plant's shutdown order, stage by stage:
the feed has stopped before the valve behind it moves, whatever order the recipe started
them in; Unhold restarts in the reverse order. Real Modbus servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from modulecontrol.events import Event, EventKind
from modulecontrol.orchestrator import Orchestrator, RunResult
from modulecontrol.statemachine import Command, State
from tests.orchestrator.test_orchestrator import PLANT, Rig, _close, _orchestrator, rig  # noqa: F401

# The valve is started before the feed, so the order of starting (the order the recipe's
# services were used in) would stop the valve first.
RECIPE = """\
kind: Recipe
name: order-recipe
version: 1.0.0
plant: plant.yaml
procedure:
  - name: start
    steps:
      - name: to_product
        service: {module: V1, service: Divert, procedure: ToProduct}
      - name: feed
        service: {module: P1, service: Dosing, procedure: Continuous,
                   parameters: {FlowSP: 1 mL/min}}
      - name: campaign
        wait: {duration: 2 h}
"""


def _write(rig: Rig, shutdown: str = "") -> Path:  # noqa: F811
    (rig.folder / "plant.yaml").write_text(
        PLANT.format(p1=rig.pump.port, v1=rig.valve.port) + shutdown)
    path = rig.folder / "recipe.yaml"
    path.write_text(RECIPE)
    return path


def _first(events: list[Event], kind: EventKind, module: str, *, new: str | None = None,
           source: str | None = None) -> int:
    """Sequence number of the first event of ``kind`` about ``module``."""
    for ev in events:
        if ev.kind is not kind:
            continue
        if kind is EventKind.SERVICE_STATE:
            if ev.data["module"] == module and (new is None or ev.data["new"] == new):
                return ev.seq
        elif ev.source == (source or module):
            return ev.seq
    raise AssertionError(f"no {kind.value} of {module} ({new or source})")


async def _feeding(orch: Orchestrator) -> asyncio.Task[RunResult]:
    task = asyncio.create_task(orch.run())
    for _ in range(1000):
        if orch.progress.step == "campaign":
            return task
        await asyncio.sleep(0.01)
    raise AssertionError("the recipe did not reach its campaign step")


@pytest.mark.parametrize("shutdown", ["", "shutdown:\n  - [P1]\n  - [V1]\n"],
                         ids=["derived", "declared"])
async def test_stop_stops_the_feed_before_the_valve(rig: Rig, shutdown: str) -> None:  # noqa: F811
    orch = await _orchestrator(_write(rig, shutdown), speed=300.0)
    assert orch.stages == [["P1"], ["V1"]]
    try:
        task = await _feeding(orch)
        orch.command(Command.STOP, "test")
        assert await asyncio.wait_for(task, 20) is RunResult.STOPPED
    finally:
        await _close(orch)
    ev = orch.log.events
    feed_stopped = _first(ev, EventKind.SERVICE_STATE, "P1", new="Stopped")
    valve_stopping = _first(ev, EventKind.SERVICE_STATE, "V1", new="Stopping")
    assert feed_stopped < valve_stopping
    assert orch.end_reason == "test"


async def test_abort_puts_the_feed_in_its_safe_state_before_the_valve_moves(
        rig: Rig) -> None:  # noqa: F811
    orch = await _orchestrator(_write(rig), speed=300.0)
    try:
        task = await _feeding(orch)
        orch.command(Command.ABORT, "test")
        assert await asyncio.wait_for(task, 20) is RunResult.ABORTED
    finally:
        await _close(orch)
    ev = orch.log.events
    feed_safe = _first(ev, EventKind.SAFE_STATE, "P1")
    feed_aborted = _first(ev, EventKind.SERVICE_STATE, "P1", new="Aborted")
    valve_aborting = _first(ev, EventKind.SERVICE_STATE, "V1", new="Aborting")
    assert feed_aborted < feed_safe < valve_aborting
    assert rig.pump.store.get(1, "coil", 0) == [0]  # the pump's safe state: not running


async def test_hold_follows_the_order_and_unhold_reverses_it(rig: Rig) -> None:  # noqa: F811
    orch = await _orchestrator(_write(rig), speed=300.0)
    try:
        task = await _feeding(orch)
        orch.command(Command.HOLD, "test")
        await asyncio.wait_for(orch.machine.wait_for(State.HELD), 20)
        orch.command(Command.UNHOLD, "test")
        await asyncio.wait_for(orch.machine.wait_for(State.EXECUTE), 20)
        orch.command(Command.ABORT, "end of test")
        await asyncio.wait_for(task, 20)
    finally:
        await _close(orch)
    ev = orch.log.events
    assert (_first(ev, EventKind.SERVICE_STATE, "P1", new="Held")
            < _first(ev, EventKind.SERVICE_STATE, "V1", new="Holding"))
    assert (_first(ev, EventKind.SERVICE_STATE, "V1", new="Unholding")
            < _first(ev, EventKind.SERVICE_STATE, "P1", new="Unholding"))

"""Fail safe, never silent (issue #14, finding 5): supervision that cannot judge the plant
acts as if the plant were unsafe, and says why.

Real components: the orchestrator supervises proxies polling Modbus TCP servers on
127.0.0.1 (the rig of test_orchestrator.py). The module's fault reaction is switched off
(``on_comm_loss: ignore``) so that what holds or aborts the recipe is the interlock alone.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from modulecontrol.clock import Clock
from modulecontrol.events import Event, EventKind
from modulecontrol.orchestrator import OperatorChannel, Orchestrator, RunResult
from modulecontrol.proxy import ProxyOptions, proxies_for
from modulecontrol.recipe import load_recipe
from modulecontrol.statemachine import State
from tests._poll import until
from tests.orchestrator.test_orchestrator import PLANT, Rig, _close, _regs, rig

__all__ = ["rig"]  # the fixture, imported to be used here

RECIPE = """\
kind: Recipe
name: fail-safe
version: 1.0.0
plant: plant.yaml
interlocks:
  - {{name: overpressure, when: "P1.Pressure > 50 bar", action: {action}, resume: auto}}
alarms:
  - {{name: p1_high, signal: P1.Pressure, high: 40 bar, priority: high}}
procedure:
  - name: start
    steps:
      - name: feed
        service: {{module: P1, service: Dosing, procedure: Continuous,
                   parameters: {{FlowSP: 1 mL/min}}}}
      - name: campaign
        wait: {{duration: 20 min}}
      - name: stop_feed
        service: {{module: P1, service: Dosing, command: stop}}
"""


async def _start(rig: Rig, action: str) -> tuple[Orchestrator, asyncio.Task[RunResult]]:
    (rig.folder / "plant.yaml").write_text(PLANT.format(p1=rig.pump.port, v1=rig.valve.port))
    path = rig.folder / "recipe.yaml"
    path.write_text(RECIPE.format(action=action))
    vr = load_recipe(path)
    proxies = proxies_for(vr.plant, options=ProxyOptions(poll_interval=0.02, complete_poll=0.01))
    for p in proxies.values():
        await p.start()
    orch = Orchestrator(vr, proxies, clock=Clock.scaled(300.0), tick=2.0,
                        operator=OperatorChannel(auto_answer="ok"), on_comm_loss="ignore")
    task = asyncio.create_task(orch.run())
    assert await until(lambda: orch.progress.step == "campaign", 5) is not None
    return orch, task


def _kinds(orch: Orchestrator, *kinds: EventKind) -> list[Event]:
    return orch.log.of_kind(*kinds)


async def test_an_interlock_that_cannot_be_evaluated_trips_its_action(rig: Rig) -> None:
    """NaN pressure: the interlock's action (abort) is taken, and the event says why. On the
    code before, an unknown condition counted as not tripped and the recipe ran on."""
    orch, task = await _start(rig, "abort")
    try:
        rig.pump.store.set(1, "input", 2, _regs(math.nan))
        assert await asyncio.wait_for(task, 10) is RunResult.ABORTED
    finally:
        if not task.done():
            task.cancel()
        await _close(orch)
    (trip,) = _kinds(orch, EventKind.INTERLOCK_TRIPPED)
    assert trip.source == "overpressure" and trip.data["action"] == "abort"
    assert trip.message.startswith("cannot evaluate: P1.Pressure bad quality")
    assert "P1.Pressure" in trip.data["reason"]


async def test_an_unknown_interlock_holds_until_it_evaluates_false(rig: Rig) -> None:
    """Tripped by a bad value, the interlock stays tripped while the value stays bad and
    clears (resume: auto) only once the condition evaluates false again. The alarm on the
    same signal is raised as "cannot evaluate", not silently left quiet."""
    orch, task = await _start(rig, "hold")
    try:
        rig.pump.store.set(1, "input", 2, _regs(math.nan))
        await asyncio.wait_for(orch.machine.wait_for(State.HELD), 5)
        held_at = orch.clock.now()
        # several more supervision ticks (2 s each) with the value still bad: still tripped
        assert await until(lambda: orch.clock.now() > held_at + 10.0, 5) is not None
        assert orch.machine.state is State.HELD
        assert not _kinds(orch, EventKind.INTERLOCK_CLEARED)
        rig.pump.store.set(1, "input", 2, _regs(10.0))
        await asyncio.wait_for(orch.machine.wait_for(State.EXECUTE), 5)
    finally:
        task.cancel()
        await _close(orch)
    kinds = [e.kind for e in orch.log.events]
    assert kinds.index(EventKind.INTERLOCK_TRIPPED) < kinds.index(EventKind.INTERLOCK_CLEARED)
    raised = [e for e in _kinds(orch, EventKind.ALARM_RAISED) if e.source == "p1_high"]
    assert raised and raised[0].message.startswith("cannot evaluate: P1.Pressure")
    assert raised[0].data["value"] is None and "P1.Pressure" in raised[0].data["reason"]
    cleared = [e for e in _kinds(orch, EventKind.ALARM_CLEARED) if e.source == "p1_high"]
    assert cleared and cleared[0].seq > raised[0].seq


async def test_an_interlock_whose_evaluation_raises_trips(rig: Rig) -> None:
    orch, task = await _start(rig, "abort")
    cond = orch.supervisor.interlocks[0].condition

    def broken(now: float, values: Any) -> bool | None:
        raise RuntimeError("injected evaluation failure")

    cond.update = broken  # type: ignore[method-assign]
    try:
        assert await asyncio.wait_for(task, 10) is RunResult.ABORTED
    finally:
        if not task.done():
            task.cancel()
        await _close(orch)
    (trip,) = _kinds(orch, EventKind.INTERLOCK_TRIPPED)
    assert trip.data["reason"] == "RuntimeError: injected evaluation failure"


async def test_a_supervision_failure_holds_and_is_an_event(rig: Rig) -> None:
    """An exception in the supervision tick (here: the steady-state part) holds the recipe
    with an event naming the error; the other parts still run; a whole good tick releases
    it. On the code before, the tick was skipped with a log line and the recipe ran on."""
    orch, task = await _start(rig, "hold")
    sup = orch.supervisor
    healthy: Callable[[], dict[str, float]] = sup.feed_flows

    def broken() -> dict[str, float]:
        raise RuntimeError("injected supervision failure")

    sup.feed_flows = broken  # type: ignore[method-assign]
    try:
        await asyncio.wait_for(orch.machine.wait_for(State.HELD), 5)
        (failed,) = _kinds(orch, EventKind.SUPERVISION_FAILED)
        assert failed.data["error"] == "steady state: RuntimeError: injected supervision failure"
        # the interlocks are still judged while another part fails
        rig.pump.store.set(1, "input", 2, _regs(80.0))
        assert await until(lambda: bool(_kinds(orch, EventKind.INTERLOCK_TRIPPED)), 5)
        rig.pump.store.set(1, "input", 2, _regs(10.0))
        assert await until(lambda: bool(_kinds(orch, EventKind.INTERLOCK_CLEARED)), 5)
        assert orch.machine.state is State.HELD  # the supervision cause still holds it
        assert len(_kinds(orch, EventKind.SUPERVISION_FAILED)) == 1  # one event, not one a tick
        sup.feed_flows = healthy  # type: ignore[method-assign]
        await asyncio.wait_for(orch.machine.wait_for(State.EXECUTE), 5)
    finally:
        task.cancel()
        await _close(orch)
    (restored,) = _kinds(orch, EventKind.SUPERVISION_RESTORED)
    assert restored.data["was"] == failed.data["error"]


async def test_a_failing_module_listener_is_an_event_once_per_streak(rig: Rig) -> None:
    """A value listener of a proxy (the historian's sample recorder is one) that raises was
    logged only; now the orchestrator records ``listener_failed`` once per streak of
    failures (not at every poll) and the proxy's other listeners still get the values."""
    orch, task = await _start(rig, "hold")
    proxy = orch.proxies["P1"]
    broken = True
    got: list[int] = []

    def recorder(tag: str, values: Any) -> None:
        if broken:
            raise OSError("historian gone")

    proxy.on_values(recorder)
    proxy.on_values(lambda tag, values: got.append(len(values)))
    try:
        assert await until(lambda: len(got) > 5, 5) is not None  # several polls
        broken = False
        n = len(got)
        assert await until(lambda: len(got) > n + 2, 5) is not None
        broken = True
        n = len(got)
        assert await until(lambda: len(got) > n + 2, 5) is not None
    finally:
        task.cancel()
        await _close(orch)
    failures = _kinds(orch, EventKind.LISTENER_FAILED)
    assert len(failures) == 2  # two streaks, however many polls each
    assert failures[0].data == {"listener": recorder.__qualname__, "event": "P1 values",
                                "error": "OSError: historian gone"}

"""The twin beside a run steps in a worker thread: at a simulated line's speed its steps
are seconds of CPU a wall second, and on the event loop they stalled the drivers until
their links timed out. With a real-time clock the supervision's tick does not wait for
them; on the fast clock it does (time stands still meanwhile), so such a run is the same
every time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping

import pytest

from modulecontrol.clock import Clock
from modulecontrol.orchestrator._twin import TwinMonitor
from modulecontrol.recipe import load_recipe
from tests.twin.conftest import ROOT

PURITY = "twin.PAT1.Purity"


def _monitor() -> TwinMonitor:
    vr = load_recipe(ROOT / "recipes" / "lomustine" / "campaign.yaml")
    assert vr.recipe.twin is not None
    return TwinMonitor(vr.recipe.twin, vr, {}, start=0.0)


async def _done(monitor: TwinMonitor) -> None:
    work = monitor._work
    assert work is not None
    async with asyncio.timeout(60):
        await asyncio.wait({work})


async def test_a_tick_on_a_real_time_clock_does_not_wait_for_the_twin(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monitor = _monitor()
    stepped: set[int] = set()
    published: list[tuple[int, float]] = []
    step = monitor.predictor.step

    def spy(inputs: Mapping[str, float]) -> dict[str, float]:
        stepped.add(threading.get_ident())
        return step(inputs)

    monkeypatch.setattr(monitor.predictor, "step", spy)
    monitor.on_values(lambda t, v: published.append((threading.get_ident(), t)))
    clock = Clock.scaled(600.0)
    # the first tick starts the step and returns at once: nothing predicted yet
    assert await monitor.tick(600.0, {}, clock) == {}
    assert monitor._work is not None and not published
    await _done(monitor)
    # the next tick takes its result: 60 steps of 10 s, said on the loop's thread
    values = await monitor.tick(660.0, {}, clock)
    assert PURITY in values and f"{PURITY}.mismatch" in values
    assert [t for _, t in published] == [10.0 * k for k in range(1, 61)]
    assert {i for i, _ in published} == {threading.get_ident()}
    assert stepped and threading.get_ident() not in stepped
    # and started the next one, from where the last ended
    await _done(monitor)
    await monitor.tick(700.0, {}, clock)
    assert published[-1][1] == 660.0


async def test_an_error_of_the_twin_reaches_the_next_tick(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervision holds the run on an error of any of its parts; the twin's, raised in
    the worker thread, is raised in the tick that takes its result."""
    monitor = _monitor()

    def broken(inputs: Mapping[str, float]) -> dict[str, float]:
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(monitor.predictor, "step", broken)
    clock = Clock.scaled(600.0)
    await monitor.tick(60.0, {}, clock)
    await _done(monitor)
    with pytest.raises(ZeroDivisionError):
        await monitor.tick(120.0, {}, clock)
    assert monitor._work is None  # the next tick tries again


async def test_on_the_fast_clock_a_tick_waits_for_the_twin() -> None:
    monitor = _monitor()
    clock = Clock.fast()
    values = await monitor.tick(600.0, {}, clock)
    assert PURITY in values and monitor._work is None
    assert monitor.predictor.time == pytest.approx(600.0)

"""The shared clock: virtual-time ordering, determinism, scaling and holds."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from modulecontrol.clock import Clock, ClockMode


async def _sleepers(clock: Clock) -> list[tuple[str, float]]:
    log: list[tuple[str, float]] = []

    async def worker(name: str, period: float, n: int) -> None:
        for _ in range(n):
            await clock.sleep(period)
            log.append((name, clock.now()))

    await asyncio.gather(worker("a", 3.0, 4), worker("b", 2.0, 6), worker("c", 5.0, 2))
    return log


async def test_fast_mode_wakes_in_time_order_without_wall_time() -> None:
    clock = Clock.fast()
    t0 = time.monotonic()
    log = await _sleepers(clock)
    assert time.monotonic() - t0 < 1.0
    times = [t for _, t in log]
    assert times == sorted(times)
    assert clock.now() == pytest.approx(12.0)
    assert ("c", 10.0) in log and ("b", 12.0) in log


async def test_fast_mode_is_deterministic() -> None:
    assert await _sleepers(Clock.fast()) == await _sleepers(Clock.fast())


async def test_fast_mode_ties_wake_in_registration_order() -> None:
    clock = Clock.fast()
    order: list[str] = []

    async def w(name: str) -> None:
        await clock.sleep(1.0)
        order.append(name)

    await asyncio.gather(*(w(n) for n in "xyz"))
    assert order == ["x", "y", "z"]


async def test_fast_mode_cancelled_sleeper_does_not_block() -> None:
    clock = Clock.fast()
    task = asyncio.create_task(clock.sleep(100.0))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await clock.sleep(1.0)
    assert clock.now() == pytest.approx(1.0)


async def test_hold_keeps_virtual_time_still() -> None:
    clock = Clock.fast()
    seen: list[float] = []

    async def outside_io() -> None:
        async with clock.hold():
            await asyncio.sleep(0.02)  # a real wait, e.g. a socket round trip
            seen.append(clock.now())

    await asyncio.gather(outside_io(), clock.sleep(50.0))
    assert seen == [0.0]
    assert clock.now() == pytest.approx(50.0)


async def test_scaled_clock_runs_faster_than_wall_time() -> None:
    clock = Clock.scaled(200.0)
    t0 = time.monotonic()
    await clock.sleep(4.0)
    wall = time.monotonic() - t0
    assert 0.015 <= wall < 0.5
    assert clock.now() >= 4.0


async def test_sleep_until_past_returns_at_once() -> None:
    clock = Clock.realtime()
    t0 = time.monotonic()
    await clock.sleep_until(-5.0)
    assert time.monotonic() - t0 < 0.05


def test_datetime_mapping_and_validation() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    clock = Clock.fast(start=start)
    assert clock.mode is ClockMode.FAST
    assert clock.datetime(90.0) == start + timedelta(seconds=90)
    assert clock.seconds(start + timedelta(minutes=2)) == 120.0
    with pytest.raises(ValueError, match="scale"):
        Clock.scaled(0.0)


async def test_negative_sleep_is_rejected() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        await Clock.fast().sleep(-1.0)

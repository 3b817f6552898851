"""Scan timing kept by the drivers' poll loop (``ScanStats``): counting, percentiles from the
fixed-size histograms, merging, and the poll loop's handling of an overrunning read."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from typing import Any

import pytest

from modulecontrol.descriptors import ModuleInstance, builtin_types
from modulecontrol.drivers import BaseDriver, ScanStats, TagInfo, TagValue
from modulecontrol.drivers._scan import BINS


def test_counts_and_percentiles() -> None:
    s = ScanStats(0.1, late_after=0.05)
    for ms in range(1, 101):  # 1..100 ms, once each
        s.record(ms / 1000, 0.002)
    assert s.scans == 100 and s.missed == 0 and s.slots == 100
    assert s.late == 50  # 51..100 ms
    assert s.lateness(0.5) == pytest.approx(0.051)  # upper edge of the 50th sample's bin
    assert s.lateness(0.99) == pytest.approx(0.1)
    assert s.lateness(1.0) == s.max_lateness == pytest.approx(0.1)
    assert s.duration(0.5) == pytest.approx(0.002)
    assert math.isnan(ScanStats(0.1).lateness(0.5))


def test_overflow_bin_reports_the_maximum_and_size_is_fixed() -> None:
    s = ScanStats(0.1)
    s.record(5.0, 0.0)
    s.record(float("nan"), 0.0)
    s.record(-0.001, 0.0)  # a wake-up a hair early counts as on time
    assert s.lateness(1.0) == 5.0
    assert len(s.lateness_hist) == BINS + 1
    s.record(0.01, 0.0, ok=False)
    assert s.failed == 1


def test_merge_adds_counts_and_histograms() -> None:
    a, b = ScanStats(0.1), ScanStats(0.1)
    a.record(0.010, 0.001)
    a.missed = 2
    b.record(0.070, 0.003)
    m = ScanStats.merged([a, b])
    assert (m.scans, m.missed, m.late, m.slots) == (2, 2, 1, 4)
    assert m.max_lateness == pytest.approx(0.070)
    assert m.lateness(0.5) == pytest.approx(0.011)
    assert m.total_duration == pytest.approx(0.004)


class _SlowDriver(BaseDriver):
    """A driver whose every read takes ``delay`` s (no I/O)."""

    transport = "serial"

    def __init__(self, delay: float) -> None:
        inst = ModuleInstance.model_validate(
            {"tag": "S1", "type": "SyringePump", "endpoint": {"protocol": "serial",
                                                               "port": "/dev/null"}})
        super().__init__(builtin_types().get("SyringePump"), inst)
        self.delay = delay

    async def _connect(self) -> None:
        return None

    async def _close(self) -> None:
        return None

    async def _read(self, infos: Sequence[TagInfo]) -> dict[str, TagValue]:
        await asyncio.sleep(self.delay)
        return {i.name: TagValue(1.0) for i in infos}

    async def _write(self, info: TagInfo, value: Any) -> None:
        return None


async def test_overrunning_reads_skip_slots_instead_of_bursting() -> None:
    interval = 0.05
    drv = _SlowDriver(delay=2.5 * interval)  # every read overruns two slots
    got: list[int] = []
    five = asyncio.Event()

    def on_values(values: Any) -> None:
        got.append(len(values))
        if len(got) >= 5:
            five.set()

    tag = next(n for n, i in drv.tags.items() if i.readable)
    sub: Any = await drv.subscribe([tag], interval, on_values)
    try:
        async with asyncio.timeout(10):
            await five.wait()
    finally:
        await sub.cancel()
    st: ScanStats = sub.stats
    assert st.scans == len(got) >= 5
    # each overrun passed at least one whole slot, which is counted, not caught up with
    assert st.missed >= st.scans - 1
    # every slot up to the last scan's was scanned or missed: an exact count, not a time
    # (the last scan's end depends on how late its sleeps woke up on a loaded machine)
    assert st.started is not None and st.last_slot is not None
    assert st.slots == round((st.last_slot - st.started) / interval) + 1
    # so a scan is never more than one interval behind its slot
    assert st.max_lateness < interval
    assert st.duration(0.5) >= 2.5 * interval


class _CancelledAtTheEnd(_SlowDriver):
    """A read that completes just as its poll task is cancelled (a close racing a scan)."""

    def __init__(self) -> None:
        super().__init__(delay=0.0)
        self.poll_task: asyncio.Task[Any] | None = None
        self.reads = 0

    async def _read(self, infos: Sequence[TagInfo]) -> dict[str, TagValue]:
        self.reads += 1
        if self.poll_task is not None:
            self.poll_task.cancel()  # delivered while the read's result is already there
        return {i.name: TagValue(1.0) for i in infos}


async def test_a_cancel_racing_a_completed_read_stops_the_poll_loop() -> None:
    drv = _CancelledAtTheEnd()
    tag = next(n for n, i in drv.tags.items() if i.readable)
    sub: Any = await drv.subscribe([tag], 0.01, lambda values: None)
    drv.poll_task = sub._task
    # one cancel is enough: the loop must not go on polling (Python 3.11's wait_for can
    # return a completed read's result and drop the cancellation)
    async with asyncio.timeout(2):
        with contextlib.suppress(asyncio.CancelledError):
            await sub._task
    assert sub._task.cancelled()
    assert drv.reads == 1

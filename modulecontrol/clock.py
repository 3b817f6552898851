"""The shared clock: real time, scaled real time, or as fast as possible (virtual time).

Why one object: the orchestrator and the in-process simulators must agree on "now", or a
recipe step of "hold 30 min" and a reactor's residence time would drift apart in a 600x run.
Everything that waits in simulated time awaits :meth:`Clock.sleep` on the same instance.

In ``fast`` mode time is virtual. A scheduler task advances it to the earliest pending wake-up
only when the event loop has nothing else ready to run, and wakes sleepers in (time,
registration order). So a run of in-process tasks is deterministic and takes no wall time.
Code that waits for something outside the clock (a socket round trip to a simulator server)
wraps the wait in ``async with clock.hold():`` so that virtual time does not jump meanwhile.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import heapq
import itertools
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum

__all__ = ["Clock", "ClockMode"]


class ClockMode(StrEnum):
    """How simulated time relates to wall time."""

    REALTIME = "realtime"
    SCALED = "scaled"
    FAST = "fast"


class Clock:
    """Simulated seconds since start, a wall-datetime mapping and an async ``sleep``.

    Build it with :meth:`realtime`, :meth:`scaled` or :meth:`fast`. ``start`` is the datetime
    that simulated second 0 maps to (default: now, UTC), so records carry plausible datetimes
    even in a run that lasts milliseconds.
    """

    def __init__(
        self,
        mode: ClockMode | str = ClockMode.REALTIME,
        scale: float = 1.0,
        start: _dt.datetime | None = None,
        settle_rounds: int = 20,
    ) -> None:
        self.mode = ClockMode(mode)
        if self.mode is ClockMode.REALTIME:
            scale = 1.0
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"clock scale must be a positive finite number, got {scale!r}")
        if settle_rounds < 1:
            raise ValueError("settle_rounds must be at least 1")
        self.scale = float(scale)
        self.start = start if start is not None else _dt.datetime.now(_dt.UTC)
        self._t0 = time.monotonic()
        self._virtual = 0.0
        self._settle_rounds = settle_rounds
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._scheduler: asyncio.Task[None] | None = None
        self._holds = 0
        self._released: asyncio.Event | None = None

    @classmethod
    def realtime(cls, start: _dt.datetime | None = None) -> Clock:
        """Simulated time equals wall time."""
        return cls(ClockMode.REALTIME, 1.0, start)

    @classmethod
    def scaled(cls, factor: float, start: _dt.datetime | None = None) -> Clock:
        """Simulated time runs ``factor`` times faster than wall time."""
        return cls(ClockMode.SCALED, factor, start)

    @classmethod
    def fast(cls, start: _dt.datetime | None = None) -> Clock:
        """Virtual time that jumps to the next wake-up whenever everybody is waiting."""
        return cls(ClockMode.FAST, 1.0, start)

    # -- reading time --------------------------------------------------------------------
    def now(self) -> float:
        """Simulated seconds since the clock started."""
        if self.mode is ClockMode.FAST:
            return self._virtual
        return (time.monotonic() - self._t0) * self.scale

    def datetime(self, t: float | None = None) -> _dt.datetime:
        """The datetime that simulated time ``t`` (default: now) maps to."""
        return self.start + _dt.timedelta(seconds=self.now() if t is None else t)

    def seconds(self, when: _dt.datetime) -> float:
        """Inverse of :meth:`datetime`: simulated seconds of a datetime."""
        return (when - self.start).total_seconds()

    # -- sharing with another process ----------------------------------------------------
    def anchor(self) -> dict[str, float | str]:
        """What another process on this machine needs to read the same time: the mode,
        the scale, the datetime of second 0 and the monotonic instant of second 0.

        Why the monotonic instant: CLOCK_MONOTONIC is one clock for every process of the
        machine, so a simulated plant in its own process that follows this anchor reads
        exactly the controller's "now", and a controller restarted after a crash that takes
        the plant's anchor continues the same time line (and the same record)."""
        if self.mode is ClockMode.FAST:
            raise ValueError("a fast (virtual) clock cannot be shared with another process: "
                             "its time advances only inside this event loop")
        return {"mode": self.mode.value, "scale": self.scale,
                "start": self.start.isoformat(), "t0": self._t0}

    @classmethod
    def following(cls, anchor: dict[str, float | str]) -> Clock:
        """A clock that reads the same time as the one whose :meth:`anchor` this is."""
        clock = cls(ClockMode.SCALED)
        clock.adopt(anchor)
        return clock

    def adopt(self, anchor: dict[str, float | str]) -> None:
        """Read the same time as the clock whose :meth:`anchor` this is, from now on (a
        follower told of a new speed; a controller reattaching to its plant's time line)."""
        mode = ClockMode(str(anchor["mode"]))
        scale = float(anchor["scale"])
        if mode is ClockMode.FAST:
            raise ValueError("a fast (virtual) clock cannot be followed from another process")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"clock scale must be a positive finite number, got {scale!r}")
        self.mode, self.scale = mode, scale
        self.start = _dt.datetime.fromisoformat(str(anchor["start"]))
        self._t0 = float(anchor["t0"])

    def rescale(self, scale: float) -> None:
        """Change the speed factor from now on; simulated time stays continuous."""
        if self.mode is not ClockMode.SCALED:
            raise ValueError(f"only a scaled clock changes speed, not a {self.mode} one")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"clock scale must be a positive finite number, got {scale!r}")
        now = self.now()
        self.scale = float(scale)
        self._t0 = time.monotonic() - now / self.scale

    # -- waiting -------------------------------------------------------------------------
    async def sleep(self, dt: float) -> None:
        """Wait ``dt`` simulated seconds."""
        if not math.isfinite(dt) or dt < 0:
            raise ValueError(f"sleep duration must be finite and >= 0, got {dt!r}")
        await self.sleep_until(self.now() + dt)

    async def sleep_until(self, t: float) -> None:
        """Wait until simulated time ``t``; returns at once if it has passed.

        Waiting for an absolute time (rather than chaining ``sleep(dt)``) keeps a periodic
        loop free of cumulative drift in real-time modes.
        """
        if self.mode is not ClockMode.FAST:
            delay = (t - self.now()) / self.scale
            await asyncio.sleep(max(delay, 0.0))
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._heap, (max(t, self._virtual), next(self._seq), fut))
        if self._scheduler is None or self._scheduler.done():
            self._scheduler = loop.create_task(self._run_scheduler(), name="clock-scheduler")
        await fut  # a cancelled sleeper leaves a cancelled future that the scheduler skips

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Keep virtual time from advancing while an outside wait is in progress."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            if self._holds == 0 and self._released is not None:
                self._released.set()

    # -- fast-mode scheduler --------------------------------------------------------------
    async def _settle(self) -> None:
        """Yield until no other callback is ready, i.e. every task waits on something."""
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)  # CPython's ready queue; absent on other loops
        for _ in range(self._settle_rounds):
            await asyncio.sleep(0)
            if ready is not None and len(ready) == 0:
                return

    async def _run_scheduler(self) -> None:
        while self._heap:
            await self._settle()
            if self._holds:
                self._released = asyncio.Event()
                await self._released.wait()
                continue
            t, _, fut = heapq.heappop(self._heap)
            if fut.done():
                continue
            self._virtual = max(self._virtual, t)
            fut.set_result(None)
            while self._heap and self._heap[0][0] <= t:
                _, _, other = heapq.heappop(self._heap)
                if not other.done():
                    other.set_result(None)

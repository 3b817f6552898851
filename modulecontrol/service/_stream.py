"""The service's event stream: one sequence number across runs, a retained window, resync.

Every event the service publishes (a run's events, queue changes, operator actions) gets the
next sequence number of the service's life. A client keeps the last number it saw; when it
reconnects it asks for everything after it. The stream keeps the newest ``retain`` events:
if the client's number is older than that window (or from a previous life of the service,
told by ``epoch``), it cannot be caught up event by event and is told to resync, i.e. to
read the snapshot (plant, runs) again and continue from the stream's head. So a client
either gets every event once, in order, or knows that it did not.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One published event; ``run`` is the queue id of the run it belongs to, if any."""

    seq: int
    t: float
    kind: str
    source: str
    message: str
    run: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": "event", "seq": self.seq, "t": self.t, "kind": self.kind,
                "source": self.source, "message": self.message, "run": self.run,
                "data": self.data}


class EventStream:
    """Sequence numbers, the retained window and the wake-up of waiting clients."""

    def __init__(self, retain: int = 10_000) -> None:
        if retain < 1:
            raise ValueError(f"the stream must retain at least one event, not {retain}")
        self.epoch = uuid.uuid4().hex
        """Changes with every start of the service: a sequence number of another life
        means nothing here."""
        self._events: deque[StreamEvent] = deque(maxlen=retain)
        self._seq = 0
        self._changed = asyncio.Event()

    @property
    def head(self) -> int:
        """The sequence number of the newest event (0 before the first)."""
        return self._seq

    def publish(self, t: float, kind: str, source: str, message: str,
                data: dict[str, Any] | None = None, run: int | None = None) -> StreamEvent:
        self._seq += 1
        ev = StreamEvent(self._seq, t, kind, source, message, run, dict(data or {}))
        self._events.append(ev)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return ev

    def since(self, seq: int, limit: int | None = None) -> list[StreamEvent] | None:
        """The events after ``seq`` (oldest first, at most ``limit``), or None if ``seq`` is
        outside the window: older than the oldest retained event, or ahead of the head."""
        if seq < 0 or seq > self._seq:
            return None
        oldest = self._events[0].seq if self._events else self._seq + 1
        if seq < oldest - 1:
            return None
        start = seq - oldest + 1  # index of the first event after seq
        end = len(self._events) if limit is None else min(len(self._events), start + limit)
        return [self._events[i] for i in range(start, end)]

    async def wait(self, after: int, timeout: float) -> None:
        """Return once an event after ``after`` exists, or after ``timeout`` seconds.

        ``asyncio.timeout``, not ``wait_for``: Python 3.11's ``wait_for`` loses a
        cancellation that arrives as the event is set (it returns instead of raising), and
        a consumer looping on :meth:`wait` then never ends (it hung the Sparkplug edge's
        event forwarder, and with it the service's shutdown, once in some ten stops)."""
        if self._seq > after:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            return

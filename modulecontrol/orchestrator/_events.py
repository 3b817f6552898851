"""Events: every step transition, command, write and operator action, in order.

The orchestrator emits events to listeners (the historian, the live view, tests). Each has a
sequence number and the simulated time, so the same recipe and seed on the virtual clock give
the same sequence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    t: float
    kind: str
    source: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def brief(self) -> tuple[str, str, str]:
        """What determinism is judged on: kind, source and message (not times)."""
        return (self.kind, self.source, self.message)


Listener = Callable[[Event], None]


class EventLog:
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.events: list[Event] = []
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, kind: str, source: str, message: str, **data: Any) -> Event:
        ev = Event(len(self.events) + 1, self._now(), kind, source, message, data)
        self.events.append(ev)
        for listener in list(self._listeners):
            try:
                listener(ev)
            except Exception:
                _log.exception("event listener failed on %s", kind)
        return ev

    def of_kind(self, *kinds: str) -> list[Event]:
        return [e for e in self.events if e.kind in kinds]

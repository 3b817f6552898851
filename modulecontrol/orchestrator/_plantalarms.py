"""The plant file's alarms, evaluated whether or not a recipe runs.

A plant-file alarm belongs to the plant, not to a recipe (docs/alarms.md): a line held by
the control service between runs still has flowing pumps and a hot thermostat, so its
limits must be watched then too. One set of :class:`AlarmState` objects per line carries
each alarm across the hand-overs: between runs the line evaluates them here; a run's
supervisor takes the same objects over and gives them back when it ends, so an alarm that
stands across a run start or end is neither cleared nor raised again by the hand-over.

The event wording and the board's feed are the ones the run's supervisor uses
(:func:`alarm_event`, :func:`feed_board`), so an alarm reads the same in a run's record and
between runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modulecontrol.alarms import AlarmBoard
from modulecontrol.descriptors import PlantConfig
from modulecontrol.events import EventKind
from modulecontrol.orchestrator._monitor import AlarmState
from modulecontrol.proxy import ModuleProxy
from modulecontrol.recipe import Alarm, plant_signals


def plant_alarm_specs(config: PlantConfig) -> list[Alarm]:
    """The alarms the plant file declares on its modules, as recipe alarms on their
    signals (``TAG.assembly``), so both are detected by the one detector."""
    out = []
    for m in config.plant.modules:
        for a in m.alarms:
            out.append(Alarm(
                name=a.name, signal=f"{m.tag}.{a.assembly}", high=a.high, low=a.low,
                deadband=a.deadband, on_delay=a.on_delay, priority=a.priority,
                message=a.message, group=a.group, realarm_after=a.realarm_after,
                suppressed_when={f"{m.tag}.{svc}": states
                                 for svc, states in a.suppressed_when.items()}))
    return out


def why_value(signal: str, value: Any, proxies: Mapping[str, ModuleProxy]) -> str:
    """Why ``value`` of ``signal`` cannot be judged (the text of a "cannot evaluate")."""
    if isinstance(value, float):
        return f"{signal} is {value}"
    if value is not None:
        return f"{signal} is not a number ({value!r})"
    proxy = proxies.get(signal.split(".", 1)[0])
    fault = f" ({proxy.fault})" if proxy is not None and proxy.fault else ""
    return f"{signal} bad quality, stale or missing{fault}"


def suppression(spec: Alarm, step: str | None, proxies: Mapping[str, ModuleProxy]) -> str:
    """Why the alarm is suppressed by design now ("" when it is not): in a declared recipe
    step, or while a module service is in a declared state."""
    why = f"in step {step}" if step is not None and step in spec.suppressed_in else ""
    for key, states in spec.suppressed_when.items():
        tag, _, service = key.partition(".")
        proxy = proxies.get(tag)
        svc = proxy.services.get(service) if proxy is not None else None
        if svc is not None and svc.state.label in states:
            why = why or f"{key} is {svc.state.label}"
    return why


def alarm_event(al: AlarmState, change: str | None, value: Any,
                reason: str) -> tuple[EventKind, str, dict[str, Any]] | None:
    """The event of an alarm's change (kind, message, data); None when it did not change.
    ``reason``: why the value cannot be judged (used for ``unknown``)."""
    spec = al.spec
    if change == "raise":
        return (EventKind.ALARM_RAISED, spec.message or f"{spec.signal} out of limits",
                {"priority": spec.priority, "signal": spec.signal, "value": value})
    if change == "unknown":
        return (EventKind.ALARM_RAISED, f"cannot evaluate: {reason}",
                {"priority": spec.priority, "signal": spec.signal, "value": None,
                 "reason": reason})
    if change == "clear":
        return (EventKind.ALARM_CLEARED, f"{spec.signal} back in limits",
                {"priority": spec.priority})
    return None


def feed_board(board: AlarmBoard, al: AlarmState, change: str | None, value: Any, now: float,
               reason: str) -> None:
    """Tell the line's alarm board (the life cycle) what the detector decided."""
    spec = al.spec
    if change in ("raise", "unknown"):
        board.process(spec.name, True, now, value=value, message=(
            spec.message or f"{spec.signal} out of limits" if change == "raise"
            else f"cannot evaluate: {reason}"))
    elif change == "clear":
        board.process(spec.name, False, now, value=value)


@dataclass(frozen=True)
class AlarmEvent:
    """One event of the between-runs evaluation, for the holder of the line to record."""

    kind: EventKind
    source: str
    message: str
    data: dict[str, Any]


class PlantAlarms:
    """The detectors of the plant file's alarms of one line (see the module's docstring)."""

    def __init__(self, config: PlantConfig, board: AlarmBoard) -> None:
        signals = plant_signals(config)
        self.board = board
        self.states: dict[str, AlarmState] = {}
        for spec in plant_alarm_specs(config):
            info = signals.get(spec.signal)
            # limits are written as plain values or quantities, never as recipe parameters
            self.states[spec.name] = AlarmState.build(spec, info.unit if info else "",
                                                      lambda v: v)

    def evaluate(self, now: float, proxies: Mapping[str, ModuleProxy],
                 emit: Callable[[AlarmEvent], None]) -> None:
        """One tick between runs: suppression by design and the limits (the board's own
        clock, shelves and re-alarming, is ticked by the holder of the line).

        Each event goes to ``emit`` (to be recorded and streamed) before the board's change
        it causes goes to the board's listeners, the order of a run's record. A value that
        cannot be judged raises "cannot evaluate", never clears. Not while a run's supervisor
        has them (the holder of the line calls this only between runs).
        """
        if not self.states:
            return
        values: dict[str, Any] = {}
        for proxy in proxies.values():
            values.update(proxy.si_values())
        for al in self.states.values():
            spec = al.spec
            why = suppression(spec, None, proxies)
            self.board.suppress(spec.name, bool(why), why or "suppressing condition ended", now)
            value = values.get(spec.signal)
            change = al.step(now, value)
            reason = why_value(spec.signal, value, proxies) if change == "unknown" else ""
            event = alarm_event(al, change, value, reason)
            try:
                if event is not None:
                    emit(AlarmEvent(event[0], spec.name, event[1], event[2]))
            finally:  # a record that failed must not leave the board without the alarm
                feed_board(self.board, al, change, value, now, reason)

"""The live view of ``modulecontrol run``: state, step progress, key values, alarms."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from modulecontrol.events import Event, EventKind
from modulecontrol.orchestrator import Orchestrator


def _fmt_time(s: float) -> str:
    s = max(0.0, s)
    h, rem = divmod(int(s), 3600)
    m, sec = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{sec:02d}"


_RAISES = frozenset({EventKind.ALARM_RAISED, EventKind.INTERLOCK_TRIPPED, EventKind.MODULE_FAULT})
"""Kinds that put their source on the alarm panel ..."""
_CLEARS = frozenset({EventKind.ALARM_CLEARED, EventKind.INTERLOCK_CLEARED,
                     EventKind.MODULE_RECOVERED})
"""... and the kinds that take it off again."""

class LiveView:
    """Renders an orchestrator's status; refreshed by rich.live.Live."""

    def __init__(self, orch: Orchestrator, signals: list[str]) -> None:
        self.orch = orch
        self.signals = signals
        self.recent: deque[Event] = deque(maxlen=6)
        self.active_alarms: dict[str, Event] = {}
        orch.subscribe(self._on_event)
        self.step_bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[info]}"), expand=True)
        self.run_bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                TextColumn("{task.completed:.0f}/{task.total:.0f} steps"),
                                TimeElapsedColumn(), expand=True)
        self._step_task = self.step_bar.add_task("step", total=1.0, info="")
        self._run_task = self.run_bar.add_task("recipe", total=max(1, orch.progress.steps_total))

    def _on_event(self, ev: Event) -> None:
        if ev.kind in _RAISES:
            self.active_alarms[ev.source] = ev
        elif ev.kind in _CLEARS:
            self.active_alarms.pop(ev.source, None)
        if ev.kind is not EventKind.SERVICE_STATE:
            self.recent.append(ev)

    def __rich__(self) -> Any:
        o = self.orch
        p = o.progress
        now = o.clock.now()
        elapsed = now - p.step_started
        if p.step_duration and math.isfinite(p.step_duration) and p.step_duration > 0:
            frac = min(1.0, p.step_elapsed / p.step_duration)
            info = f"{_fmt_time(p.step_elapsed)} / {_fmt_time(p.step_duration)}"
        else:
            frac, info = 0.0, _fmt_time(elapsed)
        self.step_bar.update(self._step_task, completed=frac,
                             description=f"{p.step_kind} {p.step}"[:40], info=info)
        self.run_bar.update(self._run_task, completed=p.steps_done,
                            description=f"{o.recipe.name} [{o.machine.state.label}]")
        head = Table.grid(padding=(0, 2))
        head.add_row(f"simulated time {_fmt_time(now)}",
                     f"held by: {', '.join(o.status()['held_by'])}" if o.status()["held_by"]
                     else "")
        values = Table("signal", "value", box=None, padding=(0, 2))
        current = o.values()
        for name in self.signals:
            v = current.get(name)
            info_ = o.signals.get(name)
            values.add_row(name, _show(v, info_.unit if info_ else ""))
        alarms = Table("alarm / interlock", "since", box=None, padding=(0, 2))
        for src, ev in self.active_alarms.items():
            alarms.add_row(f"[red]{src}[/red] {ev.message}"[:70], _fmt_time(ev.t))
        events = Table("t", "event", box=None, padding=(0, 2))
        for ev in self.recent:
            events.add_row(_fmt_time(ev.t), f"{ev.kind.value} {ev.source}: {ev.message}"[:90])
        prompts = "\n".join(f"[yellow]? {m}[/yellow]" for m in p.prompts)
        parts: list[Any] = [head, self.run_bar, self.step_bar, values]
        if self.active_alarms:
            parts.append(alarms)
        if prompts:
            parts.append(prompts)
        parts.append(events)
        return Panel(Group(*parts), title="modulecontrol run", border_style="blue")


def _show(v: Any, unit: str) -> str:
    from modulecontrol.units import Quantity, parse_unit

    if v is None:
        return "—"
    if isinstance(v, bool | str):
        return str(v)
    if unit:
        try:
            q = Quantity(float(v), parse_unit(unit).dimensionality and
                         Quantity(1, parse_unit(unit)).to_base_units().units)
            return f"{q.to(parse_unit(unit)).magnitude:.4g} {unit}"
        except Exception:
            return f"{v:.4g}"
    return f"{v:.4g}"

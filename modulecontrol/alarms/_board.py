"""The alarm board: every alarm of the line, its life cycle, and the rules around it.

The one home of alarm state: detection (recipe alarms, interlocks, plant alarms) tells the
board whether each condition is in alarm; people acknowledge, shelve, unshelve, take out of
service and return through it; the line's clock expires shelves and re-alarms standing
alarms through :meth:`AlarmBoard.tick`. Every move is an :class:`AlarmChange` given to the
board's sink, with the identity behind it (a user, ``auto`` for the program, ``process``
for the plant), so each is recorded as an event and in the audit trail by whoever owns the
records. Times are the line's clock (simulated seconds), so an accelerated simulated run
unshelves at the right simulated time.

Why shelving and re-alarm run on :meth:`tick` and not on timers: a timer per alarm would
live on the wall clock or need cancelling on every unshelve; the tick is the supervision
tick the detection already runs on, so both see one time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from modulecontrol.alarms._lifecycle import AlarmRefused, AlarmState, Lifecycle, Trigger
from modulecontrol.alarms._philosophy import AlarmPhilosophy

__all__ = ["AUTO", "PROCESS", "AlarmBoard", "AlarmChange", "AlarmSpec", "UnknownAlarm"]

AUTO = "auto"
"""The identity of a move the program made (shelf expiry, re-alarm, chattering policy,
suppression by design)."""
PROCESS = "process"
"""The identity of a move the plant made (in alarm, back to normal)."""


_QUIET = frozenset({AlarmState.NORMAL, AlarmState.SHELVED, AlarmState.SUPPRESSED,
                    AlarmState.OUT_OF_SERVICE})
"""States in which a first-out group counts as back to normal."""


class UnknownAlarm(KeyError):
    """No alarm of that name on the board."""


@dataclass(frozen=True)
class AlarmSpec:
    """What an alarm is: its name, priority, message and the rules it declares."""

    name: str
    priority: str = "medium"
    message: str = ""
    group: str | None = None
    """First-out group (an interlock group): the first member in alarm is marked first out."""
    realarm_after: float | None = None
    """Re-alarm time of this alarm (None: the philosophy's)."""
    kind: str = "alarm"
    """``alarm`` (recipe), ``interlock`` or ``plant`` (declared on a module)."""
    source: str = ""
    """The signal or condition it watches."""


@dataclass(frozen=True)
class AlarmChange:
    """One move of one alarm: what the records and the stream carry."""

    t: float
    name: str
    previous: AlarmState
    state: AlarmState
    trigger: Trigger
    user: str
    active: bool
    priority: str
    message: str = ""
    reason: str = ""
    until: float | None = None
    first_out: bool = False
    chattering: bool = False

    def data(self) -> dict[str, Any]:
        """The event payload (JSON-ready)."""
        return {"state": self.state.value, "previous": self.previous.value,
                "trigger": self.trigger.value, "user": self.user, "active": self.active,
                "priority": self.priority, "reason": self.reason, "until": self.until,
                "first_out": self.first_out, "chattering": self.chattering}


@dataclass
class _Alarm:
    spec: AlarmSpec
    life: Lifecycle = field(default_factory=Lifecycle)
    since: float | None = None
    """When the present state was entered."""
    active_since: float | None = None
    acked_at: float | None = None
    shelved_until: float | None = None
    shelved_by: str = ""
    reason: str = ""
    suppressed_by_design: bool = False
    """A declared condition wants it suppressed (kept while shelved or out of service, so
    it returns suppressed if the condition still holds)."""
    first_out: bool = False
    activations: deque[float] = field(default_factory=deque)
    chattering: bool = False
    message: str = ""
    value: Any = None


class AlarmBoard:
    """Every alarm of one line. Call from the event-loop thread only."""

    def __init__(self, philosophy: AlarmPhilosophy | None = None) -> None:
        self.philosophy = philosophy or AlarmPhilosophy()
        self._alarms: dict[str, _Alarm] = {}
        self._groups: dict[str, list[_Alarm]] = {}
        """First-out groups and their members (so a change looks at its group only)."""
        self._sinks: list[Callable[[AlarmChange], None]] = []

    # ------------------------------------------------------------------ declaring, routing
    def declare(self, spec: AlarmSpec) -> None:
        """Add an alarm, or update the spec of one already there (its state is kept: a
        standing alarm of the last run is still standing)."""
        have = self._alarms.get(spec.name)
        if have is None:
            have = self._alarms[spec.name] = _Alarm(spec, message=spec.message)
        else:
            if have.spec.group is not None:
                self._groups[have.spec.group].remove(have)
            have.spec = spec
        if spec.group is not None:
            self._groups.setdefault(spec.group, []).append(have)

    def route(self, sink: Callable[[AlarmChange], None]) -> Callable[[], None]:
        """Send every change to ``sink`` until the returned function is called (the newest
        sink gets them: a run's event log while it runs, the service's own otherwise)."""
        self._sinks.append(sink)

        def undo() -> None:
            if sink in self._sinks:
                self._sinks.remove(sink)
        return undo

    def __contains__(self, name: object) -> bool:
        return name in self._alarms

    def names(self) -> list[str]:
        return sorted(self._alarms)

    def state(self, name: str) -> AlarmState:
        return self._get(name).life.state

    def _get(self, name: str) -> _Alarm:
        al = self._alarms.get(name)
        if al is None:
            known = ", ".join(sorted(self._alarms)) or "none"
            raise UnknownAlarm(f"no alarm '{name}' (alarms: {known})")
        return al

    # ------------------------------------------------------------------ the process
    def process(self, name: str, active: bool, now: float, *, message: str = "",
                value: Any = None, reason: str = "") -> AlarmChange | None:
        """The alarm's condition now (``True``: in alarm). Returns the change, if any."""
        al = self._get(name)
        was_active = al.life.active
        if message:
            al.message = message
        al.value = value
        if active and not was_active:
            al.active_since = now
            self._count_activation(al, now)
        elif not active and was_active:
            al.active_since = None
        previous = al.life.state
        trigger = al.life.process(active)
        if active and not was_active and al.spec.group is not None:
            self._first_out(al)
        change = None
        if trigger is not None:
            change = self._changed(al, previous, trigger, PROCESS, now, reason=reason)
        elif active != was_active:
            # moved while shelved, suppressed or out of service: not annunciated, but the
            # record still shows the plant went in or out of alarm
            change = self._changed(al, previous, Trigger.ALARM if active else Trigger.CLEAR,
                                   PROCESS, now, reason=reason)
        if active and not was_active and al.chattering:
            self._chattering_policy(al, now)
        return change

    def _count_activation(self, al: _Alarm, now: float) -> None:
        rule = self.philosophy.chattering
        al.activations.append(now)
        while al.activations and al.activations[0] < now - rule.window:
            al.activations.popleft()
        al.chattering = len(al.activations) >= rule.activations

    def _chattering_policy(self, al: _Alarm, now: float) -> None:
        rule = self.philosophy.chattering
        if rule.policy == "shelve" and al.life.accepts(Trigger.SHELVE):
            self._shelve(al, AUTO, f"chattering: {len(al.activations)} activations within "
                         f"{rule.window:g} s", rule.shelve_for, now)

    def _first_out(self, al: _Alarm) -> None:
        """First out: the first of its group to go into alarm while every other member was
        out of alarm (and acknowledged); the mark stays until the group is all normal."""
        group = self._groups.get(al.spec.group or "", [])
        others_quiet = all(not a.life.active and a.life.state is not AlarmState.RTN_UNACK
                           and not a.first_out for a in group if a is not al)
        if others_quiet:
            for a in group:
                a.first_out = a is al

    # ------------------------------------------------------------------ people
    def ack(self, name: str, user: str, now: float) -> AlarmChange:
        al = self._get(name)
        previous = al.life.state
        # the transition first: a refused acknowledgement changes nothing, the re-alarm
        # timer included (it was restarted before the refusal, so pressing acknowledge on
        # an acknowledged standing alarm kept it from re-alarming)
        al.life.fire(Trigger.ACK)
        al.acked_at = now
        return self._changed(al, previous, Trigger.ACK, user, now)

    def shelve(self, name: str, user: str, reason: str, duration: float,
               now: float) -> AlarmChange:
        """Shelve for ``duration`` s of the line's clock, with a reason; refused beyond the
        philosophy's ``max_shelve`` or without a reason."""
        if not reason.strip():
            raise AlarmRefused("shelving needs a reason")
        if not 0 < duration <= self.philosophy.max_shelve:
            raise AlarmRefused(f"shelve for more than 0 s and at most "
                               f"{self.philosophy.max_shelve:g} s (max_shelve), not "
                               f"{duration:g} s")
        return self._shelve(self._get(name), user, reason, duration, now)

    def _shelve(self, al: _Alarm, user: str, reason: str, duration: float,
                now: float) -> AlarmChange:
        previous = al.life.state
        al.life.fire(Trigger.SHELVE)
        al.shelved_until, al.shelved_by, al.reason = now + duration, user, reason
        return self._changed(al, previous, Trigger.SHELVE, user, now, reason=reason)

    def unshelve(self, name: str, user: str, now: float, reason: str = "") -> AlarmChange:
        al = self._get(name)
        return self._unshelve(al, user, now, reason or f"unshelved by {user}")

    def _unshelve(self, al: _Alarm, user: str, now: float, reason: str) -> AlarmChange:
        change = self._move(al, Trigger.UNSHELVE, user, now, reason=reason)
        al.shelved_until, al.shelved_by = None, ""
        return self._resuppress(al, now) or change

    def remove(self, name: str, user: str, role: str, reason: str, now: float) -> AlarmChange:
        """Out of service: only a role the philosophy names, and with a reason."""
        if role not in self.philosophy.out_of_service_roles:
            raise PermissionError(f"{user} ({role}) may not take an alarm out of service: "
                                  f"roles {', '.join(self.philosophy.out_of_service_roles)}")
        if not reason.strip():
            raise AlarmRefused("out of service needs a reason")
        al = self._get(name)
        al.shelved_until = None
        return self._move(al, Trigger.REMOVE, user, now, reason=reason)

    def restore(self, name: str, user: str, role: str, reason: str, now: float) -> AlarmChange:
        if role not in self.philosophy.out_of_service_roles:
            raise PermissionError(f"{user} ({role}) may not return an alarm to service: "
                                  f"roles {', '.join(self.philosophy.out_of_service_roles)}")
        al = self._get(name)
        change = self._move(al, Trigger.RESTORE, user, now, reason=reason or "returned")
        return self._resuppress(al, now) or change

    # ------------------------------------------------------------------ by design
    def suppress(self, name: str, suppressed: bool, why: str, now: float) -> AlarmChange | None:
        """A declared condition (recipe step, module state) wants the alarm suppressed or
        not; a shelved or out-of-service alarm keeps the wish for its return."""
        al = self._get(name)
        if al.suppressed_by_design == suppressed:
            return None
        al.suppressed_by_design = suppressed
        trigger = Trigger.SUPPRESS if suppressed else Trigger.UNSUPPRESS
        if al.life.accepts(trigger):
            return self._move(al, trigger, AUTO, now, reason=why)
        return None

    def _resuppress(self, al: _Alarm, now: float) -> AlarmChange | None:
        if al.suppressed_by_design and al.life.accepts(Trigger.SUPPRESS):
            return self._move(al, Trigger.SUPPRESS, AUTO, now, reason="still suppressed by design")
        return None

    # ------------------------------------------------------------------ the clock
    def tick(self, now: float) -> list[AlarmChange]:
        """Expire shelves and re-alarm standing acknowledged alarms whose time has come."""
        out: list[AlarmChange] = []
        window = self.philosophy.chattering.window
        for al in self._alarms.values():
            while al.activations and al.activations[0] < now - window:
                al.activations.popleft()
            al.chattering = len(al.activations) >= self.philosophy.chattering.activations
            state = al.life.state
            if state is AlarmState.SHELVED and al.shelved_until is not None \
                    and now >= al.shelved_until:
                out.append(self._unshelve(al, AUTO, now, "shelf time ran out"))
            elif state is AlarmState.ACKED:
                after = al.spec.realarm_after or self.philosophy.realarm_after
                since = max(al.acked_at or 0.0, al.since or 0.0)
                if after is not None and now - since >= after:
                    out.append(self._move(al, Trigger.REALARM, AUTO, now,
                                          reason=f"standing {now - since:.0f} s after "
                                                 f"acknowledgement"))
        return out

    # ------------------------------------------------------------------ reading
    def view(self, now: float) -> list[dict[str, Any]]:
        """Every alarm as the API shows it (state, priority, times, message, rules); the
        value is the last the detection gave, as it gave it."""
        out = []
        for name in sorted(self._alarms):
            al = self._alarms[name]
            out.append({
                "name": name, "kind": al.spec.kind, "state": al.life.state.value,
                "letter": al.life.state.letter, "active": al.life.active,
                "annunciated": al.life.state.annunciated, "priority": al.spec.priority,
                "message": al.message or al.spec.message, "source": al.spec.source,
                "since": al.since, "active_since": al.active_since, "value": al.value,
                "shelved_until": al.shelved_until, "shelved_by": al.shelved_by or None,
                "reason": al.reason or None, "group": al.spec.group,
                "first_out": al.first_out, "chattering": al.chattering,
                "suppressed_by_design": al.suppressed_by_design,
                "possible": [t.value for t in al.life.accepted()
                             if t not in (Trigger.ALARM, Trigger.CLEAR)],
            })
        return out

    def unacknowledged(self, priorities: Iterable[str] = ("high", "urgent")) -> list[str]:
        want = set(priorities)
        return sorted(n for n, a in self._alarms.items()
                      if a.life.state in (AlarmState.UNACK, AlarmState.RTN_UNACK)
                      and a.spec.priority in want)

    # ------------------------------------------------------------------ moves
    def _move(self, al: _Alarm, trigger: Trigger, user: str, now: float,
              reason: str = "") -> AlarmChange:
        previous = al.life.state
        al.life.fire(trigger)
        return self._changed(al, previous, trigger, user, now, reason=reason)

    def _changed(self, al: _Alarm, previous: AlarmState, trigger: Trigger, user: str,
                 now: float, reason: str = "") -> AlarmChange:
        state = al.life.state
        if state is not previous:
            al.since = now
        if state is not AlarmState.SHELVED:
            al.reason = reason if state is AlarmState.OUT_OF_SERVICE else ""
        group = al.spec.group
        if group is not None:
            members = self._groups[group]
            if all(not a.life.active and a.life.state in _QUIET for a in members):
                for a in members:
                    a.first_out = False
        change = AlarmChange(now, al.spec.name, previous, state, trigger, user,
                             al.life.active, al.spec.priority,
                             al.message or al.spec.message, reason,
                             al.shelved_until if state is AlarmState.SHELVED else None,
                             al.first_out, al.chattering)
        for sink in self._sinks[-1:]:
            sink(change)
        return change


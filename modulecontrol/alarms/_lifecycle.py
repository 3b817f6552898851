"""The ISA-18.2 / IEC 62682 alarm state diagram of one alarm, on ``transitions``.

Why a table on ``transitions`` and not flags: the life cycle is a state diagram in the
standard, and a review compares a table with the diagram row by row; flags (``active``,
``acked``, ``shelved``) allow combinations the diagram does not have (shelved *and*
unacknowledged). The process condition (in or out of alarm) is kept beside the state, because
it goes on changing while an alarm is shelved, suppressed or out of service, and decides
where the alarm returns to.

States (the letters of the ISA-18.2 diagram): A normal, B unacknowledged, C acknowledged,
D returned to normal unacknowledged, E shelved, F suppressed by design, G out of service.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

from transitions import Machine

__all__ = ["AlarmRefused", "AlarmState", "Lifecycle", "Trigger", "diagram_rows"]


class AlarmState(StrEnum):
    """The life-cycle states; the value is what the records and the API carry."""

    NORMAL = "normal"
    UNACK = "unacknowledged"
    ACKED = "acknowledged"
    RTN_UNACK = "returned unacknowledged"
    SHELVED = "shelved"
    SUPPRESSED = "suppressed"
    OUT_OF_SERVICE = "out of service"

    @property
    def annunciated(self) -> bool:
        """Shown to the operator (not shelved, suppressed or out of service)."""
        return self in _ANNUNCIATED

    @property
    def letter(self) -> str:
        """The state's letter in the ISA-18.2 diagram (for docs and the station's shape)."""
        return "ABCDEFG"[list(AlarmState).index(self)]


_ANNUNCIATED: Final = frozenset({AlarmState.NORMAL, AlarmState.UNACK, AlarmState.ACKED,
                                 AlarmState.RTN_UNACK})


class Trigger(StrEnum):
    """What moves an alarm: the process, a person, or the line's clock."""

    ALARM = "alarm"
    """The process went out of limits (or cannot be evaluated)."""
    CLEAR = "clear"
    """The process returned to normal."""
    ACK = "ack"
    SHELVE = "shelve"
    UNSHELVE = "unshelve"
    """By a person, or by the clock when the shelf time runs out."""
    SUPPRESS = "suppress"
    UNSUPPRESS = "unsuppress"
    REMOVE = "remove"
    """Out of service."""
    RESTORE = "restore"
    """Return to service."""
    REALARM = "realarm"
    """A standing acknowledged alarm is annunciated again after its declared time."""


class AlarmRefused(Exception):
    """A trigger the alarm's present state does not take (the message says which it takes)."""


_S = AlarmState
_T = Trigger
_ACTIVE = "is_active"

# (trigger, sources, destination, condition): the whole diagram. Rows whose destination
# depends on the process condition come in pairs, one for each value of it.
_TABLE: Final[list[tuple[Trigger, list[AlarmState], AlarmState, str | None]]] = [
    (_T.ALARM, [_S.NORMAL, _S.RTN_UNACK], _S.UNACK, None),
    (_T.CLEAR, [_S.UNACK], _S.RTN_UNACK, None),
    (_T.CLEAR, [_S.ACKED], _S.NORMAL, None),
    (_T.ACK, [_S.UNACK], _S.ACKED, None),
    (_T.ACK, [_S.RTN_UNACK], _S.NORMAL, None),
    (_T.REALARM, [_S.ACKED], _S.UNACK, None),
    (_T.SHELVE, [_S.NORMAL, _S.UNACK, _S.ACKED, _S.RTN_UNACK], _S.SHELVED, None),
    (_T.SUPPRESS, [_S.NORMAL, _S.UNACK, _S.ACKED, _S.RTN_UNACK], _S.SUPPRESSED, None),
    (_T.REMOVE, [_S.NORMAL, _S.UNACK, _S.ACKED, _S.RTN_UNACK, _S.SHELVED, _S.SUPPRESSED],
     _S.OUT_OF_SERVICE, None),
    # back from E, F and G: unacknowledged if the process is in alarm, else normal
    (_T.UNSHELVE, [_S.SHELVED], _S.UNACK, _ACTIVE),
    (_T.UNSHELVE, [_S.SHELVED], _S.NORMAL, None),
    (_T.UNSUPPRESS, [_S.SUPPRESSED], _S.UNACK, _ACTIVE),
    (_T.UNSUPPRESS, [_S.SUPPRESSED], _S.NORMAL, None),
    (_T.RESTORE, [_S.OUT_OF_SERVICE], _S.UNACK, _ACTIVE),
    (_T.RESTORE, [_S.OUT_OF_SERVICE], _S.NORMAL, None),
]


class _Model:
    """The object ``transitions`` drives (its ``state`` and generated trigger methods)."""

    state: AlarmState

    def __init__(self) -> None:
        self.active = False

    def is_active(self) -> bool:
        return self.active


class Lifecycle:
    """One alarm's state and process condition; :meth:`fire` is the only way to move it."""

    def __init__(self) -> None:
        self._model = _Model()
        self._machine = Machine(
            model=self._model, states=list(AlarmState), initial=AlarmState.NORMAL,
            transitions=[{"trigger": t.value, "source": list(src), "dest": dst,
                          **({"conditions": c} if c else {})} for t, src, dst, c in _TABLE],
            auto_transitions=False, ignore_invalid_triggers=False)

    @property
    def state(self) -> AlarmState:
        return AlarmState(self._model.state)

    @property
    def active(self) -> bool:
        """The process condition: in alarm (whatever the state shows)."""
        return self._model.active

    def accepts(self, trigger: Trigger) -> bool:
        return trigger.value in self._machine.get_triggers(self.state)

    def accepted(self) -> list[Trigger]:
        """The triggers the present state takes (for refusals and the station's buttons)."""
        names = set(self._machine.get_triggers(self.state))
        return [t for t in Trigger if t.value in names]

    def process(self, active: bool) -> Trigger | None:
        """The process condition now; returns the trigger fired, if the state moved."""
        self._model.active = active
        trigger = _T.ALARM if active else _T.CLEAR
        if self.accepts(trigger):
            self._fire(trigger)
            return trigger
        return None

    def fire(self, trigger: Trigger) -> AlarmState:
        """Move by a person's or the clock's trigger; AlarmRefused if the state does not
        take it (nothing changes then)."""
        if trigger in (_T.ALARM, _T.CLEAR):
            raise ValueError("the process moves an alarm through process(), not fire()")
        if not self.accepts(trigger):
            takes = ", ".join(t.value for t in self.accepted()
                              if t not in (_T.ALARM, _T.CLEAR)) or "nothing"
            raise AlarmRefused(f"{trigger.value} is not possible while {self.state.value} "
                               f"(possible: {takes})")
        self._fire(trigger)
        return self.state

    def _fire(self, trigger: Trigger) -> None:
        ok: Any = getattr(self._model, trigger.value)()
        assert ok, f"{trigger.value} refused by its conditions in {self.state.value}"


def diagram_rows() -> list[tuple[str, str, str, str]]:
    """The table as (trigger, source, destination, condition) rows, for docs and tests."""
    return [(t.value, s.value, d.value, "process in alarm" if c else "")
            for t, src, d, c in _TABLE for s in src]

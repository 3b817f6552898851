"""The alarm life cycle against a small reference model of the ISA-18.2 state diagram:
random sequences of process in/out, acknowledge, shelve, unshelve, time passing (shelf
expiry, re-alarm), suppression by design, out of service and return, on the board."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from modulecontrol.alarms import (
    AUTO,
    PROCESS,
    AlarmBoard,
    AlarmChange,
    AlarmPhilosophy,
    AlarmRefused,
    AlarmSpec,
    AlarmState,
    Chattering,
    Trigger,
)

N, B, C, D = "normal", "unacknowledged", "acknowledged", "returned unacknowledged"
E, F, G = "shelved", "suppressed", "out of service"
REALARM = 50.0


@dataclass
class Ref:
    """The diagram, written out by hand from ISA-18.2 figure 6 (A..G), independently of
    the transitions table under test."""

    state: str = N
    active: bool = False
    wish: bool = False  # suppression by design wanted
    now: float = 0.0
    until: float = 0.0
    entered: float = 0.0

    def go(self, s: str) -> None:
        if s != self.state:
            self.entered = self.now
        self.state = s

    def back(self) -> None:
        self.go(F if self.wish else B if self.active else N)

    def step(self, op: tuple[str, float]) -> bool:
        """Apply; False when the diagram refuses the operator's request."""
        kind, x = op
        s = self.state
        if kind == "in":
            self.active = True
            if s in (N, D):
                self.go(B)
        elif kind == "out":
            self.active = False
            self.go({B: D, C: N}.get(s, s))
        elif kind == "ack":
            if s not in (B, D):
                return False
            self.go(C if s == B else N)
        elif kind == "shelve":
            if s not in (N, B, C, D):
                return False
            self.go(E)
            self.until = self.now + x
        elif kind == "unshelve":
            if s != E:
                return False
            self.back()
        elif kind == "time":
            self.now += x
            if s == E and self.now >= self.until:
                self.back()
            elif s == C and self.now - self.entered >= REALARM:
                self.go(B)
        elif kind == "suppress":
            self.wish = x > 0
            if self.wish and s in (N, B, C, D):
                self.go(F)
            elif not self.wish and s == F:
                self.back()
        elif kind == "oos":
            if s == G:
                return False
            self.go(G)
        elif kind == "rts":
            if s != G:
                return False
            self.back()
        return True


KINDS = ["in", "out", "ack", "shelve", "unshelve", "time", "suppress", "oos", "rts"]
ops = st.tuples(st.sampled_from(KINDS),
                st.sampled_from([1.0, 5.0, 20.0, 45.0, 50.0, 61.0, 90.0, 150.0])).map(
    lambda op: (op[0], float(op[1] > 60.0)) if op[0] == "suppress" else op)
"""Every kind equally likely, each with a number: shelf time, time passing, suppress on/off
(above 60) or unused."""


def _apply(board: AlarmBoard, op: tuple[str, float], now: float) -> None:
    kind, x = op
    if kind in ("in", "out"):
        board.process("a", kind == "in", now)
    elif kind == "ack":
        board.ack("a", "op", now)
    elif kind == "shelve":
        board.shelve("a", "op", "testing", x, now)
    elif kind == "unshelve":
        board.unshelve("a", "op", now)
    elif kind == "time":
        board.tick(now)
    elif kind == "suppress":
        board.suppress("a", x > 0, "step", now)
    elif kind == "oos":
        board.remove("a", "eng", "engineer", "sensor replaced", now)
    elif kind == "rts":
        board.restore("a", "eng", "engineer", "sensor back", now)


@settings(max_examples=500, deadline=None)
@given(st.lists(ops, max_size=40))
@example([("in", 0.0), ("ack", 0.0), ("time", 50.0)])
@example([("in", 0.0), ("shelve", 20.0), ("out", 0.0), ("time", 20.0)])
@example([("in", 0.0), ("out", 0.0), ("suppress", 1.0), ("suppress", 0.0), ("ack", 0.0)])
# a refused acknowledgement of an acknowledged standing alarm restarted its re-alarm timer
@example([("in", 0.0), ("ack", 0.0), ("time", 45.0), ("ack", 0.0), ("time", 5.0)])
def test_the_life_cycle_follows_the_isa_18_2_state_diagram(seq: list[tuple[str, float]]) -> None:
    board = AlarmBoard(AlarmPhilosophy(realarm_after=REALARM,
                                       chattering=Chattering(activations=1000)))
    board.declare(AlarmSpec("a", "high"))
    changes: list[AlarmChange] = []
    board.route(changes.append)
    ref = Ref()
    for op in seq:
        before = board.state("a")
        allowed = ref.step(op)
        if allowed:
            _apply(board, op, ref.now)
        else:
            with pytest.raises(AlarmRefused):
                _apply(board, op, ref.now)
            assert board.state("a") is before  # a refusal changes nothing
        assert board.state("a").value == ref.state, (op, before)
    # every move is recorded with the identity behind it
    for ch in changes:
        assert ch.user in (PROCESS, AUTO, "op", "eng")
        if ch.trigger in (Trigger.ALARM, Trigger.CLEAR):
            assert ch.user == PROCESS
        if ch.trigger in (Trigger.REALARM, Trigger.SUPPRESS, Trigger.UNSUPPRESS):
            assert ch.user == AUTO


def test_a_shelved_alarm_returns_by_itself_when_its_time_runs_out() -> None:
    board = AlarmBoard()
    board.declare(AlarmSpec("r1_high", "high"))
    changes: list[AlarmChange] = []
    board.route(changes.append)
    board.process("r1_high", True, 10.0)
    board.shelve("r1_high", "olga", "sensor being calibrated", 300.0, 20.0)
    assert board.state("r1_high") is AlarmState.SHELVED
    assert board.tick(319.0) == []
    back = board.tick(320.0)
    assert [c.state for c in back] == [AlarmState.UNACK]
    assert back[0].user == AUTO and back[0].reason == "shelf time ran out"
    assert changes[1].reason == "sensor being calibrated" and changes[1].user == "olga"
    assert changes[1].until == 320.0


def test_shelving_needs_a_reason_and_a_time_within_the_philosophy() -> None:
    board = AlarmBoard(AlarmPhilosophy.model_validate({"max_shelve": "1 h"}))
    board.declare(AlarmSpec("a"))
    with pytest.raises(AlarmRefused, match="reason"):
        board.shelve("a", "op", " ", 60.0, 0.0)
    with pytest.raises(AlarmRefused, match="at most 3600 s"):
        board.shelve("a", "op", "why", 7200.0, 0.0)
    assert board.state("a") is AlarmState.NORMAL


def test_out_of_service_needs_an_engineer_and_a_reason() -> None:
    board = AlarmBoard()
    board.declare(AlarmSpec("a"))
    with pytest.raises(PermissionError, match="operator"):
        board.remove("a", "olga", "operator", "why", 0.0)
    with pytest.raises(AlarmRefused, match="reason"):
        board.remove("a", "erik", "engineer", "", 0.0)
    ch = board.remove("a", "erik", "engineer", "transmitter replaced", 0.0)
    assert ch.state is AlarmState.OUT_OF_SERVICE and ch.reason == "transmitter replaced"
    board.process("a", True, 1.0)
    assert board.state("a") is AlarmState.OUT_OF_SERVICE
    assert board.restore("a", "erik", "engineer", "", 2.0).state is AlarmState.UNACK


def test_the_first_out_of_an_interlock_group_is_marked_until_the_group_is_normal() -> None:
    board = AlarmBoard()
    for n in ("p_high", "t_high", "flow_low"):
        board.declare(AlarmSpec(n, "high", group="trip"))
    board.declare(AlarmSpec("other", "low"))
    board.process("t_high", True, 1.0)
    board.process("p_high", True, 1.5)
    board.process("other", True, 1.0)
    first = {v["name"]: v["first_out"] for v in board.view(2.0)}
    assert first == {"t_high": True, "p_high": False, "flow_low": False, "other": False}
    for n in ("t_high", "p_high"):
        board.process(n, False, 3.0)
        board.ack(n, "op", 4.0)
    board.process("p_high", True, 5.0)  # a new episode: p_high is first now
    first = {v["name"]: v["first_out"] for v in board.view(6.0)}
    assert first["p_high"] and not first["t_high"]


def test_chattering_is_detected_and_shelved_by_the_declared_policy() -> None:
    board = AlarmBoard(AlarmPhilosophy.model_validate({"chattering": {
        "activations": 3, "window": "1 min", "policy": "shelve", "shelve_for": "10 min"}}))
    board.declare(AlarmSpec("level_low"))
    changes: list[AlarmChange] = []
    board.route(changes.append)
    for i in range(3):
        board.process("level_low", True, 10.0 * i)
        board.process("level_low", False, 10.0 * i + 5)
    assert board.state("level_low") is AlarmState.SHELVED
    shelve = next(c for c in changes if c.trigger is Trigger.SHELVE)
    assert shelve.user == AUTO and "chattering: 3 activations within 60 s" in shelve.reason
    assert shelve.chattering
    assert board.tick(20.0 + 600.0)[0].state is AlarmState.NORMAL


def test_chattering_with_the_flag_policy_only_marks_it() -> None:
    board = AlarmBoard(AlarmPhilosophy(chattering=Chattering(activations=2, window=30)))
    board.declare(AlarmSpec("a"))
    board.process("a", True, 0.0)
    board.process("a", False, 1.0)
    board.process("a", True, 2.0)
    assert board.state("a") is AlarmState.UNACK and board.view(2.0)[0]["chattering"]
    board.tick(100.0)
    assert not board.view(100.0)[0]["chattering"]


def test_a_standing_acknowledged_alarm_realarms_after_its_declared_time() -> None:
    board = AlarmBoard()
    board.declare(AlarmSpec("a", realarm_after=600.0))
    board.process("a", True, 0.0)
    board.ack("a", "op", 100.0)
    assert board.tick(699.0) == []
    (ch,) = board.tick(700.0)
    assert ch.trigger is Trigger.REALARM and ch.state is AlarmState.UNACK and ch.user == AUTO

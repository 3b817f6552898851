"""Alarm KPIs from recorded changes: rates per operator, floods, standing and stale alarms,
the ten most frequent, chattering."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.alarms import AlarmBoard, AlarmPhilosophy, AlarmSpec, Chattering, alarm_kpis


def _record(board: AlarmBoard) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    board.route(lambda c: rows.append({"t": c.t, "name": c.name, **c.data()}))
    return rows


def test_a_flood_is_more_than_ten_alarms_in_ten_minutes() -> None:
    board = AlarmBoard()
    rows = _record(board)
    for i in range(12):  # 12 alarms in the second 10-minute interval
        board.declare(AlarmSpec(f"a{i}", "high" if i < 3 else "low"))
        board.process(f"a{i}", True, 600.0 + 10 * i)
        board.process(f"a{i}", False, 605.0 + 10 * i)
    board.declare(AlarmSpec("lone"))
    board.process("lone", True, 2000.0)
    k = alarm_kpis(rows, 0.0, 3600.0, AlarmPhilosophy(operators=2))
    assert k.annunciations == 13
    assert k.floods == [{"start": 600.0, "end": 1200.0, "alarms": 12.0}]
    assert abs(k.flood_time_percent - 100 * 600 / 3600) < 1e-9
    assert abs(k.per_10min_per_operator - 13 / 6 / 2) < 1e-9
    assert k.max_per_10min == 12
    assert k.by_priority == {"high": 3, "low": 9, "medium": 1}


def test_standing_stale_top_ten_and_chattering() -> None:
    phil = AlarmPhilosophy.model_validate({"standing_after": "30 min", "stale_after": "2 h",
                                          "chattering": {"activations": 3, "window": "1 min"}})
    board = AlarmBoard(phil)
    rows = _record(board)
    for n in ("stuck", "long", "chatty", "once"):
        board.declare(AlarmSpec(n))
    board.process("stuck", True, 0.0)          # still in alarm at the end: 3 h
    board.process("long", True, 100.0)
    board.process("long", False, 100.0 + 2400)  # 40 min
    for i in range(4):
        board.process("chatty", True, 5000.0 + 10 * i)
        board.process("chatty", False, 5005.0 + 10 * i)
    board.process("once", True, 6000.0)
    board.process("once", False, 6010.0)
    k = alarm_kpis(rows, 0.0, 3 * 3600.0, phil)
    assert [s["name"] for s in k.standing] == ["long", "stuck"]
    assert [s["name"] for s in k.stale] == ["stuck"]
    assert k.top_ten[0] == {"name": "chatty", "count": 4, "percent": 100 * 4 / 7}
    assert [c["name"] for c in k.chattering] == ["chatty"]
    assert k.chattering[0]["most_in_window"] == 4


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.floats(0, 7200)), max_size=60))
def test_kpis_agree_with_a_direct_count(events: list[tuple[int, float]]) -> None:
    """Annunciations, the top ten and the busiest window against a count by hand."""
    board = AlarmBoard(AlarmPhilosophy(chattering=Chattering(activations=1000)))
    rows = _record(board)
    for i in range(5):
        board.declare(AlarmSpec(f"a{i}"))
    t = 0.0
    raised: list[tuple[float, str]] = []
    for i, dt in sorted(events, key=lambda e: e[1]):
        t = max(t, dt)
        before = board.state(f"a{i}").value
        board.process(f"a{i}", True, t)
        if before in ("normal", "returned unacknowledged"):
            raised.append((t, f"a{i}"))
        board.process(f"a{i}", False, t)
    k = alarm_kpis(rows, 0.0, 7200.0)
    assert k.annunciations == len(raised)
    busiest = max((sum(1 for u, _ in raised if s - 600 < u <= s) for s, _ in raised), default=0)
    assert k.max_per_10min == busiest
    assert sum(x["count"] for x in k.top_ten) == len(raised)

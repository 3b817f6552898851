"""Audit trail: append-only, gap-free, hash-chained; verify names what was tampered with."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modulecontrol.records import AuditTrail, Historian, verify_audit
from modulecontrol.records._audit import GENESIS_HASH, entry_hash


def _fill(db: Path, n: int, key: bytes | None = None) -> None:
    with AuditTrail(db, key=key) as trail:
        for i in range(n):
            trail.append("alice", "parameter_write", f"R1.T.SP{i % 2}", old_value=60 + i,
                         new_value=61 + i, reason=f"step {i}")


def _raw(db: Path) -> sqlite3.Connection:
    """A connection with the protective triggers dropped: what a tamperer would do."""
    conn = sqlite3.connect(db, isolation_level=None)
    for trig in ("audit_no_update", "audit_no_delete", "audit_seq_contiguous"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trig}")
    return conn


def _problems(db: Path, **kw: object) -> set[tuple[int, str]]:
    return {(i.seq, i.problem) for i in verify_audit(db, **kw).issues}  # type: ignore[arg-type]


def test_clean_trail_verifies_and_keeps_old_values(db: Path) -> None:
    _fill(db, 5)
    rep = verify_audit(db)
    assert rep.ok and rep.entries == 5
    with AuditTrail(db) as trail:
        entries = list(trail.entries())
        assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
        assert entries[0].prev_hash == GENESIS_HASH
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
        hist = list(trail.entries("R1.T.SP0"))
        assert [(e.old_value, e.new_value) for e in hist] == [(60, 61), (62, 63), (64, 65)]
        assert entries[0].t_utc.endswith("Z")
    assert rep.head_hash == entries[-1].hash


def test_triggers_refuse_update_delete_and_gapped_insert(db: Path) -> None:
    _fill(db, 2)
    conn = sqlite3.connect(db, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit SET new_value='99' WHERE seq=1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit WHERE seq=2")
    with pytest.raises(sqlite3.IntegrityError, match="contiguous"):
        conn.execute("INSERT INTO audit VALUES (5,'t','u','a','o','1','2','r','x','y')")
    conn.close()
    assert verify_audit(db).ok


def test_reason_and_user_required(db: Path) -> None:
    with AuditTrail(db) as trail, pytest.raises(ValueError, match="reason"):
        trail.append("bob", "write", "X", old_value=1, new_value=2, reason=" ")


def test_update_detected(db: Path) -> None:
    _fill(db, 5)
    with _raw(db) as conn:
        conn.execute("UPDATE audit SET new_value='1000' WHERE seq=3")
    assert _problems(db) == {(3, "changed")}


def test_delete_detected(db: Path) -> None:
    _fill(db, 5)
    with _raw(db) as conn:
        conn.execute("DELETE FROM audit WHERE seq=3")
    assert _problems(db) == {(4, "removed"), (4, "chain broken")}


def test_insert_in_middle_detected(db: Path) -> None:
    _fill(db, 4)
    conn = _raw(db)
    rows = conn.execute("SELECT * FROM audit ORDER BY seq").fetchall()
    conn.execute("DELETE FROM audit")
    forged = (3, "2020-01-01T00:00:00.000000Z", "mallory", "write", "X", "1", "2", "why",
              rows[1][9], "0" * 64)
    content = dict(zip(("seq", "t_utc", "user", "action", "object", "old_value", "new_value",
                        "reason"), forged[:8], strict=True))
    forged = (*forged[:9], entry_hash(content, rows[1][9]))  # a well-formed entry...
    for r in [*rows[:2], forged, *[(r[0] + 1, *r[1:]) for r in rows[2:]]]:
        conn.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?)", r)
    conn.close()
    probs = _problems(db)
    # ...but the entries after it carry their old sequence numbers inside their hashes
    assert (4, "changed") in probs and (5, "changed") in probs
    assert (4, "chain broken") in probs
    assert all(seq >= 4 for seq, _ in probs)


def test_reorder_detected(db: Path) -> None:
    _fill(db, 5)
    conn = _raw(db)
    r2 = conn.execute("SELECT * FROM audit WHERE seq=2").fetchone()
    r3 = conn.execute("SELECT * FROM audit WHERE seq=3").fetchone()
    conn.execute("DELETE FROM audit WHERE seq IN (2, 3)")
    conn.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?)", (2, *r3[1:]))
    conn.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?)", (3, *r2[1:]))
    conn.close()
    probs = _problems(db)
    assert {(2, "changed"), (3, "changed"), (2, "chain broken")} <= probs


def test_physical_reorder_with_same_numbers_detected(db: Path) -> None:
    _fill(db, 4)
    conn = _raw(db)
    rows = conn.execute("SELECT * FROM audit ORDER BY seq").fetchall()
    conn.execute("DELETE FROM audit")
    for r in reversed(rows):
        conn.execute("INSERT INTO audit(seq, t_utc, user, action, object, old_value, new_value,"
                     " reason, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)", r)
    conn.close()
    # rowid is the sequence number (INTEGER PRIMARY KEY), so order is restored by it and
    # the content still verifies: the chain is about content, not storage order
    assert verify_audit(db).ok


def test_forged_append_needs_key_or_anchor(db: Path) -> None:
    key = b"site-secret"
    _fill(db, 3, key=key)
    head = verify_audit(db, key=key)
    assert head.ok
    anchor = (3, head.head_hash)
    # an attacker who knows the algorithm but not the key appends a well-formed entry
    conn = _raw(db)
    content = {"seq": 4, "t_utc": "2030-01-01T00:00:00.000000Z", "user": "mallory",
               "action": "write", "object": "X", "old_value": "1", "new_value": "2",
               "reason": "r"}
    h = entry_hash(content, head.head_hash)
    conn.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?)",
                 (*content.values(), head.head_hash, h))
    conn.close()
    assert _problems(db, key=key) == {(4, "changed")}
    assert verify_audit(db).issues  # without the key the first three no longer match either
    # truncating the tail is caught by an anchor kept elsewhere
    conn = _raw(db)
    conn.execute("DELETE FROM audit WHERE seq >= 3")
    conn.close()
    assert (3, "anchor mismatch") in _problems(db, key=key, anchor=anchor)


async def test_operator_action_writes_audit_entry_in_same_commit(db: Path) -> None:
    h = Historian(db, flush_interval=0.05)
    try:
        await h.start_run("r")
        await __import__("asyncio").wrap_future(h.record_operator_action(
            "alice", "parameter_write", "R1.T.SP", old_value=60.0, new_value=62.5,
            reason="hotter for conversion"))
    finally:
        await h.close()
    with AuditTrail(db) as trail:
        (entry,) = list(trail.entries("R1.T.SP"))
    assert (entry.user, entry.old_value, entry.new_value) == ("alice", 60.0, 62.5)
    conn = sqlite3.connect(db)
    row = conn.execute("SELECT old_value, new_value FROM operator_actions").fetchone()
    conn.close()
    assert json.loads(row[0]) == 60.0 and json.loads(row[1]) == 62.5
    assert verify_audit(db).ok


_COLS = ["t_utc", "user", "action", "object", "old_value", "new_value", "reason", "prev_hash",
         "hash"]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.one_of(st.integers(), st.text(max_size=8), st.floats(allow_nan=False,
                    allow_infinity=False), st.none()), min_size=1, max_size=8),
    victim=st.integers(min_value=0, max_value=100),
    column=st.sampled_from(_COLS),
    data=st.data(),
)
def test_any_single_field_change_is_named(tmp_path_factory: pytest.TempPathFactory,
                                          values: list[object], victim: int, column: str,
                                          data: st.DataObject) -> None:
    db = tmp_path_factory.mktemp("h") / "a.db"
    with AuditTrail(db) as trail:
        prev: object = None
        for v in values:
            trail.append("u", "write", "obj", old_value=prev, new_value=v, reason="r")
            prev = v
    assert verify_audit(db).ok
    seq = victim % len(values) + 1
    conn = _raw(db)
    old = conn.execute(f"SELECT {column} FROM audit WHERE seq=?", (seq,)).fetchone()[0]
    new = data.draw(st.text(min_size=1, max_size=10).filter(lambda s: s != old))
    conn.execute(f"UPDATE audit SET {column}=? WHERE seq=?", (new, seq))
    conn.close()
    issues = verify_audit(db).issues
    assert issues, f"changing {column} of entry {seq} went unnoticed"
    assert min(i.seq for i in issues) == seq

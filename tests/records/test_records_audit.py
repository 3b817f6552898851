"""Audit trail: append-only entries, links of the keyed records chain; verify names edits."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from modulecontrol.records import (
    AuditTrail,
    Historian,
    RecordsError,
    anchor_path_for,
    key_path_for,
    verify_audit,
)
from modulecontrol.records.cli import app

SAMPLE_DB = Path(__file__).parent / "data" / "lomustine_sample_run.db"


def _fill(db: Path, n: int) -> None:
    with AuditTrail(db) as trail:
        for i in range(n):
            trail.append("alice", "parameter_write", f"R1.T.SP{i % 2}", old_value=60 + i,
                         new_value=61 + i, reason=f"step {i}")


def _raw(db: Path) -> sqlite3.Connection:
    """A connection with the protective triggers dropped: what a tamperer would do."""
    conn = sqlite3.connect(db, isolation_level=None)
    for (trig,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {trig}")
    return conn


def _problems(db: Path) -> set[tuple[int, str]]:
    return {(i.seq, i.problem) for i in verify_audit(db).issues}


def test_clean_trail_verifies_and_keeps_old_values(db: Path) -> None:
    _fill(db, 5)
    rep = verify_audit(db)
    assert rep.ok and rep.entries == 5 and rep.anchors == 5
    with AuditTrail(db) as trail:
        entries = list(trail.entries())
        assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
        hist = list(trail.entries("R1.T.SP0"))
        assert [(e.old_value, e.new_value) for e in hist] == [(60, 61), (62, 63), (64, 65)]
        assert entries[0].t_utc.endswith("Z")
    assert rep.head_hash == entries[-1].hash  # an audit entry's hash is its chain link's


def test_key_and_anchor_are_files_outside_the_database_owner_only(db: Path) -> None:
    _fill(db, 1)
    key, anchor = key_path_for(db), anchor_path_for(db)
    for f in (key, anchor):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert key.read_text().strip().encode() not in db.read_bytes()
    os.chmod(key, 0o644)
    with pytest.raises(RecordsError, match="readable by others"):
        verify_audit(db)
    with AuditTrail(db) as trail, pytest.raises(RecordsError, match="chmod 600"):
        trail.append("bob", "write", "X", reason="r")


def test_verify_without_the_key_names_what_to_pass(db: Path) -> None:
    _fill(db, 2)
    key_path_for(db).unlink()
    with pytest.raises(RecordsError, match=r"no records key at .*--key"):
        verify_audit(db)


def test_triggers_refuse_update_and_delete(db: Path) -> None:
    _fill(db, 2)
    conn = sqlite3.connect(db, isolation_level=None)
    for sql in ("UPDATE audit SET new_value='99' WHERE seq=1", "DELETE FROM audit WHERE seq=2",
                "UPDATE chain SET digest='x' WHERE seq=1", "DELETE FROM chain WHERE seq=2"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    with pytest.raises(sqlite3.IntegrityError, match="contiguous"):
        conn.execute("INSERT INTO audit VALUES (5,'t','u','a','o','1','2','r','x','y')")
    conn.close()
    assert verify_audit(db).ok


def test_reason_and_user_required(db: Path) -> None:
    with AuditTrail(db) as trail, pytest.raises(ValueError, match="reason"):
        trail.append("bob", "write", "X", old_value=1, new_value=2, reason=" ")


def test_reorder_detected(db: Path) -> None:
    _fill(db, 5)
    conn = _raw(db)
    r2 = conn.execute("SELECT * FROM audit WHERE seq=2").fetchone()
    r3 = conn.execute("SELECT * FROM audit WHERE seq=3").fetchone()
    conn.execute("DELETE FROM audit WHERE seq IN (2, 3)")
    conn.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?)", (2, *r3[1:]))
    conn.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?)", (3, *r2[1:]))
    conn.close()
    assert {(2, "record edited"), (3, "record edited")} <= _problems(db)


async def test_operator_action_writes_audit_entry_in_same_commit(db: Path) -> None:
    h = Historian(db, flush_interval=0.05)
    try:
        await h.start_run("r")
        await asyncio.wrap_future(h.record_operator_action(
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


def test_legacy_database_is_never_ok_and_stays_readable(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(SAMPLE_DB, db)
    rep = verify_audit(db)
    assert rep.legacy and not rep.ok
    assert rep.issues[0].problem == "legacy unkeyed chain"
    res = CliRunner().invoke(app, ["audit", "verify", "--db", str(db)])
    assert res.exit_code == 1 and "legacy unkeyed chain" in res.output
    with pytest.raises(RecordsError, match="schema 1"):
        Historian(db)
    assert not key_path_for(db).exists()  # nothing was written beside it either


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
    assert {i.seq for i in issues} == {seq}

"""The eight ways of tampering with a batch record found in issue 14, each detected.

Each test records a real run (samples, events, an alarm, an audited operator action; the
run ends interrupted), then does what someone with write access to the database file does:
drop the protective triggers and change rows, recomputing whatever can be recomputed
without the key. ``audit verify`` must name it. Docs: docs/security.md (table of tests).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from modulecontrol.records import (
    AuditTrail,
    Historian,
    RunResult,
    anchor_path_for,
    key_path_for,
    verify_audit,
)
from modulecontrol.records._chain import link_hash, row_digest
from modulecontrol.records.cli import app

T0 = 1_700_000_000.0


async def _record(db: Path) -> int:
    h = Historian(db, flush_interval=0.05)
    try:
        rid = await h.start_run("tamper", parameters={"T": "60 degC"}, t=T0)
        for i in range(50):
            h.record_sample("PAT.Purity", 91.0 + i / 10, t=T0 + i)
            h.record_sample("P1.Flow", 0.5, t=T0 + i)
        await h.flush()
        h.raise_alarm("R1.TH", "temperature high", t=T0 + 20)
        await asyncio.wrap_future(h.record_operator_action(
            "alice", "parameter_write", "R1.T.SP", old_value=60, new_value=62,
            reason="conversion too low", t=T0 + 30))
        h.record_event("step_transition", "recipe", {"step": "collect"}, t=T0 + 40)
        await h.end_run(rid, RunResult.INTERRUPTED, "operator pressed Ctrl-C", t=T0 + 50)
    finally:
        await h.close()
    assert verify_audit(db).ok
    return rid


def _raw(db: Path) -> sqlite3.Connection:
    """A connection with the protective triggers dropped: what a tamperer would do."""
    conn = sqlite3.connect(db, isolation_level=None)
    for (trig,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {trig}")
    return conn


def _problems(db: Path) -> set[str]:
    return {i.problem for i in verify_audit(db).issues}


def _rechain(conn: sqlite3.Connection, key: bytes) -> None:
    """Recompute every link's digest and hash with ``key``, as a tamperer would.

    Without the real key the tamperer guesses one (here: plain SHA-256 of nothing, or a
    wrong key); with the real key this forges the chain itself.
    """
    prev = "0" * 64
    links = conn.execute("SELECT seq, t_utc, kind, ref, digest FROM chain ORDER BY seq")
    for seq, t_utc, kind, ref, digest in links.fetchall():
        if kind != "samples":
            from modulecontrol.records._chain import CHAINED

            cols = ", ".join(CHAINED[kind])
            idc = "seq" if kind == "audit" else "id"
            row = conn.execute(f"SELECT {cols} FROM {kind} WHERE {idc}=?", (ref,)).fetchone()
            if row is not None:
                digest = row_digest(kind, row)
        h = link_hash(key, seq, t_utc, kind, ref, digest, prev)
        conn.execute("UPDATE chain SET digest=?, prev_hash=?, hash=? WHERE seq=?",
                     (digest, prev, h, seq))
        if kind == "audit":
            conn.execute("UPDATE audit SET prev_hash=?, hash=? WHERE seq=?", (prev, h, ref))
        prev = h


def _guessed_key() -> bytes:
    return hashlib.sha256(b"").digest()


async def test_1_truncation_of_the_last_entries(db: Path) -> None:
    await _record(db)
    with AuditTrail(db) as trail:  # a reviewer's entries after the run
        for i in range(3):
            trail.append("qa", "review", "run 1", new_value=i, reason=f"check {i}")
    conn = _raw(db)
    (n,) = conn.execute("SELECT MAX(seq) FROM audit").fetchone()
    (head,) = conn.execute("SELECT MAX(seq) FROM chain").fetchone()
    conn.execute("DELETE FROM audit WHERE seq > ?", (n - 2,))
    conn.execute("DELETE FROM chain WHERE seq > ?", (head - 2,))
    conn.close()
    # what is left is a perfect chain, only shorter: the anchor kept outside says so
    assert _problems(db) == {"anchor mismatch"}


async def test_2_entry_edited_and_chain_recomputed(db: Path) -> None:
    await _record(db)
    conn = _raw(db)
    conn.execute("UPDATE audit SET new_value='61', reason='as planned' WHERE seq=1")
    _rechain(conn, _guessed_key())
    conn.close()
    assert "forged or edited link" in _problems(db)


async def test_2b_recomputed_with_the_key_is_still_caught_by_the_anchor(db: Path) -> None:
    await _record(db)
    conn = _raw(db)
    conn.execute("UPDATE audit SET new_value='61', reason='as planned' WHERE seq=1")
    _rechain(conn, bytes.fromhex(key_path_for(db).read_text().strip()))
    conn.close()
    # with the key the links verify; every head anchored after the edit point differs
    assert _problems(db) == {"anchor mismatch"}


async def test_3_entry_deleted_and_renumbered(db: Path) -> None:
    await _record(db)
    conn = _raw(db)
    (victim,) = conn.execute("SELECT seq FROM chain WHERE kind='events' LIMIT 1").fetchone()
    (ref,) = conn.execute("SELECT ref FROM chain WHERE seq=?", (victim,)).fetchone()
    conn.execute("DELETE FROM events WHERE id=?", (ref,))
    conn.execute("DELETE FROM chain WHERE seq=?", (victim,))
    conn.execute("UPDATE chain SET seq = seq - 1 WHERE seq > ?", (victim,))
    conn.execute("UPDATE samples SET blk = blk - 1 WHERE blk > ?", (victim,))
    _rechain(conn, _guessed_key())
    conn.close()
    probs = _problems(db)
    assert {"forged or edited link", "anchor mismatch"} <= probs


async def test_4_forged_entry_appended(db: Path) -> None:
    await _record(db)
    conn = _raw(db)
    head_seq, head_hash = conn.execute(
        "SELECT seq, hash FROM chain ORDER BY seq DESC LIMIT 1").fetchone()
    (aseq,) = conn.execute("SELECT MAX(seq) + 1 FROM audit").fetchone()
    values = (aseq, "2030-01-01T00:00:00.000000Z", "qa", "release", "batch", "null", "true",
              "all checks passed")
    d = row_digest("audit", values)
    h = link_hash(_guessed_key(), head_seq + 1, values[1], "audit", aseq, d, head_hash)
    conn.execute("INSERT INTO chain VALUES (?,?,?,?,?,?,?)",
                 (head_seq + 1, values[1], "audit", aseq, d, head_hash, h))
    conn.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?)", (*values, head_hash, h))
    conn.close()
    assert _problems(db) == {"forged or edited link"}


async def test_5_every_entry_deleted(db: Path) -> None:
    await _record(db)
    conn = _raw(db)
    for table in ("chain", "audit", "operator_actions", "alarms", "events", "samples", "runs",
                  "tags"):
        conn.execute(f"DELETE FROM {table}")
    conn.close()
    rep = verify_audit(db)
    assert not rep.ok and rep.entries == 0
    assert {i.problem for i in rep.issues} == {"anchor mismatch"}
    anchor_path_for(db).unlink()  # and when the anchor beside it is deleted too
    assert _problems(db) == {"no anchor"}


async def test_6_run_record_rewritten_as_completed_with_purity(db: Path) -> None:
    rid = await _record(db)
    conn = _raw(db)
    conn.execute("UPDATE runs SET result='completed', note='' WHERE id=?", (rid,))
    conn.execute("UPDATE samples SET value=99.9 WHERE tag_id=(SELECT id FROM tags WHERE"
                 " name='PAT.Purity')")
    conn.close()
    issues = verify_audit(db).issues
    named = {(i.problem, i.detail.split(" differs")[0]) for i in issues}
    assert ("record edited", f"runs row {rid}") in named
    assert "samples edited" in {i.problem for i in issues}


async def test_7_sample_edited(db: Path) -> None:
    await _record(db)
    conn = _raw(db)
    conn.execute("UPDATE samples SET value=value+1 WHERE rowid=(SELECT MAX(rowid) FROM samples)")
    conn.close()
    assert _problems(db) == {"samples edited"}


async def test_8_event_edited(db: Path) -> None:
    await _record(db)
    conn = _raw(db)
    conn.execute("UPDATE events SET payload='{\"step\":\"waste\"}' WHERE kind='step_transition'")
    conn.close()
    assert _problems(db) == {"record edited"}


async def test_samples_and_events_inserted_behind_the_writer(db: Path) -> None:
    await _record(db)
    conn = _raw(db)
    conn.execute("INSERT INTO samples(tag_id, t, value, quality) VALUES (1, ?, 1.0, 192)",
                 (T0 + 60,))
    conn.execute("INSERT INTO events(run_id, t, kind) VALUES (1, ?, 'message')", (T0 + 61,))
    conn.close()
    assert _problems(db) == {"unchained samples", "unchained record"}


@pytest.mark.parametrize("where", ["beside", "elsewhere"])
async def test_cli_verify_with_key_and_anchor_kept_elsewhere(db: Path, tmp_path: Path,
                                                             where: str) -> None:
    await _record(db)
    args = ["audit", "verify", "--db", str(db)]
    if where == "elsewhere":
        vault = tmp_path / "vault"
        vault.mkdir()
        key, anchor = vault / "records.key", vault / "records.anchor"
        key_path_for(db).rename(key)
        anchor_path_for(db).rename(anchor)
        args += ["--key", str(key), "--anchor", str(anchor)]
    runner = CliRunner()
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "audit trail OK" in res.output, res.output
    conn = _raw(db)
    conn.execute("UPDATE events SET source='x' WHERE kind='run_end'")
    conn.close()
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "record edited" in res.output
    if where == "elsewhere":
        res = runner.invoke(app, ["audit", "verify", "--db", str(db)])
        assert res.exit_code == 2 and "--key" in res.output


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(
    st.floats() | st.integers(min_value=-2**53, max_value=2**53),
    st.none() | st.floats() | st.integers(min_value=-2**53, max_value=2**53),
    st.sampled_from([0, 64, 192])), min_size=1, max_size=30))
# SQLite stores -0.0 as 0.0: a block holding one read as edited until the write-time digest
# took the value as stored (found by this test; kept as explicit examples)
@example([(-0.0, None, 0)])
@example([(0.0, -0.0, 192), (-0.0, None, 64)])
def test_any_stored_sample_values_verify(tmp_path_factory: pytest.TempPathFactory,
                                         samples: list[tuple[float, float | None, int]]
                                         ) -> None:
    """The block digest taken at write time equals the one recomputed from the table,
    whatever the values: NaN (stored as NULL), infinities, -0.0, integers in REAL columns."""
    db = tmp_path_factory.mktemp("v") / "v.db"

    async def go() -> None:
        h = Historian(db, flush_interval=0.05)
        try:
            await h.start_run("values", t=T0)
            for i, (v, raw, q) in enumerate(samples):
                h.record_sample("X", v, raw=raw, quality=q, t=T0 + i)
            await h.flush()
        finally:
            await h.close()

    asyncio.run(go())
    rep = verify_audit(db)
    assert rep.ok, rep.issues

"""Historian: round trip, back-pressure, alarms, runs left open, one live writer per file."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from modulecontrol.records import (
    OVERFLOW_ALARM,
    EventKind,
    Historian,
    RecordsError,
    RunResult,
    TagConfig,
    list_runs,
    verify_audit,
)


def _q(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def test_round_trip(db: Path) -> None:
    h = Historian(db, flush_interval=0.05)
    h.configure_tag("R1.T", TagConfig(unit="degC", deadband=0.5, group="reactor"))
    rid = await h.start_run("demo", recipe_version="2", recipe_text="steps: []",
                            plant_hash="abc", parameters={"T": "60 degC"}, operator="alice")
    assert h.current_run == rid
    for i, v in enumerate([20.0, 20.2, 21.0, 21.1, 25.0]):
        h.record_sample("R1.T", v, t=1000.0 + i, raw=v * 10)
    h.record_sample("P1.flow", 1.5, t=1000.0)  # unconfigured: stored, tag created on the fly
    eid = await h.commit_event(EventKind.STATE_CHANGE, "R1.Heat", {"state": "Execute"})
    h.raise_alarm("R1.TH", "T high", 750)
    h.raise_alarm("R1.TH", "T high again", 750)  # still active: not a second alarm
    h.acknowledge_alarm("R1.TH", "bob")
    h.clear_alarm("R1.TH")
    await h.end_run(rid, RunResult.COMPLETED, "ok")
    assert not h._active_runs
    await h.close()

    assert _q(db, "SELECT g.name, s.value, s.raw FROM samples s JOIN tags g ON g.id=s.tag_id"
              " WHERE g.name='R1.T' ORDER BY t") == [
        ("R1.T", 20.0, 200.0), ("R1.T", 21.0, 210.0), ("R1.T", 25.0, 250.0)]
    assert _q(db, "SELECT unit, grp FROM tags WHERE name='R1.T'") == [("degC", "reactor")]
    assert _q(db, "SELECT COUNT(*) FROM samples s JOIN tags g ON g.id=s.tag_id"
              " WHERE g.name='P1.flow'") == [(1,)]
    assert _q(db, "SELECT run_id, kind, source FROM events WHERE id=?", eid) == [
        (rid, "state_change", "R1.Heat")]
    alarms = _q(db, "SELECT name, priority, acked_by, t_acked IS NOT NULL,"
                " t_cleared IS NOT NULL FROM alarms")
    assert alarms == [("R1.TH", 750, "bob", 1, 1)]
    (run,) = list_runs(db)
    assert (run.result, run.note, run.operator, run.parameters) == (
        "completed", "ok", "alice", {"T": "60 degC"})
    assert run.recipe_hash == __import__("hashlib").sha256(b"steps: []").hexdigest()
    kinds = [k for (k,) in _q(db, "SELECT kind FROM events ORDER BY id")]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert {"alarm_raised", "alarm_acked", "alarm_cleared"} <= set(kinds)


async def test_backpressure_counts_alarms_and_never_blocks_the_loop(db: Path) -> None:
    h = Historian(db, flush_interval=0.02, queue_capacity=10, batch_size=5)
    h._pause_writer(True)  # a disk that does not keep up
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    worst = 0.0
    for i in range(1000):
        t0 = time.perf_counter()
        h.record_sample("x", float(i), t=float(i))
        worst = max(worst, time.perf_counter() - t0)
        if i % 100 == 0:
            await asyncio.sleep(0.002)
    h.record_event(EventKind.MESSAGE, "test", {"note": "events are never dropped"})
    await asyncio.sleep(0.05)
    assert ticks > 5, "the loop kept running while the writer was stalled"
    assert worst < 0.05, f"record_sample blocked for {worst * 1000:.1f} ms"
    assert h.stats.samples_overflowed == 990
    assert h.stats.samples_queued == 10
    h._pause_writer(False)
    await h.flush()
    task.cancel()
    await h.close()
    assert _q(db, "SELECT COUNT(*) FROM samples") == [(10,)]
    assert _q(db, "SELECT name, priority, t_cleared IS NOT NULL FROM alarms") == [
        (OVERFLOW_ALARM, 750, 1)]
    ((payload,),) = _q(db, "SELECT payload FROM events WHERE kind='historian_overflow'")
    assert json.loads(str(payload)) == {"dropped": 990}
    assert _q(db, "SELECT COUNT(*) FROM events WHERE kind='message'") == [(1,)]
    assert h.stats.overflow_episodes == [990]


async def test_samples_flushed_within_interval(db: Path) -> None:
    h = Historian(db, flush_interval=0.1, batch_size=10_000)
    try:
        h.record_sample("x", 1.0)
        deadline = time.monotonic() + 2.0
        while _q(db, "SELECT COUNT(*) FROM samples") == [(0,)]:
            assert time.monotonic() < deadline, "sample not committed within the flush interval"
            await asyncio.sleep(0.02)
    finally:
        await h.close()


async def test_close_with_open_run_marks_it_interrupted(db: Path) -> None:
    h = Historian(db, flush_interval=0.05)
    rid = await h.start_run("r")
    await h.close()
    (run,) = list_runs(db)
    assert run.id == rid and run.result == "interrupted" and "closed" in run.note
    with pytest.raises(RuntimeError, match="closed"):
        h.record_event("x")


async def test_second_writer_is_refused_naming_the_holder(db: Path) -> None:
    first = Historian(db, flush_interval=0.05)
    rid = await first.start_run("live")
    try:
        # same process, another open of the lock file: refused all the same
        with pytest.raises(RecordsError, match=rf"pid {os.getpid()} on .*run {rid}, since"):
            Historian(db, flush_interval=0.05)
        assert list_runs(db)[0].result == "running"  # the refused writer touched nothing
        await first.end_run(rid, RunResult.STOPPED)
    finally:
        await first.close()
    assert list_runs(db)[0].result == "stopped"
    again = Historian(db, flush_interval=0.05)  # released at close: the next writer may open
    try:
        assert again.took_over is None and again.recovered_runs == []
    finally:
        await again.close()


async def test_dead_writer_lease_is_taken_over_and_recorded(db: Path) -> None:
    h = Historian(db, flush_interval=0.05)
    rid = await h.start_run("orphan")
    h.record_sample("x", 1.0, t=time.time() + 5)
    await h.flush()
    # a process that died: the kernel dropped its lock, its lease row is still in meta
    h._writer_lock._unlock()
    again = Historian(db, flush_interval=0.05)
    try:
        assert again.recovered_runs == [rid]
        assert again.took_over is not None and again.took_over.run_id == rid
        (run,) = list_runs(db)
        assert run.result == "interrupted" and run.t_end is not None
        assert run.t_end >= run.t_start + 4  # last sign of life, not the reopen time
        await again.flush()
    finally:
        await again.close()
        h._stop = True
        h._thread.join(2)
    conn = sqlite3.connect(db)
    (payload,) = conn.execute("SELECT payload FROM events WHERE kind='writer_takeover'"
                              ).fetchone()
    conn.close()
    assert f"run {rid}" in payload
    assert verify_audit(db).ok


def test_bad_arguments(db: Path) -> None:
    with pytest.raises(ValueError, match="flush_interval"):
        Historian(db, flush_interval=0)
    h = Historian(db)
    try:
        with pytest.raises(ValueError, match="priority"):
            h.raise_alarm("a", priority=0)
        with pytest.raises(ValueError, match="no run"):
            h.end_run_nowait()
        with pytest.raises(ValueError, match="reason"):
            h.record_operator_action("alice", "write", "X", reason="")
        with pytest.raises(ValueError, match="figures"):
            h.start_run_nowait("r", metadata={"figures": {"product": {"tag": "x",
                                                                      "density": "3 m"}}})
    finally:
        h.close_sync()


async def test_anchor_that_cannot_be_written_fails_the_caller(db: Path, tmp_path: Path) -> None:
    anchor = tmp_path / "not-a-file"
    anchor.mkdir()
    h = Historian(db, flush_interval=0.05, anchor_path=anchor)
    try:
        with pytest.raises(RecordsError, match="could not be appended to the anchor file"):
            await h.start_run("r")
        assert h.stats.write_errors == 1
    finally:
        await h.close()

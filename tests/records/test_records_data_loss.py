"""A batch the database refuses is a recorded loss, never a log line (issue #14, finding 5).

The database is made busy the way the issue reproduced it: a second, real sqlite3
connection holds ``BEGIN EXCLUSIVE`` on the file for longer than the historian's budget.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from modulecontrol.events import EventKind
from modulecontrol.records import DATA_LOSS_ALARM, Historian, RunResult, verify_audit
from tests._poll import until


def _blocker(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None, timeout=0.1)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


async def test_a_batch_lost_to_a_held_write_lock_is_an_event_and_an_alarm(db: Path) -> None:
    hist = Historian(db, flush_interval=0.05, write_budget=0.5)
    rid = await hist.start_run("loss", t=1000.0)
    hist.record_sample("R1.T", 20.0, t=1000.0)
    await hist.flush()
    blocker = _blocker(db)
    try:
        for i in range(5):
            hist.record_sample("R1.T", 21.0 + i, t=1010.0 + i)
            hist.record_sample("P1.Flow", 1.0 + i, t=1010.0 + i)
        note = hist.record_event(EventKind.MESSAGE, "test", {"n": 1}, t=1012.0)
        assert await until(lambda: bool(hist.losses), 10) is not None
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    (loss,) = hist.losses  # known at once, while the database was still locked
    assert (loss.run_id, loss.samples, loss.tags) == (rid, 10, ("P1.Flow", "R1.T"))
    assert (loss.t_first, loss.t_last, loss.records) == (1010.0, 1014.0, 0)
    assert "locked" in loss.error
    await asyncio.wait_for(asyncio.wrap_future(note), 10)  # the event was queued again
    await hist.end_run(rid, RunResult.COMPLETED_WITH_DATA_LOSS, loss.describe(), t=1100.0)
    await hist.close()

    with sqlite3.connect(db) as conn:
        events = conn.execute("SELECT kind, payload FROM events WHERE run_id=? ORDER BY id",
                              (rid,)).fetchall()
        samples = conn.execute("SELECT t FROM samples ORDER BY t").fetchall()
        alarm = conn.execute("SELECT message FROM alarms WHERE name=?",
                             (DATA_LOSS_ALARM,)).fetchall()
        result = conn.execute("SELECT result FROM runs WHERE id=?", (rid,)).fetchone()[0]
    (payload,) = [json.loads(p) for k, p in events if k == EventKind.DATA_LOSS]
    assert payload == {"samples": 10, "tags": ["P1.Flow", "R1.T"], "t_first": 1010.0,
                       "t_last": 1014.0, "records": 0, "error": loss.error}
    assert [k for k, _ in events].count(EventKind.MESSAGE) == 1  # once: not lost, not twice
    assert samples == [(1000.0,)]  # the lost batch is not half there
    assert len(alarm) == 1 and "10 samples of 2 tags over 4 s" in alarm[0][0]
    assert result == "completed_with_data_loss"
    report = verify_audit(db)
    assert report.ok, report.issues


async def test_a_lock_released_within_the_budget_loses_nothing(db: Path) -> None:
    """The retry: the batch waits for the lock and is then written exactly once."""
    hist = Historian(db, flush_interval=0.05, write_budget=30.0)
    rid = await hist.start_run("wait", t=1000.0)
    await hist.flush()
    blocker = _blocker(db)
    try:
        for i in range(5):
            hist.record_sample("R1.T", 21.0 + i, t=1010.0 + i)
        flushed = asyncio.ensure_future(hist.flush())
        await asyncio.sleep(0.3)
        assert not flushed.done()  # the writer is waiting for the lock
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await asyncio.wait_for(flushed, 10)
    await hist.end_run(rid, t=1100.0)
    await hist.close()
    assert hist.losses == []
    with sqlite3.connect(db) as conn:
        ts = [t for (t,) in conn.execute("SELECT t FROM samples ORDER BY t")]
    assert ts == [1010.0, 1011.0, 1012.0, 1013.0, 1014.0]

"""A run its writer left (``kill -9``) is reopened by the next writer that resumes it: the
record shows the interruption and the resumption, goes on on the same run, and its chain
verifies; only an interrupted run can be reopened."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modulecontrol.records import Historian, RecordsError, list_runs, report, verify_audit
from modulecontrol.records._plots import _broken

CHILD = r"""
import asyncio, sys, time
from modulecontrol.records import Historian

async def main(db):
    h = Historian(db, flush_interval=0.05)
    rid = await h.start_run("resume-test")
    h.record_sample("counter", 1.0)
    await h.flush()
    print("run", rid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main(sys.argv[1]))
"""


ROOT = Path(__file__).resolve().parents[2]


def _left_run(db: Path) -> int:
    """A writer that starts a run and is killed (-9) holding it; returns the run's id."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("run "), line
        rid = int(line.split()[1])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    return rid


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL semantics")
async def test_an_interrupted_run_is_reopened_and_goes_on(db: Path) -> None:
    rid = await asyncio.to_thread(_left_run, db)
    h = Historian(db)
    try:
        assert h.recovered_runs == [rid]
        gap_from = _last_sample(db)
        gap_to = gap_from + 30.0
        await h.resume_run(rid, {"gap": 12.5, "step": "feeding", "gap_from": gap_from,
                                 "gap_to": gap_to}, t=gap_to)
        assert h.current_run == rid
        h.record_sample("counter", 2.0, t=gap_to + 1.0)
        h.record_sample("counter", 3.0, t=gap_to + 2.0)
        await h.end_run(rid, "completed", t=gap_to + 3.0)
        with pytest.raises(RecordsError, match="not an interrupted run"):
            await h.resume_run(rid, {"gap": 0.0, "step": ""})
    finally:
        await h.close()
    (run,) = list_runs(db)
    assert run.id == rid and run.result == "completed"
    with sqlite3.connect(db) as conn:
        kinds = [(k, json.loads(p)) for k, p in conn.execute(
            "SELECT kind, payload FROM events WHERE run_id=? ORDER BY id", (rid,))]
        counters = conn.execute("SELECT s.value, s.run_id FROM samples s JOIN tags t ON"
                                " t.id = s.tag_id WHERE t.name='counter' ORDER BY s.t").fetchall()
    names = [k for k, _ in kinds]
    assert names == ["run_start", "run_end", "run_resumed", "run_end"], names
    assert kinds[1][1]["result"] == "interrupted" and kinds[2][1]["step"] == "feeding"
    assert counters == [(1.0, rid), (2.0, rid), (3.0, rid)]  # both sides of the gap: the run's
    assert verify_audit(db).ok
    # the batch report shades the gap, and its trend does not draw the value across it
    doc = json.loads(report(db, rid, "json"))
    start = run.t_start
    assert {"kind": "no record", "start_s": pytest.approx(gap_from - start),
            "end_s": pytest.approx(gap_to - start)} in doc["plots"]["windows"]
    t, v = _broken(np.array([0.0, 1.0, 40.0]), np.array([1.0, 1.0, 2.0]), [(1.0, 31.0)])
    assert list(t) == [0.0, 1.0, 1.0, 40.0] and np.isnan(v[2]) and list(v[[0, 1, 3]]) == [
        1.0, 1.0, 2.0]


def _last_sample(db: Path) -> float:
    with sqlite3.connect(db) as conn:
        return float(conn.execute("SELECT max(t) FROM samples").fetchone()[0])

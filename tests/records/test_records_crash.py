"""Crash safety with a real process killed by SIGKILL in the middle of a run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modulecontrol.records import Historian, list_runs

FLUSH = 0.2
# time for one commit plus scheduling jitter on a loaded 2-core machine
SLACK = 0.3

CHILD = r"""
import asyncio, sys, time
from modulecontrol.records import Historian, EventKind

async def main(db):
    h = Historian(db, flush_interval={flush}, batch_size=1_000_000)
    rid = await h.start_run("crash-test")
    print("run", rid, flush=True)
    n = 0
    next_event = time.monotonic()
    while True:
        h.record_sample("counter", float(n), t=time.time())
        n += 1
        if time.monotonic() >= next_event:
            eid = await h.commit_event(EventKind.MESSAGE, "child", {{"n": n}})
            print("event", eid, flush=True)
            next_event += 0.05
        await asyncio.sleep(0.002)

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL semantics")
def test_kill9_loses_at_most_one_flush_interval(db: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(flush=FLUSH), str(db)],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    confirmed: list[int] = []
    run_id = None
    deadline = time.monotonic() + 20
    try:
        while len(confirmed) < 15:
            assert time.monotonic() < deadline, "child did not start"
            line = proc.stdout.readline()
            assert line, "child exited early"
            kind, num = line.split()
            if kind == "run":
                run_id = int(num)
            else:
                confirmed.append(int(num))
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()
        confirmed += [int(x.split()[1]) for x in rest.splitlines() if x.startswith("event")]
    finally:
        proc.kill()
        proc.wait(10)

    conn = sqlite3.connect(db)
    ids = {r[0] for r in conn.execute("SELECT id FROM events")}
    rows = conn.execute("SELECT s.t, s.value FROM samples s ORDER BY s.t").fetchall()
    conn.close()
    assert set(confirmed) <= ids, "an event confirmed as committed was lost"
    values = [int(v) for _t, v in rows]
    assert values == list(range(len(values))), "samples lost in the middle"
    last_t = rows[-1][0]
    assert killed_at - last_t <= FLUSH + SLACK, (
        f"lost {killed_at - last_t:.3f} s of samples (> flush interval {FLUSH} s)")

    assert list_runs(db)[0].result == "running"  # nobody has looked yet
    h = Historian(db)
    try:
        assert h.recovered_runs == [run_id]
    finally:
        h.close_sync()
    (run,) = list_runs(db)
    assert run.result == "interrupted" and "ended without closing" in run.note
    assert run.t_end is not None and abs(run.t_end - last_t) < 1.0

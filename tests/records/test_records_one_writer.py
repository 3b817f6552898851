"""One live writer per database, with two real processes (issue 14, finding 1).

Process A records a run and holds the database. A second ``modulecontrol run`` on the same
file is refused, naming A; readers (runs, report, audit verify) work while A writes; A's
record is intact afterwards (no foreign samples, a monotonic totaliser, the chain verifies).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modulecontrol.records import list_runs, report, verify_audit
from modulecontrol.records.cli import app

ROOT = Path(__file__).resolve().parents[2]

WRITER = r"""
import asyncio, sys
from modulecontrol.records import Historian, RunResult

async def main(db):
    h = Historian(db, flush_interval=0.05)
    rid = await h.start_run("writer-a", t=1000.0)
    for i in range(100):
        h.record_sample("A.Total", float(i), t=1000.0 + i)
    await h.flush()
    print("ready", rid, flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    for i in range(100, 200):
        h.record_sample("A.Total", float(i), t=1000.0 + i)
    await h.end_run(rid, RunResult.COMPLETED, t=1200.0)
    await h.close()
    print("done", flush=True)

asyncio.run(main(sys.argv[1]))
"""


def _env() -> dict[str, str]:
    e = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="250")
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), e.get("PYTHONPATH")) if p)
    return e


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_second_run_is_refused_and_the_first_record_is_intact(tmp_path: Path) -> None:
    db = tmp_path / "same.sqlite"
    a = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=_env())
    assert a.stdin is not None and a.stdout is not None
    try:
        line = a.stdout.readline()
        assert line.startswith("ready"), line
        rid = int(line.split()[1])

        b = subprocess.run(
            [sys.executable, "-m", "modulecontrol.cli", "run",
             str(ROOT / "recipes" / "examples" / "prime_and_flush.yaml"), "--simulate",
             "--speed", "600", "--db", str(db), "--no-live", "--yes",
             "--report-dir", str(tmp_path / "reports")],
            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
        out = b.stdout + b.stderr
        assert b.returncode == 2, out
        assert f"being written by pid {a.pid}" in out and f"run {rid}" in out, out
        assert "one live writer per database" in out

        # readers work while A writes
        (run,) = list_runs(db)
        assert (run.id, run.result) == (rid, "running")
        doc = json.loads(report(db, rid, "json"))
        assert doc["tags"]["A.Total"]["samples"] == 100
        assert verify_audit(db).ok
        res = CliRunner().invoke(app, ["runs", "--db", str(db)])
        assert res.exit_code == 0 and "running" in res.output, res.output

        a.stdin.write("go\n")
        a.stdin.flush()
        assert a.stdout.readline().strip() == "done"
        assert a.wait(timeout=30) == 0
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    (run,) = list_runs(db)  # the refused run left no record of its own
    assert (run.id, run.result) == (rid, "completed")
    rows = [r.split(",") for r in report(db, rid, "csv").splitlines()[1:]]
    values = [float(r[3]) for r in rows if r[2] == "A.Total"]
    assert values == [float(i) for i in range(200)]  # A's samples only, none lost or foreign
    assert verify_audit(db).ok


async def test_verify_and_report_while_the_writer_commits(tmp_path: Path) -> None:
    """Readers see one snapshot: records committed mid-verify are neither 'unchained' nor
    'missing from the anchor'."""
    import asyncio

    from modulecontrol.records import Historian

    db = tmp_path / "live.db"
    h = Historian(db, flush_interval=0.01)
    rid = await h.start_run("live")
    stop = asyncio.Event()

    async def feed() -> int:
        i = 0
        while not stop.is_set():
            h.record_sample("x", float(i))
            h.record_event("message", "feed", {"i": i})
            i += 1
            await asyncio.sleep(0.001)
        return i

    task = asyncio.create_task(feed())
    try:
        for _ in range(8):
            rep = await asyncio.to_thread(verify_audit, db)
            assert rep.ok, rep.issues
            await asyncio.to_thread(report, db, rid, "json")
        assert rep.entries > 0
    finally:
        stop.set()
        await task
        await h.close()
    assert verify_audit(db).ok

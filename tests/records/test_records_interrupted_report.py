"""A report for every run: a real run killed early, or stopped by Ctrl-C, still gets HTML
and JSON, with the figures that need missing samples marked "not available" and why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "lomustine" / "campaign.yaml"


def _env() -> dict[str, str]:
    e = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="250")
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), e.get("PYTHONPATH")) if p)
    return e


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "modulecontrol.cli", *args]


def _start(tmp_path: Path, db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _cli("run", str(RECIPE), "--simulate", "--speed", "600", "--db", str(db), "--no-live",
             "--yes", "--report-dir", str(tmp_path / "reports")),
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_first_step(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "step_started" in line:
            return
    raise AssertionError("run ended before its first step: " + "".join(seen))


def _reports(tmp_path: Path, db: Path) -> dict[str, object]:
    html = subprocess.run(_cli("report", "1", "--db", str(db), "--format", "html", "-o",
                               str(tmp_path / "r.html")), env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert html.returncode == 0, html.stdout + html.stderr
    js = subprocess.run(_cli("report", "1", "--db", str(db), "--format", "json"), env=_env(),
                        capture_output=True, text=True, timeout=120)
    assert js.returncode == 0, js.stdout + js.stderr
    doc: dict[str, object] = json.loads(js.stdout)
    figures = doc["figures"]
    assert isinstance(figures, dict)
    for name, reason in figures.get("not_available", {}).items():
        assert figures[name] is None and "no samples of tag" in reason, (name, reason)
        assert "not available: " + reason.split(";")[0] in \
            (tmp_path / "r.html").read_text(encoding="utf-8").replace("&#x27;", "'")
    return doc


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_run_killed_early_gets_html_and_json(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    proc = _start(tmp_path, db)
    try:
        _wait_first_step(proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    doc = _reports(tmp_path, db)
    run = doc["run"]
    assert isinstance(run, dict) and run["result"] == "interrupted"
    assert "writer is gone" in run["note"]


@pytest.mark.slow  # the hold and stop of a real plant: about a minute on 2 cores
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_run_stopped_by_ctrl_c_gets_html_and_json(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    proc = _start(tmp_path, db)
    try:
        _wait_first_step(proc)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "report failed" not in out, out
    assert (tmp_path / "reports" / "run-1.html").exists(), out
    doc = _reports(tmp_path, db)
    run = doc["run"]
    assert isinstance(run, dict) and run["result"] in ("stopped", "aborted"), run

"""``modulecontrol run --records-key PATH --anchor PATH``: the run's records chain is keyed
with the given key and anchored in the given file (kept apart from the database), and
``audit verify`` checks the run with them."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from modulecontrol.records import anchor_path_for, key_path_for

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "examples" / "dosing_demo.yaml"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "modulecontrol.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_run_keys_and_anchors_where_it_is_told(tmp_path: Path) -> None:
    db = tmp_path / "line" / "runs.db"
    safe = tmp_path / "elsewhere"
    safe.mkdir(mode=0o700)
    key, anchor = safe / "line.key", safe / "line.anchor"
    run = _cli("run", str(RECIPE), "--simulate", "--speed", "60", "--yes", "--no-live",
               "--db", str(db), "--report-dir", str(tmp_path / "reports"),
               "--records-key", str(key), "--anchor", str(anchor))
    assert run.returncode == 0, run.stdout + run.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600  # created at first use, owner only
    assert '"why":"run 1 end"' in anchor.read_text(encoding="utf-8")
    # nothing beside the database: the defaults were not used
    assert not key_path_for(db).exists() and not anchor_path_for(db).exists()

    ok = _cli("audit", "verify", "--db", str(db), "--key", str(key), "--anchor", str(anchor))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    without = _cli("audit", "verify", "--db", str(db))  # the default key is not there
    assert without.returncode == 2 and "--key" in without.stdout + without.stderr, without

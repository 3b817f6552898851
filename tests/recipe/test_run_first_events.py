"""`run --no-live` prints a run from its first event: the printer is subscribed before the
run starts, not once the orchestrator happens to be seen (which missed the run's start and
Idle -> Starting)."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "examples" / "dosing_demo.yaml"
_LINE = re.compile(r"^\d+:\d\d:\d\d (\w+)\s+(\S+): (.*)$")


def test_no_live_prints_the_run_from_its_start(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="250")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    out = subprocess.run(
        [sys.executable, "-m", "modulecontrol.cli", "run", str(RECIPE), "--simulate",
         "--speed", "100", "--yes", "--no-live", "--db", str(tmp_path / "r.db"),
         "--report-dir", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    # (how the run ends does not matter here: on a loaded machine it may time out)
    events = [m.groups() for m in map(_LINE.match, out.stdout.splitlines()) if m]
    kinds = [k for k, _, _ in events]
    assert kinds[0] == "run_started", out.stdout
    # the recipe's states form one chain from Idle: none of them was missed
    states = [msg.split(" -> ") for k, _, msg in events if k == "recipe_state"]
    assert states[0][0] == "Idle", out.stdout
    assert all(a[1] == b[0] for a, b in itertools.pairwise(states)), out.stdout
    # and the first step and the first command come before the run ends
    assert kinds.index("step_started") < kinds.index("command") < kinds.index("run_ended")

"""Benchmark: start-up of a simulated run of the lomustine campaign.

What a user waits for on every ``make run``, and every test that starts a session pays:

* ``cli_to_first_step_s``: wall time from starting ``modulecontrol run
  recipes/lomustine/campaign.yaml --simulate --speed 240 --yes`` (a fresh process: imports,
  validation, eleven simulated modules served, proxies connected, historian opened) to its
  first ``step_started`` line; the process is then stopped. Several runs, as the machine
  may be shared.
* ``import_cli_s``: ``import modulecontrol.cli`` in a fresh interpreter.
* ``help_s`` / ``validate_s`` / ``validate_plant_s``: ``modulecontrol --help``,
  ``modulecontrol validate recipes/lomustine/campaign.yaml`` (the recipe and its plant, with
  the simulation's build check) and ``validate recipes/lomustine/plant.yaml``, whole
  processes: wall time and the CPU time they used (``*_cpu_s``: user + system time of the
  child, from ``os.times()``, i.e. ``getrusage(RUSAGE_CHILDREN)``; the better figure on a
  machine shared with other jobs). Targets: 0.3 s and 1 s. The parsed-YAML cache is the
  user's (warm after the first command); ``validate_nocache_cpu_s`` is the campaign with
  ``MODULECONTROL_YAML_CACHE=off`` (every document parsed).

The package's bytecode is compiled first (``compileall``, into its ``__pycache__`` folders,
which git ignores), as an installed package has it: a source tree run with
``PYTHONDONTWRITEBYTECODE`` would otherwise compile some 200 modules in every process, about
0.2 s that no user pays.
* ``session_start_first_s`` / ``session_start_next_s``: ``Session.start()`` (simulators
  served, every module connected) in one process, the first time and again after it (what
  the second and later tests of a pytest process pay), with the close after each.

Why subprocesses for the first two: imports and one-time work happen once per process, and
that is what a user sees.
"""

from __future__ import annotations

import asyncio
import compileall
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = ROOT / "recipes" / "lomustine" / "campaign.yaml"
REPEATS = int(os.environ.get("STARTUP_REPEATS", "3"))


def _exe() -> str:
    return str(Path(sys.executable).with_name("modulecontrol"))


def cli_to_first_step(tmp: Path, timeout: float = 60.0) -> float:
    """Seconds from spawning the CLI to its first ``step_started`` line."""
    cmd = [_exe(), "run", str(CAMPAIGN), "--simulate", "--speed", "240", "--yes",
           "--set", "checks=1", "--db", str(tmp / "startup.db"), "--report-dir", str(tmp)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, start_new_session=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "step_started" in line:
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                break
        raise RuntimeError(f"no step started within {timeout:g} s (exit {proc.poll()})")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def import_cli() -> float:
    code = "import time; t = time.perf_counter(); import modulecontrol.cli; " \
           "print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, timeout=60)
    return float(out.stdout.strip())


def command(*args: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``modulecontrol`` process with ``args``, exit code 0."""
    before = os.times()
    t0 = time.perf_counter()
    subprocess.run([_exe(), *args], capture_output=True, check=True, cwd=ROOT, timeout=60,
                   env=env)
    wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system
                                                          - before.children_system)
    return wall, cpu


async def _session_starts(tmp: Path, n: int) -> list[float]:
    from modulecontrol.bootstrap import configure
    from modulecontrol.session import RunOptions, Session

    wiring = configure(cli_logging=True)  # asyncua as quiet as in `modulecontrol run`
    times: list[float] = []
    try:
        for i in range(n):
            opts = RunOptions(simulate=True, speed=240, db=tmp / f"s{i}.db", report_dir=None,
                              overrides={"checks": "1"}, auto_answer="__first__")
            session = Session.load(CAMPAIGN, None, opts)
            t0 = time.perf_counter()
            try:
                await session.start()
                times.append(time.perf_counter() - t0)
            finally:
                await session._shutdown()
    finally:
        wiring.undo()
    return times


def _summary(xs: list[float]) -> dict[str, float]:
    return {"min": round(min(xs), 3), "median": round(statistics.median(xs), 3),
            "max": round(max(xs), 3)}


def run() -> dict[str, Any]:
    compileall.compile_dir(ROOT / "modulecontrol", quiet=1)
    nocache = {**os.environ, "MODULECONTROL_YAML_CACHE": "off"}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as d:
        tmp = Path(d)
        first_step = [cli_to_first_step(tmp) for _ in range(REPEATS)]
        imports = [import_cli() for _ in range(REPEATS)]
        helps = [command("--help") for _ in range(REPEATS)]
        command("validate", str(CAMPAIGN.with_name("plant.yaml")))  # the cache, as after
        command("validate", str(CAMPAIGN))                          # a user's first command
        validates = [command("validate", str(CAMPAIGN)) for _ in range(REPEATS)]
        plants = [command("validate", str(CAMPAIGN.with_name("plant.yaml")))
                  for _ in range(REPEATS)]
        cold = [command("validate", str(CAMPAIGN), env=nocache) for _ in range(REPEATS)]
        starts = asyncio.run(_session_starts(tmp, 1 + REPEATS))
    return {
        "repeats": REPEATS,
        "cli_to_first_step_s": _summary(first_step),
        "import_cli_s": _summary(imports),
        "help_s": _summary([w for w, _ in helps]),
        "help_cpu_s": _summary([c for _, c in helps]),
        "validate_s": _summary([w for w, _ in validates]),
        "validate_cpu_s": _summary([c for _, c in validates]),
        "validate_plant_s": _summary([w for w, _ in plants]),
        "validate_plant_cpu_s": _summary([c for _, c in plants]),
        "validate_nocache_cpu_s": _summary([c for _, c in cold]),
        "session_start_first_s": round(starts[0], 3),
        "session_start_next_s": _summary(starts[1:]),
    }


if __name__ == "__main__":
    from modulecontrol.bootstrap import configure

    configure()  # the composition root of this script
    import json

    print(json.dumps(run(), indent=2))

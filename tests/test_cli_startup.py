"""What the command line's short paths import: `modulecontrol --help` and `validate` of the
lomustine campaign (with its plant) load none of the heavy libraries.

Why imports and not seconds: a timing assertion fails on a busy machine and passes on a fast
one whatever the code does; the import set is what makes these commands slow (about 1.4 s of
protocol stacks, scipy's solvers, matplotlib and the web stack), and it is exact. The times
themselves are measured in `make bench` (bench/startup.py: help_s, validate_s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modulecontrol.drivers import available_drivers
from modulecontrol.drivers._registry import _BUILTIN_MODELS

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = ROOT / "recipes" / "lomustine" / "campaign.yaml"

HEAVY = ("asyncua", "pymodbus", "serial", "serial_asyncio_fast", "cryptography", "matplotlib",
         "fastapi", "starlette", "uvicorn", "httpx", "websockets", "psycopg", "paho",
         "google.protobuf", "argon2", "scipy.optimize", "scipy.integrate", "scipy.linalg",
         "scipy.special")
"""Packages a short command must not load (pint imports scipy's top level, 10 ms, itself)."""

_PROBE = """
import json, sys
from importlib.metadata import entry_points
args = json.loads(sys.argv[1])
if args and args[0] == "validate":  # plug-in drivers are imported to register their models:
    for ep in entry_points(group="modulecontrol.drivers"):  # what they import is theirs
        if ep.dist is None or ep.dist.name != "modulecontrol":
            ep.load()
theirs = {h for h in HEAVY if h in sys.modules}
sys.argv = ["modulecontrol", *args]
from modulecontrol.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
loaded = sorted(h for h in HEAVY if h in sys.modules and h not in theirs)
print(json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""


def _env() -> dict[str, str]:
    """This tree first on the path of a child interpreter, as in the test process."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def _imports_of(*args: str) -> dict[str, object]:
    """Run ``main()`` with ``args`` in a fresh interpreter; its exit code and heavy imports."""
    code = f"HEAVY = {HEAVY!r}\n{_PROBE}"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(list(args))],
                          capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=120)
    last = proc.stderr.strip().splitlines()[-1]
    result: dict[str, object] = json.loads(last)
    return result


@pytest.mark.parametrize("args", [
    ["--help"],
    ["--version"],
    ["validate", str(CAMPAIGN)],
    ["validate", str(CAMPAIGN.with_name("plant.yaml"))],
    ["validate", str(CAMPAIGN), "--set", "checks=2"],
], ids=["help", "version", "validate-campaign", "validate-plant", "validate-set"])
def test_short_commands_load_no_heavy_library(args: list[str]) -> None:
    got = _imports_of(*args)
    assert got["code"] == 0, got
    assert got["loaded"] == [], f"modulecontrol {' '.join(args)} imported {got['loaded']}"


def test_validate_still_refuses_what_the_simulation_refuses(tmp_path: Path) -> None:
    """The lazy imports did not drop the simulation's build check from `validate`: a rate
    constant in 1/s on a second-order reaction is the simulator's error, and still reported."""
    plant = CAMPAIGN.with_name("plant.yaml").read_text(encoding="utf-8")
    assert "k_ref: 0.035 L/(mol*s)" in plant
    (tmp_path / "plant.yaml").write_text(
        plant.replace("k_ref: 0.035 L/(mol*s)", "k_ref: 0.035 1/s", 1), encoding="utf-8")
    (tmp_path / "species.yaml").write_text(
        CAMPAIGN.with_name("species.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", "from modulecontrol.cli import main; main()",
                           "validate", str(tmp_path / "plant.yaml")],
                          capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "k_ref '0.035 1/s' does not fit a reaction of overall order 2" in proc.stderr


@pytest.mark.parametrize("name", sorted(_BUILTIN_MODELS))
def test_builtin_models_are_what_the_driver_declares(name: str) -> None:
    """The built-in transports are registered from descriptors without importing their
    drivers; the table must be exactly what each driver class declares."""
    cls = available_drivers()[name].load()
    assert _BUILTIN_MODELS[name] == (cls.binding_model, cls.endpoint_models)

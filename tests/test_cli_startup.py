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

NOT_FOR_VALIDATE = (
    "asyncio", "ssl", "sqlite3", "numpy.random", "ruamel.yaml", "rich.table",
    "modulecontrol.drivers._base", "modulecontrol.drivers._scan",
    "modulecontrol.records._report", "modulecontrol.records._historian",
    "modulecontrol.records._plots", "modulecontrol.records._signing",
    "modulecontrol.records._audit", "modulecontrol.records._query",
    "modulecontrol.session", "modulecontrol.orchestrator", "modulecontrol.proxy",
    "modulecontrol.twin", "modulecontrol.service", "modulecontrol.simulators._serve",
)
"""What ``validate`` of the lomustine plant and campaign, with the parsed documents cached,
no longer loads (each tens of milliseconds or a step towards them): the event loop and TLS
(the driver base), SQLite and the report builder (the records package loads on first use;
``FigureSpec`` is a module of its own), numpy's random generators (models make theirs on
the first noisy reading), the YAML parser (documents come from the cache), and the layers
above the recipe. ``importlib.metadata`` is not here: the drivers' entry points need it."""

NOT_FOR_HELP = ("importlib.metadata", "asyncio", "pydantic", "pint", "numpy", "ruamel.yaml",
                "modulecontrol.descriptors", "modulecontrol.recipe")
"""What ``--help`` loads none of: the version is read from the metadata on first use."""

_PROBE = """
import json, sys
from importlib.metadata import entry_points
args = json.loads(sys.argv[1])
if args and args[0] == "validate":  # plug-in drivers are imported to register their models:
    for ep in entry_points(group="modulecontrol.drivers"):  # what they import is theirs
        if ep.dist is None or ep.dist.name != "modulecontrol":
            ep.load()
theirs = {h for h in HEAVY if h in sys.modules}  # HEAVY: the names this probe checks
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


def _imports_of(*args: str, names: tuple[str, ...] = HEAVY,
                env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``main()`` with ``args`` in a fresh interpreter; its exit code and which of
    ``names`` it imported (those a plug-in driver imported itself excepted)."""
    code = f"HEAVY = {names!r}\n{_PROBE}"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(list(args))],
                          capture_output=True, text=True, cwd=ROOT, env=env or _env(),
                          timeout=120)
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


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose YAML cache holds the lomustine documents and the built-in types
    (filled by one ``validate`` of each), as after a user's first command."""
    env = {**_env(), "MODULECONTROL_YAML_CACHE": str(tmp_path_factory.mktemp("yaml-cache"))}
    for target in (CAMPAIGN, CAMPAIGN.with_name("plant.yaml")):
        subprocess.run([sys.executable, "-c", "from modulecontrol.cli import main; main()",
                        "validate", str(target)], check=True, capture_output=True, cwd=ROOT,
                       env=env, timeout=120)
    return env


@pytest.mark.parametrize("target", [CAMPAIGN, CAMPAIGN.with_name("plant.yaml")],
                         ids=["campaign", "plant"])
def test_validate_loads_only_what_it_checks_with(target: Path,
                                                 warm_cache: dict[str, str]) -> None:
    got = _imports_of("validate", str(target), names=NOT_FOR_VALIDATE, env=warm_cache)
    assert got["code"] == 0, got
    assert got["loaded"] == [], f"validate {target.name} imported {got['loaded']}"


def test_validate_without_a_cache_parses_and_still_loads_no_heavy_library() -> None:
    env = {**_env(), "MODULECONTROL_YAML_CACHE": "off"}
    got = _imports_of("validate", str(CAMPAIGN), names=(*HEAVY, "ruamel.yaml"), env=env)
    assert got["code"] == 0, got
    assert got["loaded"] == ["ruamel.yaml"], got  # the parser, and nothing heavier


def test_help_loads_neither_the_models_nor_the_metadata() -> None:
    got = _imports_of("--help", names=NOT_FOR_HELP)
    assert got["code"] == 0, got
    assert got["loaded"] == [], f"--help imported {got['loaded']}"


def test_the_service_and_a_run_load_scipys_solvers_only_to_optimise_or_fit() -> None:
    """`serve` and `run` load the orchestrator, which holds the optimize step, and the twin,
    which holds the fit: scipy's minimisers and its statistics (some 0.4 s of a service's
    start) load with an optimisation's search or a fit, which few runs make."""
    code = ("import sys, json, modulecontrol.service, modulecontrol.session, "
            "modulecontrol.optimize, modulecontrol.twin; print(json.dumps(sorted(m for m in "
            "('scipy.optimize', 'scipy.stats', 'scipy.special') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, env=_env(), timeout=120).stdout
    assert json.loads(out) == []


@pytest.mark.parametrize("package", ["modulecontrol.records", "modulecontrol.drivers",
                                     "modulecontrol.simulators"])
def test_a_lazy_package_gives_every_public_name(package: str) -> None:
    """The public faces that load on first use still have every name of their ``__all__``,
    each the object its defining module holds, and refuse a name they do not have."""
    code = f"""
import importlib, json
pkg = importlib.import_module({package!r})
where = pkg._WHERE
missing = [n for n in pkg.__all__ if not hasattr(pkg, n)]
other = [n for n in pkg.__all__ if n in where and getattr(pkg, n) is not getattr(
    importlib.import_module(pkg.__name__ + "." + where[n]), n)]
try:
    pkg.no_such_name
    refused = False
except AttributeError:
    refused = True
print(json.dumps({{"missing": missing, "other": other, "refused": refused,
                  "unlisted": sorted(set(pkg.__all__) - set(dir(pkg)))}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, env=_env(), timeout=120).stdout
    got = json.loads(out)
    assert got == {"missing": [], "other": [], "refused": True, "unlisted": []}


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

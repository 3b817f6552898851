"""`modulecontrol validate --set NAME=VALUE` checks a recipe with the overrides `run --set`
would apply, and `import modulecontrol.cli` stays light (heavy libraries load in commands)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modulecontrol.cli import LAZY_COMMANDS, app, lazy_command

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN = ROOT / "recipes" / "lomustine" / "campaign.yaml"
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"


def _validate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["validate", *args])
    return result.exit_code, result.output


def test_set_is_checked_as_run_checks_it() -> None:
    code, out = _validate(str(CAMPAIGN), "--set", "checks=2", "--set", "t_r1=45 degC")
    assert code == 0, out
    code, out = _validate(str(CAMPAIGN), "--set", "t_r1=500")
    assert code == 1 and "--set t_r1=500: parameter 't_r1': '500' is outside [20, 70] degC" in out


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--set", "chekcs=3"], 1, "unknown parameter 'chekcs' (did you mean 'checks'?)"),
    (["--set", "checks"], 2, "--set checks: expected --set NAME=VALUE"),
])
def test_bad_set(args: list[str], code: int, message: str) -> None:
    got, out = _validate(str(CAMPAIGN), *args)
    assert got == code and message in out, out


def test_set_on_a_plant_is_refused() -> None:
    code, out = _validate(str(PLANT), "--set", "checks=2")
    assert code == 1 and "--set overrides recipe parameters: this is not a recipe" in out


def test_an_optimize_block_that_no_step_runs_is_noted(tmp_path: Path) -> None:
    """A recipe may declare a campaign for `modulecontrol optimize` alone, so validate passes
    it, but says that on a line it optimises nothing."""
    example = ROOT / "recipes" / "examples" / "lomustine_optimize.yaml"
    code, out = _validate(str(example))
    assert code == 0 and "note:" not in out, out
    text = example.read_text(encoding="utf-8")
    step = "      - name: search\n        optimize: throughput\n"
    assert step in text
    unused = tmp_path / "unused.yaml"
    unused.write_text(text.replace(step, "").replace(
        "../lomustine/plant.yaml", str(PLANT)), encoding="utf-8")
    code, out = _validate(str(unused))
    assert code == 0, out
    assert "note: the optimize block 'throughput' is run by no step" in " ".join(out.split())


def test_importing_the_cli_loads_no_heavy_library() -> None:
    """`modulecontrol --help` and short commands import the CLI only: the protocol stacks,
    numpy, pint and matplotlib load in the commands that need them."""
    code = ("import sys, json, modulecontrol.cli; print(json.dumps(sorted(m for m in"
            " ('asyncua', 'pymodbus', 'numpy', 'matplotlib', 'pint', 'scipy', 'serial')"
            " if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert json.loads(out) == []


def test_help_lists_every_command_without_loading_it() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("validate", "run", "sim", "mtp", "drivers", "states", "audit", "runs",
                 "report"):
        assert f" {name} " in result.output, name


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_listing_line_is_the_commands_own_help(name: str) -> None:
    """The listing shows LAZY_COMMANDS's line without importing the command: it must be the help
    the command itself prints."""
    assert (lazy_command(name).help or "").startswith(LAZY_COMMANDS[name][2])


def test_lazy_sub_command_runs() -> None:
    result = CliRunner().invoke(app, ["states"])
    assert result.exit_code == 0 and "Execute" in result.output

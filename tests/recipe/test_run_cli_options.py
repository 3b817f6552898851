"""`modulecontrol run` refuses bad options with one line and exit code 2, before anything
starts (no simulator, no database)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "examples" / "dosing_demo.yaml"


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "flow"], "--set flow: expected --set NAME=VALUE"),   # was a ConfigError traceback
    (["--speed", "0"], "--speed: must be a positive number"),        # was a ValueError traceback
    (["--speed", "-3"], "--speed: must be a positive number"),
    (["--set", "flow=1", "--set", "flow=2"], "parameter 'flow' is set twice"),
])
def test_bad_run_option_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    db = tmp_path / "r.db"
    result = CliRunner().invoke(app, ["run", str(RECIPE), "--simulate", "--yes", "--no-live",
                                      "--db", str(db), *args])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert message in result.output
    assert not db.exists()

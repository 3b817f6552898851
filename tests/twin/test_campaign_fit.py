"""The fit on a recorded run of the campaign itself (docs/digital-twin.md, "Not yet"): the
lomustine campaign run on the simulated line whose nitrosation is faster than the plant file
says, with R2 at 30 degC (a service parameter, only in the start command), copied with 1 %
noise on the analyzer; the fit on the plant file recovers the truth."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.descriptors import load_plant
from modulecontrol.twin import copy_run_with_noise, fit

ROOT = Path(__file__).resolve().parents[2]
LINE = ROOT / "recipes" / "lomustine"
K = "R2.reactions.nitrosation_equilibrium.k_ref"
TRUTH = 2.2


@pytest.mark.slow
def test_fit_on_a_recorded_campaign_run_recovers_the_truth(tmp_path: Path) -> None:
    for name in ("plant.yaml", "species.yaml", "campaign.yaml"):
        shutil.copy(LINE / name, tmp_path / name)
    truth = tmp_path / "truth"
    truth.mkdir()
    shutil.copy(LINE / "species.yaml", truth / "species.yaml")
    text = (LINE / "plant.yaml").read_text(encoding="utf-8")
    changed, n = re.subn(r"(name: nitrosation_equilibrium\n(?:.*\n){2}\s*k_ref: )1\.8",
                         rf"\g<1>{TRUTH}", text)
    assert n == 1
    (truth / "plant.yaml").write_text(changed, encoding="utf-8")
    res = CliRunner().invoke(app, [
        "run", str(tmp_path / "campaign.yaml"), "--plant", str(truth / "plant.yaml"),
        "--simulate", "--speed", "300", "--set", "checks=1", "--set", "check_interval=20 min",
        "--set", "t_r2=30", "--yes", "--no-live", "--db", str(tmp_path / "line.db"),
        "--report-dir", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    run = copy_run_with_noise(tmp_path / "line.db", 1, tmp_path / "noisy.db", seed=3,
                              noise={"PAT1.Intermediate": 0.01, "PAT1.Product": 0.01})
    result = fit(load_plant(tmp_path / "plant.yaml"), tmp_path / "noisy.db", [run], [K],
                 ["PAT1.Intermediate", "PAT1.Product"], dt=10.0)
    (est,) = result.estimates
    assert abs(est.value / TRUTH - 1) < 0.05, est
    assert not result.warnings
    assert est.low < est.value < est.high
    # Not yet: the 95 % interval (about +-0.06 % with 1 % noise on the steady points) does
    # not cover the truth. The line's models integrate by splitting; the fit compares with
    # their exact steady solve, which differs by about 0.1 % in k here (measured 2.1975
    # for 2.2; docs/digital-twin.md, "Not yet"). The estimate is within that bias:
    assert abs(est.value / TRUTH - 1) < 0.005, est

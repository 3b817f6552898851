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
from modulecontrol.twin import ParameterEstimate, copy_run_with_noise, fit
from tests.twin.conftest import ROOT

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
    # The interval (95 %: about +-0.06 % with 1 % noise on the steady points) is centred on
    # the truth: the reactors' balanced splitting settles on the exact steady state the fit
    # compares with (before it, plain splitting settled 0.1 % off in k and the interval,
    # at 2.1975 [2.1962, 2.1988], missed 2.2 by 1.9 half-widths; docs/digital-twin.md,
    # "Why steady windows")
    _covers(est)
    # The default outputs, every analyzer signal, include the DCU impurity, whose replay
    # settled 3.5-8 % above its steady solve with plain splitting, so no stretch settled
    # within the 1 % band and the fit was refused. Balanced, it settles on it:
    signals = ("PAT1.Impurity", "PAT1.Intermediate", "PAT1.Product", "PAT1.Purity")
    noisy_all = copy_run_with_noise(tmp_path / "line.db", 1, tmp_path / "noisy_all.db",
                                    seed=4, noise=dict.fromkeys(signals, 0.01))
    every = fit(load_plant(tmp_path / "plant.yaml"), tmp_path / "noisy_all.db", [noisy_all],
                [K], dt=10.0)
    assert set(every.outputs) == set(signals) and every.n_points > 0, every.outputs
    (est,) = every.estimates
    _covers(est)


def _covers(est: ParameterEstimate) -> None:
    """The truth within the 99.9 % interval: 3.29 / 1.96 of the reported 95 % half-width.

    Why not the 95 % interval itself: the campaign runs at 300x on the wall clock, so the
    number and times of the analyzer's samples, and with them the noise drawn for each,
    change from run to run with the machine's load. Each run is a new draw, and a 95 %
    interval misses the truth in one draw of twenty (0.07 % off, 1.08 half-widths, was seen
    on a loaded machine). The wider interval misses one in a thousand, and still refuses the
    bias of plain splitting (1.9 half-widths)."""
    half = 0.5 * (est.high - est.low)
    assert abs(est.value - TRUTH) <= 3.29 / 1.96 * half, est

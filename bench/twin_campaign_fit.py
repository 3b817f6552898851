"""Benchmark: the twin's fit on a recorded run of the lomustine campaign itself
(docs/digital-twin.md, "Fits on campaign runs"; the short version is
tests/twin/test_campaign_fit.py).

The campaign (recipes/lomustine/campaign.yaml) runs on the simulated line over its real
protocols at 300 times real time, with R2's nitrosation k_ref at 2.2 instead of the plant
file's 1.8 and R2 at 30 degC, for ``TWIN_CAMPAIGN_CHECKS`` hours of production (default 2);
the run is copied with 1 % noise on PAT1.Intermediate and PAT1.Product, and k_ref is fitted
on the plant file. Reported: estimate, 95 % interval, RMS scaled residual, points, the run's
and the fit's CPU and wall time.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LINE = ROOT / "recipes" / "lomustine"
K = "R2.reactions.nitrosation_equilibrium.k_ref"
TRUTH = 2.2


def _cpu() -> float:
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                  resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run() -> dict[str, Any]:
    """Run the campaign, copy it with noise, fit k_ref; the figures."""
    from typer.testing import CliRunner

    from modulecontrol.cli import app
    from modulecontrol.descriptors import load_plant
    from modulecontrol.twin import copy_run_with_noise, fit

    checks = int(os.environ.get("TWIN_CAMPAIGN_CHECKS", "2"))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name in ("plant.yaml", "species.yaml", "campaign.yaml"):
            shutil.copy(LINE / name, d / name)
        (d / "truth").mkdir()
        shutil.copy(LINE / "species.yaml", d / "truth" / "species.yaml")
        text = (LINE / "plant.yaml").read_text(encoding="utf-8")
        changed, n = re.subn(r"(name: nitrosation_equilibrium\n(?:.*\n){2}\s*k_ref: )1\.8",
                             rf"\g<1>{TRUTH}", text)
        if n != 1:
            raise RuntimeError("plant.yaml: nitrosation_equilibrium k_ref 1.8 not found")
        (d / "truth" / "plant.yaml").write_text(changed, encoding="utf-8")
        c0, w0 = _cpu(), time.perf_counter()
        res = CliRunner().invoke(app, [
            "run", str(d / "campaign.yaml"), "--plant", str(d / "truth" / "plant.yaml"),
            "--simulate", "--speed", "300", "--set", f"checks={checks}",
            "--set", "check_interval=1 h", "--set", "t_r2=30", "--yes", "--no-live",
            "--db", str(d / "line.db"), "--report-dir", str(d / "runs")])
        if res.exit_code != 0:
            raise RuntimeError(f"campaign run failed: {res.output[-2000:]}")
        c1, w1 = _cpu(), time.perf_counter()
        new = copy_run_with_noise(d / "line.db", 1, d / "noisy.db", seed=3,
                                  noise={"PAT1.Intermediate": 0.01, "PAT1.Product": 0.01})
        result = fit(load_plant(d / "plant.yaml"), d / "noisy.db", [new], [K],
                     ["PAT1.Intermediate", "PAT1.Product"], dt=10.0)
        c2, w2 = _cpu(), time.perf_counter()
        (est,) = result.estimates
        window = result.windows[0]
        return {"truth": TRUTH, "written": est.initial, "estimate": round(est.value, 5),
                "ci95": [round(est.low, 5), round(est.high, 5)],
                "error_pct": round(100 * (est.value / TRUTH - 1), 3),
                "covered": bool(est.low <= TRUTH <= est.high),
                "rms_scaled_residual": round(result.rms, 5), "points": result.n_points,
                "transient_left_out": result.n_transient,
                "run_simulated_h": round((window[1] - window[0]) / 3600.0, 2),
                "run_cpu_s": round(c1 - c0, 1), "run_wall_s": round(w1 - w0, 1),
                "fit_cpu_s": round(c2 - c1, 1), "fit_wall_s": round(w2 - w1, 1),
                "warnings": result.warnings}

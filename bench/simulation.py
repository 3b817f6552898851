"""Benchmark: in-process simulation speed of a small continuous plant over 24 h simulated.

Plant: 3 HPLC pumps (reagent A, reagent B, antisolvent), T-mixer, two jacketed coil reactors
(A + B -> C, then the reversible C <=> D), two thermostats, BPR, PAT analyzer, divert valve,
antisolvent mixer and an MSMPR crystallizer. ``run()`` steps it with control intervals of
1 s, 5 s and 10 s and reports the speed factor (simulated / wall time) for each.
"""

from __future__ import annotations

import math
import time
from typing import Any

from modulecontrol.simulators.models import Flowsheet, demo_plant

DAY = 86400.0


def build_plant() -> Flowsheet:
    """The benchmark plant (the package's demonstration plant)."""
    return demo_plant()


def measure(dt: float, duration: float = DAY) -> dict[str, float]:
    fs = build_plant()
    n = math.ceil(duration / dt)
    t0 = time.perf_counter()
    for _ in range(n):
        fs.step(dt)
    wall = time.perf_counter() - t0
    worst = max(abs(b.residual) / max(b.mass_in, 1e-30) for b in fs.balances().values())
    return {
        "wall_s": wall,
        "speed_factor": n * dt / wall,
        "steps": float(n),
        "us_per_step": wall / n * 1e6,
        "worst_relative_mass_residual": worst,
    }


def run() -> dict[str, Any]:
    """Speed factors for 24 h simulated at several control intervals."""
    out: dict[str, Any] = {"simulated_s": DAY}
    for dt in (1.0, 5.0, 10.0):
        out[f"dt_{dt:g}s"] = measure(dt)
    out["speed_factor"] = out["dt_5s"]["speed_factor"]
    return out


if __name__ == "__main__":
    from modulecontrol.bootstrap import configure

    configure()  # the composition root of this script
    import json

    print(json.dumps(run(), indent=2))

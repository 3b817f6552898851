"""Benchmark: speed of the lomustine line's process models (recipes/lomustine/plant.yaml).

The line at its operating point (every service started, divert to product) is stepped from
empty for ``LOMUSTINE_SPEED_HOURS`` simulated hours (default 2) at control intervals of 1 s
and 5 s, the steps a served plant takes (``serve_plant``: 1 s at real time, up to 5 s at 500x).
Reported per interval: the speed factor (simulated / wall time), ms per step and the worst
relative mass residual of any unit (docs/simulators.md, "Speed").
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from modulecontrol.simulators.lomustine import build_line


def measure(dt: float, duration: float) -> dict[str, float]:
    fs = build_line(dt=dt).flowsheet
    n = math.ceil(duration / dt)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fs.step(dt)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    worst = max(abs(b.residual) / max(b.mass_in, b.mass_out, b.holdup, 1e-12)
                for b in fs.balances().values())
    return {
        "speed_factor": round(n * dt / wall, 1),
        "ms_per_step": round(wall / n * 1e3, 4),
        # CPU time of this process: what the figure would be on an idle core (the shared
        # development machine runs other jobs, which stretch the wall time)
        "cpu_speed_factor": round(n * dt / cpu, 1),
        "cpu_ms_per_step": round(cpu / n * 1e3, 4),
        "steps": float(n),
        "worst_relative_mass_residual": worst,
    }


def run() -> dict[str, Any]:
    """Speed factors of the lomustine line at dt = 1 s and 5 s."""
    duration = 3600.0 * float(os.environ.get("LOMUSTINE_SPEED_HOURS", "2"))
    out: dict[str, Any] = {"simulated_s": duration, "units": 15}
    for dt in (1.0, 5.0):
        figures = measure(dt, duration)
        out[f"dt_{dt:g}s"] = figures
        print(f"lomustine line, dt = {dt:g} s: {figures['speed_factor']:,.0f}x real time, "
              f"{figures['ms_per_step']:.3f} ms/step (CPU: {figures['cpu_speed_factor']:,.0f}x, "
              f"{figures['cpu_ms_per_step']:.3f} ms/step), worst mass residual "
              f"{figures['worst_relative_mass_residual']:.1e}", flush=True)
    return out


if __name__ == "__main__":
    from modulecontrol.bootstrap import configure

    configure()  # the composition root of this script
    import json

    print(json.dumps(run(), indent=2))

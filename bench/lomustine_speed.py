"""Benchmark: speed of the lomustine line's process models (recipes/lomustine/plant.yaml).

Reported (docs/simulators.md, "Speed"; docs/digital-twin.md, "Simulation speed"):

- ``dt_1s``, ``dt_5s``: the line at its operating point (every service started, divert to
  product) stepped from empty for ``LOMUSTINE_SPEED_HOURS`` simulated hours (default 2) at
  control intervals of 1 s and 5 s, the steps a served plant takes (``serve_plant``: 1 s at
  real time, up to 5 s at 500x). Mostly start-up: little is steady yet.
- ``steady_*``: steady production, the same line after a start-up of 3 h, stepped for 2 h more
  at 5 s and 10 s; the whole line and the twin's line (the modules upstream of the analyzer
  PAT1, what ``twin whatif`` and the twin beside a run step), each with the steady skip
  (``UnitModel.skip_steady``) and without it.
- ``whatif_4h``, ``whatif_24h``: a whole ``twin whatif`` from the live operating point (R1 at
  55 instead of 50 degC, horizons of 4 h and 24 h at its default 10 s), building and the two
  steady-state solves included; ``whatif_no_skip``: the 4 h one without the skip.

Per case: the speed factor (simulated / wall time), ms per step, the same on the process's CPU
time and the worst relative mass residual of any unit.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from modulecontrol.clock import Clock
from modulecontrol.descriptors import PlantConfig, load_plant
from modulecontrol.simulators import SimulatedPlant
from modulecontrol.simulators.lomustine import DEFAULT_PLANT, build_line
from modulecontrol.simulators.models import Flowsheet, UnitModel


def _figures(fs: Flowsheet, n: int, dt: float, wall: float, cpu: float) -> dict[str, float]:
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


def _timed(fs: Flowsheet, dt: float, duration: float) -> dict[str, float]:
    n = math.ceil(duration / dt)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fs.step(dt)
    return _figures(fs, n, dt, time.perf_counter() - t0, time.process_time() - c0)


def measure(dt: float, duration: float) -> dict[str, float]:
    """From empty (the start-up) for ``duration`` s."""
    return _timed(build_line(dt=dt).flowsheet, dt, duration)


def _twin_line(dt: float) -> Flowsheet:
    """The modules upstream of the analyzer, as the twin's what-if builds them."""
    from modulecontrol.twin._model import upstream

    sim = SimulatedPlant.from_config(upstream(load_plant(DEFAULT_PLANT), ["PAT1"]),
                                     Clock.fast(), dt=dt)
    sim.start_services()
    return sim.flowsheet


def steady(dt: float, line: str, skip: bool, startup: float = 3 * 3600.0,
           duration: float = 2 * 3600.0) -> dict[str, float]:
    """Steady production: ``duration`` s after a start-up of ``startup`` s (not timed)."""
    fs = build_line(dt=dt).flowsheet if line == "line" else _twin_line(dt)
    for u in fs.units.values():
        u.skip_steady = skip
    for _ in range(math.ceil(startup / dt)):
        fs.step(dt)
    skipped = sum(u.skipped_steps for u in fs.units.values())
    out = _timed(fs, dt, duration)
    n_units = len(fs.units)
    out["skipped_share"] = round((sum(u.skipped_steps for u in fs.units.values()) - skipped)
                                 / (out["steps"] * n_units), 3)
    return out


def whatif(horizon: float = 4 * 3600.0, dt: float = 10.0) -> dict[str, float]:
    """A whole ``twin whatif`` ahead of the live operating point."""
    from modulecontrol.twin import whatif_live

    config: PlantConfig = load_plant(DEFAULT_PLANT)
    t0, c0 = time.perf_counter(), time.process_time()
    res = whatif_live(config, {}, {"R1.TempSP": 55.0}, horizon, dt=dt)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"horizon_s": horizon, "dt": dt, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "speed_factor": round(horizon / wall, 1), "cpu_speed_factor": round(horizon / cpu, 1),
            "time_to_steady_s": res.time_to_steady_s, "off_spec_ml": res.off_spec_ml,
            "purity_pct": res.purity_pct}


def _line(name: str, f: dict[str, float]) -> None:
    print(f"{name}: {f['speed_factor']:,.0f}x real time, {f['ms_per_step']:.3f} ms/step "
          f"(CPU: {f['cpu_speed_factor']:,.0f}x, {f['cpu_ms_per_step']:.3f} ms/step), worst "
          f"mass residual {f['worst_relative_mass_residual']:.1e}", flush=True)


def run() -> dict[str, Any]:
    """Speed factors of the lomustine line: start-up, steady production, a what-if."""
    duration = 3600.0 * float(os.environ.get("LOMUSTINE_SPEED_HOURS", "2"))
    out: dict[str, Any] = {"simulated_s": duration, "units": 15}
    # one untimed step of a line first: scipy's and numba's imports and the reactor kernels'
    # compile (or load from the cache) happen once per process, and are not simulation
    t0 = time.perf_counter()
    warm = build_line(dt=5.0).flowsheet
    for _ in range(60):
        warm.step(5.0)
    out["warm_up_s"] = round(time.perf_counter() - t0, 3)
    print(f"warm-up (imports, kernels compiled or loaded): {out['warm_up_s']:.2f} s", flush=True)
    for dt in (1.0, 5.0):
        figures = measure(dt, duration)
        out[f"dt_{dt:g}s"] = figures
        _line(f"lomustine line from empty, dt = {dt:g} s", figures)
    for line in ("line", "twin"):
        for dt in (5.0, 10.0):
            for skip in (True, False):
                key = f"steady_{line}_dt_{dt:g}s" + ("" if skip else "_no_skip")
                figures = steady(dt, line, skip)
                out[key] = figures
                _line(f"steady production, {line}, dt = {dt:g} s, "
                      f"skip {'on' if skip else 'off'} ({figures['skipped_share']:.0%} of unit "
                      "steps skipped)", figures)
    UnitModel.skip_steady = True
    for hours in (4, 24):
        out[f"whatif_{hours}h"] = w = whatif(hours * 3600.0)
        print(f"twin whatif, {hours} h at dt = {w['dt']:g} s, whole call: "
              f"{w['speed_factor']:,.0f}x ({w['wall_s']:.2f} s; CPU "
              f"{w['cpu_speed_factor']:,.0f}x, {w['cpu_s']:.2f} s)", flush=True)
    UnitModel.skip_steady = False
    out["whatif_no_skip"] = w = whatif(4 * 3600.0)
    UnitModel.skip_steady = True
    print(f"twin whatif without the skip: {w['speed_factor']:,.0f}x ({w['wall_s']:.2f} s; CPU "
          f"{w['cpu_speed_factor']:,.0f}x, {w['cpu_s']:.2f} s)", flush=True)
    return out


if __name__ == "__main__":
    from modulecontrol.bootstrap import configure

    configure()  # the composition root of this script
    import json

    print(json.dumps(run(), indent=2))

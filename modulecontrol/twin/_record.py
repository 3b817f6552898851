"""Record a run made by the simulator: the known-truth data a fit is checked against.

The plant's models run with chosen set points (held from the start) and their outputs are
sampled with seeded, relative Gaussian measurement noise into a historian run, exactly as a
recorded run stores them: inputs and measurements as ``TAG.Assembly`` samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from modulecontrol.descriptors import PlantConfig
from modulecontrol.records import Historian, RunResult, run_samples
from modulecontrol.twin._model import Replay, TwinError, replay

__all__ = ["copy_run_with_noise", "record_simulated_run"]


def record_simulated_run(config: PlantConfig, db: str | Path, *, settings: Mapping[str, float],
                         outputs: Sequence[str], duration: float, interval: float = 30.0,
                         noise: float = 0.01, seed: int = 0, dt: float = 5.0,
                         t0: float = 1.7e9) -> int:
    """Simulate ``duration`` s with ``settings`` (``TAG.Assembly`` -> value) and store the
    settings and ``outputs`` sampled every ``interval`` s (noise: relative standard
    deviation) as a completed run; returns its id."""
    if interval <= 0 or duration < interval:
        raise TwinError("record: need 0 < interval <= duration")
    times = np.arange(interval, duration + 1e-9, interval)
    inputs = {s: (np.zeros(1), np.array([float(v)])) for s, v in settings.items()}
    clean = replay(config, Replay(inputs, duration), outputs, dt,
                   dict.fromkeys(outputs, times))
    rng = np.random.default_rng(seed)
    hist = Historian(db, clock=lambda: t0)
    try:
        run = hist.start_run_nowait("twin-record", parameters=dict(settings), t=t0).result()
        for s, v in settings.items():
            hist.record_sample(s, float(v), t=t0)
        for s in outputs:
            y = clean[s] * (1.0 + noise * rng.standard_normal(len(times)))
            for t, v in zip(times, y, strict=True):
                hist.record_sample(s, float(v), t=t0 + float(t))
        hist.end_run_nowait(run, RunResult.COMPLETED, t=t0 + duration).result()
    finally:
        hist.close_sync()
    return run


def copy_run_with_noise(src: str | Path, run: int, dst: str | Path, *,
                        noise: Mapping[str, float], seed: int = 0) -> int:
    """Copy run ``run`` of ``src`` into ``dst`` as a completed run, with seeded relative
    Gaussian noise on the ``noise`` signals (``TAG.Assembly`` -> relative standard
    deviation); returns the new run's id.

    Why: a simulated campaign run (``modulecontrol run --simulate``) records the models'
    exact values, while a fit is to be judged on measurements as a line gives them. Every
    sample (with its time), every event (the written values a fit replays are in them) and
    the run window are copied as they were; only the named signals change.
    """
    data = run_samples(src, run)
    missing = [s for s in noise if s not in data.series]
    if missing:
        raise TwinError(f"run {run} has no samples of {', '.join(missing)}")
    rng = np.random.default_rng(seed)
    t0 = data.run.t_start
    hist = Historian(dst, clock=lambda: t0)
    try:
        new = hist.start_run_nowait(data.run.recipe_name, parameters=data.run.parameters,
                                    t=t0).result()
        for s, (ts, vs) in sorted(data.series.items()):
            ys = vs * (1.0 + noise[s] * rng.standard_normal(len(vs))) if s in noise else vs
            for t, v in zip(ts, ys, strict=True):
                hist.record_sample(s, float(v), t=float(t))
        for t, kind, source, payload in data.events:
            if kind not in ("run_start", "run_end", "run_started", "run_ended"):
                hist.record_event(kind, source, payload, run_id=new, t=t)
        hist.end_run_nowait(new, RunResult.COMPLETED, t=data.t_end).result()
    finally:
        hist.close_sync()
    return new

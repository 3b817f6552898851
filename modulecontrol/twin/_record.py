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
from modulecontrol.records import Historian, RunResult
from modulecontrol.twin._model import Replay, TwinError, replay

__all__ = ["record_simulated_run"]


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

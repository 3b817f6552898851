"""What a fit replays from a recorded run: the values that were written, cut where they
change. The three causes of a campaign fit that missed (docs/digital-twin.md, "Not yet"):
every poll cut a stretch, a measured jacket temperature was replayed as an input, and a
stretch shorter than one step gave steady samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modulecontrol.descriptors import load_plant
from modulecontrol.records import Historian, RunResult, run_samples
from modulecontrol.simulators import build_models
from modulecontrol.twin._fit import _steady_windows
from modulecontrol.twin._model import Replay, is_input, recorded_inputs, segments, upstream
from tests.twin.conftest import PLANT

T0 = 1.7e9


def _campaign_like_run(db: Path) -> int:
    """A run recorded as the session records one: polled flags every 30 s, the jacket
    temperature as it heats, and R2's set point only in its service's start command."""
    hist = Historian(db, clock=lambda: T0)
    try:
        run = hist.start_run_nowait("campaign", t=T0).result()
        for k in range(100):
            t = T0 + 30.0 * k
            hist.record_sample("P1.Run", 1.0 if 20 <= k < 80 else 0.0, t=t)
            hist.record_sample("P1.TotalReset", 0.0, t=t)
            hist.record_sample("R2.JacketT", 20.0 + min(k, 10) * 0.5, t=t)
        hist.record_event("command", "R2.Tempering", {
            "command": "Start", "parameters": {"TempSP": "30 degC"}}, run_id=run, t=T0 + 60)
        hist.end_run_nowait(run, RunResult.COMPLETED, t=T0 + 3000.0).result()
    finally:
        hist.close_sync()
    return run


def test_inputs_are_the_written_values_and_cut_only_where_they_change(tmp_path: Path) -> None:
    config = load_plant(PLANT)
    _, views = build_models(config)
    # a measurement linked to a model input is an output, never replayed
    assert not is_input(views, "R2.JacketT")
    assert is_input(views, "R2.TempSP") and is_input(views, "P1.Run")
    run = _campaign_like_run(tmp_path / "runs.db")
    rep = recorded_inputs(config, run_samples(tmp_path / "runs.db", run))
    assert set(rep.inputs) == {"P1.Run", "P1.TotalReset", "R2.TempSP"}
    # the set point the service's start command wrote, in the assembly's unit
    assert rep.inputs["R2.TempSP"][1].tolist() == [30.0]
    assert rep.inputs["P1.Run"][1].tolist() == [0.0, 1.0, 0.0]  # changes only
    cuts = [s.start for s in segments(rep)]
    assert cuts == [0.0, 60.0, 600.0, 2400.0]  # 300 polls cut nothing


def test_a_stretch_shorter_than_a_step_gives_no_steady_samples() -> None:
    config = upstream(load_plant(PLANT), ["PAT1"])
    on = {s: (np.array([0.0]), np.array([v])) for s, v in
          {"P1.Run": 1.0, "P2.Run": 1.0, "P3.Run": 1.0}.items()}
    # R2 cooled for 5 s between two steps (shorter than dt = 10 s) after an hour of production
    on["R2.TempSP"] = (np.array([0.0, 3603.0, 3608.0]), np.array([25.0, 10.0, 25.0]))
    windows = _steady_windows(config, Replay(on, 4000.0), ["PAT1.Product"], 10.0)
    assert [round(s.end - s.start) for s, _ in windows] == [3603, 5, 392]
    short, since = windows[1]
    assert since == short.end  # no samples from it
    assert windows[0][1] < windows[0][0].end  # the hour before settles and is fitted

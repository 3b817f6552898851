"""What-if from a run's state: the twin replays the run's recorded inputs, so a line still
settling after a change (or part-way through its start-up) is where the change begins, and
the analyzer's last readings beside the twin's check the estimate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.descriptors import PlantConfig, load_plant
from modulecontrol.records import Historian, RunResult
from modulecontrol.twin import TwinError, record_simulated_run, whatif, whatif_live
from modulecontrol.twin import _whatif as whatif_module
from modulecontrol.twin._model import Replay, replay
from tests.twin.conftest import PLANT, copy_run_from

T0 = 1.7e9
HOUR = 3600.0


@pytest.fixture(scope="module")
def config() -> PlantConfig:
    return load_plant(PLANT)


def _record_change(config: PlantConfig, db: Path, t_change: float, duration: float) -> int:
    """A run at R1 50 degC changed to 60 degC at ``t_change``: noise-free analyzer samples
    every minute from the models' replay (the twin is the plant: its estimate must be
    exact)."""
    inputs = {"R1.TempSP": (np.array([0.0, t_change]), np.array([50.0, 60.0]))}
    times = np.arange(60.0, duration + 1e-9, 60.0)
    clean = replay(config, Replay(inputs, duration), ["PAT1.Purity"], 10.0,
                   {"PAT1.Purity": times})["PAT1.Purity"]
    hist = Historian(db, clock=lambda: T0)
    try:
        run = hist.start_run_nowait("changed", t=T0).result()
        hist.record_sample("R1.TempSP", 50.0, t=T0)
        hist.record_sample("R1.TempSP", 60.0, t=T0 + t_change)
        for t, v in zip(times, clean, strict=True):
            hist.record_sample("PAT1.Purity", float(v), t=T0 + float(t))
        hist.end_run_nowait(run, RunResult.COMPLETED, t=T0 + duration).result()
    finally:
        hist.close_sync()
    return run


@pytest.fixture(scope="module")
def settling(config: PlantConfig, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A 2 h run whose set point changed 5 min before its end: the line is still settling."""
    db = tmp_path_factory.mktemp("settling") / "runs.db"
    return db, _record_change(config, db, 2 * HOUR - 300.0, 2 * HOUR)


def test_a_run_still_settling_is_where_the_what_if_begins(
        config: PlantConfig, settling: tuple[Path, int]) -> None:
    db, run = settling
    state = whatif(config, db, run, {}, HOUR)
    steady = whatif(config, db, run, {}, HOUR, start="steady")
    # the steady start assumes the line has settled at 60 degC: nothing to wait for
    assert steady.time_to_steady_s == 0.0 and steady.estimate == {}
    assert steady.before["purity_pct"] == pytest.approx(steady.purity_pct, rel=1e-9)
    # the state start is 5 min after the change: the analyzer has not yet seen all of it
    assert "the state at the end of run" in state.start_from
    assert "replayed from rest" in state.start_from
    assert abs(state.before["purity_pct"] - steady.before["purity_pct"]) > 0.1
    assert 0.0 < state.time_to_steady_s < HOUR
    assert state.purity_pct == steady.purity_pct  # the same new steady state
    # the twin is the plant here: its estimate matches the analyzer's readings
    check = state.estimate["PAT1.Purity"]
    assert check["t_s"] == 2 * HOUR and check["samples"] == 5
    assert check["twin"] == pytest.approx(check["recorded"], abs=1e-6)


def test_only_the_last_window_is_replayed_from_the_steady_state_then(
        config: PlantConfig, settling: tuple[Path, int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A run longer than START_WINDOW: its last window from the steady state at the inputs
    held at the window's start (here 50 degC, before the change): the same state as the
    whole replay, as the line has forgotten its start-up by then."""
    db, run = settling
    whole = whatif(config, db, run, {}, HOUR)
    monkeypatch.setattr(whatif_module, "START_WINDOW", 1200.0)
    last = whatif(config, db, run, {}, HOUR)
    assert "its last 20 min replayed from the steady state at the inputs held then" in \
        last.start_from
    assert last.before["purity_pct"] == pytest.approx(whole.before["purity_pct"], abs=1e-4)
    assert last.time_to_steady_s == whole.time_to_steady_s
    check = last.estimate["PAT1.Purity"]
    assert check["twin"] == pytest.approx(check["recorded"], abs=1e-4)


def test_a_run_begun_on_a_line_in_production_starts_from_its_steady_state(
        config: PlantConfig, tmp_path: Path) -> None:
    """A 10 min recording begun after 2 h of production: replayed from rest it would be a
    start-up (the analyzer at a third of its purity); its first samples say otherwise, so
    the replay starts from the steady state at its first inputs."""
    src = tmp_path / "src.db"
    full = record_simulated_run(config, src, settings={"R1.TempSP": 50.0},
                                outputs=["PAT1.Purity"], duration=2 * HOUR, interval=60.0,
                                noise=0.002, dt=10.0)
    db = tmp_path / "runs.db"
    run = copy_run_from(src, full, db, since=2 * HOUR - 600.0)
    out = whatif(config, db, run, {"R2.TempSP": 10.0}, 1800.0)
    assert "it began on a line in production (PAT1.Purity read" in out.start_from
    check = out.estimate["PAT1.Purity"]
    assert check["twin"] == pytest.approx(check["recorded"], abs=0.5)  # 0.2 % noise, 5 samples
    assert check["twin"] > 90.0
    steady = whatif(config, db, run, {"R2.TempSP": 10.0}, 1800.0, start="steady")
    assert out.before["purity_pct"] == pytest.approx(steady.before["purity_pct"], abs=1e-3)


def test_a_live_what_if_replays_the_run_in_progress(
        config: PlantConfig, settling: tuple[Path, int]) -> None:
    db, run = settling
    live = {"R1.TempSP": 60.0}
    replayed = whatif_live(config, live, {}, HOUR, running=(db, run))
    assert replayed.start_from.startswith(
        f"the state at the line's live inputs (run {run} in progress)")
    assert replayed.time_to_steady_s > 0.0 and replayed.estimate
    held = whatif_live(config, live, {}, HOUR)  # no run in progress: its steady state
    assert held.start_from == "the line's live inputs" and held.time_to_steady_s == 0.0


def test_start_is_state_or_steady(config: PlantConfig, settling: tuple[Path, int]) -> None:
    db, run = settling
    with pytest.raises(TwinError, match="write state"):
        whatif(config, db, run, {}, HOUR, start="now")  # type: ignore[arg-type]
    res = CliRunner().invoke(app, ["twin", "whatif", str(run), "--plant", str(PLANT),
                                   "--db", str(db), "--set", "R2.TempSP=10", "--start", "end"])
    assert res.exit_code == 2 and "--start end: write state or steady" in res.output

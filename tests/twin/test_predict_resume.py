"""The twin beside a run, taken up after a restart in the middle of it: it replays the run's
record to the run's state, so its predictions (and the mismatch alarms on them) go on as if
it had run beside the line all along, instead of predicting an empty line."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from modulecontrol.clock import Clock
from modulecontrol.descriptors import PlantConfig, load_plant
from modulecontrol.events import EventKind, EventLog
from modulecontrol.orchestrator import Orchestrator, Resume
from modulecontrol.orchestrator._twin import TwinMonitor
from modulecontrol.recipe import load_recipe
from modulecontrol.records import RunSamples, run_samples
from modulecontrol.twin import QualityPredictor, record_simulated_run
from tests.twin.conftest import PLANT, ROOT

HOUR = 3600.0
BAND = {"Purity": 2.0}


@pytest.fixture(scope="module")
def config() -> PlantConfig:
    return load_plant(PLANT)


@pytest.fixture(scope="module")
def record(config: PlantConfig, tmp_path_factory: pytest.TempPathFactory) -> RunSamples:
    """Three hours of the line at R1 50 degC, the analyzer's purity with 0.2 % noise."""
    db = tmp_path_factory.mktemp("resume") / "runs.db"
    run = record_simulated_run(config, db, settings={"R1.TempSP": 50.0},
                               outputs=["PAT1.Purity"], duration=3 * HOUR, interval=60.0,
                               noise=0.002, dt=10.0)
    return run_samples(db, run)


def _off_band_for(p: QualityPredictor, measured: float, steps: int) -> float:
    """Seconds the comparison with a steady ``measured`` reading stays outside the band."""
    last = 0.0
    for k in range(1, steps + 1):
        p.step({})
        if p.compare({"Purity": measured}).since is not None:
            last = k * p.dt
    return last


def test_a_twin_caught_up_from_the_record_predicts_the_line_not_an_empty_one(
        config: PlantConfig, record: RunSamples) -> None:
    steady = QualityPredictor(config, BAND, hold=300.0, dt=10.0).signals()["Purity"]
    caught = QualityPredictor(config, BAND, hold=300.0, dt=10.0, steady_start=False)
    how = caught.catch_up(record, 3 * HOUR)
    assert how == "its last 2 h replayed from the steady state then"
    assert caught.time == pytest.approx(2 * HOUR)
    assert caught.signals()["Purity"] == pytest.approx(steady, abs=1e-6)
    assert _off_band_for(caught, steady, 90) == 0.0
    # what it did before: a twin at rest predicts an empty line for 9 minutes, long enough
    # for the lomustine campaign's 5-minute mismatch alarm to raise on a line that is fine
    fresh = QualityPredictor(config, BAND, hold=300.0, dt=10.0, steady_start=False)
    assert _off_band_for(fresh, steady, 90) > 300.0


def test_a_run_shorter_than_the_window_is_replayed_from_rest(
        config: PlantConfig, record: RunSamples) -> None:
    p = QualityPredictor(config, BAND, hold=300.0, dt=10.0, steady_start=False)
    assert p.catch_up(record, HOUR) == "replayed from rest"
    assert p.time == pytest.approx(HOUR)
    steady = QualityPredictor(config, BAND, hold=300.0, dt=10.0).signals()["Purity"]
    assert p.signals()["Purity"] == pytest.approx(steady, abs=0.05)  # filled within the hour


def test_the_monitor_goes_on_from_the_clock_of_the_restarted_process(
        record: RunSamples) -> None:
    vr = load_recipe(ROOT / "recipes" / "lomustine" / "campaign.yaml")
    assert vr.recipe.twin is not None
    monitor = TwinMonitor(vr.recipe.twin, vr, {}, start=0.0)  # made at the new process's 0
    now = 40.0  # the restarted process's clock
    how = monitor.resume(record, 3 * HOUR, lambda: now)
    assert how.startswith("its last 2 h replayed")
    assert monitor.start == pytest.approx(now - monitor.predictor.time)
    steps = monitor.predictor.time
    values = monitor.step(now + 60.0, {})  # the next tick: six more steps, not two hours
    assert monitor.predictor.time == pytest.approx(steps + 60.0)
    purity = values["twin.PAT1.Purity"]
    assert 0.9 < purity < 1.0  # SI: a fraction, the line's 94 %, not an empty line's


async def test_the_replay_runs_in_a_worker_thread_and_is_reported(
        record: RunSamples, monkeypatch: pytest.MonkeyPatch) -> None:
    """A control service restarted beside a running plant has its drivers polling on the
    event loop while the twin replays; on the loop, the replay (seconds on a busy machine)
    stalled their exchanges until they reported communication lost and held the run."""
    vr = load_recipe(ROOT / "recipes" / "lomustine" / "campaign.yaml")
    assert vr.recipe.twin is not None
    monitor = TwinMonitor(vr.recipe.twin, vr, {}, start=0.0)
    threads: list[int] = []
    catch_up = monitor.predictor.catch_up

    def spy(data: RunSamples, elapsed: float) -> str:
        threads.append(threading.get_ident())
        return catch_up(data, elapsed)

    def broken(data: RunSamples, elapsed: float) -> str:
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(monitor.predictor, "catch_up", spy)
    clock = Clock()
    log = EventLog(clock.now)
    stub = SimpleNamespace(log=log, clock=clock)
    await Orchestrator._resume_twin(stub, monitor,  # type: ignore[arg-type]
                                    Resume({}, 0.0, record=record, elapsed=3 * HOUR))
    assert threads and threads[0] != threading.get_ident()
    (note,) = [e.message for e in log.events if e.kind is EventKind.MESSAGE]
    assert note.startswith("twin: taken up at the run's state, its last 2 h replayed")
    # a record that cannot be replayed leaves the twin at rest, and the run's events say why
    monkeypatch.setattr(monitor.predictor, "catch_up", broken)
    await Orchestrator._resume_twin(stub, monitor,  # type: ignore[arg-type]
                                    Resume({}, 0.0, record=record, elapsed=3 * HOUR))
    assert "could not be replayed (ZeroDivisionError" in log.events[-1].message

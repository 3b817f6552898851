"""The batch summary that `modulecontrol run` prints at the end of a run."""

from __future__ import annotations

from pathlib import Path

from modulecontrol import _runcli
from modulecontrol.orchestrator import RunResult
from modulecontrol.session import RunOutcome


def _printed(outcome: RunOutcome) -> str:
    with _runcli.console.capture() as cap:
        _runcli._summary(outcome)
    return " ".join(cap.get().split())


def test_summary_shows_interval_figures_of_a_changeover() -> None:
    # The two-product campaign declares changeover figures (report: intervals:); without a
    # divert tag it has none of the production figures, so its summary used to show only
    # the time to steady state and the deviation count.
    figures = {"time_to_steady_state_s": 2893.65, "deviations": 1,
               "changeover.duration_s": 4876.85, "changeover.waste_ml": 110.741,
               "solvent.thf_ml": 63.7012, "solvent.duration_s": None}
    text = _printed(RunOutcome(result=RunResult.COMPLETED, exit_code=0, run_id=2,
                               figures=figures, sim_seconds=3600.0))
    assert "changeover.duration_s │ 1:21:17" in text  # 4876.85 s as h:mm:ss
    assert "changeover.waste_ml │ 110.7" in text
    assert "solvent.thf_ml │ 63.7" in text
    assert "solvent.duration_s" not in text          # None: not computed, not shown


async def test_a_new_run_starts_after_the_runs_already_recorded(tmp_path: Path) -> None:
    # Accelerated runs are stamped with simulated time, so a run of 2 h simulated ends in
    # the wall clock's future. A second run started right after used to write into the same
    # window, and its report mixed both runs' samples (material balance 33 %).
    import datetime as dt

    from modulecontrol.clock import Clock
    from modulecontrol.records import Historian
    from modulecontrol.records import RunResult as RecordResult
    from modulecontrol.session import _after_recorded_runs

    db = tmp_path / "r.db"
    first = Clock.fast()
    _after_recorded_runs(first, db)                       # no database yet: unchanged
    start = first.start
    hist = Historian(db, clock=lambda: first.datetime(7200.0).timestamp())
    run = await hist.start_run("first")
    await hist.end_run(run, RecordResult.COMPLETED)
    await hist.close()
    end_of_first = first.datetime(7200.0).timestamp()

    second = Clock.fast()
    assert second.datetime(0.0).timestamp() < end_of_first
    _after_recorded_runs(second, db)
    assert second.datetime(0.0).timestamp() > end_of_first
    assert second.start - start > dt.timedelta(hours=1.9)

    later = Clock.fast(start=dt.datetime.fromtimestamp(end_of_first + 3600, dt.UTC))
    before = later.start
    _after_recorded_runs(later, db)                       # already after: unchanged
    assert later.start == before

"""The batch summary that `modulecontrol run` prints at the end of a run."""

from __future__ import annotations

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
    assert "changeover.duration_s │ 4877" in text
    assert "changeover.waste_ml │ 110.7" in text
    assert "solvent.thf_ml │ 63.7" in text
    assert "solvent.duration_s" not in text          # None: not computed, not shown

"""The steady-state detector judges its window at the current operating point: a path whose
residence time moves by more than OPERATING_POINT_CHANGE (a feed started, a flow set point
changed) starts its window again, even with the signal flat; pump pulsation does not."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.orchestrator import OPERATING_POINT_CHANGE, SteadyStateDetector
from modulecontrol.recipe import SteadyState

TAU = 300.0
TICK = 10.0


def _detector() -> SteadyStateDetector:
    spec = SteadyState(name="purity", signal="PAT1.Purity", band="1 %", residence_times=3,
                       path=["P1", "PAT1"])
    return SteadyStateDetector(spec, band=0.01, residence_times=3.0)


def _first_steady(d: SteadyStateDetector, t0: float, t1: float, tau: float,
                  value: float = 0.94) -> float | None:
    t = t0
    while t <= t1:
        d.step(t, value, tau)
        if d.steady:
            return t
        t += TICK
    return None


def test_a_flat_signal_is_steady_again_only_three_new_residence_times_after_a_change() -> None:
    d = _detector()
    assert _first_steady(d, 0.0, 3000.0, TAU) == 3 * TAU
    # the nitrite starts: the path's flow up by half, its residence time down by a third;
    # the purity stays flat for a while (the change has not reached the analyzer yet)
    change = 1000.0
    d.step(change, 0.94, TAU / 1.5)
    d.step(change + TICK, 0.94, TAU / 1.5)
    assert not d.steady
    assert _first_steady(d, change + 2 * TICK, 4000.0, TAU / 1.5) == change + 3 * TAU / 1.5
    assert d.point_since == change  # seen on two ticks, counted from the first


def test_the_verdict_is_lost_at_the_change_not_kept_on_the_old_window() -> None:
    d = _detector()
    _first_steady(d, 0.0, 2000.0, TAU)
    assert d.steady
    assert d.step(2010.0, 0.94, TAU * 0.8) is None  # once may be a glitch
    assert d.step(2020.0, 0.94, TAU * 0.8) is False  # twice is a change: lost, said once
    assert d.step(2030.0, 0.94, TAU * 0.8) is None


def test_one_reading_off_is_not_a_change() -> None:
    """A single bad flow reading (zero: no residence time) does not divert a steady
    product to waste for three residence times."""
    d = _detector()
    _first_steady(d, 0.0, 2000.0, TAU)
    assert d.step(2010.0, 0.94, float("inf")) is False  # no window this tick
    assert d.step(2020.0, 0.94, TAU) is True
    assert d.point_since == float("-inf")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-0.9, 0.9), min_size=100, max_size=100))
def test_pulsation_within_the_threshold_never_restarts_the_window(
        noise: list[float]) -> None:
    d = _detector()
    # relative, either way of the mean: two samples differ by twice that at most, the
    # first one (the reference) included
    ripple = OPERATING_POINT_CHANGE / 2 * 0.9
    for k, n in enumerate(noise):
        d.step(k * TICK, 0.94, TAU * (1.0 + ripple * n))
    assert d.point_since == float("-inf")
    assert d.steady


def test_a_stopped_and_restarted_feed_is_a_change_both_times() -> None:
    d = _detector()
    _first_steady(d, 0.0, 1000.0, TAU)
    d.step(1010.0, 0.94, float("inf"))  # no flow: no window
    d.step(1020.0, 0.94, float("inf"))
    assert not d.steady and d.point_since == 1010.0
    d.step(1030.0, 0.94, TAU)
    d.step(1040.0, 0.94, TAU)
    assert d.point_since == 1030.0
    assert _first_steady(d, 1050.0, 3000.0, TAU) == 1030.0 + 3 * TAU

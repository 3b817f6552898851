"""When a feedback value confirms what was written (the parameter handshake's VFbk)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.mtpcore import values_match


@given(want=st.floats(-1e6, 1e6), delta=st.floats(0, 1e-3))
@settings(max_examples=200, deadline=None)
def test_numbers_match_within_the_tolerance(want: float, delta: float) -> None:
    assert values_match(want + delta, want, tolerance=1e-3 + 1e-9 * abs(want))
    assert not values_match(want + 1.0, want, tolerance=0.5)


def test_booleans_need_booleans_and_others_equality() -> None:
    assert values_match(True, True) and not values_match(1, True)
    assert not values_match(True, 1) and not values_match(False, True)
    assert values_match("a", "a") and not values_match("a", "b")
    assert not values_match(float("nan"), 1.0) and not values_match("1", 1)

"""Period / deadband filter: properties that must hold for any input sequence."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modulecontrol.records import QUALITY_BAD, QUALITY_GOOD, TagConfig, TagFilter

values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
steps = st.lists(st.tuples(st.floats(min_value=0.0, max_value=5.0), values,
                           st.sampled_from([QUALITY_GOOD, QUALITY_GOOD, QUALITY_BAD])),
                 min_size=1, max_size=60)


def _run(cfg: TagConfig, seq: list[tuple[float, float, int]]) -> list[tuple[float, float, int,
                                                                           bool]]:
    f = TagFilter(cfg)
    t = 0.0
    out = []
    for dt, v, q in seq:
        t += dt
        out.append((t, v, q, f.accept(t, v, q)))
    return out


@given(seq=steps, deadband=st.floats(min_value=0, max_value=100),
       period=st.floats(min_value=0, max_value=3),
       max_interval=st.one_of(st.none(), st.floats(min_value=0.5, max_value=10)))
def test_filter_properties(seq: list[tuple[float, float, int]], deadband: float, period: float,
                           max_interval: float | None) -> None:
    cfg = TagConfig(deadband=deadband, period=period, max_interval=max_interval)
    res = _run(cfg, seq)
    assert res[0][3], "the first sample is always stored"
    last: tuple[float, float, int] | None = None
    for t, v, q, kept in res:
        assert last is not None or kept
        if last is not None:
            lt, lv, lq = last
            dt = t - lt
            if kept:
                # a stored sample is a real change, a heartbeat, or a quality change ...
                assert (q != lq or abs(v - lv) > deadband
                        or (max_interval is not None and dt >= max_interval))
                # ... and never closer than the period to the previous one, unless quality
                assert q != lq or dt >= period
            else:
                # a skipped sample is close to the stored value or came too soon
                assert q == lq
                assert dt < period or (abs(v - lv) <= deadband and
                                       (max_interval is None or dt < max_interval))
        if kept:
            last = (t, v, q)


@given(seq=steps)
def test_unfiltered_keeps_everything(seq: list[tuple[float, float, int]]) -> None:
    assert all(kept for *_, kept in _run(TagConfig(), seq))


@given(seq=steps)
def test_zero_deadband_keeps_exactly_the_changes(seq: list[tuple[float, float, int]]) -> None:
    res = _run(TagConfig(deadband=0.0), seq)
    prev = None
    for _t, v, q, kept in res:
        assert kept == (prev is None or (v, q) != prev)
        if kept:
            prev = (v, q)


def test_nan_is_a_change_once() -> None:
    f = TagFilter(TagConfig(deadband=1.0))
    got = [f.accept(float(i), v) for i, v in enumerate([1.0, math.nan, math.nan, 1.5, 1.6])]
    assert got == [True, True, False, True, False]


@pytest.mark.parametrize("kw", [{"period": -1}, {"deadband": math.inf}, {"max_interval": 0}])
def test_bad_config_rejected(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TagConfig(**kw)  # type: ignore[arg-type]

"""Compiled conditions: values, windows, 'for' timing, three-valued logic, units."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from modulecontrol.expr import (
    Condition,
    ConditionError,
    ExprSyntaxError,
    SignalHistory,
    SignalInfo,
    compile_condition,
    parse,
    to_si,
)

SIGNALS = {
    "R1.T": SignalInfo("degC"),
    "P1.Pressure": SignalInfo("bar"),
    "P1.Flow": SignalInfo("mL/min"),
    "PAT.Purity": SignalInfo("%"),
    "V1.Waste": SignalInfo(kind="bool"),
    "R1.Tempering.state": SignalInfo(kind="str"),
}


def cond(text: str, **params: object) -> Condition:
    return compile_condition(text, SIGNALS, params)  # type: ignore[arg-type]


def degc(x: float) -> float:
    return x + 273.15


def test_simple_comparison_in_si() -> None:
    c = cond("R1.T > 59.5 degC")
    assert c.update(0.0, {"R1.T": degc(59.6)}) is True
    assert c.update(1.0, {"R1.T": degc(59.4)}) is False


def test_accepts_a_parsed_tree() -> None:
    c = compile_condition(parse("P1.Pressure < 8 bar"), SIGNALS)
    assert c.text == "P1.Pressure < 8 bar"
    assert c.update(0.0, {"P1.Pressure": 7.9e5}) is True


def test_and_not_with_bool_signal() -> None:
    c = cond("P1.Pressure < 8 bar and not V1.Waste")
    assert c.update(0, {"P1.Pressure": 7e5, "V1.Waste": False}) is True
    assert c.update(1, {"P1.Pressure": 7e5, "V1.Waste": True}) is False
    assert c.update(2, {"P1.Pressure": 9e5, "V1.Waste": False}) is False


def test_absolute_temperature_difference_with_delta_units() -> None:
    c = cond("abs(R1.T - 60 degC) < 1 K")
    assert c.update(0, {"R1.T": degc(60.9)}) is True
    assert c.update(1, {"R1.T": degc(59.2)}) is True
    assert c.update(2, {"R1.T": degc(61.1)}) is False
    c2 = cond("abs(R1.T - 60 degC) < 1 delta_degC")
    assert c2.update(0, {"R1.T": degc(59.5)}) is True
    assert c2.update(1, {"R1.T": degc(58.5)}) is False


def test_percent_and_parameters() -> None:
    c = cond("P1.Flow > 0.9 * ${flow} and PAT.Purity >= 98 %", flow="1 mL/min")
    flow = to_si(1.0, "mL/min")
    assert c.update(0, {"P1.Flow": 0.95 * flow, "PAT.Purity": 0.985}) is True
    assert c.update(1, {"P1.Flow": 0.85 * flow, "PAT.Purity": 0.985}) is False
    assert c.update(2, {"P1.Flow": 0.95 * flow, "PAT.Purity": 0.975}) is False


def test_to_si_helpers() -> None:
    c = cond("PAT.Purity >= 98 %")
    assert c.to_si("PAT.Purity", 98.5) == pytest.approx(0.985)
    assert to_si(60, "degC") == pytest.approx(333.15)
    assert c.update(0, {"PAT.Purity": c.to_si("PAT.Purity", 98.5)}) is True


def test_string_state() -> None:
    c = cond('R1.Tempering.state == "Execute"')
    assert c.update(0, {"R1.Tempering.state": "Execute"}) is True
    assert c.update(1, {"R1.Tempering.state": "Idle"}) is False


def test_for_timing() -> None:
    c = cond("R1.T > 59.5 degC for 30 s")
    hot, cold = degc(60), degc(50)
    assert c.update(0, {"R1.T": hot}) is False
    assert c.update(29.9, {"R1.T": hot}) is False
    assert c.update(30.0, {"R1.T": hot}) is True
    assert c.update(31.0, {"R1.T": cold}) is False  # drops out at once
    assert c.update(32.0, {"R1.T": hot}) is False  # restarts at 32
    assert c.update(61.0, {"R1.T": hot}) is False
    assert c.update(62.0, {"R1.T": hot}) is True


def test_for_with_parameter_duration_and_float_steps() -> None:
    c = cond("P1.Pressure < 8 bar for 3 * ${tau}", tau="100 ms")
    results = [c.update(i * 0.1, {"P1.Pressure": 1e5}) for i in range(5)]
    # true from t=0; held 0.3 s at the 4th sample (0.30000000000000004 is absorbed)
    assert results == [False, False, False, True, True]


def test_missing_value_is_unknown_and_restarts_for() -> None:
    c = cond("R1.T > 59.5 degC for 10 s")
    hot = degc(60)
    assert c.update(0, {"R1.T": hot}) is False
    assert c.update(5, {}) is None  # missing
    assert c.update(6, {"R1.T": hot}) is False
    assert c.update(15, {"R1.T": math.nan}) is None  # bad quality
    assert c.update(16, {"R1.T": hot}) is False
    assert c.update(26, {"R1.T": None}) is None
    assert c.update(27, {"R1.T": hot}) is False
    assert c.update(37, {"R1.T": hot}) is True


def test_three_valued_logic() -> None:
    # unknown and false -> false; unknown or true -> true; otherwise unknown
    c_and = cond("P1.Pressure < 8 bar and V1.Waste")
    c_or = cond("P1.Pressure < 8 bar or V1.Waste")
    c_not = cond("not V1.Waste")
    assert c_and.update(0, {"V1.Waste": False}) is False
    assert c_and.update(1, {"V1.Waste": True}) is None
    assert c_or.update(0, {"V1.Waste": True}) is True
    assert c_or.update(1, {"V1.Waste": False}) is None
    assert c_not.update(0, {}) is None


def test_for_inside_or_keeps_timing_when_other_side_decides() -> None:
    # 'V1.Waste' alone decides the 'or', but the timer must still see every cycle
    c = cond("V1.Waste or P1.Pressure < 8 bar for 10 s")
    assert c.update(0, {"V1.Waste": True, "P1.Pressure": 1e5}) is True
    assert c.update(10, {"V1.Waste": False, "P1.Pressure": 1e5}) is True


def test_division_by_zero_is_unknown() -> None:
    c = cond("P1.Pressure / P1.Flow > 1 Pa*s/m^3")
    assert c.update(0, {"P1.Pressure": 1e5, "P1.Flow": 0.0}) is None


def sample_run(c: Condition, samples: Sequence[tuple[float, float]], name: str) -> list[object]:
    return [c.update(t, {name: v}) for t, v in samples]


def test_mean_is_time_weighted_over_held_samples() -> None:
    c = cond("mean(PAT.Purity, 10 s) >= 98 %")
    assert c.max_window == 10.0
    # value 0.97 on [0, 4), 0.99 on [4, 10]: mean = (0.97*4 + 0.99*6) / 10 = 0.982
    out = sample_run(c, [(0, 0.97), (4, 0.99), (9, 0.99), (10, 0.99)], "PAT.Purity")
    assert out == [None, None, None, True]
    # at t=12: window [2, 12]: 0.97 on [2,4), 0.99 on [4,12] -> 0.986 still >= .98
    assert c.update(12, {"PAT.Purity": 0.90}) is True


def test_mean_value_by_hand() -> None:
    h = SignalHistory(retention=100)
    for t, v in [(0.0, 1.0), (2.0, 3.0), (6.0, 5.0)]:
        h.record(t, {"X.v": v})
    c = compile_condition("mean(X.v, 8 s) > 2.999", {"X.v": SignalInfo()})
    # window [0, 8]: 1*2 + 3*4 + 5*2 = 24 -> 3.0
    assert c.evaluate(8.0, h) is True
    c2 = compile_condition("mean(X.v, 8 s) > 3.001", {"X.v": SignalInfo()})
    assert c2.evaluate(8.0, h) is False


def test_min_max_delta_rate() -> None:
    sig = {"X.v": SignalInfo("bar")}
    h = SignalHistory(retention=100)
    for t, v in [(0.0, 1e5), (5.0, 3e5), (8.0, 2e5), (10.0, 2.5e5)]:
        h.record(t, {"X.v": v})
    # window of 5 s at t=10 starts at 5: samples 3e5 (held at 5), 2e5, 2.5e5
    checks = {
        "min(X.v, 5 s) == 2 bar": True,
        "max(X.v, 5 s) == 3 bar": True,
        "max(X.v, 10 s) == 3 bar": True,
        "min(X.v, 10 s) == 1 bar": True,
        "delta(X.v, 5 s) == -0.5 bar": True,
        "delta(X.v, 10 s) == 1.5 bar": True,
        "abs(rate(X.v, 5 s) - -0.1 bar/s) < 1e-9 bar/s": True,
        "min(X.v, 11 s) < 5 bar": None,  # history does not reach t=-1
    }
    for text, expected in checks.items():
        assert compile_condition(text, sig).evaluate(10.0, h) is expected, text


def test_stable_is_max_minus_min_within_band() -> None:
    c = cond("stable(PAT.Purity, 0.5 %, 2 min)")
    assert c.update(0, {"PAT.Purity": 0.980}) is None  # not yet 2 min of history
    assert c.update(60, {"PAT.Purity": 0.984}) is None
    assert c.update(120, {"PAT.Purity": 0.9849}) is True  # spread 0.49 %
    assert c.update(150, {"PAT.Purity": 0.9751}) is False  # spread 0.98 %
    # window [180-120, 180] = [60, 180]: 0.984, 0.9849, 0.9751, 0.979 -> spread 0.98 %
    assert c.update(180, {"PAT.Purity": 0.979}) is False
    assert c.update(271, {"PAT.Purity": 0.978}) is True  # [151, 271]: .9751 .979 .978


def test_bad_sample_inside_window_is_unknown() -> None:
    c = cond("max(P1.Pressure, 10 s) < 8 bar")
    assert c.update(0, {"P1.Pressure": 1e5}) is None
    assert c.update(5, {}) is None
    assert c.update(10, {"P1.Pressure": 1e5}) is None  # the gap at 5 is in [0, 10]
    # the gap is held until the next good sample at 10, so [6, 16] is still unknown
    assert c.update(16, {"P1.Pressure": 1e5}) is None
    assert c.update(20, {"P1.Pressure": 1e5}) is True  # [10, 20] is all good


def test_history_retention_is_bounded() -> None:
    h = SignalHistory(retention=10.0)
    for i in range(1000):
        h.record(float(i), {"X.v": float(i)})
    window = h.window("X.v", 989.0, 999.0)
    assert window is not None
    assert [t for t, _ in window] == [float(t) for t in range(989, 1000)]
    assert h.window("X.v", 988.5, 999.0) is None  # pruned
    small = SignalHistory(retention=1000.0, max_samples=5)
    for i in range(20):
        small.record(float(i), {"X.v": 1.0})
    assert small.window("X.v", 16.0, 19.0) is not None
    assert small.window("X.v", 14.0, 19.0) is None


def test_history_rejects_time_going_backwards_and_bad_types() -> None:
    h = SignalHistory(retention=1.0)
    h.record(5.0, {"X.v": 1.0})
    with pytest.raises(ValueError, match="backwards"):
        h.record(4.0, {"X.v": 1.0})
    with pytest.raises(TypeError, match="float, bool, str or None"):
        h.record(6.0, {"X.v": [1.0]})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="retention"):
        SignalHistory(retention=-1.0)


def test_same_time_replaces_sample() -> None:
    h = SignalHistory(retention=1.0)
    h.record(1.0, {"X.v": 1.0})
    h.record(1.0, {"X.v": 2.0})
    assert h.window("X.v", 1.0, 1.0) == [(1.0, 2.0)]
    assert h.latest("X.v") == 2.0
    assert h.latest("nothing") is None


def test_condition_checks_value_types_and_time() -> None:
    c = cond("V1.Waste")
    with pytest.raises(TypeError, match="is a bool"):
        c.update(0, {"V1.Waste": 1.0})
    c.update(1, {"V1.Waste": True})
    with pytest.raises(ValueError, match="backwards"):
        c.update(0.5, {"V1.Waste": True})
    c.reset()
    assert c.update(0.5, {"V1.Waste": True}) is True


def test_reset_restarts_for() -> None:
    c = cond("V1.Waste for 5 s")
    c.update(0, {"V1.Waste": True})
    assert c.update(5, {"V1.Waste": True}) is True
    c.reset()
    assert c.update(6, {"V1.Waste": True}) is False


def test_compile_errors() -> None:
    with pytest.raises(ExprSyntaxError):
        cond("R1.T >")
    with pytest.raises(ConditionError) as info:
        cond("R1.Tx > 1 K and P1.Pressure > 1 degC")
    assert [p.col for p in info.value.problems] == [1, 29]
    assert "R1.Tx" in str(info.value)
    with pytest.raises(ConditionError, match="has no value yet"):
        compile_condition("V1.Waste for ${t}", SIGNALS, {"t": SignalInfo("s")})
    with pytest.raises(ConditionError, match="no finite value"):
        cond("V1.Waste for 1 s / 0")


def test_condition_lists_only_signals_it_reads() -> None:
    c = cond("R1.T > 1 K and mean(P1.Flow, 3 s) > 0 mL/min")
    assert set(c.signals) == {"R1.T", "P1.Flow"}
    assert c.max_window == 3.0

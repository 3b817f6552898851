"""Static checking of conditions against a signal catalogue and recipe parameters."""

from __future__ import annotations

import pytest

from modulecontrol.expr import (
    ConditionError,
    ParameterValue,
    Problem,
    SignalInfo,
    check,
    compile_condition,
    parse,
)
from modulecontrol.units import UnitError, ureg

SIGNALS = {
    "R1.T": SignalInfo("degC"),
    "R2.T": SignalInfo("K"),
    "P1.Pressure": SignalInfo("bar"),
    "P1.Flow": SignalInfo("mL/min"),
    "PAT.Purity": SignalInfo("%"),
    "V1.Waste": SignalInfo(kind="bool"),
    "R1.Tempering.state": SignalInfo(kind="str"),
}
PARAMS: dict[str, ParameterValue] = {
    "flow": "0.5 mL/min",
    "tau": ureg.Quantity(10, "s"),
    "k": 2,
    "enabled": True,
    "state": "Execute",
    "later": SignalInfo("s"),
}


def problems(text: str) -> list[Problem]:
    return check(parse(text), SIGNALS, PARAMS)


@pytest.mark.parametrize(
    "text",
    [
        "R1.T > 59.5 degC for 30 s",
        "P1.Pressure < 8 bar and not V1.Waste",
        "mean(PAT.Purity, 30 s) >= 98 %",
        "stable(PAT.Purity, 0.5 %, 2 min)",
        "abs(R1.T - 60 degC) < 1 K",
        "abs(R1.T - 60 degC) < 1 delta_degC",
        "P1.Flow > 0.9 * ${flow}",
        "PAT.Purity >= 98 % for 3 * ${tau}",
        "PAT.Purity >= 98 % for ${later}",
        'R1.Tempering.state == "Execute"',
        "R1.Tempering.state != ${state}",
        "V1.Waste == ${enabled}",
        "rate(R1.T, 1 min) < 2 degC/min",
        "delta(R1.T, 1 min) < 2 K",
        "min(P1.Pressure, 10 s) > 1 bar or max(P1.Pressure, 10 s) < 9000 hPa",
        "(R1.T + R2.T) / 2 > 300 K",
        "R1.T - R2.T < 5 K",
        "P1.Flow * 60 s < 1 mL",
        "PAT.Purity > 0.5 % * ${k}",
    ],
)
def test_valid(text: str) -> None:
    assert problems(text) == []


@pytest.mark.parametrize(
    ("text", "col", "fragment"),
    [
        ("R1.Tx > 1 K", 1, "unknown signal 'R1.Tx' (did you mean 'R1.T'"),
        ("Q9.Z > 1 K", 1, "unknown signal 'Q9.Z'"),
        ("R1.T > 8 bar", 6, "cannot compare 'R1.T' (temperature, degC) with '8 bar' (pressure"),
        ("R1.T + 1 bar > 1 K", 6, "cannot add"),
        ("R1.T - R1.T > 1 degC", 13, "temperature difference"),
        ("stable(R1.T, 1 degC, 1 min)", 14, "absolute temperature"),
        ("PAT.Purity > 98", 14, "write '98 %'"),
        ("stable(PAT.Purity, 1, 1 min)", 20, "write '1 %'"),
        ("stable(PAT.Purity, 1 bar, 1 min)", 20, "does not match"),
        ("stable(PAT.Purity, -1 %, 1 min)", 20, "must not be negative"),
        ("stable(PAT.Purity, P1.Flow, 1 min)", 20, "must be fixed"),
        ("V1.Waste > 1", 10, "cannot compare 'V1.Waste' (bool)"),
        ("V1.Waste < true", 10, "allow only == and !="),
        ("V1.Waste + 1 > 2", 1, "'+' needs numbers"),
        ("-V1.Waste", 1, "cannot negate"),
        ("not R1.T", 1, "'not' needs true/false"),
        ("R1.T and V1.Waste", 1, "'and' needs true/false"),
        ("R1.T for 3 s", 1, "'for' needs a true/false condition"),
        ("V1.Waste for 3 bar", 14, "needs a duration"),
        ("V1.Waste for P1.Flow / P1.Flow * 1 s", 14, "fixed duration"),
        ("V1.Waste for -1 s", 14, "positive duration"),
        ("R1.T", 1, "must be true or false"),
        ("meen(R1.T, 1 s) > 1 K", 1, "unknown function 'meen' (did you mean 'mean'?)"),
        ("mean(R1.T) > 1 K", 1, "mean() takes 2 arguments, got 1"),
        ("abs(R1.T, 1 s) > 1 K", 1, "abs() takes 1 argument, got 2"),
        ("mean(R1.T + 1 K, 1 s) > 1 K", 6, "reads the history of a signal"),
        ("mean(V1.Waste, 1 s) > 1", 6, "needs a number"),
        ("mean(R1.T, 5) > 1 K", 12, "needs a duration"),
        ("${flw} > 1", 1, "undefined parameter '${flw}' (did you mean '${flow}'?)"),
        ("R1.Tempering.state == 3", 20, "cannot compare"),
        ('R1.Tempering.state < "A"', 20, "allow only == and !="),
    ],
)
def test_problems(text: str, col: int, fragment: str) -> None:
    found = problems(text)
    assert found, text
    assert any(p.col == col and fragment in p.message for p in found), found


def test_all_problems_are_reported_in_column_order() -> None:
    found = problems("R1.Tx > 1 K and P1.Presure < 2 bar and meen(R1.T, 1 s) > 1 K")
    assert [p.col for p in found] == [1, 17, 40]
    assert str(found[0]).startswith("col 1: unknown signal")


def test_errors_do_not_cascade() -> None:
    # one unknown signal deep in arithmetic gives one problem, not one per enclosing node
    assert len(problems("abs(R1.Tx - 60 degC) * 2 < 1 K for 3 s")) == 1


def test_bad_parameter_values() -> None:
    bad = check(parse("P1.Flow > ${x}"), SIGNALS, {"x": float("nan")})
    assert "must be finite" in bad[0].message
    bad = check(parse("P1.Flow > ${x}"), SIGNALS, {"x": object()})  # type: ignore[dict-item]
    assert "unsupported type" in bad[0].message


def test_signal_info_validates() -> None:
    with pytest.raises(UnitError):
        SignalInfo("degX")
    with pytest.raises(ValueError, match="kind"):
        SignalInfo(kind="float")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no unit"):
        SignalInfo("bar", kind="bool")


def test_deep_tree_built_in_python_is_rejected_not_crashing() -> None:
    from modulecontrol.expr import Not, Signal

    tree: Not | Signal = Signal("V1.Waste")
    for _ in range(5000):
        tree = Not(tree)
    found = check(tree, SIGNALS, PARAMS)
    assert len(found) == 1 and "nests more than 50" in found[0].message
    with pytest.raises(ConditionError, match="nests more than 50"):
        compile_condition(tree, SIGNALS, PARAMS)

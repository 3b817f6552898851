"""Property tests: the parser never fails in an unexpected way, and unparse round-trips."""

from __future__ import annotations

import keyword
import math
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modulecontrol.expr import (
    FUNCTIONS,
    Binary,
    BoolLit,
    BoolOp,
    Call,
    Compare,
    ConditionError,
    Expr,
    ExprSyntaxError,
    Hold,
    Neg,
    Not,
    Number,
    Param,
    ParameterValue,
    Signal,
    SignalInfo,
    String,
    check,
    compile_condition,
    parse,
    unparse,
)

KEYWORDS = {"and", "or", "not", "for", "true", "false"}
UNITS = ["s", "min", "degC", "K", "delta_degC", "bar", "%", "mL/min", "m^3/h", "kg*m/s^2"]
CATALOGUE = {
    "R1.T": SignalInfo("degC"),
    "R1.P": SignalInfo("bar"),
    "P1.Flow": SignalInfo("mL/min"),
    "PAT.Purity": SignalInfo("%"),
    "V1.Waste": SignalInfo(kind="bool"),
    "R1.Mode.state": SignalInfo(kind="str"),
}
PARAMS: dict[str, ParameterValue] = {
    "flow": "0.5 mL/min",
    "tau": "10 s",
    "on": True,
    "state": "Execute",
}

# Characters the language uses, so random text often gets deep into the parser.
_ALPHABET = string.ascii_letters + string.digits + " .,()<>=!+-*/%$'\"{}_^\\µ°" + "\t"
_FRAGMENTS = [
    "R1.T",
    "P1.Flow",
    "V1.Waste",
    " and ",
    " or ",
    "not ",
    " for ",
    "30 s",
    "degC",
    "bar",
    "%",
    "mean(",
    "stable(",
    "abs(",
    "${flow}",
    "(",
    ")",
    ",",
    " > ",
    " <= ",
    " == ",
    '"Ex"',
    "1e5",
    ".5",
    "-",
    "true",
    "false",
    "mL/min",
    "m^3",
]

random_text = st.one_of(
    st.text(alphabet=_ALPHABET, max_size=80),
    st.lists(st.sampled_from(_FRAGMENTS), max_size=25).map("".join),
    st.text(max_size=40),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_text)
def test_random_text_only_raises_syntax_error(text: str) -> None:
    try:
        tree = parse(text)
    except ExprSyntaxError as exc:
        assert 1 <= exc.col <= len(text) + 1
        return
    # Whatever parses must round-trip and survive checking and compiling.
    assert parse(unparse(tree)) == tree
    problems = check(tree, CATALOGUE, PARAMS)
    try:
        cond = compile_condition(tree, CATALOGUE, PARAMS)
    except ConditionError as exc:
        assert exc.problems
        return
    assert not problems
    values = {"R1.T": 333.0, "R1.P": 1e5, "P1.Flow": 1e-8, "PAT.Purity": 0.98}
    for t in range(3):
        assert cond.update(float(t), {**values, "V1.Waste": False, "R1.Mode.state": "Idle"}) in (
            True,
            False,
            None,
        )


def _ident() -> st.SearchStrategy[str]:
    return st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(
        lambda s: s not in KEYWORDS and not keyword.iskeyword(s)
    )


signals = st.lists(_ident(), min_size=2, max_size=3).map(".".join).map(Signal)
numbers = st.builds(
    Number,
    st.floats(min_value=0, max_value=1e300, allow_nan=False, allow_infinity=False),
    st.one_of(st.none(), st.sampled_from(UNITS)),
)
leaves: st.SearchStrategy[Expr] = st.one_of(
    signals,
    numbers,
    st.builds(BoolLit, st.booleans()),
    st.builds(String, st.text(max_size=8)),
    st.builds(Param, st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,8}", fullmatch=True)),
)


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.builds(Neg, children),
        st.builds(Not, children),
        st.builds(Binary, st.sampled_from(["+", "-", "*", "/"]), children, children),
        st.builds(Compare, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), children, children),
        st.builds(BoolOp, st.sampled_from(["and", "or"]), children, children),
        st.builds(Hold, children, children),
        st.builds(
            Call,
            st.one_of(st.sampled_from(sorted(FUNCTIONS)), _ident()),
            st.lists(children, max_size=3).map(tuple),
        ),
    )


trees = st.recursive(leaves, _extend, max_leaves=15)


@settings(max_examples=500, deadline=None)
@given(trees)
def test_unparse_round_trip(tree: Expr) -> None:
    text = unparse(tree)
    assert parse(text) == tree


@settings(max_examples=300, deadline=None)
@given(trees)
def test_check_never_crashes(tree: Expr) -> None:
    problems = check(tree, CATALOGUE, PARAMS)
    assert all(p.col >= 0 and p.message for p in problems)


@given(st.floats(min_value=0, max_value=1e300, allow_nan=False))
def test_numbers_round_trip_exactly(x: float) -> None:
    tree = parse(unparse(Compare(">", Signal("A.b"), Number(x))))
    assert isinstance(tree, Compare) and isinstance(tree.right, Number)
    assert tree.right.value == x and not math.isnan(tree.right.value)


# --- well-typed expressions against CATALOGUE: must check clean, compile and evaluate -------

_pos = st.floats(min_value=0.01, max_value=1000, allow_nan=False).map(lambda x: round(x, 3))
windows: st.SearchStrategy[Expr] = st.one_of(
    st.builds(Number, _pos, st.sampled_from(["s", "min"])), st.just(Param("tau"))
)


def _pressure(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.builds(Binary, st.sampled_from(["+", "-"]), children, children),
        st.builds(Neg, children),
        st.builds(Binary, st.just("*"), st.builds(Number, _pos), children),
        st.builds(Binary, st.just("/"), children, st.builds(Number, _pos)),
        st.builds(Call, st.just("abs"), st.tuples(children)),
    )


pressure = st.recursive(
    st.one_of(
        st.just(Signal("R1.P")),
        st.builds(Number, _pos, st.just("bar")),
        st.builds(
            lambda f, w: Call(f, (Signal("R1.P"), w)),
            st.sampled_from(["mean", "min", "max", "delta"]),
            windows,
        ),
    ),
    _pressure,
    max_leaves=6,
)

atoms: st.SearchStrategy[Expr] = st.one_of(
    st.builds(Compare, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), pressure, pressure),
    st.just(Signal("V1.Waste")),
    st.builds(lambda s: Compare("==", Signal("R1.Mode.state"), String(s)), st.text(max_size=5)),
    st.builds(
        lambda c, t, k: Compare(
            "<", Call("abs", (Binary("-", Signal("R1.T"), Number(c, "degC")),)), Number(t, k)
        ),
        _pos,
        _pos,
        st.sampled_from(["K", "delta_degC"]),
    ),
    st.builds(
        lambda b, w: Call("stable", (Signal("PAT.Purity"), Number(b, "%"), w)), _pos, windows
    ),
)


def _logic(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.builds(Not, children),
        st.builds(BoolOp, st.sampled_from(["and", "or"]), children, children),
        st.builds(Hold, children, windows),
    )


conditions = st.recursive(atoms, _logic, max_leaves=8)
_values = st.fixed_dictionaries(
    {
        "R1.T": st.one_of(st.none(), st.floats(300, 400)),
        "R1.P": st.one_of(st.none(), st.floats(0, 1e6)),
        "PAT.Purity": st.one_of(st.none(), st.floats(0.9, 1.0)),
        "V1.Waste": st.one_of(st.none(), st.booleans()),
        "R1.Mode.state": st.one_of(st.none(), st.sampled_from(["", "a", "Idle"])),
    }
)


@settings(max_examples=200, deadline=None)
@given(conditions, st.lists(st.tuples(st.floats(0, 50), _values), min_size=1, max_size=20))
def test_well_typed_conditions_compile_and_evaluate(
    tree: Expr, steps: list[tuple[float, dict[str, object]]]
) -> None:
    assert parse(unparse(tree)) == tree
    assert check(tree, CATALOGUE, PARAMS) == []
    cond = compile_condition(unparse(tree), CATALOGUE, PARAMS)
    now = 0.0
    for dt, values in steps:
        now += dt
        assert cond.update(now, values) in (True, False, None)  # type: ignore[arg-type]

"""Parser, tokenizer and unparse of the condition language."""

from __future__ import annotations

import pytest

from modulecontrol.expr import (
    MAX_DEPTH,
    MAX_LENGTH,
    Binary,
    BoolLit,
    BoolOp,
    Call,
    Compare,
    ExprSyntaxError,
    Hold,
    Neg,
    Not,
    Number,
    Param,
    Signal,
    String,
    parse,
    unparse,
)


def test_comparison_with_unit_and_for() -> None:
    e = parse("R1.T > 59.5 degC for 30 s")
    assert e == Hold(Compare(">", Signal("R1.T"), Number(59.5, "degC")), Number(30.0, "s"))
    assert isinstance(e, Hold)
    assert e.col == 18
    assert isinstance(e.condition, Compare)
    assert e.condition.right.col == 8


def test_and_not_precedence() -> None:
    e = parse("P1.Pressure < 8 bar and not V1.Waste")
    assert e == BoolOp(
        "and", Compare("<", Signal("P1.Pressure"), Number(8.0, "bar")), Not(Signal("V1.Waste"))
    )


def test_or_binds_looser_than_and() -> None:
    e = parse("A.x or B.y and C.z")
    assert e == BoolOp("or", Signal("A.x"), BoolOp("and", Signal("B.y"), Signal("C.z")))


def test_for_binds_to_each_operand_of_and() -> None:
    e = parse("A.x > 1 for 5 s and B.y")
    assert isinstance(e, BoolOp)
    assert isinstance(e.left, Hold)
    assert e.right == Signal("B.y")


def test_not_inside_for() -> None:
    assert parse("not V1.Waste for 10 s") == Hold(Not(Signal("V1.Waste")), Number(10.0, "s"))


def test_functions_and_parameters() -> None:
    assert parse("stable(PAT.Purity, 0.5 %, 2 min)") == Call(
        "stable", (Signal("PAT.Purity"), Number(0.5, "%"), Number(2.0, "min"))
    )
    assert parse("P1.Flow > 0.9 * ${flow}") == Compare(
        ">", Signal("P1.Flow"), Binary("*", Number(0.9), Param("flow"))
    )


def test_arithmetic_precedence_and_associativity() -> None:
    e = parse("A.a - B.b - C.c * D.d / 2 > -E.e")
    assert e == Compare(
        ">",
        Binary(
            "-",
            Binary("-", Signal("A.a"), Signal("B.b")),
            Binary("/", Binary("*", Signal("C.c"), Signal("D.d")), Number(2.0)),
        ),
        Neg(Signal("E.e")),
    )


def test_strings_and_booleans() -> None:
    assert parse('R1.Tempering.state == "Execute"') == Compare(
        "==", Signal("R1.Tempering.state"), String("Execute")
    )
    assert parse(r"M.s != 'it\'s'") == Compare("!=", Signal("M.s"), String("it's"))
    assert parse("true and not false") == BoolOp("and", BoolLit(True), Not(BoolLit(False)))


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("1 mL/min", "mL/min"),
        ("1 m^3/h", "m^3/h"),
        ("1 kg*m/s^2", "kg*m/s^2"),
        ("1 %", "%"),
        ("98%", "%"),
        ("30s", "s"),
        ("1 µL/min", "µL/min"),
        ("1 delta_degC", "delta_degC"),
        ("1 degC/min", "degC/min"),
    ],
)
def test_units(text: str, unit: str) -> None:
    value = float(text.removesuffix(unit).strip())
    assert parse(f"A.b > {text}") == Compare(">", Signal("A.b"), Number(value, unit))


def test_unit_does_not_swallow_operators() -> None:
    # '*' with spaces is multiplication; a signal after a number is not a unit
    assert parse("2 s * ${k} > A.b") == Compare(
        ">", Binary("*", Number(2.0, "s"), Param("k")), Signal("A.b")
    )
    with pytest.raises(ExprSyntaxError, match="expected an operator"):
        parse("2 R1.T > 1")


@pytest.mark.parametrize(
    ("text", "col", "fragment"),
    [
        ("R1.T > 59.5 degX", 13, "expected a unit or operator after '59.5', got 'degX'"),
        ("R1.T > ", 8, "expected a value, got the end"),
        ("R1.T >> 1", 7, "expected a value"),
        ("1 < 2 < 3", 7, "comparisons cannot be chained"),
        ("(R1.T > 1", 10, "expected ')' to close the '(' at col 1"),
        ("R1.T > 1)", 9, "unbalanced ')'"),
        ("R1.T = 1", 6, "use '=='"),
        ("A.b && C.d", 5, "use 'and'"),
        ("temp > 1", 1, "'temp' is not a signal"),
        ("R1. > 1", 3, "cannot end with '.'"),
        ("R1.T > 'open", 8, "not closed"),
        ("R1.T > $flow", 8, "'${name}'"),
        ("R1.T > 1e999", 8, "too large"),
        ("mean(R1.T, 30 s", 16, "to close the call of mean()"),
        ("R1.T > 1 for 2 s for 3 s", 18, "'for' cannot follow"),
        ("A.b > +1", 7, "unary '+'"),
        ("", 1, "empty condition"),
        ("A.b > 5x", 8, "got 'x' (unknown unit)"),
        ("R1.T.f(1)", 1, "is a signal, not a function"),
    ],
)
def test_syntax_errors(text: str, col: int, fragment: str) -> None:
    with pytest.raises(ExprSyntaxError) as info:
        parse(text)
    assert info.value.col == col, str(info.value)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"col {col}: ")


def test_length_limit() -> None:
    ok = "A.b > " + " + ".join(["1"] * 40)
    parse(ok)
    too_long = "A.b > 1" + " " * MAX_LENGTH
    with pytest.raises(ExprSyntaxError, match="limit is 2000"):
        parse(too_long)


def test_nesting_limits() -> None:
    parse("(" * (MAX_DEPTH - 1) + "A.b" + ")" * (MAX_DEPTH - 1))
    with pytest.raises(ExprSyntaxError, match="nests more than 50"):
        parse("(" * (MAX_DEPTH + 1) + "A.b" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ExprSyntaxError, match="nests more than 50"):
        parse("not " * 60 + "A.b")
    with pytest.raises(ExprSyntaxError, match="nests more than 50"):
        parse("A.b > " + " + ".join(["1"] * 60))
    with pytest.raises(ExprSyntaxError, match="nests more than 50"):
        parse("abs(" * 60 + "A.b" + ")" * 60 + " > 1")


def test_non_string_input() -> None:
    with pytest.raises(ExprSyntaxError, match="as text"):
        parse(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "R1.T > 59.5 degC for 30 s",
        "(A.x or B.y) and C.z",
        "not (A.x and B.y)",
        "(A.x > 1 for 5 s) for 10 s",
        "A.a - (B.b - C.c) > 0 K",
        "A.a / (B.b * C.c) > 1",
        "-(-A.a) > 1.5e-07",
        "(A.a > B.b) == true",
        "abs(R1.T - 60 degC) < 1 K",
        'M.s == "say \\"hi\\""',
    ],
)
def test_unparse_round_trip(text: str) -> None:
    e = parse(text)
    assert parse(unparse(e)) == e


def test_unparse_drops_redundant_parentheses() -> None:
    assert unparse(parse("((A.a)) + (B.b * 2) > (1)")) == "A.a + B.b * 2 > 1"
    assert unparse(parse("A.a - (B.b - C.c) > 0")) == "A.a - (B.b - C.c) > 0"

"""The data table against the hand-written golden model; codes; options; renderers; CLI."""

from __future__ import annotations

import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from modulecontrol.statemachine import (
    Command,
    State,
    StateMachineOptions,
    command_en,
    render_state_table,
    state_table,
    state_table_text,
)
from modulecontrol.statemachine.cli import app
from tests.statemachine.sm_golden import (
    ACTING,
    COMMAND_CODES,
    GOLDEN,
    GOLDEN_COMMAND_EN,
    STATE_CODES,
    expected_rows,
)


def rows_of(table: dict[str, object]) -> frozenset[tuple[str, str, str]]:
    transitions = table["transitions"]
    assert isinstance(transitions, list)
    return frozenset((r["from"], r["trigger"], r["to"]) for r in transitions)


def test_state_codes_match_standard() -> None:
    assert {s.label: int(s) for s in State} == STATE_CODES
    assert {s.label for s in State if s.acting} == ACTING


def test_command_codes_match_standard() -> None:
    assert {c.label: int(c) for c in Command} == COMMAND_CODES


@pytest.mark.parametrize("code", [*map(int, State), *map(int, Command)])
def test_codes_are_single_bits(code: int) -> None:
    assert code > 0 and code & (code - 1) == 0


def test_codes_are_distinct() -> None:
    assert len({int(s) for s in State}) == len(State)
    assert len({int(c) for c in Command}) == len(Command)


def test_golden_transition_table() -> None:
    table = state_table()
    got = rows_of(table)
    assert got - GOLDEN == set(), "transitions the standard does not have"
    assert GOLDEN - got == set(), "transitions of the standard that are missing"


def test_golden_command_en() -> None:
    assert state_table()["command_en"] == GOLDEN_COMMAND_EN
    for state in State:
        assert command_en(state) == GOLDEN_COMMAND_EN[state.label]


def test_command_en_is_or_of_command_rows() -> None:
    table = state_table()
    for state in table["states"]:
        codes = {
            COMMAND_CODES[trigger]
            for (frm, trigger, _) in rows_of(table)
            if frm == state["name"] and trigger != "SC"
        }
        value = 0
        for code in codes:
            value |= code
        assert state["command_en"] == value


def test_every_acting_state_leaves_by_sc_and_nothing_else_does_except_execute() -> None:
    sc_sources = {frm for frm, trigger, _ in rows_of(state_table()) if trigger == "SC"}
    assert sc_sources == ACTING | {"Execute"}


def test_only_self_completing_row_is_annotated() -> None:
    notes = [r for r in state_table()["transitions"] if r["note"]]
    assert [(r["from"], r["trigger"], r["to"]) for r in notes] == [("Execute", "SC", "Completing")]


def test_state_table_is_json_serialisable_and_round_trips() -> None:
    table = state_table()
    assert json.loads(json.dumps(table)) == table
    assert table["options"] == {
        "stop_in_idle": True,
        "abort_in_idle": True,
        "complete_outside_execute": False,
    }


@pytest.mark.parametrize("stop_in_idle", [True, False])
@pytest.mark.parametrize("abort_in_idle", [True, False])
@pytest.mark.parametrize("complete_outside_execute", [True, False])
def test_options_change_exactly_their_rows(
    stop_in_idle: bool, abort_in_idle: bool, complete_outside_execute: bool
) -> None:
    opts = StateMachineOptions(
        stop_in_idle=stop_in_idle,
        abort_in_idle=abort_in_idle,
        complete_outside_execute=complete_outside_execute,
    )
    assert rows_of(state_table(opts)) == expected_rows(
        stop_in_idle=stop_in_idle,
        abort_in_idle=abort_in_idle,
        complete_outside_execute=complete_outside_execute,
    )


def test_option_effects_on_command_en() -> None:
    assert command_en(State.IDLE, StateMachineOptions(stop_in_idle=False)) == 4 + 256
    assert command_en(State.IDLE, StateMachineOptions(abort_in_idle=False)) == 4 + 8
    on = StateMachineOptions(complete_outside_execute=True)
    assert command_en(State.PAUSED, on) == GOLDEN_COMMAND_EN["Paused"] | 1024
    assert command_en(State.HELD, on) == GOLDEN_COMMAND_EN["Held"] | 1024
    assert command_en(State.COMPLETING, on) == GOLDEN_COMMAND_EN["Completing"]


def test_plain_text_rendering_lists_every_state_with_codes() -> None:
    text = state_table_text(state_table())
    for name, code in STATE_CODES.items():
        line = next(ln for ln in text.splitlines() if ln.startswith(name))
        assert str(code) in line.split()
        assert str(GOLDEN_COMMAND_EN[name]) in line.split()


def test_rich_rendering_has_one_row_per_state() -> None:
    table = render_state_table(state_table())
    assert table.row_count == len(State)
    console = Console(width=200, record=True)
    console.print(table)
    out = console.export_text()
    assert "Unholding" in out and "1880" in out


def test_cli_json_matches_state_table() -> None:
    result = CliRunner().invoke(app, ["--json", "--no-stop-in-idle"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == state_table(StateMachineOptions(stop_in_idle=False))


def test_cli_plain() -> None:
    result = CliRunner().invoke(app, ["--plain"])
    assert result.exit_code == 0, result.output
    assert "Completed" in result.output and "131072" in result.output


def test_docs_command_en_table_matches_code() -> None:
    """docs/state-machine.md must stay true to the code (and to the golden model)."""
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "state-machine.md"
    rows: dict[str, tuple[int, int]] = {}
    for line in doc.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in STATE_CODES and cells[1].isdigit():
            rows[cells[0]] = (int(cells[1]), int(cells[3]))
    assert rows == {name: (STATE_CODES[name], GOLDEN_COMMAND_EN[name]) for name in STATE_CODES}

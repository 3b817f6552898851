"""The MTP core's tables: consistent with each other, with the rows, and the only copy."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path
from typing import get_args

from hypothesis import given
from hypothesis import strategies as st

from modulecontrol.mtpcore import (
    ACTING_STATES,
    BINARY_CLASSES,
    COMMAND_TARGETS,
    DA_ATTRIBUTES,
    FAILED_STATES,
    HOLD_STATES,
    MANDATORY_ATTRIBUTES,
    PA,
    PARAM_CLASSES,
    PRIMARY_ATTRIBUTE,
    READ_PREFERENCE,
    RESTING_STATES,
    SC,
    SCA,
    SERVICE_CONTROL,
    SERVICE_CONTROL_ATTRIBUTES,
    SETPOINT_ATTRIBUTE,
    STABLE_STATES,
    UNIT_ATTRIBUTES,
    VALUE_ATTRIBUTES,
    VIEW_CLASSES,
    WRITABLE_CLASSES,
    WRITE_PREFERENCE,
    Command,
    State,
    StateLabel,
    StateMachineOptions,
    access,
    attributes,
    carries_value,
    command_en,
    command_target,
    enabled_commands,
    expected_states,
    on_the_way,
    sc_target,
    settles_in,
    transitions_for,
)

ROOT = Path(__file__).resolve().parents[2]
options = st.builds(StateMachineOptions, st.booleans(), st.booleans(), st.booleans())
states = st.sampled_from(list(State))
commands = st.sampled_from(list(Command))


@given(options, states, commands)
def test_command_target_is_the_row(opts: StateMachineOptions, state: State,
                                   command: Command) -> None:
    rows = [r.dest for r in transitions_for(opts) if r.source is state and r.trigger == command]
    target = command_target(state, command, opts)
    assert rows == ([] if target is None else [target])
    assert (target is not None) == (command in enabled_commands(state, opts))


@given(options, states)
def test_command_en_is_the_or_of_enabled(opts: StateMachineOptions, state: State) -> None:
    value = 0
    for command in enabled_commands(state, opts):
        value |= int(command)
    assert command_en(state, opts) == value
    assert {c for c in Command if value & int(c)} == set(enabled_commands(state, opts))


@given(states)
def test_sc_rows_and_settling(state: State) -> None:
    sc_rows = {r.source: r.dest for r in transitions_for() if r.trigger == SC}
    assert sc_target(state) == sc_rows.get(state)
    assert (state in ACTING_STATES) == (state not in STABLE_STATES)
    end = settles_in(state)
    assert end in STABLE_STATES
    if state in STABLE_STATES:
        assert end is state
    else:
        assert state in on_the_way(end)


@given(commands)
def test_command_targets_follow_the_rows(command: Command) -> None:
    # every command, wherever it is enabled, ends by SC alone in its one target
    target = COMMAND_TARGETS[command]
    assert target in STABLE_STATES
    assert expected_states(command)[0] is target
    for state in State:
        dest = command_target(state, command)
        if dest is not None:
            assert settles_in(dest) is target


@given(options, states)
def test_every_state_is_reachable_from_idle(opts: StateMachineOptions, goal: State) -> None:
    rows = transitions_for(opts)
    seen = {State.IDLE}
    todo = deque([State.IDLE])
    while todo:
        here = todo.popleft()
        for r in rows:
            if r.source is here and r.dest not in seen:
                seen.add(r.dest)
                todo.append(r.dest)
    assert goal in seen


def test_state_sets() -> None:
    assert {settles_in(s) for s in FAILED_STATES} == {State.STOPPED, State.ABORTED}
    begin_or_end = {Command.START, Command.RESET}
    assert {s for s in STABLE_STATES if enabled_commands(s) & begin_or_end} == RESTING_STATES
    assert on_the_way(State.HELD) | {State.HELD} == HOLD_STATES
    assert on_the_way(State.EXECUTE) == {State.STARTING, State.UNHOLDING, State.RESUMING}
    assert set(get_args(StateLabel)) == {s.label for s in State}
    assert expected_states(Command.START) == (State.EXECUTE, State.COMPLETING,
                                              State.COMPLETED)


cls_attr = st.sampled_from(sorted(DA_ATTRIBUTES)).flatmap(
    lambda c: st.tuples(st.just(c), st.sampled_from(DA_ATTRIBUTES[c])))


@given(cls_attr)
def test_attribute_flags(pair: tuple[str, str]) -> None:
    cls, attr = pair
    row = {a.name: a for a in attributes(cls)}[attr]
    assert row.access == access(cls, attr)
    assert row.carries_value == carries_value(cls, attr)
    if row.carries_value:  # in the assembly's unit, or a binary assembly's true/false
        assert attr in VALUE_ATTRIBUTES
        assert attr in UNIT_ATTRIBUTES or cls in BINARY_CLASSES


def test_value_and_setpoint_tables_name_real_attributes() -> None:
    for table in (PRIMARY_ATTRIBUTE, SETPOINT_ATTRIBUTE):
        for cls, attr in table.items():
            assert attr in DA_ATTRIBUTES[cls], (cls, attr)
    for prefs in (READ_PREFERENCE, WRITE_PREFERENCE):
        for cls, attrs in prefs.items():
            assert set(attrs) <= set(DA_ATTRIBUTES[cls]), cls
    for cls, attr in SETPOINT_ATTRIBUTE.items():
        assert cls in WRITABLE_CLASSES
        assert access(cls, attr) == "readwrite" and carries_value(cls, attr), (cls, attr)
    for cls in VIEW_CLASSES | PARAM_CLASSES:
        assert carries_value(cls, PRIMARY_ATTRIBUTE[cls])
    for cls, attrs in MANDATORY_ATTRIBUTES.items():
        known = SERVICE_CONTROL_ATTRIBUTES if cls == SERVICE_CONTROL else DA_ATTRIBUTES[cls]
        assert set(attrs) <= set(known), cls
    assert {a.value for a in SCA} <= set(SERVICE_CONTROL_ATTRIBUTES)
    assert all(a.value in DA_ATTRIBUTES["AnaServParam"] for a in PA)


def test_service_control_access_is_what_an_orchestrator_writes() -> None:
    # golden: the set the OPC UA default bindings declared before the tables were merged
    written = {a.name for a in attributes(SERVICE_CONTROL) if a.access == "readwrite"}
    assert written == {
        "CommandOp", "CommandExt", "ProcedureOp", "ProcedureExt", "StateOffAut", "StateOpAut",
        "StateAutAut", "StateOffOp", "StateOpOp", "StateAutOp", "SrcExtAut", "SrcIntOp",
        "SrcIntAut", "SrcExtOp", "InteractAnswerID", "ProcParamApplyExt", "ProcParamApplyOp",
        "ConfigParamApplyExt", "ConfigParamApplyOp", "ReportValueFreeze",
    }


def _spelled_names() -> set[str]:
    return ({s.label for s in State} | {c.label for c in Command} | {a.value for a in SCA}
            | {PA.V_EXT.value, PA.APPLY_EXT.value, PA.V_FBK.value})


def _literals(source: str) -> list[tuple[int, str]]:
    """String constants of code (not docstrings, not ``__all__`` entries)."""
    tree = ast.parse(source)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skip.add(id(node.value))
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            skip.update(id(n) for n in ast.walk(node.value))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip]


def test_the_scan_finds_a_copy() -> None:
    copy = 'TARGETS = {"Start": ("Execute",)}\nx = f"{svc}.StateCur"\ny = "CommandEn"\n'
    found = {v for _, v in _literals(copy) if v in _spelled_names()}
    assert found == {"Start", "Execute", "CommandEn"}


def test_no_state_command_or_handshake_name_is_spelled_outside_the_core() -> None:
    names = _spelled_names()
    core = ROOT / "modulecontrol" / "mtpcore"
    found = []
    for path in sorted((ROOT / "modulecontrol").rglob("*.py")):
        if core in path.parents:
            continue
        for line, value in _literals(path.read_text(encoding="utf-8")):
            if value in names:
                found.append(f"{path.relative_to(ROOT)}:{line}: {value!r}")
    assert not found, "spell these through modulecontrol.mtpcore:\n" + "\n".join(found)

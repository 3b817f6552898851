"""ServiceStateMachine without work: commands, refusals, modes and channels, procedures,
observers, self-completing procedures."""

from __future__ import annotations

import pytest

from modulecontrol.statemachine import (
    Channel,
    Command,
    CommandRefused,
    OperationMode,
    Procedure,
    ServiceStateMachine,
    SourceMode,
    State,
    StateChange,
    StateMachineOptions,
)
from tests.statemachine.sm_golden import GOLDEN, expected_rest

PROCS = (
    Procedure(1, "Continuous", is_default=True),
    Procedure(2, "Batch", self_completing=True),
)


def machine(**kw: object) -> ServiceStateMachine:
    kw.setdefault("operation_mode", OperationMode.OPERATOR)
    kw.setdefault("procedures", PROCS)
    return ServiceStateMachine("Dosing", **kw)  # type: ignore[arg-type]


def drive_to(m: ServiceStateMachine, target: State) -> None:
    """Reach ``target`` by commands only (no work, so acting states pass at once)."""
    paths: dict[State, list[Command]] = {
        State.IDLE: [],
        State.EXECUTE: [Command.START],
        State.PAUSED: [Command.START, Command.PAUSE],
        State.HELD: [Command.START, Command.HOLD],
        State.COMPLETED: [Command.START, Command.COMPLETE],
        State.STOPPED: [Command.STOP],
        State.ABORTED: [Command.ABORT],
    }
    for cmd in paths[target]:
        m.command(cmd)
    assert m.state is target


def test_starts_idle_offline_with_default_procedure() -> None:
    m = ServiceStateMachine(procedures=PROCS)
    assert m.state is State.IDLE and m.state_cur == 16
    assert m.operation_mode is OperationMode.OFFLINE
    assert m.source_mode is SourceMode.INTERNAL
    assert m.procedure_req == 1 and m.procedure_cur == 0


REST_STATES = [State.IDLE, State.EXECUTE, State.PAUSED, State.HELD, State.COMPLETED,
               State.STOPPED, State.ABORTED]  # fmt: skip


@pytest.mark.parametrize("start", REST_STATES, ids=lambda s: s.label)
@pytest.mark.parametrize("cmd", list(Command), ids=lambda c: c.label)
def test_every_command_from_every_rest_state(start: State, cmd: Command) -> None:
    m = machine()
    drive_to(m, start)
    expected = expected_rest(start.label, cmd.label, self_completing=False)
    before = (m.state, m.command_en, m.procedure_cur)
    if expected is None:
        with pytest.raises(CommandRefused) as info:
            m.command(cmd)
        assert (m.state, m.command_en, m.procedure_cur) == before
        assert info.value.command is cmd and info.value.state is start
        assert cmd.label in info.value.reason and start.label in info.value.reason
    else:
        assert m.command(cmd).label == expected


def test_command_en_consistent_with_check_in_every_reachable_state() -> None:
    """Walk every golden edge; in each state CommandEn's bits are exactly what check() allows."""
    seen: set[State] = set()
    for start in REST_STATES:
        m = machine()
        drive_to(m, start)
        seen.add(m.state)
        for cmd in Command:
            allowed = m.check(cmd) is None
            assert allowed == bool(m.command_en & cmd), (m.state, cmd)
    assert seen == set(REST_STATES)


def test_acting_transitions_are_all_observed_in_order() -> None:
    m = machine()
    changes: list[StateChange] = []
    m.subscribe(changes.append)
    m.command(Command.START)
    assert [(c.old.label, c.new.label) for c in changes] == [
        ("Idle", "Starting"),
        ("Starting", "Execute"),
    ]
    assert changes[0].command is Command.START and changes[0].channel is Channel.OPERATOR
    assert changes[1].command is None and changes[1].channel is None  # SC
    for c in changes:
        assert (c.old.label, c.command.label if c.command else "SC", c.new.label) in GOLDEN


def test_observer_gets_time_from_injected_clock_and_procedure() -> None:
    ticks = iter(range(100, 200))
    m = machine(clock=lambda: float(next(ticks)))
    changes: list[StateChange] = []
    unsubscribe = m.subscribe(changes.append)
    m.command(Command.START)
    assert [c.time for c in changes] == [100.0, 101.0]
    assert all(c.procedure == 1 and c.service == "Dosing" for c in changes)
    unsubscribe()
    m.command(Command.STOP)
    assert len(changes) == 2


def test_failing_listener_does_not_break_the_machine(caplog: pytest.LogCaptureFixture) -> None:
    m = machine()

    def broken(change: StateChange) -> None:
        raise RuntimeError("historian down")

    got: list[State] = []
    m.subscribe(broken)
    m.subscribe(lambda c: got.append(c.new))
    assert m.command(Command.START) is State.EXECUTE
    assert got == [State.STARTING, State.EXECUTE]
    assert "listener failed" in caplog.text


def test_listener_may_not_command_reentrantly() -> None:
    m = machine()
    errors: list[BaseException] = []

    def meddler(change: StateChange) -> None:
        try:
            m.command(Command.ABORT)
        except RuntimeError as exc:
            errors.append(exc)

    m.subscribe(meddler)
    m.command(Command.START)
    assert m.state is State.EXECUTE and len(errors) == 2


# ------------------------------------------------------------------ modes and channels
CHANNEL_RULES = [
    # mode, source, channel, honoured
    (OperationMode.OFFLINE, SourceMode.INTERNAL, Channel.OPERATOR, False),
    (OperationMode.OFFLINE, SourceMode.INTERNAL, Channel.INTERNAL, False),
    (OperationMode.OFFLINE, SourceMode.EXTERNAL, Channel.EXTERNAL, False),
    (OperationMode.OFFLINE, SourceMode.INTERNAL, Channel.PEA, False),
    (OperationMode.OPERATOR, SourceMode.INTERNAL, Channel.OPERATOR, True),
    (OperationMode.OPERATOR, SourceMode.INTERNAL, Channel.INTERNAL, False),
    (OperationMode.OPERATOR, SourceMode.EXTERNAL, Channel.EXTERNAL, False),
    (OperationMode.OPERATOR, SourceMode.INTERNAL, Channel.PEA, True),
    (OperationMode.AUTOMATIC, SourceMode.INTERNAL, Channel.OPERATOR, False),
    (OperationMode.AUTOMATIC, SourceMode.INTERNAL, Channel.INTERNAL, True),
    (OperationMode.AUTOMATIC, SourceMode.INTERNAL, Channel.EXTERNAL, False),
    (OperationMode.AUTOMATIC, SourceMode.EXTERNAL, Channel.INTERNAL, False),
    (OperationMode.AUTOMATIC, SourceMode.EXTERNAL, Channel.EXTERNAL, True),
    (OperationMode.AUTOMATIC, SourceMode.EXTERNAL, Channel.OPERATOR, False),
    (OperationMode.AUTOMATIC, SourceMode.EXTERNAL, Channel.PEA, True),
]


@pytest.mark.parametrize(("mode", "source", "channel", "honoured"), CHANNEL_RULES)
def test_channel_rules(
    mode: OperationMode, source: SourceMode, channel: Channel, honoured: bool
) -> None:
    m = machine(operation_mode=mode, source_mode=source)
    if honoured:
        assert m.command(Command.START, channel) is State.EXECUTE
        m.request_procedure(2, channel)
        assert m.procedure_req == 2
    else:
        with pytest.raises(CommandRefused) as info:
            m.command(Command.START, channel)
        assert m.state is State.IDLE
        assert info.value.channel is channel
        with pytest.raises(CommandRefused):
            m.request_procedure(2, channel)
        assert m.procedure_req == 1


def test_offline_only_from_idle() -> None:
    m = machine()

    def mode() -> OperationMode:
        return m.operation_mode

    m.command(Command.START)
    with pytest.raises(CommandRefused, match="Offline"):
        m.set_operation_mode(OperationMode.OFFLINE)
    assert mode() is OperationMode.OPERATOR
    m.command(Command.STOP)
    with pytest.raises(CommandRefused):
        m.set_operation_mode(OperationMode.OFFLINE)
    m.command(Command.RESET)
    m.set_operation_mode(OperationMode.OFFLINE)
    assert mode() is OperationMode.OFFLINE
    with pytest.raises(CommandRefused, match="Offline"):
        m.command(Command.START)


def test_operator_automatic_switch_in_any_state_keeps_state() -> None:
    m = machine()
    m.command(Command.START)
    m.set_operation_mode(OperationMode.AUTOMATIC)
    m.set_source_mode(SourceMode.EXTERNAL)
    assert m.state is State.EXECUTE
    assert m.command(Command.PAUSE, Channel.EXTERNAL) is State.PAUSED
    m.set_operation_mode(OperationMode.OPERATOR)
    assert m.command(Command.RESUME, Channel.OPERATOR) is State.EXECUTE


def test_unknown_command_code_refused() -> None:
    m = machine()
    with pytest.raises(CommandRefused, match="unknown command code 3") as info:
        m.command(3)
    assert info.value.command is None and m.state is State.IDLE


def test_int_codes_accepted_like_opc_ua_writes() -> None:
    m = machine()
    assert m.command(4) is State.EXECUTE  # Start
    assert m.command(256) is State.ABORTED  # Abort


# ------------------------------------------------------------------ procedures
def test_unknown_procedure_refused_and_nothing_changes() -> None:
    m = machine()
    with pytest.raises(CommandRefused, match=r"unknown procedure id 7 \(known: 1 \(Continuous\)"):
        m.request_procedure(7)
    assert m.procedure_req == 1


def test_procedure_req_copied_to_cur_on_start_only() -> None:
    m = machine()
    m.request_procedure(1)
    m.command(Command.START)
    assert m.procedure_cur == 1
    m.request_procedure(2)
    assert (m.procedure_req, m.procedure_cur) == (2, 1)
    m.command(Command.PAUSE)
    assert m.procedure_cur == 1


def test_restart_takes_new_procedure() -> None:
    m = machine()
    m.command(Command.START)
    m.request_procedure(2)  # self-completing
    assert m.command(Command.RESTART) is State.COMPLETED
    assert m.procedure_cur == 2


def test_without_default_procedure_start_is_not_enabled() -> None:
    m = machine(procedures=(Procedure(5, "A"), Procedure(6, "B")))
    assert m.procedure_req == 0
    assert not m.command_en & Command.START
    with pytest.raises(CommandRefused, match="no procedure requested"):
        m.command(Command.START)
    m.request_procedure(6)
    assert m.command_en & Command.START
    m.command(Command.START)
    assert m.procedure_cur == 6


def test_procedure_declaration_errors() -> None:
    with pytest.raises(ValueError, match="positive"):
        Procedure(0, "none")
    with pytest.raises(ValueError, match="used twice"):
        ServiceStateMachine(procedures=(Procedure(1, "a"), Procedure(1, "b")))
    with pytest.raises(ValueError, match="more than one default"):
        ServiceStateMachine(
            procedures=(Procedure(1, "a", is_default=True), Procedure(2, "b", is_default=True))
        )


def test_self_completing_without_work_runs_to_completed() -> None:
    m = machine()
    m.request_procedure(2)
    states: list[State] = []
    m.subscribe(lambda c: states.append(c.new))
    assert m.command(Command.START) is State.COMPLETED
    assert states == [State.STARTING, State.EXECUTE, State.COMPLETING, State.COMPLETED]


def test_not_self_completing_stays_in_execute() -> None:
    m = machine()
    assert m.command(Command.START) is State.EXECUTE


# ------------------------------------------------------------------ options in the machine
def test_idle_options_in_machine() -> None:
    m = machine(options=StateMachineOptions(stop_in_idle=False, abort_in_idle=False))
    for cmd in (Command.STOP, Command.ABORT):
        with pytest.raises(CommandRefused, match="not enabled in state Idle"):
            m.command(cmd)
    assert m.state is State.IDLE and m.command_en == int(Command.START)


def test_complete_outside_execute_in_machine() -> None:
    default = machine()
    drive_to(default, State.PAUSED)
    with pytest.raises(CommandRefused):
        default.command(Command.COMPLETE)
    on = machine(options=StateMachineOptions(complete_outside_execute=True))
    drive_to(on, State.HELD)
    assert on.command(Command.COMPLETE) is State.COMPLETED

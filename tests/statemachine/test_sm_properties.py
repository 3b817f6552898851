"""Random command sequences: the machine follows the golden model, refusals change nothing,
CommandEn always matches what command() accepts, Offline implies Idle, and with async work no
task leaks whatever the interleaving."""

from __future__ import annotations

import asyncio
import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from modulecontrol.statemachine import (
    Channel,
    Command,
    CommandRefused,
    OperationMode,
    Procedure,
    ServiceStateMachine,
    SourceMode,
    State,
    StateMachineOptions,
    WorkContext,
)
from tests.statemachine.sm_golden import ACTING, expected_rest, expected_rows

PROCS = (
    Procedure(1, "Continuous", is_default=True),
    Procedure(2, "Batch", self_completing=True),
)
options_st = st.builds(
    StateMachineOptions,
    stop_in_idle=st.booleans(),
    abort_in_idle=st.booleans(),
    complete_outside_execute=st.booleans(),
)


class ServiceModel(RuleBasedStateMachine):
    """Compares a work-less ServiceStateMachine step by step with the golden table."""

    def __init__(self) -> None:
        super().__init__()
        self.m = ServiceStateMachine("P1", procedures=PROCS)
        self.rows = expected_rows()

    @initialize(
        opts=options_st,
        mode=st.sampled_from([OperationMode.OPERATOR, OperationMode.AUTOMATIC]),
    )
    def setup(self, opts: StateMachineOptions, mode: OperationMode) -> None:
        self.m = ServiceStateMachine("P1", procedures=PROCS, options=opts, operation_mode=mode)
        self.rows = expected_rows(
            stop_in_idle=opts.stop_in_idle,
            abort_in_idle=opts.abort_in_idle,
            complete_outside_execute=opts.complete_outside_execute,
        )

    def honoured(self, channel: Channel) -> bool:
        mode, src = self.m.operation_mode, self.m.source_mode
        if mode is OperationMode.OFFLINE:
            return False
        if channel is Channel.PEA:
            return True
        if channel is Channel.OPERATOR:
            return mode is OperationMode.OPERATOR
        if mode is not OperationMode.AUTOMATIC:
            return False
        return (channel is Channel.INTERNAL) == (src is SourceMode.INTERNAL)

    @rule(cmd=st.sampled_from(Command), channel=st.sampled_from(Channel))
    def command(self, cmd: Command, channel: Channel) -> None:
        before = (self.m.state, self.m.procedure_cur, self.m.command_en)
        # the procedure the command runs under: a Start or Restart takes the requested one,
        # every other command goes on with the current one (a request while Held waits for
        # the next Start; the oracle read the request, and an Unhold of a procedure that is
        # not self-completing was expected to complete)
        pid = (self.m.procedure_req if cmd in (Command.START, Command.RESTART)
               else self.m.procedure_cur or self.m.procedure_req)
        sc = PROCS[pid - 1].self_completing
        target = expected_rest(before[0].label, cmd.label, self_completing=sc, rows=self.rows)
        expected = target if self.honoured(channel) else None
        try:
            got = self.m.command(cmd, channel)
        except CommandRefused:
            assert expected is None, f"{cmd.label} via {channel} refused, expected {target}"
            assert (self.m.state, self.m.procedure_cur, self.m.command_en) == before
        else:
            assert got.label == expected

    @rule(code=st.integers(min_value=-3, max_value=4096))
    def raw_code(self, code: int) -> None:
        before = self.m.state
        if code not in {int(c) for c in Command}:
            try:
                self.m.command(code, Channel.PEA)
            except CommandRefused:
                pass
            else:
                raise AssertionError(f"unknown code {code} accepted")
            assert self.m.state is before

    @rule(mode=st.sampled_from(OperationMode))
    def set_mode(self, mode: OperationMode) -> None:
        try:
            self.m.set_operation_mode(mode)
        except CommandRefused:
            assert mode is OperationMode.OFFLINE and self.m.state is not State.IDLE
        else:
            assert self.m.operation_mode is mode

    @rule(src=st.sampled_from(SourceMode))
    def set_source(self, src: SourceMode) -> None:
        self.m.set_source_mode(src)

    @rule(pid=st.integers(min_value=0, max_value=3), channel=st.sampled_from(Channel))
    def request(self, pid: int, channel: Channel) -> None:
        before = self.m.procedure_req
        try:
            self.m.request_procedure(pid, channel)
        except CommandRefused:
            assert self.m.procedure_req == before
            assert pid not in (1, 2) or not self.honoured(channel)
        else:
            assert pid in (1, 2) and self.m.procedure_req == pid

    @invariant()
    def at_rest_in_a_defined_state(self) -> None:
        state = self.m.state
        assert isinstance(state, State)
        assert state.label not in ACTING  # no work: acting states pass at once
        assert self.m.state_cur == int(state)

    @invariant()
    def command_en_matches_check(self) -> None:
        for cmd in Command:
            table_ok = any(a == self.m.state.label and b == cmd.label for a, b, _ in self.rows)
            assert bool(self.m.command_en & cmd) == table_ok

    @invariant()
    def offline_implies_idle(self) -> None:
        if self.m.operation_mode is OperationMode.OFFLINE:
            assert self.m.state is State.IDLE


TestServiceModel = ServiceModel.TestCase
TestServiceModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# ------------------------------------------------------------------ async interleavings
step_st = st.one_of(
    st.sampled_from(Command),
    st.integers(min_value=0, max_value=3),  # that many event-loop turns
)


async def _scenario(steps: list[Command | int], self_completing: bool) -> None:
    m = ServiceStateMachine(
        "P2",
        procedures=(Procedure(1, "p", self_completing=self_completing, is_default=True),),
        operation_mode=OperationMode.OPERATOR,
    )
    running: set[State] = set()

    def make_work(state: State, turns: int) -> object:
        async def work(ctx: WorkContext) -> None:
            running.add(state)
            try:
                for _ in range(turns):
                    await asyncio.sleep(0)
            finally:
                running.discard(state)
                await asyncio.sleep(0)  # cleanup that itself awaits

        return work

    for i, state in enumerate(sorted(State)):
        m.set_work(state, make_work(state, 1 + i % 4))  # type: ignore[arg-type]
    for step in steps:
        if isinstance(step, Command):
            with contextlib.suppress(CommandRefused):
                m.command(step)
        else:
            for _ in range(step):
                await asyncio.sleep(0)
        assert isinstance(m.state, State)
        assert m.pending_work <= len(steps) + 1
    await m.aclose()
    assert m.pending_work == 0 and running == set()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("P2:")]


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(step_st, max_size=30), self_completing=st.booleans())
def test_random_interleavings_with_work_leave_no_task(
    steps: list[Command | int], self_completing: bool
) -> None:
    asyncio.run(_scenario(steps, self_completing))


async def _settles(steps: list[Command], self_completing: bool) -> None:
    """With fast work, after every command the machine settles in the same rest state as the
    golden model predicts (acting states finish their work, then SC)."""
    m = ServiceStateMachine(
        "P3",
        procedures=(Procedure(1, "p", self_completing=self_completing, is_default=True),),
        operation_mode=OperationMode.OPERATOR,
    )
    for state in State:
        if state.acting or state is State.EXECUTE:
            m.set_work(state, lambda ctx: asyncio.sleep(0))
    rests = [s for s in State if not s.acting]
    for cmd in steps:
        start = m.state
        expected = expected_rest(start.label, cmd.label, self_completing=self_completing)
        try:
            m.command(cmd)
        except CommandRefused:
            assert expected is None
            continue
        async with asyncio.timeout(2):
            got = await m.wait_for(*rests)
            if got is State.EXECUTE and self_completing:
                got = await m.wait_for(State.COMPLETED, State.STOPPED, State.ABORTED)
        assert got.label == expected
    await m.aclose()


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.sampled_from(Command), max_size=20), self_completing=st.booleans())
def test_with_work_machine_settles_like_golden_model(
    steps: list[Command], self_completing: bool
) -> None:
    asyncio.run(_settles(steps, self_completing))

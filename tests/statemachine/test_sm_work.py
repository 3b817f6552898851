"""State work as asyncio tasks: SC on return, cancellation on Abort/Stop/Hold, cleanup order,
failures, no leaked tasks."""

from __future__ import annotations

import asyncio
import gc

import pytest

from modulecontrol.statemachine import (
    ABORT_DRAIN,
    Command,
    OperationMode,
    Procedure,
    ServiceStateMachine,
    State,
    StateChange,
    WorkContext,
)

TIMEOUT = 2.0


def machine(*procs: Procedure, abort_drain: float = ABORT_DRAIN) -> ServiceStateMachine:
    return ServiceStateMachine(
        "Dosing",
        procedures=procs or (Procedure(1, "Continuous", is_default=True),),
        operation_mode=OperationMode.OPERATOR,
        abort_drain=abort_drain,
    )


def service_tasks(name: str = "Dosing") -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(f"{name}:")]


async def test_acting_state_leaves_by_sc_when_work_returns() -> None:
    m = machine()
    release = asyncio.Event()
    seen: list[WorkContext] = []

    async def starting(ctx: WorkContext) -> None:
        seen.append(ctx)
        await release.wait()

    m.set_work(State.STARTING, starting)
    assert m.command(Command.START) is State.STARTING
    await asyncio.sleep(0)
    assert m.state is State.STARTING and m.pending_work == 1
    release.set()
    async with asyncio.timeout(TIMEOUT):
        assert await m.wait_for(State.EXECUTE) is State.EXECUTE
    assert seen[0].state is State.STARTING and seen[0].previous is State.IDLE
    assert seen[0].command is Command.START and seen[0].procedure is not None
    await m.aclose()


async def test_long_work_does_not_block_commands() -> None:
    m = machine()
    m.set_work(State.EXECUTE, lambda ctx: asyncio.sleep(3600))
    m.command(Command.START)
    await asyncio.sleep(0)
    assert m.state is State.EXECUTE and m.pending_work == 1
    # returns at once; Pausing waits for the cancelled Execute work, then SC -> Paused
    assert m.command(Command.PAUSE) is State.PAUSING
    async with asyncio.timeout(TIMEOUT):
        await m.wait_for(State.PAUSED)
    assert m.pending_work == 0
    await m.aclose()


@pytest.mark.parametrize(
    ("cmd", "acting", "final"),
    [
        (Command.ABORT, State.ABORTING, State.ABORTED),
        (Command.STOP, State.STOPPING, State.STOPPED),
        (Command.HOLD, State.HOLDING, State.HELD),
    ],
)
async def test_cancel_waits_for_cleanup_before_next_state_finishes(
    cmd: Command, acting: State, final: State
) -> None:
    m = machine()
    log: list[str] = []

    async def execute(ctx: WorkContext) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        finally:
            await asyncio.sleep(0.01)  # e.g. closing a valve over the network
            log.append("cleanup done")

    m.set_work(State.EXECUTE, execute)
    m.subscribe(lambda c: log.append(f"-> {c.new.label}"))
    m.command(Command.START)
    await asyncio.sleep(0)
    assert m.command(cmd) is acting  # cleanup pending, so no immediate SC
    async with asyncio.timeout(TIMEOUT):
        await m.wait_for(final)
    assert log == [
        "-> Starting",
        "-> Execute",
        f"-> {acting.label}",
        "cancelled",
        "cleanup done",
        f"-> {final.label}",
    ]
    assert m.pending_work == 0
    await m.aclose()
    assert service_tasks() == []


async def test_next_work_starts_only_after_cancelled_work_cleaned_up() -> None:
    m = machine()
    log: list[str] = []

    async def execute(ctx: WorkContext) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.01)
            log.append("execute cleaned")

    async def stopping(ctx: WorkContext) -> None:
        log.append("stopping work")

    m.set_work(State.EXECUTE, execute)
    m.set_work(State.STOPPING, stopping)
    m.command(Command.START)
    await asyncio.sleep(0)
    m.command(Command.STOP)
    async with asyncio.timeout(TIMEOUT):
        await m.wait_for(State.STOPPED)
    assert log == ["execute cleaned", "stopping work"]
    await m.aclose()


async def test_abort_during_stopping_does_not_cut_earlier_cleanup_short() -> None:
    """Stop then Abort while Execute still cleans up: its cleanup must finish uncancelled."""
    m = machine()
    log: list[str] = []

    async def execute(ctx: WorkContext) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            try:
                await asyncio.sleep(0.02)
                log.append("execute cleanup complete")
            except asyncio.CancelledError:
                log.append("execute cleanup interrupted")
                raise

    m.set_work(State.EXECUTE, execute)
    m.set_work(State.STOPPING, lambda ctx: asyncio.sleep(3600))
    m.command(Command.START)
    await asyncio.sleep(0)
    m.command(Command.STOP)
    await asyncio.sleep(0)
    m.command(Command.ABORT)
    async with asyncio.timeout(TIMEOUT):
        await m.wait_for(State.ABORTED)
    assert log == ["execute cleanup complete"]
    await m.aclose()


async def test_failing_work_aborts_the_service() -> None:
    m = machine()
    changes: list[StateChange] = []
    m.subscribe(changes.append)

    async def execute(ctx: WorkContext) -> None:
        await asyncio.sleep(0)
        raise ValueError("pressure sensor lost")

    m.set_work(State.EXECUTE, execute)
    m.command(Command.START)
    async with asyncio.timeout(TIMEOUT):
        await m.wait_for(State.ABORTED)
    assert isinstance(m.last_error, ValueError)
    abort = next(c for c in changes if c.new is State.ABORTING)
    assert abort.command is Command.ABORT and abort.channel is None
    assert "pressure sensor lost" in abort.reason
    await m.aclose()


async def test_failing_aborting_work_still_reaches_aborted() -> None:
    m = machine()

    async def aborting(ctx: WorkContext) -> None:
        raise OSError("valve did not answer")

    m.set_work(State.ABORTING, aborting)
    m.command(Command.ABORT)
    async with asyncio.timeout(TIMEOUT):
        await m.wait_for(State.ABORTED)
    assert isinstance(m.last_error, OSError)


async def test_work_that_swallows_cancellation_cannot_fire_stale_sc() -> None:
    m = machine()

    async def starting(ctx: WorkContext) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return  # badly behaved: returns normally after cancel

    m.set_work(State.STARTING, starting)
    m.command(Command.START)
    await asyncio.sleep(0)
    m.command(Command.STOP)
    async with asyncio.timeout(TIMEOUT):
        await m.wait_for(State.STOPPED)
    for _ in range(5):
        await asyncio.sleep(0)
    assert m.state is State.STOPPED  # not Execute


async def test_abort_writes_its_outputs_even_when_earlier_work_ignores_its_cancel() -> None:
    """Execute's work that goes on after its cancel (as when ``wait_for`` drops a cancel
    that comes with a reply) holds up a Stop's work for good, but not an Abort's: Aborting
    runs after ``abort_drain`` s and the machine reaches Aborted, the fault in last_error."""
    m = machine(abort_drain=0.2)
    changes: list[StateChange] = []
    m.subscribe(changes.append)
    done = asyncio.Event()
    log: list[str] = []

    async def execute(ctx: WorkContext) -> None:
        while not done.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                log.append("cancel dropped")

    async def aborting(ctx: WorkContext) -> None:
        log.append("abort writes")

    m.set_work(State.EXECUTE, execute)
    m.set_work(State.ABORTING, aborting)
    m.command(Command.START)
    await asyncio.sleep(0.02)
    m.command(Command.ABORT)
    try:
        async with asyncio.timeout(TIMEOUT):
            await m.wait_for(State.ABORTED)
        assert log == ["cancel dropped", "abort writes"]
        assert isinstance(m.last_error, RuntimeError)
        assert "did not end within 0.2 s of its cancel; Aborting went on" in str(m.last_error)
        aborted = next(c for c in changes if c.new is State.ABORTED)
        assert "did not end within 0.2 s" in aborted.reason  # the run's events hear it too
    finally:
        done.set()
        await m.aclose()


async def test_self_completing_execute_work_leads_to_completed() -> None:
    m = machine(Procedure(3, "Batch", self_completing=True, is_default=True))
    done = asyncio.Event()

    async def execute(ctx: WorkContext) -> None:
        assert ctx.procedure is not None and ctx.procedure.self_completing
        await done.wait()

    m.set_work(State.EXECUTE, execute)
    m.command(Command.START)
    await asyncio.sleep(0)
    assert m.state is State.EXECUTE
    done.set()
    async with asyncio.timeout(TIMEOUT):
        await m.wait_for(State.COMPLETED)
    await m.aclose()


async def test_non_self_completing_execute_work_returning_stays_in_execute() -> None:
    m = machine()
    ran = asyncio.Event()

    async def execute(ctx: WorkContext) -> None:
        ran.set()

    m.set_work(State.EXECUTE, execute)
    m.command(Command.START)
    await ran.wait()
    for _ in range(5):
        await asyncio.sleep(0)
    assert m.state is State.EXECUTE and m.pending_work == 0


async def test_execute_work_knows_it_was_resumed() -> None:
    m = machine()
    entries: list[tuple[State, Command | None]] = []
    resumed = asyncio.Event()

    async def execute(ctx: WorkContext) -> None:
        entries.append((ctx.previous, ctx.command))
        if len(entries) == 2:
            resumed.set()
        await asyncio.Event().wait()

    m.set_work(State.EXECUTE, execute)
    m.command(Command.START)
    await asyncio.sleep(0)
    m.command(Command.PAUSE)
    async with asyncio.timeout(TIMEOUT):
        await m.wait_for(State.PAUSED)
    m.command(Command.RESUME)
    async with asyncio.timeout(TIMEOUT):
        await resumed.wait()
    assert entries == [(State.STARTING, None), (State.RESUMING, None)]
    await m.aclose()


async def test_aclose_cancels_everything_and_leaves_no_task() -> None:
    m = machine()
    m.set_work(State.EXECUTE, lambda ctx: asyncio.sleep(3600))
    m.command(Command.START)
    await asyncio.sleep(0)
    assert len(service_tasks()) == 1
    await m.aclose()
    assert service_tasks() == [] and m.pending_work == 0
    gc.collect()
    with pytest.raises(RuntimeError, match="closed"):
        m.command(Command.STOP)


async def test_async_context_manager_closes() -> None:
    async with machine() as m:
        m.set_work(State.STARTING, lambda ctx: asyncio.sleep(3600))
        m.command(Command.START)
        await asyncio.sleep(0)
        assert m.pending_work == 1
    assert m.pending_work == 0


def test_command_with_work_outside_event_loop_fails_before_changing_anything() -> None:
    m = machine()
    m.set_work(State.STARTING, lambda ctx: asyncio.sleep(0))
    with pytest.raises(RuntimeError):
        m.command(Command.START)
    assert m.state is State.IDLE

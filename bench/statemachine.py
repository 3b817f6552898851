"""Benchmark of the service state machine: construction, sync commands, and async work cycles."""

from __future__ import annotations

import asyncio
import time

from modulecontrol.statemachine import (
    Command,
    OperationMode,
    ServiceStateMachine,
    State,
    WorkContext,
)

_CYCLE = (Command.START, Command.PAUSE, Command.RESUME, Command.COMPLETE, Command.RESET)


def _construct(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        ServiceStateMachine(operation_mode=OperationMode.OPERATOR)
    return (time.perf_counter() - t0) / n


def _sync_cycles(n: int) -> float:
    m = ServiceStateMachine(operation_mode=OperationMode.OPERATOR)
    t0 = time.perf_counter()
    for _ in range(n):
        for cmd in _CYCLE:
            m.command(cmd)
    return n * len(_CYCLE) / (time.perf_counter() - t0)


async def _async_cycles(n: int) -> float:
    m = ServiceStateMachine(operation_mode=OperationMode.OPERATOR)

    async def work(ctx: WorkContext) -> None:
        await asyncio.sleep(0)

    for state in State:
        if state.acting:
            m.set_work(state, work)
    t0 = time.perf_counter()
    for _ in range(n):
        for cmd, rest in zip(
            _CYCLE,
            (State.EXECUTE, State.PAUSED, State.EXECUTE, State.COMPLETED, State.IDLE),
            strict=True,
        ):
            m.command(cmd)
            await m.wait_for(rest)
    elapsed = time.perf_counter() - t0
    await m.aclose()
    return n * len(_CYCLE) / elapsed


def run() -> dict[str, float]:
    """Figures: construction time, commands per second without and with async work."""
    return {
        "construct_us": _construct(200) * 1e6,
        "sync_commands_per_s": _sync_cycles(2000),
        "async_work_commands_per_s": asyncio.run(_async_cycles(500)),
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value:,.1f}")

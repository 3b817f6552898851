"""Polling a condition that has nothing to wait on (a proxy's fault, a model's state, a
recipe's step): the one helper the tests share, instead of a copy per file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def until(pred: Callable[[], bool], within: float, step: float = 0.01) -> float | None:
    """Wall seconds until ``pred()`` holds, polled every ``step`` s; None if it still does
    not after ``within`` s (checked once more at the end, so a slow last sleep on a loaded
    machine does not cost the last chance)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < within:
        if pred():
            return time.perf_counter() - t0
        await asyncio.sleep(step)
    return time.perf_counter() - t0 if pred() else None


def wait_until(what: str, check: Callable[[], Any], within: float = 60.0,
               step: float = 0.1) -> Any:
    """What ``check()`` returns once it is truthy, polled every ``step`` s from a test's
    thread (a served line over HTTP, a broker); AssertionError naming ``what`` after
    ``within`` s. The bound is generous: a test never asserts a time."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if got := check():
            return got
        time.sleep(step)
    raise AssertionError(f"{what}: not within {within} s")


def tasks_report() -> str:
    """Every open event loop's tasks with their stacks, for the message of a bound that
    ran out: a served line runs in a thread of the test's process (``ServiceThread``),
    so what it awaits is visible here, and a state that never comes says why."""
    import gc
    import io

    out = io.StringIO()
    for loop in [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]:
        if loop.is_closed():
            continue
        for task in list(asyncio.all_tasks(loop)):
            out.write(f"--- {task!r}\n")
            task.print_stack(file=out)
    return out.getvalue()

"""Hold arbitration: several causes may hold the recipe; it resumes when the last one clears.

An interlock, a module fault and an operator can each want the recipe held. Each cause is a
key with a reason; the recipe is held when the first cause appears and unheld automatically
only when no cause is left and the cause that cleared allows it (``auto``). A cause that
clears while the hold is still being carried out (Holding) unholds once Held, or the recipe
would stay Held with nothing left to release it.

A hold for an operator's decision (a step that failed and whose handler holds, a step a
restart cannot verify) is not a cause that clears: while one is awaited no cause clearing
unholds the recipe, since the step goes on (its command sent again) when the recipe is back
in Execute. Only an operator's command ends it (:meth:`HoldArbiter.decided`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from modulecontrol.statemachine import Command, ServiceStateMachine, State

_HOLDABLE = (State.EXECUTE, State.STARTING, State.UNHOLDING)


class HoldArbiter:
    """The causes holding a recipe, and the hold/unhold commands they lead to."""

    def __init__(
        self,
        machine: ServiceStateMachine,
        command: Callable[[Command, str], bool],
        held_within: float,
    ) -> None:
        self._machine = machine
        self._command = command
        self._held_within = held_within
        """Wall seconds to wait for Held before an automatic unhold gives up."""
        self._reasons: dict[str, str] = {}
        self._decision: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def held(self) -> bool:
        """Some cause still wants the recipe held."""
        return bool(self._reasons)

    def reasons(self) -> list[str]:
        return sorted(self._reasons.values())

    @property
    def decision(self) -> str | None:
        """The reason of the operator's decision awaited, if one is."""
        return self._decision

    def await_decision(self, reason: str) -> None:
        """The recipe holds for an operator's decision (the caller commands the hold): no
        cause that clears unholds it until :meth:`decided`. Without this, a module's link
        lost at the same moment (a hold of its own) unheld the recipe when it came back, and
        the failed step ran again, its command sent again, with no one having decided."""
        self._decision = reason

    def decided(self) -> None:
        """An operator's command took the recipe out of Held (resume, stop, abort)."""
        self._decision = None

    def request(self, key: str, reason: str) -> None:
        """Cause ``key`` wants the recipe held (the hold is commanded once, soon)."""
        self._reasons[key] = reason
        if self._machine.state in _HOLDABLE:
            asyncio.get_running_loop().call_soon(self._command, Command.HOLD, reason)

    def release(self, key: str, *, auto: bool) -> None:
        """Cause ``key`` has cleared; with ``auto`` the recipe unholds if it was the last."""
        if (self._reasons.pop(key, None) is None or not auto or self._reasons
                or self._decision is not None):
            return
        state = self._machine.state
        if state is State.HELD:
            asyncio.get_running_loop().call_soon(self._command, Command.UNHOLD, f"{key} cleared")
        elif state is State.HOLDING:
            task = asyncio.get_running_loop().create_task(self._unhold_once_held(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _unhold_once_held(self, key: str) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._held_within):
                await self._machine.wait_for(State.HELD)
        if not self._reasons and self._decision is None and self._machine.state is State.HELD:
            self._command(Command.UNHOLD, f"{key} cleared")

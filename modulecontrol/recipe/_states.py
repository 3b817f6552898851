"""Which service command is possible in which state, for checking a recipe before it runs.

This is a local, deliberately small copy of the MTP (VDI/VDE/NAMUR 2658-4) service state
machine reduced to its stable states. :func:`transition` is the single place the validator
asks; it can be pointed at :mod:`modulecontrol.statemachine` once that exists.
"""

from __future__ import annotations

STABLE_STATES = ("Idle", "Execute", "Held", "Paused", "Completed", "Stopped", "Aborted")

_TABLE: dict[str, dict[str, str]] = {
    "Idle": {"start": "Execute"},
    "Execute": {
        "stop": "Stopped",
        "hold": "Held",
        "pause": "Paused",
        "complete": "Completed",
        "abort": "Aborted",
        "restart": "Execute",
    },
    "Held": {"unhold": "Execute"},
    "Paused": {"resume": "Execute"},
    "Completed": {"reset": "Idle"},
    "Stopped": {"reset": "Idle"},
    "Aborted": {"reset": "Idle"},
}

TRANSIENT_TARGET = {
    "Starting": "Execute",
    "Completing": "Completed",
    "Pausing": "Paused",
    "Resuming": "Execute",
    "Holding": "Held",
    "Unholding": "Execute",
    "Stopping": "Stopped",
    "Aborting": "Aborted",
    "Resetting": "Idle",
}
"""The stable state each transient (acting) state ends in."""


def transition(state: str, command: str) -> str | None:
    """The stable state ``command`` leads to from ``state``, or None when not possible.

    Abort is possible from every state but Aborted; stop from every state but Idle,
    Stopped and Aborted.
    """
    if command == "abort":
        return None if state == "Aborted" else "Aborted"
    if command == "stop":
        return None if state in ("Idle", "Stopped", "Aborted") else "Stopped"
    return _TABLE.get(state, {}).get(command)


def enabled(state: str) -> list[str]:
    """Commands possible in ``state`` (for error messages)."""
    cmds = ["start", "stop", "hold", "unhold", "pause", "resume", "abort", "reset", "restart"]
    cmds.append("complete")
    return [c for c in cmds if transition(state, c) is not None]

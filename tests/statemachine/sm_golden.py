"""The expected 2658-4 service state model, written by hand from the standard's state diagram.

Deliberately not derived from modulecontrol: every test compares the code against this text.
"""

from __future__ import annotations

# StateCur codes and command codes as printed in VDI/VDE/NAMUR 2658-4.
STATE_CODES: dict[str, int] = {
    "Stopped": 4,
    "Starting": 8,
    "Idle": 16,
    "Paused": 32,
    "Execute": 64,
    "Stopping": 128,
    "Aborting": 256,
    "Aborted": 512,
    "Holding": 1024,
    "Held": 2048,
    "Unholding": 4096,
    "Pausing": 8192,
    "Resuming": 16384,
    "Resetting": 32768,
    "Completing": 65536,
    "Completed": 131072,
}
COMMAND_CODES: dict[str, int] = {
    "Reset": 2,
    "Start": 4,
    "Stop": 8,
    "Hold": 16,
    "Unhold": 32,
    "Pause": 64,
    "Resume": 128,
    "Abort": 256,
    "Restart": 512,
    "Complete": 1024,
}
ACTING = {
    "Starting",
    "Stopping",
    "Aborting",
    "Holding",
    "Unholding",
    "Pausing",
    "Resuming",
    "Resetting",
    "Completing",
}

# from        trigger    to            (default options)
_GOLDEN_TEXT = """
Idle          Start      Starting
Idle          Stop       Stopping
Idle          Abort      Aborting
Starting      SC         Execute
Starting      Hold       Holding
Starting      Stop       Stopping
Starting      Abort      Aborting
Execute       SC         Completing
Execute       Complete   Completing
Execute       Pause      Pausing
Execute       Hold       Holding
Execute       Restart    Starting
Execute       Stop       Stopping
Execute       Abort      Aborting
Completing    SC         Completed
Completing    Hold       Holding
Completing    Stop       Stopping
Completing    Abort      Aborting
Completed     Reset      Resetting
Completed     Stop       Stopping
Completed     Abort      Aborting
Pausing       SC         Paused
Pausing       Hold       Holding
Pausing       Stop       Stopping
Pausing       Abort      Aborting
Paused        Resume     Resuming
Paused        Hold       Holding
Paused        Stop       Stopping
Paused        Abort      Aborting
Resuming      SC         Execute
Resuming      Hold       Holding
Resuming      Stop       Stopping
Resuming      Abort      Aborting
Holding       SC         Held
Holding       Stop       Stopping
Holding       Abort      Aborting
Held          Unhold     Unholding
Held          Stop       Stopping
Held          Abort      Aborting
Unholding     SC         Execute
Unholding     Hold       Holding
Unholding     Stop       Stopping
Unholding     Abort      Aborting
Stopping      SC         Stopped
Stopping      Abort      Aborting
Stopped       Reset      Resetting
Stopped       Abort      Aborting
Aborting      SC         Aborted
Aborted       Reset      Resetting
Resetting     SC         Idle
Resetting     Stop       Stopping
Resetting     Abort      Aborting
"""

GOLDEN: frozenset[tuple[str, str, str]] = frozenset(
    (a, b, c) for a, b, c in (line.split() for line in _GOLDEN_TEXT.strip().splitlines())
)

# CommandEn per state for the default options, summed by hand.
GOLDEN_COMMAND_EN: dict[str, int] = {
    "Idle": 4 + 8 + 256,  # Start, Stop, Abort = 268
    "Starting": 8 + 16 + 256,  # 280
    "Execute": 8 + 16 + 64 + 256 + 512 + 1024,  # 1880
    "Completing": 8 + 16 + 256,
    "Completed": 2 + 8 + 256,  # 266
    "Pausing": 8 + 16 + 256,
    "Paused": 8 + 16 + 128 + 256,  # 408
    "Resuming": 8 + 16 + 256,
    "Holding": 8 + 256,
    "Held": 8 + 32 + 256,  # 296
    "Unholding": 8 + 16 + 256,
    "Stopping": 256,
    "Stopped": 2 + 256,  # 258
    "Aborting": 0,
    "Aborted": 2,
    "Resetting": 8 + 256,  # 264
}

COMPLETE_EXTRA = ("Starting", "Pausing", "Paused", "Resuming", "Held", "Unholding")


def expected_rows(
    *, stop_in_idle: bool = True, abort_in_idle: bool = True, complete_outside_execute: bool = False
) -> frozenset[tuple[str, str, str]]:
    """The golden rows adjusted by hand for the three options."""
    rows = set(GOLDEN)
    if not stop_in_idle:
        rows.discard(("Idle", "Stop", "Stopping"))
    if not abort_in_idle:
        rows.discard(("Idle", "Abort", "Aborting"))
    if complete_outside_execute:
        rows |= {(s, "Complete", "Completing") for s in COMPLETE_EXTRA}
    return frozenset(rows)


def expected_rest(
    state: str,
    command: str,
    *,
    self_completing: bool,
    rows: frozenset[tuple[str, str, str]] = GOLDEN,
) -> str | None:
    """Where a machine without work ends after ``command``: the target, then SC while acting
    (and from Execute for a self-completing procedure). None if the command is not enabled."""
    step = {(a, b): c for a, b, c in rows}
    nxt = step.get((state, command))
    if nxt is None:
        return None
    while nxt in ACTING or (nxt == "Execute" and self_completing):
        nxt = step[(nxt, "SC")]
    return nxt

"""The VDI/VDE/NAMUR 2658-4 service state model as data: states, commands, modes and rules.

This is the one place the model is spelled. The running machine
(:mod:`modulecontrol.statemachine`), the service client of this package, the recipe
validator, the orchestrator, the reports and the virtual PEA all derive their sets and targets
from it, so a second table that could disagree does not exist.

Why a table and not code: the same rows build the ``transitions`` machine, compute CommandEn,
feed ``modulecontrol states --json`` and the docs, so the published model and the running one
cannot drift apart. The few enable cases that implementations disagree on are switched by
:class:`StateMachineOptions`, never by editing rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum, IntEnum
from typing import Any, Final, Literal, cast

StateLabel = Literal[
    "Idle",
    "Starting",
    "Execute",
    "Completing",
    "Completed",
    "Pausing",
    "Paused",
    "Resuming",
    "Holding",
    "Held",
    "Unholding",
    "Stopping",
    "Stopped",
    "Aborting",
    "Aborted",
    "Resetting",
]
"""A state spelled as in the standard (``State.label``): for descriptor keys such as
``actions: {Execute: ...}``."""


class State(IntEnum):
    """Service states with their StateCur codes (one bit each, VDI/VDE/NAMUR 2658-4)."""

    STOPPED = 4
    STARTING = 8
    IDLE = 16
    PAUSED = 32
    EXECUTE = 64
    STOPPING = 128
    ABORTING = 256
    ABORTED = 512
    HOLDING = 1024
    HELD = 2048
    UNHOLDING = 4096
    PAUSING = 8192
    RESUMING = 16384
    RESETTING = 32768
    COMPLETING = 65536
    COMPLETED = 131072

    @property
    def label(self) -> StateLabel:
        """The spelling used by the standard and in MTP manifests (``Execute``, ``Held``)."""
        return cast(StateLabel, self.name.capitalize())

    @property
    def acting(self) -> bool:
        """True for the transient states that leave by SC once their work is finished."""
        return self in ACTING_STATES

    @classmethod
    def from_label(cls, label: str) -> State:
        """The state spelled ``label`` (``Execute``; case-insensitive); ValueError names the
        known states."""
        try:
            return cls[label.upper()]
        except KeyError:
            known = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown state '{label}' (states: {known})") from None

    @classmethod
    def from_code(cls, code: object) -> State | None:
        """The state of a StateCur value, or None when it is no single known state bit."""
        try:
            return cls(int(code))  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return None


class Command(IntEnum):
    """Service commands with their CommandOp/CommandInt/CommandExt codes (one bit each)."""

    RESET = 2
    START = 4
    STOP = 8
    HOLD = 16
    UNHOLD = 32
    PAUSE = 64
    RESUME = 128
    ABORT = 256
    RESTART = 512
    COMPLETE = 1024

    @property
    def label(self) -> str:
        """The spelling used by the standard (``Start``, ``Unhold``)."""
        return self.name.capitalize()

    @classmethod
    def from_label(cls, label: str) -> Command:
        """The command spelled ``label`` (``Start``, ``start``); ValueError names the known
        commands."""
        try:
            return cls[label.upper()]
        except KeyError:
            known = ", ".join(c.label for c in cls)
            raise ValueError(f"unknown command '{label}' (commands: {known})") from None


def commands_in(mask: int) -> list[Command]:
    """The commands whose bits are set in a CommandEn word, in code order."""
    return [c for c in Command if mask & int(c)]


class OperationMode(Enum):
    """Who operates the service: nobody (Offline), the operator, or an automatic program.

    ``abbrev`` is the infix of the ServiceControl attributes (``StateAutAct``, ``StateOffOp``).
    """

    OFFLINE = "Offline"
    OPERATOR = "Operator"
    AUTOMATIC = "Automatic"

    @property
    def abbrev(self) -> str:
        return {"Offline": "Off", "Operator": "Op", "Automatic": "Aut"}[self.value]


class SourceMode(Enum):
    """In Automatic: whether the PEA's own logic (Internal) or the POL (External) commands.

    ``abbrev`` is the infix of the attributes (``SrcExtAct``, ``SrcIntOp``).
    """

    INTERNAL = "Internal"
    EXTERNAL = "External"

    @property
    def abbrev(self) -> str:
        return self.value[:3]


SC: Final = "SC"
"""The state-change signal: fired by the machine itself when a state's work has finished."""

Trigger = Command | Literal["SC"]

ACTING_STATES: Final[frozenset[State]] = frozenset(
    {
        State.STARTING,
        State.STOPPING,
        State.ABORTING,
        State.HOLDING,
        State.UNHOLDING,
        State.PAUSING,
        State.RESUMING,
        State.RESETTING,
        State.COMPLETING,
    }
)

_ALL: Final = frozenset(State)

STABLE_STATES: Final[frozenset[State]] = _ALL - ACTING_STATES
"""States a service rests in until commanded (Execute rests unless its procedure completes)."""

RESTING_STATES: Final[frozenset[State]] = frozenset(
    {State.IDLE, State.COMPLETED, State.STOPPED, State.ABORTED}
)
"""States in which no procedure acts on the process (before a Start or after its end)."""

HOLD_STATES: Final[frozenset[State]] = frozenset({State.HOLDING, State.HELD})
"""States in which a service (or a recipe) counts as held."""

FAILED_STATES: Final[frozenset[State]] = frozenset(
    {State.STOPPING, State.STOPPED, State.ABORTING, State.ABORTED}
)
"""States that, reached instead of the one waited for, mean the command failed (unless the
service was already there, or they lie on the way to the wanted state)."""

# Where each acting state goes when its work is done. Execute -> Completing is added separately
# because it applies only to self-completing procedures.
_SC_TARGETS: Final[dict[State, State]] = {
    State.STARTING: State.EXECUTE,
    State.COMPLETING: State.COMPLETED,
    State.RESETTING: State.IDLE,
    State.PAUSING: State.PAUSED,
    State.RESUMING: State.EXECUTE,
    State.HOLDING: State.HELD,
    State.UNHOLDING: State.EXECUTE,
    State.STOPPING: State.STOPPED,
    State.ABORTING: State.ABORTED,
}

# Hold is meant for the "running" part of the model: every state between Start and Completed
# in which the procedure acts on the process.
_HOLD_SOURCES: Final = frozenset(
    {
        State.STARTING,
        State.EXECUTE,
        State.COMPLETING,
        State.PAUSING,
        State.PAUSED,
        State.RESUMING,
        State.UNHOLDING,
    }
)

# Extra Complete sources when ``complete_outside_execute`` is on: the running states other than
# Execute and Completing (MTPPy enables the same set except Held).
_COMPLETE_EXTRA_SOURCES: Final = frozenset(
    {
        State.STARTING,
        State.PAUSING,
        State.PAUSED,
        State.RESUMING,
        State.HELD,
        State.UNHOLDING,
    }
)


@dataclass(frozen=True, slots=True)
class StateMachineOptions:
    """Switches for the enable cases on which implementations of 2658-4 disagree.

    Defaults follow the state diagram of VDI/VDE/NAMUR 2658-4, where Idle lies inside the
    Stop and Abort groups and Complete is a command of Execute only.
    """

    stop_in_idle: bool = True
    """Stop enabled in Idle (Idle -> Stopping). Some POLs treat Idle as at rest and disable it."""

    abort_in_idle: bool = True
    """Abort enabled in Idle (Idle -> Aborting)."""

    complete_outside_execute: bool = False
    """Complete also from Starting, Pausing, Paused, Resuming, Held and Unholding."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of the model: ``source --trigger--> dest``."""

    source: State
    trigger: Trigger
    dest: State
    note: str = ""


def _command_sources(options: StateMachineOptions) -> dict[Command, tuple[frozenset[State], State]]:
    stop_sources = _ALL - {State.STOPPED, State.STOPPING, State.ABORTING, State.ABORTED}
    abort_sources = _ALL - {State.ABORTING, State.ABORTED}
    if not options.stop_in_idle:
        stop_sources -= {State.IDLE}
    if not options.abort_in_idle:
        abort_sources -= {State.IDLE}
    complete_sources = frozenset({State.EXECUTE})
    if options.complete_outside_execute:
        complete_sources |= _COMPLETE_EXTRA_SOURCES
    return {
        Command.RESET: (
            frozenset({State.COMPLETED, State.STOPPED, State.ABORTED}),
            State.RESETTING,
        ),
        Command.START: (frozenset({State.IDLE}), State.STARTING),
        Command.STOP: (stop_sources, State.STOPPING),
        Command.HOLD: (_HOLD_SOURCES, State.HOLDING),
        Command.UNHOLD: (frozenset({State.HELD}), State.UNHOLDING),
        Command.PAUSE: (frozenset({State.EXECUTE}), State.PAUSING),
        Command.RESUME: (frozenset({State.PAUSED}), State.RESUMING),
        Command.ABORT: (abort_sources, State.ABORTING),
        Command.RESTART: (frozenset({State.EXECUTE}), State.STARTING),
        Command.COMPLETE: (complete_sources, State.COMPLETING),
    }


def transitions_for(options: StateMachineOptions | None = None) -> list[Transition]:
    """All rows of the model for ``options``, commands first, then SC rows; sorted for diffs."""
    opts = options or StateMachineOptions()
    rows: list[Transition] = []
    for command, (sources, dest) in _command_sources(opts).items():
        rows.extend(Transition(source, command, dest) for source in sources)
    rows.extend(Transition(source, SC, dest) for source, dest in _SC_TARGETS.items())
    rows.append(Transition(State.EXECUTE, SC, State.COMPLETING, "self-completing procedures only"))

    def key(row: Transition) -> tuple[int, int]:
        return (int(row.source), 0 if row.trigger == SC else int(row.trigger))

    return sorted(rows, key=key)


def enabled_commands(
    state: State, options: StateMachineOptions | None = None
) -> frozenset[Command]:
    """Commands the table accepts in ``state`` (before mode, channel and procedure checks)."""
    opts = options or StateMachineOptions()
    return frozenset(
        command for command, (sources, _) in _command_sources(opts).items() if state in sources
    )


def command_en(state: State, options: StateMachineOptions | None = None) -> int:
    """CommandEn for ``state``: the OR of the codes of its enabled commands."""
    value = 0
    for command in enabled_commands(state, options):
        value |= int(command)
    return value


def command_target(
    state: State, command: Command, options: StateMachineOptions | None = None
) -> State | None:
    """Where ``command`` leads from ``state``, or None when it is not enabled there."""
    sources, dest = _command_sources(options or StateMachineOptions())[command]
    return dest if state in sources else None


def sc_target(state: State) -> State | None:
    """Where SC leads from ``state`` (Execute: Completing, for self-completing procedures)."""
    if state is State.EXECUTE:
        return State.COMPLETING
    return _SC_TARGETS.get(state)


def settles_in(state: State) -> State:
    """The stable state ``state`` ends in by SC alone (Execute stays Execute)."""
    while state in ACTING_STATES:
        state = _SC_TARGETS[state]
    return state


COMMAND_TARGETS: Final[dict[Command, State]] = {
    command: settles_in(dest)
    for command, (_, dest) in _command_sources(StateMachineOptions()).items()
}
"""The stable state each command leads to (Start: Execute, Stop: Stopped, Reset: Idle)."""


def expected_states(command: Command) -> tuple[State, ...]:
    """States that count as having carried out ``command``: its target, and for Start and
    Restart also Completing and Completed, because a self-completing procedure may pass
    Execute between two reads."""
    target = COMMAND_TARGETS[command]
    if target is State.EXECUTE:
        return (State.EXECUTE, State.COMPLETING, State.COMPLETED)
    return (target,)


def on_the_way(state: State) -> frozenset[State]:
    """The acting states a service passes on its way into ``state`` by SC (never a failure):
    Stopping for Stopped, Starting/Unholding/Resuming for Execute."""
    return frozenset(s for s in ACTING_STATES if settles_in(s) is state)


def state_table(options: StateMachineOptions | None = None) -> dict[str, Any]:
    """The whole model as JSON-serialisable data (``modulecontrol states --json``)."""
    opts = options or StateMachineOptions()
    rows = transitions_for(opts)
    return {
        "standard": "VDI/VDE/NAMUR 2658-4",
        "options": asdict(opts),
        "states": [
            {
                "name": state.label,
                "code": int(state),
                "acting": state.acting,
                "command_en": command_en(state, opts),
                "enabled": [c.label for c in sorted(enabled_commands(state, opts))],
            }
            for state in sorted(State)
        ],
        "commands": [{"name": c.label, "code": int(c)} for c in sorted(Command)],
        "transitions": [
            {
                "from": row.source.label,
                "trigger": SC if row.trigger == SC else Command(row.trigger).label,
                "to": row.dest.label,
                "note": row.note,
            }
            for row in rows
        ],
        "command_en": {state.label: command_en(state, opts) for state in sorted(State)},
    }

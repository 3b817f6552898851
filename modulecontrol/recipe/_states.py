"""Which service command is possible in which state, for checking a recipe before it runs.

The rules are the MTP core's (:mod:`modulecontrol.mtpcore`), read in recipe terms: states by
their labels (``Execute``), commands in lower case (``start``), and every command followed
through its acting state to the stable state it ends in. :func:`transition` is the single
place the validator asks.
"""

from __future__ import annotations

from typing import Final

from modulecontrol.mtpcore import (
    ACTING_STATES,
    Command,
    State,
    StateMachineOptions,
    command_target,
    settles_in,
)
from modulecontrol.mtpcore import (
    STABLE_STATES as _STABLE,
)

RECIPE_OPTIONS: Final = StateMachineOptions(stop_in_idle=False)
"""The enable rules a recipe is checked against: the standard's, except that Stop in Idle is
not relied on (some PEAs disable it, and stopping a service that never started says nothing).
Abort stays possible everywhere, so an abort path is always valid."""

STABLE_STATES: Final = tuple(s.label for s in sorted(_STABLE))
"""Labels of the states a service rests in, in code order."""

TRANSIENT_TARGET: Final = {s.label: settles_in(s).label for s in sorted(ACTING_STATES)}
"""The stable state each transient (acting) state ends in."""


def transition(state: str, command: str) -> str | None:
    """The stable state ``command`` leads to from ``state``, or None when not possible."""
    try:
        dest = command_target(State.from_label(state), Command.from_label(command),
                              RECIPE_OPTIONS)
    except ValueError:
        return None
    return None if dest is None else settles_in(dest).label


def enabled(state: str) -> list[str]:
    """Commands possible in ``state`` (for error messages), in code order."""
    return [c.label.lower() for c in Command if transition(state, c.label) is not None]

"""The MTP service state machine (VDI/VDE/NAMUR 2658-4), one for every service.

The model itself (states, commands, rows, CommandEn) is data in :mod:`modulecontrol.mtpcore`;
this package runs it on ``transitions`` and re-exports the names a machine's user needs.
Public API: :class:`State` and :class:`Command` (IntEnums with the StateCur and command codes),
:class:`OperationMode`, :class:`SourceMode`, :class:`Channel`, :class:`Procedure`,
:class:`StateMachineOptions`, :class:`ServiceStateMachine`, :class:`CommandRefused`,
:class:`StateChange`, :class:`WorkContext`, :data:`ABORT_DRAIN`, and :func:`state_table`
with its renderers.
The model is documented in ``docs/state-machine.md``.
"""

from modulecontrol.mtpcore import (
    SC,
    Command,
    OperationMode,
    SourceMode,
    State,
    StateMachineOptions,
    Transition,
    command_en,
    enabled_commands,
    state_table,
    transitions_for,
)
from modulecontrol.statemachine._machine import (
    ABORT_DRAIN,
    DEFAULT_PROCEDURE,
    Channel,
    CommandRefused,
    Procedure,
    ServiceStateMachine,
    StateChange,
    WorkContext,
)
from modulecontrol.statemachine._render import render_state_table, state_table_text

__all__ = [
    "ABORT_DRAIN",
    "DEFAULT_PROCEDURE",
    "SC",
    "Channel",
    "Command",
    "CommandRefused",
    "OperationMode",
    "Procedure",
    "ServiceStateMachine",
    "SourceMode",
    "State",
    "StateChange",
    "StateMachineOptions",
    "Transition",
    "WorkContext",
    "command_en",
    "enabled_commands",
    "render_state_table",
    "state_table",
    "state_table_text",
    "transitions_for",
]

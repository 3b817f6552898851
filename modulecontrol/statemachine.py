"""The MTP service state machine (VDI/VDE/NAMUR 2658-4), one for every service.

Public API: :class:`State` and :class:`Command` (IntEnums with the StateCur and command codes),
:class:`OperationMode`, :class:`SourceMode`, :class:`Channel`, :class:`Procedure`,
:class:`StateMachineOptions`, :class:`ServiceStateMachine`, :class:`CommandRefused`,
:class:`StateChange`, :class:`WorkContext`, and :func:`state_table` with its renderers.
The model is documented in ``docs/state-machine.md``.
"""

from modulecontrol._statemachine import (
    DEFAULT_PROCEDURE,
    SC,
    Channel,
    Command,
    CommandRefused,
    OperationMode,
    Procedure,
    ServiceStateMachine,
    SourceMode,
    State,
    StateChange,
    StateMachineOptions,
    Transition,
    WorkContext,
    command_en,
    enabled_commands,
    render_state_table,
    state_table,
    state_table_text,
    transitions_for,
)

__all__ = [
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

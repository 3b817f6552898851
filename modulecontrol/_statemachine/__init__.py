"""Private implementation of :mod:`modulecontrol.statemachine`; import from there."""

from ._machine import (
    DEFAULT_PROCEDURE,
    Channel,
    CommandRefused,
    OperationMode,
    Procedure,
    ServiceStateMachine,
    SourceMode,
    StateChange,
    WorkContext,
)
from ._table import (
    SC,
    Command,
    State,
    StateMachineOptions,
    Transition,
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

"""``modulecontrol states``: print the service state model (table, plain text or JSON)."""

from __future__ import annotations

import json

import typer
from rich.console import Console

from modulecontrol.mtpcore import StateMachineOptions, state_table
from modulecontrol.statemachine._render import render_state_table, state_table_text

app = typer.Typer(help="The VDI/VDE/NAMUR 2658-4 service state model.")


@app.callback(invoke_without_command=True)
def states(
    as_json: bool = typer.Option(False, "--json", help="Print the model as JSON."),
    plain: bool = typer.Option(False, "--plain", help="Plain text instead of a rich table."),
    stop_in_idle: bool = typer.Option(True, help="Stop enabled in Idle."),
    abort_in_idle: bool = typer.Option(True, help="Abort enabled in Idle."),
    complete_outside_execute: bool = typer.Option(
        False, help="Complete also enabled outside Execute (Paused, Held, ...)."
    ),
) -> None:
    """Print states, commands, transitions and CommandEn for the chosen options."""
    table = state_table(
        StateMachineOptions(
            stop_in_idle=stop_in_idle,
            abort_in_idle=abort_in_idle,
            complete_outside_execute=complete_outside_execute,
        )
    )
    if as_json:
        typer.echo(json.dumps(table, indent=2))
    elif plain:
        typer.echo(state_table_text(table))
    else:
        Console().print(render_state_table(table))

"""``modulecontrol drivers``: what drivers are installed and where each comes from."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from modulecontrol.drivers._registry import available_drivers, driver_origin

app = typer.Typer(help="Drivers found through the 'modulecontrol.drivers' entry points.",
                  no_args_is_help=True)


def driver_rows() -> list[tuple[str, str, str]]:
    """(name, target, origin) per driver; origin is 'built-in' or the distribution name."""
    return [(name, ep.value, driver_origin(name, ep)) for name, ep in available_drivers().items()]


@app.command("list")
def list_drivers() -> None:
    """List installed drivers: name, import target, and the package that provides it."""
    table = Table("name", "target", "from")
    for row in driver_rows():
        table.add_row(*row)
    Console().print(table)


@app.callback()
def _group() -> None:
    """Inspect installed drivers."""

"""The ``modulecontrol`` command line.

typer gives typed options and ``--help`` for free; rich renders tables and live views. Every
command that reads user files reports problems as ``path:line:col: message`` lines and exits
with code 2 (invalid input) or 1 (checks failed), so editors and CI can parse the output.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from modulecontrol import __version__
from modulecontrol.errors import ConfigError

app = typer.Typer(
    name="modulecontrol",
    help="Modular, plug-and-play control of process equipment (MTP, OPC UA, Modbus, serial).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

EXIT_INVALID = 2


def _version(value: bool) -> None:
    if value:
        console.print(f"modulecontrol {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """modulecontrol: descriptors, drivers, recipes, simulators and batch records."""


def report_problems(exc: ConfigError) -> None:
    """Print one ``file:line:col: message`` line per problem, without rich markup."""
    for p in exc.problems:
        print(str(p), file=sys.stderr)


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Descriptor, plant or recipe files.")],
    plant: Annotated[
        Path | None, typer.Option("--plant", help="Plant to validate recipes against.")
    ] = None,
) -> None:
    """Validate YAML documents; print every problem as path:line:col: message."""
    from modulecontrol.descriptors import validate_file
    from modulecontrol.recipe import validate_recipe_with_plant
    from modulecontrol.yamlio import load_yaml

    failed = 0
    for path in paths:
        try:
            if plant is not None and _is_recipe(path):
                result = validate_recipe_with_plant(load_yaml(path), plant)
            else:
                result = validate_file(path)
            _check_build(result)
        except ConfigError as exc:
            failed += 1
            report_problems(exc)
        else:
            console.print(f"[green]ok[/green] {path}")
    if failed:
        raise typer.Exit(1)


def _check_build(result: object) -> None:
    """Build a validated plant's (or a recipe's plant's) simulation as ``run --simulate``
    would, so ``validate`` refuses first whatever the run would refuse."""
    from modulecontrol.descriptors import PlantConfig
    from modulecontrol.simulators import check_plant

    config = result if isinstance(result, PlantConfig) else getattr(result, "plant", None)
    if isinstance(config, PlantConfig):
        check_plant(config)


def _is_recipe(path: Path) -> bool:
    from modulecontrol.yamlio import load_yaml

    try:
        doc = load_yaml(path)
    except ConfigError:
        return False
    return isinstance(doc.data, dict) and doc.data.get("kind") == "Recipe"


@app.command()
def describe(
    type_name: Annotated[
        str, typer.Argument(metavar="TYPE", help="Type name (built-in or plug-in) or YAML file.")
    ],
    bindings: Annotated[bool, typer.Option(
        "--bindings", help="Also show where each attribute lives on the wire: Modbus "
        "registers, OPC UA node ids, serial commands.")] = False,
) -> None:
    """Show a module type: services, procedures, parameters and data assemblies."""
    from modulecontrol.descriptors import installed_types, load_module_type

    try:
        if type_name.endswith((".yaml", ".yml")) or Path(type_name).is_file():
            mt = load_module_type(type_name)
        else:
            mt = installed_types().get(type_name)
    except ConfigError as exc:
        report_problems(exc)
        raise typer.Exit(EXIT_INVALID) from None
    except KeyError as exc:
        err_console.print(str(exc.args[0]))
        raise typer.Exit(EXIT_INVALID) from None
    console.print(f"[bold]{mt.name}[/bold] {mt.version} ({mt.vendor}) — {mt.description}")
    if mt.ports:
        console.print("ports: " + ", ".join(f"{p.name} ({p.direction})" for p in mt.ports))
    svc_table = Table("service", "procedure", "id", "self-completing", "parameters", "reports")
    for s in mt.services:
        for p in s.procedures:
            svc_table.add_row(
                s.name,
                p.name + (" *" if p is s.default_procedure else ""),
                str(p.id),
                "yes" if p.self_completing else "no",
                ", ".join([*s.config_parameters, *p.parameters]),
                ", ".join(p.report_values),
            )
    console.print(svc_table)
    da_table = Table("data assembly", "class", "unit", "min", "max", "safe", "bound")
    for d in mt.data_assemblies:
        da_table.add_row(
            d.name,
            d.class_,
            d.unit,
            _g(d.min),
            _g(d.max),
            "" if d.safe_value is None else str(d.safe_value),
            ", ".join(d.bindings),
        )
    console.print(da_table)
    if bindings:
        from rich.text import Text

        from modulecontrol.drivers import binding_tables

        for bt in binding_tables(mt):
            table = Table(*bt.columns, title=f"{mt.name}: {bt.transport} bindings")
            for row in bt.rows:  # Text: a reply pattern's [ISA] is no rich markup
                table.add_row(*(Text(cell) for cell in row))
            console.print(table)


def _g(v: object) -> str:
    return "" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    plant: Annotated[
        Path | None, typer.Option("--plant", help="Plant file (default: the recipe's plant:).")
    ] = None,
    simulate: Annotated[
        bool, typer.Option("--simulate", help="Start the plant's simulators on 127.0.0.1.")
    ] = False,
    speed: Annotated[float, typer.Option("--speed", help="Clock speed factor (simulated).")] = 1.0,
    db: Annotated[Path, typer.Option("--db", help="Run database.")] = Path("runs/modulecontrol.db"),
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a parameter: name=value.")
    ] = None,
    faults: Annotated[
        Path | None, typer.Option("--faults", help="Fault scenario for the simulators.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Run on simulators as fast as possible; plan only.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Answer every prompt with its first choice.")
                   ] = False,
    live: Annotated[bool, typer.Option("--live/--no-live", help="Live view in a terminal.")] = True,
    report_dir: Annotated[
        Path, typer.Option("--report-dir", help="Where the HTML batch report goes.")
    ] = Path("runs"),
) -> None:
    """Run a recipe. Exit codes: 0 completed, 2 invalid input, 3 aborted, 4 stopped,
    5 connection failure."""
    from modulecontrol._runcli import run_command

    code = run_command(recipe, plant, simulate=simulate or dry_run, speed=speed, db=db,
                       sets=set_ or [], faults=faults, dry_run=dry_run, yes=yes, live=live,
                       report_dir=report_dir)
    raise typer.Exit(code)


@app.command("types")
def list_types() -> None:
    """List the installed module types: built-in and from plug-in packages."""
    from modulecontrol.descriptors import installed_types

    lib = installed_types()
    table = Table("type", "category", "description")
    for name in lib:
        mt = lib.get(name)
        table.add_row(name, mt.category, mt.description)
    console.print(table)


def _mount() -> None:
    """Sub-command groups live beside the code they drive; they are mounted here."""
    from modulecontrol.drivers.cli import app as drivers_app
    from modulecontrol.mtp.cli import app as mtp_app
    from modulecontrol.records import cli as records_cli
    from modulecontrol.simulators.cli import app as sim_app
    from modulecontrol.statemachine.cli import app as states_app
    from modulecontrol.twin.cli import app as twin_app

    app.add_typer(drivers_app, name="drivers", help="List installed drivers.")
    app.add_typer(mtp_app, name="mtp", help="MTP manifests: import, export, check.")
    app.add_typer(sim_app, name="sim", help="Serve simulated plants; steady states.")
    app.add_typer(states_app, name="states", help="Print the MTP service state table.")
    app.add_typer(twin_app, name="twin", help="Digital twin: fit model parameters to runs.")
    app.add_typer(records_cli.audit_app, name="audit", help="Verify the audit trail.")
    app.command("runs")(records_cli.runs)
    app.command("report")(records_cli.report_cmd)


_mount()


def main() -> None:
    """The composition root of the command line: wire once, then run the command."""
    from modulecontrol.bootstrap import configure

    configure(cli_logging=True)
    app()


if __name__ == "__main__":
    main()

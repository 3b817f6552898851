"""The ``modulecontrol`` command line.

typer gives typed options and ``--help`` for free; rich renders tables and live views. Every
command that reads user files reports problems as ``path:line:col: message`` lines and exits
with code 2 (invalid input) or 1 (checks failed), so editors and CI can parse the output.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from modulecontrol.errors import ConfigError, Location

if TYPE_CHECKING:
    from modulecontrol.yamlio import YamlDoc

LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    # command: (module, attribute, one-line help); a typer app is a group, a function a command
    "drivers": ("modulecontrol.drivers.cli", "app", "List installed drivers."),
    "mtp": ("modulecontrol.mtp.cli", "app", "MTP manifests: import, export, check."),
    "sim": ("modulecontrol.simulators.cli", "app", "Serve simulated plants; steady states."),
    "states": ("modulecontrol.statemachine.cli", "app", "Print the MTP service state table."),
    "audit": ("modulecontrol.records.cli", "audit_app", "Verify the audit trail."),
    "runs": ("modulecontrol.records.cli", "runs", "List the recorded runs."),
    "report": ("modulecontrol.records.cli", "report_cmd", "Write the batch report of one run."),
    "fleet": ("modulecontrol.fleet.cli", "app", "The fleet historian and fleet status."),
    "transfer": ("modulecontrol.fleet.cli", "transfer_cmd",
                 "Check a recipe against another site's plant: what maps, what is missing"),
    "twin": ("modulecontrol.twin.cli", "app", "Digital twin: fit model parameters to runs."),
    "optimize": ("modulecontrol.optimize.cli", "optimize_cmd",
                 "Run a recipe's optimize campaign on the twin"),
    "recipe": ("modulecontrol._signcli", "recipe_app",
               "Recipe versions: add, submit, review, approve, release, obsolete, list, show,"
               " diff."),
    "records": ("modulecontrol._signcli", "records_app", "Sign batch records: approve a run."),
}
"""Sub-commands that live beside the code they drive, imported only when they are invoked.

Why: importing them pulls in their packages (the OPC UA and Modbus stacks, numpy, scipy,
pint, pydantic models): about 1.4 s before ``--help`` could print a line. The help listing
shows the one-line help from this table instead; a test checks that importing this module
loads none of those libraries, and one that each line here is its command's own."""


class _LazyGroup(TyperGroup):
    """The root command group: the commands of :data:`LAZY_COMMANDS` are loaded on first use.

    (typer's contexts and commands are its vendored click's, which has no public type
    name: hence ``Any`` in the overrides.)"""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in LAZY_COMMANDS if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands or cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        if self._listing:  # the help listing needs the name and one line, not the code
            return TyperCommand(cmd_name, help=LAZY_COMMANDS[cmd_name][2])
        cmd = lazy_command(cmd_name)
        self.commands[cmd_name] = cmd
        return cmd

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def lazy_command(name: str) -> Any:
    """The click command of one :data:`LAZY_COMMANDS` entry, importing its module."""
    import importlib

    module, attr, short = LAZY_COMMANDS[name]
    mod = importlib.import_module(module)
    if name == "twin":  # its --live asks the control service, whose client is up here
        from modulecontrol._servicecli import live_whatif

        mod.use_live(live_whatif)
    obj = getattr(mod, attr)
    if isinstance(obj, typer.Typer):
        cmd: Any = typer.main.get_group(obj)
        cmd.help = short  # as the listing says (add_typer's help= did the same)
    else:
        holder = typer.Typer()
        holder.command(name)(obj)
        cmd = typer.main.get_command(holder)
    cmd.name = name
    return cmd


app = typer.Typer(
    cls=_LazyGroup,
    name="modulecontrol",
    help="Modular, plug-and-play control of process equipment (MTP, OPC UA, Modbus, serial).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # a file:line:col is never broken

EXIT_INVALID = 2


def _version(value: bool) -> None:
    if value:
        from modulecontrol import __version__  # read on first use: --help does not need it

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
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a recipe parameter: name=value (as run takes)."),
    ] = None,
) -> None:
    """Validate YAML documents; print every problem as path:line:col: message."""
    from modulecontrol.descriptors import validate_file
    from modulecontrol.recipe import parse_set_options, validate_recipe_doc

    try:
        overrides = parse_set_options(set_ or [])
    except ConfigError as exc:
        report_problems(exc)
        raise typer.Exit(EXIT_INVALID) from None
    failed = 0
    for path in paths:
        try:
            recipe = _recipe_doc(path)
            if recipe is not None:  # with the overrides `run --set` would apply
                result: object = validate_recipe_doc(recipe, plant, overrides)
            elif overrides:
                raise ConfigError.single(
                    "--set overrides recipe parameters: this is not a recipe (validate the"
                    " recipe that uses it, or drop --set)", Location(str(path)))
            else:
                result = validate_file(path)
            _check_build(result)
        except ConfigError as exc:
            failed += 1
            report_problems(exc)
        else:
            console.print(f"[green]ok[/green] {path}")
            for line in (*_calibration_lines(result), *_optimize_lines(result)):
                console.print(line, markup=False, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _calibration_lines(result: object) -> list[str]:
    """The calibrated overlays in effect on a validated plant (or a recipe's plant): file,
    hash, what each sets and its provenance, so ``validate`` says which models will run."""
    from modulecontrol.descriptors import PlantConfig

    config = result if isinstance(result, PlantConfig) else getattr(result, "plant", None)
    if not isinstance(config, PlantConfig):
        return []
    lines = []
    for cal in config.calibrations:
        sets = ", ".join(f"{e.tag}.{k}" for e in cal.overlay.modules
                         for k in e.overrides.simulator)
        lines += [f"  calibration {cal.file} (sha256 {cal.sha256[:12]}): sets {sets}",
                  f"    fitted on {cal.summary()}"]
    return lines


def _optimize_lines(result: object) -> list[str]:
    """A note when a recipe declares an ``optimize`` block that none of its steps runs.

    Why a note, not a problem: ``modulecontrol optimize RECIPE`` runs the block on the
    simulated line, which is a use of its own. Why say it at all: queued on a line, such a
    recipe optimises nothing, and nothing else tells the author (the lomustine example
    shipped that way for a round)."""
    from modulecontrol.recipe import OptimizeStep, ValidatedRecipe

    if not isinstance(result, ValidatedRecipe) or result.recipe.optimize is None:
        return []
    name = result.recipe.optimize.name
    if any(isinstance(s, OptimizeStep) for s in result.recipe.all_steps()):
        return []
    return [f"  note: the optimize block '{name}' is run by no step: on a line this recipe "
            f"optimises nothing (add a step '- optimize: {name}' where the search belongs; "
            "`modulecontrol optimize` runs the block on the simulator either way)"]


def _check_build(result: object) -> None:
    """Build a validated plant's (or a recipe's plant's) simulation as ``run --simulate``
    would, so ``validate`` refuses first whatever the run would refuse."""
    from modulecontrol.descriptors import PlantConfig
    from modulecontrol.simulators import check_plant

    config = result if isinstance(result, PlantConfig) else getattr(result, "plant", None)
    if isinstance(config, PlantConfig):
        check_plant(config)


def _recipe_doc(path: Path) -> YamlDoc | None:
    """The parsed document if ``path`` is a recipe, else None (other kinds, and files that do
    not parse, go to ``validate_file``, which reports their problems). Parsed once: the YAML
    parser is most of what ``validate`` spends on a large recipe."""
    from modulecontrol.yamlio import load_yaml

    try:
        doc = load_yaml(path)
    except ConfigError:
        return None
    if isinstance(doc.data, dict) and doc.data.get("kind") == "Recipe":
        return doc
    return None


@app.command()
def describe(
    type_name: Annotated[
        str, typer.Argument(metavar="TYPE", help="Type name (built-in or plug-in) or YAML file.")
    ],
    bindings: Annotated[bool, typer.Option(
        "--bindings", help="Also show where each attribute lives on the wire: Modbus "
        "registers, OPC UA node ids, serial commands.")] = False,
) -> None:
    """Show a module type: services, procedures, parameters and data assemblies (or a
    plant file: its modules and the calibrated overlays in effect)."""
    from modulecontrol.descriptors import installed_types, load_module_type

    try:
        if type_name.endswith((".yaml", ".yml")) or Path(type_name).is_file():
            if _is_plant(Path(type_name)):
                _describe_plant(Path(type_name))
                return
            mt = load_module_type(type_name)
        else:
            mt = installed_types().get(type_name)
    except ConfigError as exc:
        report_problems(exc)
        raise typer.Exit(EXIT_INVALID) from None
    except KeyError as exc:
        err_console.print(str(exc.args[0]))
        raise typer.Exit(EXIT_INVALID) from None
    from rich.table import Table  # here: `validate` prints no table

    # the terminal's width now (COLUMNS included), not the one at import
    out = Console()

    out.print(f"[bold]{mt.name}[/bold] {mt.version} ({mt.vendor}) — {mt.description}")
    if mt.ports:
        out.print("ports: " + ", ".join(f"{p.name} ({p.direction})" for p in mt.ports))
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
    out.print(svc_table)
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
    out.print(da_table)
    if bindings:
        from rich.text import Text

        from modulecontrol.drivers import binding_tables

        for bt in binding_tables(mt):
            table = Table(*bt.columns, title=f"{mt.name}: {bt.transport} bindings")
            for row in bt.rows:  # Text: a reply pattern's [ISA] is no rich markup
                table.add_row(*(Text(cell) for cell in row))
            out.print(table)


def _is_plant(path: Path) -> bool:
    from modulecontrol.yamlio import load_yaml

    try:
        doc = load_yaml(path)
    except ConfigError:
        return False  # load_module_type reports it
    return isinstance(doc.data, dict) and doc.data.get("kind") == "Plant"


def _describe_plant(path: Path) -> None:
    """A plant file: its modules (simulated or not, endpoint, calibrated keys) and the
    calibrated overlays in effect with their provenance; problems raise ConfigError."""
    from rich.table import Table
    from rich.text import Text

    from modulecontrol.descriptors import load_plant

    config = load_plant(path)
    out = Console()
    p = config.plant
    out.print(Text(f"{p.name} ({path}) — {p.description.strip()}".rstrip(" —")))
    table = Table("tag", "type", "simulated", "endpoint", "calibrated")
    for m in p.modules:
        ep = m.endpoint
        where = "" if ep is None else str(getattr(ep, "url", "") or ep.protocol)
        cal = ", ".join(f"{k} ({Path(c.file).name})" for c in config.calibrations
                        for k in c.sets(m.tag))
        table.add_row(m.tag, m.type, "passive" if ep is None else "yes" if m.simulated
                      else "no", Text(where), Text(cal))
    out.print(table)
    if not config.calibrations:
        out.print("calibrations: none (the models as the plant and type files write them)")
    for line in _calibration_lines(config):
        out.print(Text(line.strip() if line.startswith("  c") else line), soft_wrap=True)


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
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="With --simulate: OPC UA without security (None policy), with a "
        "warning. Default: Basic256Sha256 SignAndEncrypt, credentials generated into the "
        "pki folder beside --db.")] = False,
    records_key: Annotated[Path | None, typer.Option(
        "--records-key", help="Records key file (HMAC of the records chain; created 0600 at "
        "first use); default: <db>.key beside the database.")] = None,
    anchor: Annotated[Path | None, typer.Option(
        "--anchor", help="Anchor file the chain heads are appended to; default: <db>.anchor. "
        "Put it where the database's writers cannot rewrite it.")] = None,
    sparkplug: Annotated[
        str | None, typer.Option("--sparkplug", help="Publish the line over Sparkplug B to "
                                 "this broker: mqtt://HOST:PORT or mqtts://HOST:PORT.")
    ] = None,
    site: Annotated[
        str | None, typer.Option("--site", help="Sparkplug group (the site); with --sparkplug.")
    ] = None,
    line: Annotated[
        str | None, typer.Option("--line", help="Sparkplug edge node (default: the plant name).")
    ] = None,
    mode: Annotated[
        str | None, typer.Option("--mode", help="production (only an effective recipe version,"
                                 " on the real plant), development or simulation; default:"
                                 " simulation with --simulate, else development.")
    ] = None,
    server: Annotated[
        str | None, typer.Option("--server", help="Start the run on this control service "
                                 "(RECIPE: its path under the service's recipes folder) and "
                                 "follow its events; token in MODULECONTROL_TOKEN.")
    ] = None,
) -> None:
    """Run a recipe. Exit codes: 0 completed, 2 invalid input, 3 aborted, 4 stopped,
    5 connection failure, 128 + N ended by signal N (143 SIGTERM, 129 SIGHUP, 130 Ctrl-C
    without a terminal): see docs/getting-started.md."""
    if server is not None:
        from modulecontrol._servicecli import run_on_server

        raise typer.Exit(run_on_server(server, str(recipe), set_ or [], mode))
    from modulecontrol._runcli import run_command

    code = run_command(recipe, plant, simulate=simulate or dry_run, speed=speed, db=db,
                       sets=set_ or [], faults=faults, dry_run=dry_run, yes=yes, live=live,
                       report_dir=report_dir, insecure=insecure, records_key=records_key,
                       anchor=anchor, sparkplug=sparkplug, site=site, line=line, mode=mode)
    raise typer.Exit(code)


@app.command("types")
def list_types() -> None:
    """List the installed module types: built-in and from plug-in packages."""
    from rich.table import Table

    from modulecontrol.descriptors import installed_types

    lib = installed_types()
    table = Table("type", "category", "description")
    for name in lib:
        mt = lib.get(name)
        table.add_row(name, mt.category, mt.description)
    console.print(table)


def _mount_service() -> None:
    """The control service's commands (``serve``, ``user``) and its clients' (``login``,
    ``status``, ``hold``...). Mounted at once: their module imports only typer and errors,
    and each command imports FastAPI, uvicorn or httpx inside itself."""
    from modulecontrol import _servicecli

    _servicecli.mount(app)


_mount_service()


def main() -> None:
    """The composition root of the command line: wire once, then run the command.

    Help and version print without wiring: loading every installed driver imports the
    protocol stacks (over a second) and changes nothing in what they print.
    """
    args = sys.argv[1:]
    if args and not {"--help", "--version"} & set(args):
        from modulecontrol.bootstrap import configure

        configure(cli_logging=True)
    app()


if __name__ == "__main__":
    main()

"""``modulecontrol mtp``: import, export and check MTP manifests from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modulecontrol.descriptors import ModuleType, builtin_types, dump_model, load_module_type
from modulecontrol.errors import ConfigError
from modulecontrol.mtp._check import check_manifest
from modulecontrol.mtp._export import DEFAULT_ENDPOINT, export_manifest
from modulecontrol.mtp._import import import_manifest_report

app = typer.Typer(
    help="MTP manifests (VDI/VDE/NAMUR 2658): import, export, check.",
    no_args_is_help=True,
)
_err = Console(stderr=True)


def _fail(exc: ConfigError) -> typer.Exit:
    for p in exc.problems:
        _err.print(str(p), markup=False, highlight=False)
    return typer.Exit(code=1)


@app.command("import")
def import_(
    manifest: Annotated[Path, typer.Argument(help="Manifest (.aml) to read.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Module-type YAML to write.")
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No report on stderr.")] = False,
) -> None:
    """Read a manifest into a module-type YAML with explicit OPC UA bindings."""
    try:
        report = import_manifest_report(manifest)
    except ConfigError as exc:
        raise _fail(exc) from None
    text = (
        f"# Imported from {manifest.name} (MTP manifest {report.manifest_version}) "
        "by modulecontrol mtp import\nkind: ModuleType\n" + dump_model(report.module_type)
    )
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
    if not quiet:
        _err.print(report.summary(), markup=False, highlight=False)


def _load_type(type_or_file: str) -> ModuleType:
    path = Path(type_or_file)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_module_type(path)
    lib = builtin_types()
    try:
        return lib.get(type_or_file)
    except KeyError as exc:
        raise ConfigError.single(
            f"{exc.args[0]}; give a built-in type name or a module-type YAML file"
        ) from None


@app.command("export")
def export(
    type_or_file: Annotated[
        str, typer.Argument(help="Built-in module type name or module-type YAML file.")
    ],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Manifest (.aml) to write.")
    ] = None,
    endpoint: Annotated[
        str, typer.Option("--endpoint", help="OPC UA endpoint URL written into the manifest.")
    ] = DEFAULT_ENDPOINT,
) -> None:
    """Write an MTP manifest 1.1.0 for a module type."""
    try:
        data = export_manifest(_load_type(type_or_file), endpoint_url=endpoint)
    except ConfigError as exc:
        raise _fail(exc) from None
    except ValueError as exc:
        _err.print(f"cannot export {type_or_file}: {exc}", markup=False)
        raise typer.Exit(code=1) from None
    if output is None:
        sys.stdout.buffer.write(data)
    else:
        output.write_bytes(data)


@app.command("check")
def check(
    manifest: Annotated[Path, typer.Argument(help="Manifest (.aml) to check.")],
) -> None:
    """Static conformance check; exits 1 if any check fails."""
    results = check_manifest(manifest)
    table = Table(title=f"MTP check: {manifest}")
    for col in ("status", "check", "subject", "detail", "where"):
        table.add_column(col, overflow="fold")
    style = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}
    for r in results:
        table.add_row(
            f"[{style[r.status]}]{r.status.upper()}[/]",
            escape(r.check),
            escape(r.subject),
            escape(r.detail),
            escape(str(r.location or "")),
        )
    console = Console(width=max(Console().width, 160))
    console.print(table)
    failed = sum(1 for r in results if r.status == "fail")
    console.print(f"{len(results) - failed} passed, {failed} failed", markup=False)
    if failed:
        raise typer.Exit(code=1)

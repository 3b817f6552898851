"""``modulecontrol mtp``: import, export, check and serve MTP manifests from the command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modulecontrol.descriptors import (
    ModuleType,
    builtin_types,
    dump_model,
    load_handshake,
    load_module_type,
)
from modulecontrol.errors import ConfigError
from modulecontrol.mtp._check import check_manifest
from modulecontrol.mtp._export import DEFAULT_ENDPOINT, export_manifest
from modulecontrol.mtp._import import import_manifest_report
from modulecontrol.mtp._live import LiveOptions
from modulecontrol.mtp._serve import TRANSIENT_DWELL, serve_manifest
from modulecontrol.mtpcore import HandshakePolicy
from modulecontrol.simulators import SecurityError

app = typer.Typer(
    help="MTP manifests (VDI/VDE/NAMUR 2658): import, export, check, serve.",
    no_args_is_help=True,
)
_err = Console(stderr=True, soft_wrap=True)  # a file:line:col is never broken


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
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="OPC UA endpoint of a running PEA: adds live checks "
                     "(modes, procedures, parameters, every command from every state)."),
    ] = None,
    user: Annotated[str | None, typer.Option("--user", help="User name on the PEA.")] = None,
    password_env: Annotated[
        str | None,
        typer.Option("--password-env", help="Environment variable holding the password."),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Connect without security (None policy).")
    ] = False,
    server_cert: Annotated[
        Path | None, typer.Option("--server-cert", help="Pin the PEA's certificate (DER/PEM).")
    ] = None,
    pki: Annotated[
        Path | None, typer.Option("--pki", help="Folder for the client certificate.")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds the PEA may take to confirm a request.")
    ] = 5.0,
    handshake: Annotated[
        Path | None,
        typer.Option("--handshake", help="YAML file with the PEA's handshake policy, as a "
                     "plant's module declares it (command_en, parameters, procedure, command, "
                     "state_codes); each tolerance used is reported as a warning."),
    ] = None,
) -> None:
    """Conformance check (static; live with --endpoint); exits 1 if any check fails.

    Live checks change the PEA's modes and states: never run them against a producing PEA.
    """
    live: LiveOptions | None = None
    if endpoint is not None:
        if not insecure and (user is None or password_env is None):
            _err.print("a secured endpoint needs --user and --password-env (the name of the "
                       "environment variable holding the password); or --insecure",
                       markup=False)
            raise typer.Exit(code=2)
        policy = HandshakePolicy()
        if handshake is not None:
            try:
                policy = load_handshake(handshake).policy()
            except ConfigError as exc:
                raise _fail(exc) from None
        live = LiveOptions(endpoint, username=user, password_env=password_env,
                           insecure=insecure, server_certificate=server_cert, pki=pki,
                           timeout=timeout, handshake=policy)
    elif handshake is not None:
        _err.print("--handshake applies to the live checks: give --endpoint too", markup=False)
        raise typer.Exit(code=2)
    results = check_manifest(manifest, live=live)
    table = Table(title=f"MTP check: {manifest}" + (f" against {endpoint}" if endpoint else ""))
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
    if endpoint is None:
        console.print("live checks (modes, procedures, parameters, commands) need --endpoint",
                      markup=False)
    if failed:
        raise typer.Exit(code=1)


@app.command("serve")
def serve(
    source: Annotated[
        Path, typer.Argument(help="Manifest (.aml) or module-type YAML to serve as a PEA.")
    ],
    port: Annotated[int, typer.Option("--port", help="TCP port (0: a free one).")] = 4840,
    host: Annotated[str, typer.Option("--host", help="Loopback address to bind.")] = "127.0.0.1",
    path: Annotated[
        str | None,
        typer.Option("--path", help="Endpoint path (default: the manifest endpoint's path)."),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="Offer only the None security policy, anonymous "
                     "sessions (loopback tests)."),
    ] = False,
    user: Annotated[str | None, typer.Option("--user", help="The one user name admitted.")] = None,
    password_env: Annotated[
        str | None,
        typer.Option("--password-env", help="Environment variable holding its password."),
    ] = None,
    pki: Annotated[
        Path | None, typer.Option("--pki", help="Folder for the server certificate.")
    ] = None,
    self_complete_after: Annotated[
        float, typer.Option("--self-complete-after",
                            help="Seconds a self-completing procedure stays in Execute.")
    ] = 0.5,
    transient_dwell: Annotated[
        float, typer.Option("--transient-dwell",
                            help="Seconds each transient state (Starting, ...) is published.")
    ] = TRANSIENT_DWELL,
) -> None:
    """Serve a manifest as a virtual PEA (OPC UA) until interrupted (Ctrl-C)."""
    if insecure and (user or password_env):
        _err.print("--insecure serves anonymous sessions without security; drop --user and "
                   "--password-env, or drop --insecure", markup=False)
        raise typer.Exit(code=2)

    async def run() -> None:
        pea = await serve_manifest(source, host=host, port=port or None, path=path,
                                   insecure=insecure, username=user, password_env=password_env,
                                   pki=pki, self_complete_after=self_complete_after,
                                   transient_dwell=transient_dwell)
        try:
            sys.stdout.write(f"serving {pea.module_type.name} at {pea.url}"
                             f"{'' if pea.secure else ' (no security)'}\n")
            if pea.certificate is not None:
                sys.stdout.write(f"server certificate: {pea.certificate}\n")
            sys.stdout.flush()
            await asyncio.Event().wait()
        finally:
            await pea.stop()

    try:
        asyncio.run(run())
    except ConfigError as exc:
        raise _fail(exc) from None
    except (SecurityError, ValueError, OSError) as exc:
        _err.print(f"cannot serve {source}: {exc}", markup=False)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        pass

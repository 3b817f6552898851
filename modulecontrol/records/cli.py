"""CLI for batch records: ``audit verify``, ``runs`` and ``report``.

Mount in the main CLI as::

    from modulecontrol.records import cli as records_cli
    main.add_typer(records_cli.audit_app, name="audit")
    main.command("runs")(records_cli.runs)
    main.command("report")(records_cli.report_cmd)

``app`` bundles all three (the tests drive it); users run them as ``modulecontrol audit``,
``modulecontrol runs`` and ``modulecontrol report``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from modulecontrol.records._audit import verify_audit
from modulecontrol.records._chain import anchor_path_for, key_path_for
from modulecontrol.records._db import DEFAULT_DB, RecordsError
from modulecontrol.records._lock import writer_alive
from modulecontrol.records._report import ReportFormat, list_runs, report

app = typer.Typer(help="Batch records: runs, reports and the audit trail.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail (21 CFR Part 11 style).", no_args_is_help=True)

DbOpt = Annotated[Path, typer.Option("--db", help="Records database (SQLite file).")]


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


@audit_app.command("verify")
def audit_verify(
    db: DbOpt = DEFAULT_DB,
    key: Annotated[Path | None, typer.Option(
        "--key", help="Records key file; default: <db>.key beside the database.")] = None,
    anchor: Annotated[Path | None, typer.Option(
        "--anchor", help="Anchor file (the copy kept outside the database's storage);"
        " default: <db>.anchor.")] = None,
) -> None:
    """Verify every chained record against the key and the anchor; exit 1 naming each issue."""
    key = key or key_path_for(db)
    anchor = anchor or anchor_path_for(db)
    try:
        rep = verify_audit(db, key_path=key, anchor_path=anchor)
    except RecordsError as exc:
        _fail(str(exc))
        return
    if rep.ok:
        typer.echo(f"audit trail OK: {rep.entries} entries in the keyed records chain, head"
                   f" seq {rep.head_seq} {rep.head_hash}; {rep.anchors} anchored heads in"
                   f" {anchor} match")
        return
    what = "legacy unkeyed chain" if rep.legacy else "records chain"
    typer.echo(f"audit trail FAILED verification ({what}): {len(rep.issues)} issue(s) in"
               f" {rep.entries} entries", err=True)
    for issue in rep.issues:
        typer.echo(f"  {issue}", err=True)
    raise typer.Exit(1)


def runs(db: DbOpt = DEFAULT_DB) -> None:
    """List the recorded runs."""
    from datetime import UTC, datetime

    try:
        items = list_runs(db)
    except RecordsError as exc:
        _fail(str(exc))
        return
    if not items:
        typer.echo("no runs recorded")
        return
    # a reader never writes: a run whose writer is gone shows as interrupted here (as in the
    # report) and is recorded as such by the next writer of the database
    orphaned = not writer_alive(db)
    typer.echo(f"{'id':>4}  {'start (UTC)':<20} {'duration':>9}  {'result':<11} recipe")
    for r in items:
        result = "interrupted" if orphaned and r.result == "running" else r.result
        start = datetime.fromtimestamp(r.t_start, UTC).strftime("%Y-%m-%d %H:%M:%S")
        dur = "" if r.duration_s is None else f"{r.duration_s:.0f} s"
        typer.echo(f"{r.id:>4}  {start:<20} {dur:>9}  {result:<11} {r.recipe_name}"
                   f" {r.recipe_version}".rstrip())


def report_cmd(
    run: Annotated[int, typer.Argument(help="Run id (see `runs`).")],
    db: DbOpt = DEFAULT_DB,
    format: Annotated[str, typer.Option("--format", "-f", help="html, json or csv")] = "html",
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Output file; default:"
                                             " run-<id>.html beside the database for HTML,"
                                             " standard output for JSON and CSV.")] = None,
) -> None:
    """Write the batch report of one run."""
    if format not in ("html", "json", "csv"):
        _fail(f"--format must be html, json or csv, not '{format}'")
    fmt: ReportFormat = format  # type: ignore[assignment]
    if out is None and fmt == "html":
        out = db.parent / f"run-{run}.html"
    try:
        text = report(db, run, fmt, out)
    except RecordsError as exc:
        _fail(str(exc))
        return
    if out is None:
        sys.stdout.write(text)
    else:
        typer.echo(f"wrote {out}")


app.add_typer(audit_app, name="audit")
app.command("runs")(runs)
app.command("report")(report_cmd)


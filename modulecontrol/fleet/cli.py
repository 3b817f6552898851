"""``modulecontrol fleet serve|status`` and ``modulecontrol transfer``."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modulecontrol.errors import ConfigError

app = typer.Typer(help="The fleet: the central historian and its view of every site.",
                  no_args_is_help=True)
console = Console()

_PG_HELP = "PostgreSQL connection string, e.g. postgresql://fleet@127.0.0.1/fleet."


@app.command("serve")
def serve(
    mqtt: Annotated[str, typer.Option("--mqtt", help="Broker: mqtt://HOST:PORT or mqtts://.")],
    pg: Annotated[str, typer.Option("--pg", help=_PG_HELP)],
    host_id: Annotated[str, typer.Option("--host-id", help="Sparkplug host id (STATE topic).")
                       ] = "modulecontrol-fleet",
    ca: Annotated[Path | None, typer.Option("--ca", help="CA file for mqtts://.")] = None,
    http: Annotated[str | None, typer.Option(
        "--http", help="Serve the fleet page at HOST:PORT (e.g. 127.0.0.1:8480); any "
        "address but loopback needs --tls-cert and --tls-key.")] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key")] = None,
    window: Annotated[float, typer.Option("--window", help="Hours over which uptime and "
                                          "alarms per hour are counted.")] = 24.0,
) -> None:
    """Run the Sparkplug host application storing every site in PostgreSQL (until Ctrl-C),
    and with --http the fleet page: every line side by side, linked to its own station."""
    import psycopg

    from modulecontrol.fleet import Broker, FleetHistorian, FleetPage

    try:
        broker = Broker.parse(mqtt, ca_file=ca)
    except ValueError as exc:
        print(f"--mqtt: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    page = None
    if http is not None:
        addr, _, port = http.rpartition(":")
        try:
            page = FleetPage(pg, addr or "127.0.0.1", int(port), window_h=window,
                             tls_cert=tls_cert, tls_key=tls_key)
        except ValueError as exc:
            print(f"--http: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    try:
        host = FleetHistorian(broker, pg, host_id)
    except psycopg.Error as exc:
        print(f"--pg: cannot use the database: {exc}".strip(), file=sys.stderr)
        raise typer.Exit(5) from None

    def stop(*_: Any) -> None:
        host.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    console.print(f"fleet historian {host_id}: {mqtt} -> PostgreSQL")
    if page is not None:
        try:
            console.print(f"fleet page: {page.start()}/", highlight=False)
        except OSError as exc:
            print(f"--http: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    try:
        host.run()
    except psycopg.Error as exc:  # not acknowledged: the broker redelivers after a restart
        print(f"fleet historian stopped: database error: {exc}", file=sys.stderr)
        raise typer.Exit(5) from None
    except OSError as exc:
        print(f"fleet historian stopped: broker {mqtt}: {exc}", file=sys.stderr)
        raise typer.Exit(5) from None
    finally:
        if page is not None:
            page.stop()


@app.command("status")
def status(pg: Annotated[str, typer.Option("--pg", help=_PG_HELP)],
           metric: Annotated[list[str] | None, typer.Option(
               "--metric", help="Only these metric names (repeatable).")] = None,
           window: Annotated[float, typer.Option("--window", help="Hours over which uptime "
                                                 "and alarms per hour are counted.")] = 24.0,
           ) -> None:
    """Sites and lines side by side with their KPIs (as the fleet page shows them), then
    every module's metrics with their latest values."""
    import psycopg

    from modulecontrol.fleet import fleet_lines, fleet_status

    try:
        lines = fleet_lines(pg, window)
        rows = fleet_status(pg)
    except psycopg.Error as exc:
        print(f"--pg: {exc}".strip(), file=sys.stderr)
        raise typer.Exit(5) from None
    kpis = Table("site", "line", "state", "modules online", "active run", "last run",
                 "throughput g/h", "yield %", "uptime %", "alarms/h", "station",
                 title=f"lines (uptime and alarms over {window:g} h)")
    for v in lines:
        kpis.add_row(v.site, v.line, "online" if v.online else "[red]offline[/red]",
                     f"{sum(m.online for m in v.modules)}/{len(v.modules)}",
                     v.active_run or "", v.last_run or "", _num(v.throughput_g_per_h, 2),
                     _num(v.yield_pct, 1), _num(v.uptime_pct, 1), _num(v.alarms_per_h, 2),
                     v.station_url or "")
    console.print(kpis)
    table = Table("site", "line", "module", "metric", "value", "unit", "time (UTC)")
    for r in rows:
        if metric and r.metric not in metric:
            continue
        line = r.line if r.line_online else f"{r.line} (offline)"
        module = r.module if r.module_online else f"{r.module} (offline)"
        ts = r.ts.strftime("%Y-%m-%d %H:%M:%S") if r.ts else ""
        table.add_row(r.site, line, module, r.metric, "" if r.value is None else str(r.value),
                      r.unit, ts)
    console.print(table)
    sites = {r.site for r in rows}
    console.print(f"{len(sites)} site(s), {len({(r.site, r.line) for r in rows})} line(s), "
                  f"{len({(r.site, r.line, r.module) for r in rows})} module(s)")


def _num(v: float | None, digits: int) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def transfer_cmd(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    plant_from: Annotated[Path, typer.Option("--from", help="The plant it was written for.")],
    plant_to: Annotated[Path, typer.Option("--to", help="The plant it should move to.")],
) -> None:
    """Check a recipe against another site's plant: what maps, what is missing, what is out
    of range. Exit 0 if it transfers as is, 1 if not, 2 if it is invalid on its own plant."""
    from modulecontrol.fleet import transfer

    try:
        report = transfer(recipe, plant_from, plant_to)
    except ConfigError as exc:
        for p in exc.problems:
            print(str(p), file=sys.stderr)
        raise typer.Exit(2) from None
    table = Table("module", f"in {plant_from.name}", f"in {plant_to.name}")
    for m in report.modules:
        table.add_row(m.tag, m.type_from, m.type_to or "[red]missing[/red]")
    console.print(table)
    for title, problems in (("missing", report.missing), ("out of range", report.out_of_range),
                            ("other", report.other)):
        for p in problems:
            console.print(f"{title}: {p}", highlight=False, soft_wrap=True)
    console.print("transfers as is" if report.ok else
                  f"does not transfer: {len(report.missing)} missing, "
                  f"{len(report.out_of_range)} out of range, {len(report.other)} other")
    raise typer.Exit(0 if report.ok else 1)

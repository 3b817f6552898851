"""``modulecontrol sim``: serve a plant's simulated modules, or print its steady state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modulecontrol.clock import Clock
from modulecontrol.descriptors import load_plant
from modulecontrol.errors import ConfigError
from modulecontrol.units import UnitError, convert

if TYPE_CHECKING:
    from modulecontrol.simulators._serve import ServedEndpoint

app = typer.Typer(help="Simulated modules over real protocols, and plant steady states.",
                  no_args_is_help=True)
_console = Console()
_err_console = Console(stderr=True)


def _seconds(text: str | None, what: str) -> float | None:
    if text is None:
        return None
    # convert() checks the dimension: '5 bar' is refused, not taken as 500000 s.
    try:
        seconds = convert(text, "s")
    except UnitError as exc:
        raise typer.BadParameter(f"{what}: '{text}' is not a time: {exc}; write e.g. '10 min'"
                                 ) from None
    if seconds <= 0:
        raise typer.BadParameter(f"{what}: '{text}' must be a positive time (e.g. '10 min')")
    return seconds


@app.command()
def serve(
    plant: Annotated[Path, typer.Argument(help="Plant file (kind: Plant).")],
    speed: Annotated[float, typer.Option(help="Simulated seconds per wall second.")] = 1.0,
    faults: Annotated[Path | None, typer.Option(help="Fault scenario (kind: Scenario).")] = None,
    duration: Annotated[str | None, typer.Option(help="Stop after this simulated time, "
                                                 "e.g. '2 h' (default: until Ctrl-C).")] = None,
    dt: Annotated[float, typer.Option(help="Model step, simulated seconds.")] = 1.0,
    port_offset: Annotated[int, typer.Option(help="Add this to every TCP port.")] = 0,
    free_ports: Annotated[bool, typer.Option(
        "--free-ports", help="Serve every TCP module on a free port of the OS's choice "
        "instead of the plant's (the table and --json say which): for tests and plants "
        "side by side. A port chosen in advance can be taken before the server binds "
        "it.")] = False,
    allow_remote: Annotated[bool, typer.Option(help="Allow non-loopback hosts.")] = False,
    pki: Annotated[Path, typer.Option(help="Folder of the OPC UA certificates, keys and "
                                      "passwords, generated at first use (owner-only).")] = Path(
        "runs/pki"),
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Serve OPC UA WITHOUT security (None policy): passwords in clear "
        "text; anonymous sessions may read, never write. Loopback tests only.")] = False,
    db: Annotated[Path | None, typer.Option(help="Records database: refused logins and "
                                            "writes of secured PEAs go to its audit "
                                            "trail.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the endpoints as one line of JSON (a list, one object per "
        "module) once every server listens; fault records then go to stderr.")] = False,
    control: Annotated[bool, typer.Option(
        "--control", help="Slave the plant to a controller (what `run --simulate` and "
        "`serve --simulate` start): read the secret and the clock from stdin, serve "
        "the modules on free loopback ports and the control channel beside them, print "
        "one line of JSON (the channel's port) and nothing more on stdout.")] = False,
) -> None:
    """Start every simulated module on its endpoint and print where each one listens."""
    from modulecontrol.simulators import check_plant
    from modulecontrol.simulators._faults import load_scenario
    from modulecontrol.simulators._opcua_server import SecurityError
    from modulecontrol.simulators._plant import SimulatedPlant
    from modulecontrol.simulators._serve import PlantServer, ServeError

    if speed <= 0:
        raise typer.BadParameter("--speed must be > 0")
    if free_ports and port_offset:
        raise typer.BadParameter("--free-ports and --port-offset exclude each other")
    limit = _seconds(duration, "--duration")
    try:
        cfg = load_plant(plant)
        check_plant(cfg)  # refused here, located, rather than a traceback once serving
        scenario = load_scenario(faults, cfg) if faults is not None else None
    except ConfigError as exc:
        _console.print(str(exc), markup=False)
        raise typer.Exit(2) from None

    if control:
        _serve_controlled(cfg, dt=dt, pki=pki, insecure=insecure)
        return
    if insecure:
        _err_console.print("WARNING: --insecure: OPC UA is served without security; user "
                           "names and passwords travel in clear text. Anonymous sessions may "
                           "read; their writes are refused.", markup=False)

    async def main() -> None:
        with _ShutdownSignals() as signals:
            await serve_until(signals)

    async def serve_until(signals: _ShutdownSignals) -> None:
        clock = Clock.realtime() if speed == 1.0 else Clock.scaled(speed)
        sim = SimulatedPlant.from_config(cfg, clock, dt=dt)
        log = _err_console if as_json else _console
        sim.faults.on_record(lambda r: log.print(
            f"t={r.time:10.1f} s  {r.module}: fault {r.fault} {r.event} {r.params or ''}",
            markup=False))
        server = PlantServer(sim, port_offset=port_offset, free_ports=free_ports,
                             allow_remote=allow_remote, pki=pki, audit_db=db,
                             insecure=insecure)
        async with server:
            if as_json:
                # One line, flushed: a program reads it with readline() and the process
                # keeps serving.
                typer.echo(json.dumps([ep.as_dict() for ep in server.table()]))
                sys.stdout.flush()
            else:
                _endpoint_table(cfg.plant.name, server.table())
            task = sim.faults.start_scenario(scenario) if scenario is not None else None
            try:
                await signals.wait(clock.sleep(limit) if limit is not None else None)
            finally:
                if task is not None:
                    await sim.faults.cancel(task)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())
    except (ServeError, SecurityError, ValueError, OSError) as exc:
        _console.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None


def _serve_controlled(cfg: Any, *, dt: float, pki: Path, insecure: bool) -> None:
    """``sim serve --control``: the plant as a child of its controller (``_control.py``).

    The controller's hello on stdin is one JSON line: ``secret`` (of the control channel),
    ``clock`` (the anchor of the controller's clock, which the plant follows) and ``keep``
    (serve on when the controller's connection drops, for a control service that
    reattaches after a restart). The ready line on stdout is ``{"control": PORT, "pid":
    PID}``; stdout is then closed, so a controller that has gone cannot break a later write.
    """
    import os

    from modulecontrol.simulators._control import ControlServer
    from modulecontrol.simulators._opcua_server import SecurityError
    from modulecontrol.simulators._plant import SimulatedPlant
    from modulecontrol.simulators._serve import PlantServer, ServeError

    try:
        hello = json.loads(sys.stdin.readline(65536))
        secret, anchor, keep = str(hello["secret"]), hello["clock"], bool(hello.get("keep"))
        clock = Clock.following(anchor)
    except (ValueError, KeyError, TypeError) as exc:
        _err_console.print(f"error: --control: stdin must carry one JSON line with secret and "
                           f"clock: {exc}", markup=False)
        raise typer.Exit(2) from None
    if not secret:
        _err_console.print("error: --control: an empty secret is refused", markup=False)
        raise typer.Exit(2)

    async def main() -> None:
        sim = SimulatedPlant.from_config(cfg, clock, dt=dt)
        sim.faults.on_record(lambda r: _err_console.print(
            f"t={r.time:10.1f} s  {r.module}: fault {r.fault} {r.event} {r.params or ''}",
            markup=False))
        server = PlantServer(sim, free_ports=True, pki=pki, insecure=insecure)
        with _ShutdownSignals() as signals:
            async with server:
                channel = ControlServer(server, clock, secret, keep=keep)
                port = await channel.start()
                try:
                    sys.stdout.write(json.dumps({"control": port, "pid": os.getpid()}) + "\n")
                    sys.stdout.flush()
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, sys.stdout.fileno())
                    os.close(devnull)
                    await signals.wait(channel.stopped.wait())
                finally:
                    await channel.close()

    try:
        asyncio.run(main())
    except (ServeError, SecurityError, ValueError, OSError) as exc:
        _err_console.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None


class _ShutdownSignals:
    """Ctrl-C, SIGTERM (service managers, containers, OS shutdown) and SIGHUP (a closed
    terminal) end ``sim serve`` the same way: the servers close in order and the process
    exits 0. Installed before anything listens, so no signal finds the default handler."""

    def __init__(self) -> None:
        self.ended = asyncio.Event()
        self.received: list[str] = []
        self._installed: list[signal.Signals] = []

    def __enter__(self) -> _ShutdownSignals:
        loop = asyncio.get_running_loop()
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, name)
                self._installed.append(sig)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        if self.received:
            _err_console.print(f"{self.received[0]} received: closing the simulated modules",
                               markup=False)

    def _on_signal(self, name: str) -> None:
        self.received.append(name)
        self.ended.set()

    async def wait(self, duration: Coroutine[Any, Any, Any] | None) -> None:
        """Until a signal, or until ``duration`` has run (if given)."""
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self.ended.wait())]
        if duration is not None:
            waits.append(asyncio.ensure_future(duration))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()


def _endpoint_table(name: str, endpoints: list[ServedEndpoint]) -> None:
    """The endpoints as a table: folded (never cut) to fit a terminal, and never wrapped
    when the output goes to a pipe or file, where a URL must stay on one line to be copied
    or parsed."""
    table = Table(title=f"{name}: simulated modules")
    for col in ("tag", "type", "protocol"):
        table.add_column(col)
    table.add_column("endpoint", overflow="fold")
    for ep in endpoints:
        table.add_row(ep.tag, ep.type, ep.protocol, ep.address)
    console = _console if _console.is_terminal else Console(width=_UNWRAPPED)
    console.print(table, markup=False)


_UNWRAPPED = 100_000
"""Console width for output that is not a terminal: no table column ever has to fold."""


@app.command()
def steady(
    plant: Annotated[Path, typer.Argument(help="Plant file (kind: Plant).")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="TAG.Assembly=value applied after the services start (repeatable), "
        "e.g. V1.Valve=true or P1.FlowSetpoint=2.5 (the assembly's unit).")] = None,
) -> None:
    """Steady-state streams at every module outlet, with every service started with its
    default procedure and parameter defaults (then the --set values)."""
    from modulecontrol.simulators import check_plant
    from modulecontrol.simulators._plant import SimulatedPlant

    try:
        cfg = load_plant(plant)
        check_plant(cfg)
    except ConfigError as exc:
        _console.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    try:
        sim = SimulatedPlant.from_config(cfg, Clock.fast())
        sim.start_services()
        for item in set_ or []:
            key, sep, value = item.partition("=")
            tag, dot, assembly = key.strip().partition(".")
            if not sep or not dot:
                raise typer.BadParameter(f"'{item}': write TAG.Assembly=value")
            text = value.strip().lower()
            parsed: object
            if text in ("true", "false"):
                parsed = text == "true"
            else:
                try:
                    parsed = float(text)
                except ValueError:
                    raise typer.BadParameter(
                        f"'{item}': the value must be a number (in the assembly's unit), "
                        "true or false") from None
            view = sim.view(tag)
            try:  # the setting's own limits, as the device would refuse the write
                value = view.module_type.assembly(assembly).coerce(parsed, what="--set value")
            except KeyError as exc:
                raise typer.BadParameter(f"'{item}': {exc.args[0]}") from None
            if not view.write(assembly, None, value):
                raise typer.BadParameter(f"'{key}' is not linked to the simulator")
        reports = sim.steady_state()
    except (ValueError, KeyError) as exc:
        # str(KeyError) would wrap the message in quotes; show the message itself.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        _console.print(f"error: {message}", markup=False)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in reports], indent=2))
        return
    table = Table(title=f"{cfg.plant.name}: steady state")
    for col in ("outlet", "flow mL/min", "T degC", "p bar", "concentrations mol/L"):
        table.add_column(col)
    for r in reports:
        conc = ", ".join(f"{k} {v:.4g}" for k, v in r.concentrations.items())
        table.add_row(f"{r.module}.{r.port}", f"{r.flow_ml_min:.4g}", f"{r.temperature_c:.2f}",
                      f"{r.pressure_bar:.3f}", conc)
    _console.print(table)

"""``modulecontrol run``: validation, live view, shutdown signals, prompts and summary."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import getpass
import math
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from modulecontrol.errors import ConfigError
from modulecontrol.events import Event, EventKind
from modulecontrol.orchestrator import Orchestrator, RunResult
from modulecontrol.records import format_elapsed, format_figure, lot_rows
from modulecontrol.session import (
    EXIT_INVALID,
    EXIT_SIGNAL,
    RunOptions,
    RunOutcome,
    Session,
)
from modulecontrol.statemachine import Command, State

console = Console()


def run_command(recipe: Path, plant: Path | None, *, simulate: bool, speed: float, db: Path,
                sets: list[str], faults: Path | None, dry_run: bool, yes: bool, live: bool,
                report_dir: Path, insecure: bool = False, records_key: Path | None = None,
                anchor: Path | None = None, sparkplug: str | None = None,
                site: str | None = None, line: str | None = None,
                mode: str | None = None) -> int:
    from modulecontrol.recipe import parse_set_options

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not (math.isfinite(speed) and speed > 0):
        print(f"--speed: must be a positive number (simulated seconds per wall second), "
              f"not {speed:g}", file=sys.stderr)
        return EXIT_INVALID
    try:
        overrides = parse_set_options(sets)
    except ConfigError as exc:  # '--set flow' without '=': one line per problem
        for p in exc.problems:
            print(str(p), file=sys.stderr)
        return EXIT_INVALID
    except ValueError as exc:
        print(f"--set: {exc}", file=sys.stderr)
        return EXIT_INVALID
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if dry_run:
        tmp = tempfile.TemporaryDirectory(prefix="modulecontrol-dry-")
        db = Path(tmp.name) / "dry.db"
        records_key = anchor = None  # a throw-away database gets throw-away files beside it
        # as fast as the twins keep up on a small machine: every service command is a real
        # protocol round trip, which costs simulated minutes at higher factors
        speed = max(speed, 600.0)
    options = RunOptions(
        simulate=simulate, speed=speed, db=db, overrides=overrides, faults=faults,
        report_dir=None if dry_run else report_dir, records_key=records_key, anchor=anchor,
        auto_answer="__first__" if (yes or dry_run or not interactive) else None,
        auto_reason="--yes" if yes else "--dry-run" if dry_run else "no terminal",
        insecure=insecure, operator=_os_user(), mode=mode,
    )
    try:
        session = Session.load(recipe, plant, options)
    except ConfigError as exc:
        for p in exc.problems:
            print(str(p), file=sys.stderr)
        return EXIT_INVALID
    if insecure and simulate:
        print("WARNING: --insecure: the simulated OPC UA modules are served and reached "
              "without security; user names and passwords travel in clear text (loopback "
              "only). Anonymous sessions may read; their writes are refused.", file=sys.stderr)
    edge = None
    if sparkplug is not None and not dry_run:
        try:
            edge = _sparkplug(session, sparkplug, site, line, db)
        except ValueError as exc:
            print(f"--sparkplug: {exc}", file=sys.stderr)
            return EXIT_INVALID
    if options.auto_answer and not (yes or dry_run):  # said once the run can start at all
        console.print("[yellow]not a terminal: prompts are answered with their first "
                      "choice (pass --yes to say so)[/yellow]")
    try:
        outcome = asyncio.run(_run(session, live=live and interactive and not dry_run,
                                   interactive=interactive))
    finally:
        if tmp is not None:
            tmp.cleanup()
        if edge is not None:
            left = edge.stop(drain=30.0)
            if left:
                console.print(f"[yellow]sparkplug: {left} sample(s) not yet published wait in "
                              f"{edge.buffer.path}; the next run of this line sends them[/yellow]")
    if dry_run:
        _plan(outcome, session)
    else:
        _summary(outcome)
    return outcome.exit_code


def _os_user() -> str:
    """The operating-system account that started the run: the person the record names (as
    operator, and as who gave each ``--set``), rather than a shared placeholder."""
    try:
        return getpass.getuser() or "operator"
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return "operator"


_SHUTDOWN_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                          if hasattr(signal, name))
"""What ends a run gracefully: Ctrl-C, and what service managers, container runtimes, OS
shutdown and a closed terminal send."""


def _sparkplug(session: Session, url: str, site: str | None, line: str | None,
               db: Path) -> Any:
    """An edge node for this run (the line, its modules as devices), started with the run;
    what the broker does not take waits in a buffer file beside the run database."""
    from modulecontrol.fleet import Broker, EdgeNode, attach, publish_summary

    if not site:
        raise ValueError("name the site with --site NAME")
    line = line or session.vr.plant.plant.name
    edge = EdgeNode(Broker.parse(url), site, line, db.parent / f"sparkplug-{site}-{line}.db")

    def started(s: Session) -> None:
        attach(edge, s.proxies, s.orchestrator)
        edge.start()

    def finished(s: Session, outcome: RunOutcome) -> None:
        publish_summary(edge, {
            "run_id": outcome.run_id, "recipe": s.vr.recipe.name,
            "result": outcome.result.value if outcome.result else None,
            "exit_code": outcome.exit_code, "sim_seconds": outcome.sim_seconds,
            "figures": outcome.figures})

    session.on_started.append(started)
    session.on_finished.append(finished)
    return edge


async def _run(session: Session, *, live: bool, interactive: bool) -> RunOutcome:
    loop = asyncio.get_running_loop()
    received: asyncio.Queue[signal.Signals] = asyncio.Queue()
    installed: list[signal.Signals] = []
    # Before anything starts, so a signal during start-up is not a crash either: it is
    # handled as soon as the recipe runs.
    for sig in _SHUTDOWN_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, received.put_nowait, sig)
            installed.append(sig)
    try:
        return await _run_handled(session, received, live=live, interactive=interactive)
    finally:
        for sig in installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)


async def _run_handled(session: Session, received: asyncio.Queue[signal.Signals], *,
                       live: bool, interactive: bool) -> RunOutcome:
    if not live:  # before the run starts: its first events are printed too
        session.subscribe(_printer())
    task = asyncio.create_task(session.run())
    orch: Orchestrator | None = None
    for _ in range(20000):
        if session.orchestrator is not None or task.done():
            break
        await asyncio.sleep(0.01)
    orch = session.orchestrator
    if orch is None:
        return await task
    # Everything started so far (modules, simulators with OPC UA address spaces: several
    # hundred thousand objects) lives until the run ends. Moving it out of the collector's
    # view keeps full collections during the run and at exit from walking it each time
    # (about 0.6 s at interpreter exit alone); it is still freed by reference counting.
    # One run per process, so cycles frozen now cannot pile up.
    gc.freeze()

    ended_by: list[signal.Signals] = []
    helpers = [asyncio.create_task(_on_signals(orch, received, interactive, ended_by))]
    if interactive:
        helpers.append(asyncio.create_task(_prompts(session)))
    try:
        if live:
            from modulecontrol._live import LiveView

            signals = list(orch.recipe.display) or _default_signals(orch)
            view = LiveView(orch, signals)
            with Live(view, console=console, refresh_per_second=4, transient=False):
                outcome = await task
        else:
            outcome = await task
    finally:
        for h in helpers:
            h.cancel()
    if ended_by and outcome.result in (RunResult.STOPPED, RunResult.ABORTED):
        outcome.exit_code = EXIT_SIGNAL + ended_by[0]
    return outcome


def _default_signals(orch: Orchestrator) -> list[str]:
    out: list[str] = []
    for tag, proxy in orch.proxies.items():
        for da in proxy.type.data_assemblies:
            if da.class_ in ("AnaView", "AnaMon") and len(out) < 10:
                out.append(f"{tag}.{da.name}")
    return out


_QUIET = frozenset({EventKind.SERVICE_STATE, EventKind.PARAMETER_WRITE, EventKind.ITERATION,
                    EventKind.BLOCK_FINISHED, EventKind.STEP_FINISHED})
"""Kinds the console does not print: too many, or said by the next line anyway."""


_STEP_ENDS = frozenset({EventKind.STEP_FINISHED, EventKind.STEP_FAILED, EventKind.STEP_TIMEOUT})


def _printer() -> Any:
    """One line per event, times relative to the start of the run."""
    t0: list[float] = []

    def show(ev: Event) -> None:
        if not t0:
            t0.append(ev.t)
        if ev.kind in _QUIET:
            return
        h, rem = divmod(int(ev.t - t0[0]), 3600)
        m, s = divmod(rem, 60)
        console.print(f"[dim]{h:d}:{m:02d}:{s:02d}[/dim] {ev.kind.value:<18} {ev.source}: "
                      f"{ev.message}", highlight=False)

    return show


async def _on_signals(orch: Orchestrator, received: asyncio.Queue[signal.Signals],
                      interactive: bool, ended_by: list[signal.Signals]) -> None:
    """The one path of every shutdown signal.

    Ctrl-C in a terminal holds the recipe and asks what to do (the question waits in a task
    of its own, so a SIGTERM meanwhile is still carried out at once). SIGTERM, SIGHUP and
    Ctrl-C without a terminal hold and stop it: the Stop fans out stage by stage in the
    plant's shutdown order and the session then drives every module's safe state, with the
    reason ("SIGTERM received") as an event and on the run record. A further signal while it
    stops aborts (Abort fan-out and safe states), for an operator or service manager that
    cannot wait. ``ended_by`` collects the signals that ended the run, for the exit code.
    """
    question: asyncio.Task[None] | None = None
    try:
        while True:
            sig = await received.get()
            # not started yet (a Stop would be refused): handled as soon as the recipe starts
            await orch.machine.wait_for(*(st for st in State if st is not State.IDLE))
            name = sig.name
            if orch.machine.state in (State.COMPLETED, State.STOPPED, State.ABORTED):
                continue  # the run has ended; the session is driving the safe states already
            if sig is signal.SIGINT and interactive and not ended_by:
                if question is None or question.done():
                    question = asyncio.create_task(_ask_operator(orch))
                continue
            if not ended_by:
                ended_by.append(sig)
                orch.log.emit(EventKind.SHUTDOWN_REQUESTED, "process",
                              f"{name} received: hold, then stop to the safe state",
                              signal=name, action="stop")
                orch.try_command(Command.HOLD, f"{name} received")
                orch.try_command(Command.STOP, f"{name} received")
            else:
                ended_by.append(sig)
                orch.log.emit(EventKind.SHUTDOWN_REQUESTED, "process",
                              f"{name} received again while stopping: abort",
                              signal=name, action="abort")
                orch.try_command(Command.ABORT, f"{name} received again while stopping")
    finally:
        if question is not None:
            question.cancel()


async def _ask_operator(orch: Orchestrator) -> None:
    """Ctrl-C in a terminal: hold, then resume, stop or abort as the operator says."""
    held = orch.try_command(Command.HOLD, "Ctrl-C")
    if held:
        await orch.machine.wait_for(State.HELD, State.STOPPED, State.ABORTED)
    answer = await _in_thread(_ask, "Recipe held. [r]esume, [s]top or [a]bort? ",
                              {"r", "s", "a"})
    cmd = {"r": Command.UNHOLD, "s": Command.STOP, "a": Command.ABORT}[answer]
    orch.try_command(cmd, "operator after Ctrl-C")


async def _in_thread(ask: Callable[[str, Any], str], question: str, choices: Any) -> str:
    """Wait for a terminal answer in a daemon thread: a run that ends while a question is
    open (a SIGTERM, an abort) must not wait for someone to press Enter, as it would for a
    thread of the loop's executor at exit."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def deliver(result: str | BaseException) -> None:
        if answer.done():
            return
        if isinstance(result, BaseException):
            answer.set_exception(result)
        else:
            answer.set_result(result)

    def work() -> None:
        result: str | BaseException
        try:
            result = ask(question, choices)
        except Exception as exc:  # said where it is awaited, not lost in the thread
            result = exc
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            loop.call_soon_threadsafe(deliver, result)

    threading.Thread(target=work, name="modulecontrol-prompt", daemon=True).start()
    return await answer


def _ask(question: str, choices: set[str]) -> str:
    while True:
        try:
            line = input(question).strip().lower()[:1]
        except EOFError:
            return "s"
        if line in choices:
            return line


async def _prompts(session: Session) -> None:
    """Answer operator prompts from the terminal."""
    op = session.operator
    while True:
        for pid, prompt in list(op.pending.items()):
            choices = "/".join(prompt.choices)
            answer = await _in_thread(
                _ask_choice, f"\n{prompt.source}: {prompt.message} [{choices}] ", prompt.choices)
            with contextlib.suppress(KeyError, ValueError):
                op.answer(pid, answer)
        await asyncio.sleep(0.2)


def _ask_choice(question: str, choices: list[str]) -> str:
    while True:
        try:
            line = input(question).strip()
        except EOFError:
            return choices[0]
        if not line:
            return choices[0]
        for c in choices:
            if c.lower().startswith(line.lower()):
                return c


def _summary(outcome: RunOutcome) -> None:
    if outcome.result is None:
        console.print(f"[red]run failed:[/red] {outcome.message}")
        return
    colour = {"completed": "green", "stopped": "yellow", "aborted": "red"}[outcome.result.value]
    ended = outcome.result.value
    if outcome.data_loss:
        colour, ended = "red", f"{ended} with data loss"
    console.print(f"[{colour}]run {outcome.run_id} {ended}[/{colour}] after "
                  f"{outcome.sim_seconds / 3600:.2f} h simulated time"
                  + (f": {outcome.reason}" if outcome.reason else ""))
    fig = outcome.figures
    if fig:
        table = Table("figure", "value", title="batch summary")
        for key, label in _FIGURES:
            if key in fig and fig[key] is not None:
                table.add_row(label, _fmt(key, fig[key]))
        # Interval figures (`report: intervals:`, e.g. a changeover) are named NAME.FIGURE:
        # a recipe declares them because they matter to it, so the summary shows them too.
        for key in sorted(k for k in fig if "." in k and fig[k] is not None):
            table.add_row(key, _fmt(key, fig[key]))
        console.print(table)
        # each product of a multi-product campaign is its own lot (`report: lots:`): one
        # column per lot, beside the changeover figures above
        lots = fig.get("lots") or []
        if lots:
            lot_table = Table("figure", *(str(x["name"]) for x in lots), title="lots")
            for row in lot_rows(lots):
                lot_table.add_row(*map(str, row))
            console.print(lot_table)
    if outcome.report is not None:
        console.print(f"report: {outcome.report}")
    if outcome.message:
        console.print(outcome.message)


_FIGURES = [
    ("time_to_steady_state_s", "time to steady state, from feed start"),
    ("production_time_s", "production time, to product"),
    ("throughput_g_per_h", "throughput while to product"),
    ("isolated_throughput_g_per_h", "isolated throughput while to product"),
    ("yield_pct", "yield while to product"),
    ("isolated_yield_pct", "isolated yield while to product"),
    ("overall_isolated_yield_pct", "isolated yield, whole run"),
    ("product_total_g", "product, whole run"),
    ("purity_mean_pct", "purity, mean while to product"),
    ("off_spec_time_s", "off-spec time"),
    ("off_spec_volume_ml", "off-spec (diverted) volume"),
    ("material_balance_pct", "material balance out/in"),
    ("deviations", "deviations"),
    ("automatic_answers", "prompts answered automatically (not deviations)"),
]


def _fmt(key: str, v: Any) -> str:
    """A figure in the units an engineer reads (h:mm:ss, mg/h, %), as in the batch report."""
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(k, x)}" for k, x in v.items())
    return format_figure(key, v)


def _plan(outcome: RunOutcome, session: Session) -> None:
    """Dry run: steps with their simulated start and duration, material used per feed."""
    table = Table("step", "kind", "start", "duration", title="plan (dry run on simulators)")
    starts: dict[str, Event] = {}
    t0 = outcome.events[0].t if outcome.events else 0.0
    for ev in outcome.events:
        if ev.kind is EventKind.STEP_STARTED:
            starts[ev.source] = ev
        elif ev.kind in _STEP_ENDS and ev.source in starts:
            st = starts.pop(ev.source)
            table.add_row(ev.source, str(st.data.get("step_kind", "")), format_elapsed(st.t - t0),
                          format_elapsed(ev.t - st.t))
    console.print(table)
    orch = session.orchestrator
    if orch is not None:
        used = Table("feed", "delivered", title="material used")
        from modulecontrol.descriptors import feeds

        for tag in feeds(orch.plant):
            proxy = orch.proxies[tag]
            for name in ("DeliveredVolume", "Dispensed"):
                v = proxy.value(name)
                if v is not None:
                    used.add_row(tag, f"{v:.4g} {proxy.type.assembly(name).unit}")
        console.print(used)
    result = outcome.result.value if outcome.result else f"failed: {outcome.message}"
    console.print(f"dry run {result}; {outcome.sim_seconds / 3600:.2f} h simulated")



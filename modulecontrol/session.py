"""One run of a recipe, end to end: plant, (simulators), proxies, orchestrator, records.

This is what ``modulecontrol run`` and ``make run`` call. It owns the wiring so that the CLI,
tests and notebooks start runs the same way, and it guarantees the order of shutdown:
orchestrator first, then the safe states of a run that did not complete (stage by stage in
the plant's shutdown order), then proxies, then simulators, then the historian, so no
record is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
import math
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from modulecontrol.alarms import AUTO, PROCESS, AlarmBoard, AlarmChange, AlarmSpec
from modulecontrol.clock import Clock, ClockMode
from modulecontrol.descriptors import PlantConfig
from modulecontrol.drivers import Disconnected, DriverError, DriverTimeout, Quality, TagValue
from modulecontrol.errors import ConfigError, Location
from modulecontrol.events import PAYLOADS, Event, EventKind
from modulecontrol.optimize import OPTIMIZER_USER, ExperimentRecord, recorded_experiments
from modulecontrol.orchestrator import (
    AUTO_USER,
    AlarmEvent,
    OperatorChannel,
    Orchestrator,
    PlantAlarms,
    Resume,
    RunResult,
)
from modulecontrol.proxy import ModuleProxy, ProxyOptions, proxies_for
from modulecontrol.recipe import ValidatedRecipe, load_recipe
from modulecontrol.records import (
    AUTOMATIC_ANSWER,
    DataLoss,
    Historian,
    RecipeVersion,
    RecordsError,
    TagConfig,
    content_hash,
    effective_version,
    list_runs,
    query_tag,
    recipe_content_hash,
    run_samples,
)
from modulecontrol.records import RunResult as RecordResult
from modulecontrol.units import UnitError, convert

_log = logging.getLogger(__name__)

EXIT_COMPLETED = 0
EXIT_INVALID = 2
EXIT_ABORTED = 3
EXIT_STOPPED = 4
EXIT_CONNECTION = 5
EXIT_DATA_LOSS = 6
"""The recipe completed but records of it were lost (``data_loss`` events; the run record
says ``completed_with_data_loss``): the batch cannot be released on this record alone."""

EXIT_SIGNAL = 128
"""A run ended by a shutdown signal exits with 128 + the signal's number (143 for SIGTERM,
129 for SIGHUP, 130 for Ctrl-C without a terminal), as a shell reports a process a signal
ended: distinct from success and from every failure; the run record says stopped or aborted."""

_EXIT = {
    RunResult.COMPLETED: EXIT_COMPLETED,
    RunResult.ABORTED: EXIT_ABORTED,
    RunResult.STOPPED: EXIT_STOPPED,
}
_PRIORITY = {"low": 250, "medium": 500, "high": 750, "urgent": 1000}


def record_alarm_state(hist: Historian, name: str, payload: dict[str, Any]) -> None:
    """One move of an alarm's life cycle: the ``alarm_state`` event, and its audit entry
    with the identity behind it; a person's move is an operator action too, and an
    acknowledgement also marks the alarm's row acknowledged."""
    user, trigger = str(payload["user"]), str(payload["trigger"])
    hist.record_event(EventKind.ALARM_STATE, name, payload)
    action = f"alarm {trigger}"
    reason = str(payload.get("reason") or payload.get("message") or action)
    old, new = payload.get("previous"), payload.get("state")
    if user in (PROCESS, AUTO):
        hist.record_audit(user, action, name, old_value=old, new_value=new, reason=reason)
    else:
        hist.record_operator_action(user, action, name, old_value=old, new_value=new,
                                    reason=reason)
    if trigger == "ack":
        hist.acknowledge_alarm(name, user)


class FaultControl(Protocol):
    """A simulated plant's fault injection, in-process (``FaultInjector``) or over the
    channel to a plant in its own process (``RemoteFaults``): what a run records and what a
    test, a test rig or the docs' pictures inject."""

    def inject(self, module: str, fault: str, **params: Any) -> object: ...

    def clear(self, module: str, fault: str) -> object: ...

    def on_record(self, listener: Callable[[Any], None]) -> None: ...


class Simulation(Protocol):
    """What the session needs from a running simulated plant."""

    config: PlantConfig
    """The plant as drivers must see it (pseudo-terminal paths, ports actually bound)."""

    @property
    def faults(self) -> FaultControl:
        """Its fault injection: every simulated plant, in this process or its own, has one."""
        ...

    async def stop(self) -> None: ...


SimulationFactory = Callable[[PlantConfig, Clock], Awaitable[Simulation]]


@dataclass
class RunOptions:
    simulate: bool = False
    speed: float = 1.0
    db: Path = Path("runs/modulecontrol.db")
    overrides: Mapping[str, str] = field(default_factory=dict)
    faults: Path | None = None
    report_dir: Path | None = Path("runs")
    tick: float | None = None
    """Supervision period in simulated seconds (default: 1 s x speed/60, at least 1 s)."""
    poll_interval: float = 0.1
    operator: str = "operator"
    auto_answer: str | None = None
    auto_reason: str = "--yes"
    """Why prompts are answered automatically (``--yes``, ``no terminal``, ``--dry-run``):
    recorded with each automatic answer, whose user is ``auto``, not the operator."""
    on_comm_loss: str = "hold"
    records_key: Path | None = None
    """Records key file (default ``<db>.key``, created 0600 at first use)."""
    anchor: Path | None = None
    """Anchor file of the records chain (default ``<db>.anchor``; keep it elsewhere)."""
    pki: Path | None = None
    """Simulated runs: folder of the generated OPC UA certificates, keys and passwords
    (default ``pki`` beside the database, e.g. ``runs/pki``)."""
    insecure: bool = False
    """Simulated runs: serve and connect OPC UA without security (``--insecure``)."""
    write_budget: float = 30.0
    """Wall seconds the historian retries a batch on a busy database before it is lost."""
    plant_process: bool = True
    """Simulated runs: serve the plant in a process of its own (``sim serve --control``,
    slaved to this clock), so the controller talks to it only over the real protocols and
    a simulator crash is a device fault. False serves it in this process (a virtual
    clock, which cannot be shared, always does)."""
    keep_plant: bool = False
    """Simulated plant in its own process: leave it running when this process goes, and
    reattach to it at the next start (the control service: ``<db>.plant`` says where)."""
    mode: str | None = None
    """Run mode, one of :data:`MODES`; None: ``simulation`` on a simulated plant, else
    ``development``. ``production`` runs only an effective recipe version (docs/signatures.md)."""


MODES = ("production", "development", "simulation")
"""Run modes: recorded in every run record and shown in its batch report and the station.
``production`` runs only the approved, effective version of a recipe (the content hash of
the file must be that version's) on the real plant; ``development`` runs any valid recipe
on the real plant, marked as such; ``simulation`` runs on simulators only."""


def run_mode(options: RunOptions) -> str:
    """The mode a run with these options runs in (the default when none is named)."""
    return options.mode or ("simulation" if options.simulate else "development")


def check_run_mode(vr: ValidatedRecipe, options: RunOptions) -> RecipeVersion | None:
    """Refuse a run its mode does not allow; in production, the effective version it runs.

    Why before anything starts: a production run of an unapproved recipe must not move a
    valve. Raises :class:`ConfigError` located at the recipe file.
    """
    mode, where = run_mode(options), Location(vr.file)
    if mode not in MODES:
        raise ConfigError.single(f"run mode '{mode}' is not one of {', '.join(MODES)}", where)
    version = None
    if mode == "production":
        text = Path(vr.file).read_text(encoding="utf-8")
        digest = recipe_content_hash(text)
        version = effective_version(options.db, vr.recipe.name, digest)
        if version is None:
            raise ConfigError.single(
                f"production mode runs only an approved, effective recipe version: recipe"
                f" '{vr.recipe.name}' with content hash {digest[:12]} is not effective in"
                f" {options.db} (register it with 'modulecontrol recipe add', then submit,"
                f" approve and release it; or run in development mode)", where)
    if options.simulate and mode != "simulation":
        raise ConfigError.single(
            f"a simulated plant runs in simulation mode, not {mode}: its record must never"
            " pass for one made on the real plant", where)
    if not options.simulate and mode == "simulation":
        raise ConfigError.single("simulation mode needs a simulated plant (--simulate)", where)
    return version


_POSITION_AT = frozenset({
    EventKind.BLOCK_STARTED, EventKind.BLOCK_FINISHED, EventKind.STEP_STARTED,
    EventKind.STEP_FINISHED, EventKind.ITERATION, EventKind.GOTO, EventKind.COMMAND,
    EventKind.RECIPE_STATE, EventKind.SERVICE_STATE, EventKind.STEADY_STATE,
    EventKind.DIVERT, EventKind.DIVERT_ENABLED, EventKind.DIVERT_DISABLED,
    EventKind.ALARM_ENABLED, EventKind.ALARM_DISABLED,
})
"""Events after which the run's position is written (``run_position``): every step
transition and every change of what a restart takes up; between them it is written every
:data:`POSITION_TICKS` supervision ticks."""
POSITION_TICKS = 10


@dataclass(frozen=True)
class ResumePoint:
    """A run the records show as left running by a process that is gone, to take up."""

    run_id: int
    """The records' run (marked ``interrupted`` by the historian's recovery, reopened)."""
    position: Mapping[str, Any]
    """The last ``run_position`` written for it (the orchestrator's snapshot)."""
    gap_from: float | None = None
    """Epoch seconds of the last record before the gap."""


@dataclass
class RunOutcome:
    result: RunResult | None
    exit_code: int
    run_id: int | None = None
    report: Path | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    message: str = ""
    sim_seconds: float = 0.0
    reason: str = ""
    """Why the run ended early (the reason of its Stop or Abort), also on the run record."""

    data_loss: list[DataLoss] = field(default_factory=list)
    """Batches of records the historian could not write (exit code 6 if it completed)."""


def _as_written(default: Any, unit: str) -> Any:
    """A parameter's default as the recipe gives it (a number gets its unit back)."""
    if isinstance(default, int | float) and not isinstance(default, bool) and unit:
        return f"{default:g} {unit}"
    return default


def _read_or_none(path: str) -> bytes | None:
    """The file's bytes for the run record (its hash goes into the record too)."""
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def _after_recorded_runs(clock: Clock, db: Path) -> None:
    """Start the run's time line after every run already in ``db``.

    Records are stamped with simulated time: an accelerated run of 2 h that took 12 wall
    minutes ends 2 h after its start, in the wall clock's future. A second run started soon
    after would write into the same time window; its samples carry its run, but a tag's
    value at the start of a run is taken from before it, so time lines are kept apart too.
    """
    if not db.exists():
        return
    try:
        runs = list_runs(db)
    except (RecordsError, sqlite3.Error):
        return  # not a records database (yet): the Historian reports that itself
    latest = max((r.t_end if r.t_end is not None else r.t_start for r in runs), default=None)
    if latest is not None and clock.datetime(0.0).timestamp() <= latest:
        clock.start = _dt.datetime.fromtimestamp(latest + 1.0, _dt.UTC)


class Line:
    """A plant held connected: its clock, its simulators (if asked), one proxy per module and
    the historian that records their values.

    ``modulecontrol run`` holds a line for one run; the control service holds one for its
    whole life and runs recipes on it one after another, so both connect, record and shut
    down the same way. Shutdown order: proxies (safe states already applied by the run),
    then simulators, then the historian, so no record is lost.
    """

    def __init__(self, plant: PlantConfig, options: RunOptions,
                 simulation_factory: SimulationFactory | None = None,
                 scenario: Any = None) -> None:
        self.plant = plant
        self.options = options
        self.clock = Clock.scaled(options.speed) if options.speed != 1 else Clock.realtime()
        self.simulation_factory = simulation_factory
        self.scenario = scenario
        self.simulation: Simulation | None = None
        self.proxies: dict[str, ModuleProxy] = {}
        self.historian: Historian | None = None
        self.reattached = False
        """The simulated plant was found running (left by a previous life of the control
        service) and reattached to, on its own clock, rather than started."""
        self.alarms = AlarmBoard(plant.plant.alarm_philosophy)
        """The line's alarms and their life cycle, across runs (docs/alarms.md): a run
        feeds it and records its changes; between runs the line records them itself."""
        self.alarm_listeners: list[Callable[[AlarmChange], None]] = []
        """Told every change made between runs, once recorded (the service's stream)."""
        self.plant_alarms: PlantAlarms | None = None
        """The plant file's alarms, when the line evaluates them between runs too
        (:meth:`watch_plant_alarms`); a run's supervisor takes them over while it runs."""
        self.alarm_event_listeners: list[Callable[[AlarmEvent], None]] = []
        """Told every alarm raised or cleared between runs, once recorded."""
        for m in plant.plant.modules:  # the plant's own alarms are there before any run
            for a in m.alarms:
                signal = f"{m.tag}.{a.assembly}"
                self.alarms.declare(AlarmSpec(
                    a.name, a.priority, a.message or f"{signal} out of limits", group=a.group,
                    realarm_after=a.realarm_after, kind="plant", source=signal))

    @property
    def plant_state_file(self) -> Path:
        """Where a kept simulated plant's control channel is written (owner-only)."""
        return self.options.db.with_name(self.options.db.name + ".plant")

    def open_records(self) -> None:
        """Take the records database (one live writer: a second line on it is refused with
        RecordsError) and start its time line after every run already in it."""
        opts = self.options
        opts.db.parent.mkdir(parents=True, exist_ok=True)
        _after_recorded_runs(self.clock, opts.db)
        self.historian = Historian(opts.db, clock=lambda: self.clock.datetime().timestamp(),
                                   key_path=opts.records_key, anchor_path=opts.anchor,
                                   write_budget=opts.write_budget)
        self.alarms.route(self._alarm_between_runs)

    def watch_plant_alarms(self) -> None:
        """Evaluate the plant file's alarms between runs too (:meth:`evaluate_plant_alarms`),
        as the control service does for the line it holds for days: its pumps and
        thermostats are not unwatched because no recipe runs. ``modulecontrol run`` holds
        the line for one run, whose supervisor evaluates them."""
        self.plant_alarms = PlantAlarms(self.plant, self.alarms)

    def evaluate_plant_alarms(self) -> None:
        """One between-runs tick of the plant file's alarms (never during a run): each
        raise and clear recorded as a run records it, then told to the listeners. A failure
        to record raises (the caller makes it a ``supervision_failed``), never only logged."""
        watch, hist = self.plant_alarms, self.historian
        if watch is None or hist is None:
            return
        now = self.clock.now()

        def record(ev: AlarmEvent) -> None:
            payload = {"message": ev.message, "sim_time": now, **_jsonable(ev.data)}
            if ev.kind is EventKind.ALARM_RAISED:
                hist.raise_alarm(ev.source, ev.message,
                                 _PRIORITY.get(str(ev.data.get("priority")), 500), payload)
            else:
                hist.clear_alarm(ev.source, payload)
            for listener in list(self.alarm_event_listeners):
                listener(ev)

        watch.evaluate(now, self.proxies, record)

    def _alarm_between_runs(self, change: AlarmChange) -> None:
        """A change no run records (an alarm shelved, its shelf running out, between runs):
        recorded here, then told to the listeners."""
        hist = self.historian
        assert hist is not None
        why = f": {change.reason}" if change.reason else ""
        message = (f"{change.previous.value} -> {change.state.value} "
                   f"({change.trigger.value} by {change.user}){why}")
        record_alarm_state(hist, change.name, {"message": message, "sim_time": change.t,
                                               **change.data()})
        for listener in list(self.alarm_listeners):
            listener(change)

    async def start(self) -> None:
        """Simulators (if asked), then connect every module; raises DriverError on failure.
        With the records open, every module value is recorded from here on."""
        config = self.plant
        if self.options.simulate:
            if self.simulation_factory is None and self._separate_plant():
                self.simulation_factory = self._plant_process
            if self.simulation_factory is None:
                from modulecontrol.simulators import SecurityError, ServeError, serve_plant

                scenario = self.scenario
                pki = self.options.pki or self.options.db.parent / "pki"

                async def factory(cfg: PlantConfig, clock: Clock) -> Simulation:
                    # A simulator that cannot start (credentials not exported, a port in
                    # use) is reported like a module that cannot be reached: one line and
                    # exit code 5, not a traceback.
                    try:
                        return await serve_plant(cfg, clock, scenario=scenario, pki=pki,
                                                 insecure=self.options.insecure)
                    except (SecurityError, ServeError, OSError) as exc:
                        raise DriverError(f"the simulators did not start: {exc}") from exc

                self.simulation_factory = factory
            self.simulation = await self.simulation_factory(config, self.clock)
            config = self.simulation.config
        popts = ProxyOptions(poll_interval=self.options.poll_interval, clock=self.clock.now,
                             adopt_running=self.reattached)
        self.proxies = proxies_for(config, options=popts)
        # Connect every module at once: OPC UA sessions take a moment each.
        results = await asyncio.gather(*(p.start() for p in self.proxies.values()),
                                       return_exceptions=True)
        failed = [(p.tag, r) for p, r in zip(self.proxies.values(), results, strict=True)
                  if isinstance(r, BaseException)]
        # Secure sessions opened all at once are CPU-heavy: on a busy machine some miss
        # their timeout (a DriverTimeout, or a link given up: an OPC UA hello unanswered in
        # time, a request its client library dropped). Those get one more try each, one at
        # a time, with a fresh proxy (a connect only reads, so trying again writes nothing
        # twice); any other failure (refused, misconfigured) and a second failure fail the
        # start as before.
        again = [tag for tag, r in failed if isinstance(r, DriverTimeout | Disconnected)]
        if again and len(again) == len(failed):
            failed = []
            for tag in again:
                with contextlib.suppress(Exception):
                    await self.proxies[tag].close()
                proxy = ModuleProxy(config.type_of(tag), config.instance(tag), None, popts)
                self.proxies[tag] = proxy
                try:
                    await proxy.start()
                except Exception as exc:
                    failed.append((tag, exc))
        if failed:
            for p in self.proxies.values():
                with contextlib.suppress(Exception):
                    await p.close()
            detail = "; ".join(f"{tag}: {str(exc) or repr(exc)}" for tag, exc in failed)
            raise DriverError(f"cannot connect to {len(failed)} module(s): {detail}")
        if self.historian is not None:
            self._record_values(self.historian)

    def _separate_plant(self) -> bool:
        return (self.options.plant_process and self.clock.mode is not ClockMode.FAST
                and bool(self.plant.file) and Path(self.plant.file).is_file())

    async def _plant_process(self, cfg: PlantConfig, clock: Clock) -> Simulation:
        """The simulated plant in a process of its own, slaved to this line's clock; with
        ``keep_plant``, the one a previous life of the service left running, if any, whose
        clock this line then adopts (the time line, and so the record, continue)."""
        from modulecontrol.simulators import ServeError, attach_plant, spawn_plant

        opts = self.options
        state = self.plant_state_file if opts.keep_plant else None
        try:
            proc = await attach_plant(cfg, state) if state is not None else None
            if proc is not None:
                clock.adopt((await proc.call("clock"))["clock"])
                self.reattached = True
            else:
                pki = opts.pki or opts.db.parent / "pki"
                proc = await spawn_plant(
                    cfg, clock, dt=min(5.0, max(1.0, clock.scale / 100.0)), pki=pki,
                    insecure=opts.insecure, keep=opts.keep_plant, state_file=state,
                    log_file=opts.db.parent / "simulated-plant.log")
                if self.scenario is not None:
                    await proc.play(self.scenario)
        except (ServeError, OSError) as exc:
            raise DriverError(f"the simulators did not start: {exc}") from exc
        return proc

    def _record_values(self, hist: Historian) -> None:
        """Every numeric data assembly and service state, into the historian, run or not."""
        for tag, proxy in self.proxies.items():
            for da in proxy.type.data_assemblies:
                if da.kind == "number":
                    hist.configure_tag(f"{tag}.{da.name}", TagConfig(
                        unit=da.unit, deadband=0.0, max_interval=600.0))

        def on_values(tag: str, values: Mapping[str, TagValue]) -> None:
            proxy = self.proxies[tag]
            names = {d.name for d in proxy.type.data_assemblies}
            for name, tv in values.items():
                if name not in names and not name.endswith(".StateCur"):
                    continue
                v = tv.value
                if isinstance(v, bool):
                    v = float(v)
                if not isinstance(v, int | float) or not math.isfinite(float(v)):
                    continue
                try:
                    hist.record_sample(f"{tag}.{name}", float(v),
                                       quality=192 if tv.quality is Quality.GOOD else 0)
                except Exception as exc:  # the proxy makes it listener_failed too
                    hist.note_lost(samples=[(f"{tag}.{name}", hist.clock())],
                                   error=f"sample not recorded: {type(exc).__name__}: {exc}")
                    raise

        for proxy in self.proxies.values():
            proxy.on_values(on_values)

    async def close(self) -> None:
        """Close links and simulators; each bounded, so a peer that does not answer a
        disconnect cannot keep the run (and its record) open. The historian stays open
        until :meth:`close_records`, after the run record is closed."""
        async def close(proxy: ModuleProxy) -> None:
            async with asyncio.timeout(10.0):
                await proxy.close()

        closing = [close(p) for p in self.proxies.values()]
        for result in await asyncio.gather(*closing, return_exceptions=True):
            if isinstance(result, BaseException):
                _log.warning("closing a module link failed: %r", result)
        if self.simulation is not None:
            try:
                async with asyncio.timeout(15.0):
                    await self.simulation.stop()
            except (TimeoutError, Exception) as exc:
                _log.warning("stopping the simulators failed: %r", exc)
            if self.options.keep_plant:  # stopped on purpose: nothing to reattach to
                self.plant_state_file.unlink(missing_ok=True)

    async def close_records(self) -> None:
        """Flush and release the records database."""
        if self.historian is not None:
            try:
                await self.historian.flush()
            finally:
                await self.historian.close()


class Session:
    """Prepare, run and record one recipe run. Use :meth:`run`, or the steps one by one.

    Without a ``line`` the session holds its own for the run (``modulecontrol run``); with
    one (the control service's) it runs on it and leaves it connected afterwards.
    """

    def __init__(self, recipe: ValidatedRecipe, options: RunOptions,
                 simulation_factory: SimulationFactory | None = None,
                 line: Line | None = None) -> None:
        self.recipe_version = check_run_mode(recipe, options)
        """In production mode, the effective recipe version this run runs (else None)."""
        self.vr = recipe
        self.options = options
        self._owns_line = line is None
        self.line = line or Line(recipe.plant, options, simulation_factory)
        self.orchestrator: Orchestrator | None = None
        self.operator = OperatorChannel(options.operator, options.auto_answer,
                                        auto_reason=options.auto_reason)
        self.run_id: int | None = None
        self._recipe_hash = ""
        self.listeners: list[Callable[[Event], None]] = []
        """Subscribed to the run's event log as soon as its orchestrator exists, before it
        runs (the control service's event stream, ``run``'s printer): see :meth:`subscribe`."""
        self.on_started: list[Callable[[Session], None]] = []
        """Called once modules are connected and the orchestrator wired, before it runs:
        where an upper layer (the fleet publisher) adds its own listeners."""
        self.on_finished: list[Callable[[Session, RunOutcome], None]] = []
        """Called with the outcome once the run is recorded."""

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener`` with every event of the run. Subscribed before :meth:`run`, it
        is attached to the orchestrator before the run starts, so it sees the first events
        (run started, Idle -> Starting); waiting for :attr:`orchestrator` to appear and
        subscribing then misses them."""
        self.listeners.append(listener)
        if self.orchestrator is not None:
            self.orchestrator.subscribe(listener)

    # The line's parts, under the names scripts and tests have always used.
    @property
    def clock(self) -> Clock:
        return self.line.clock

    @property
    def proxies(self) -> dict[str, ModuleProxy]:
        return self.line.proxies

    @property
    def simulation(self) -> Simulation | None:
        return self.line.simulation

    @property
    def historian(self) -> Historian | None:
        return self.line.historian

    @property
    def scenario(self) -> Any:
        return self.line.scenario

    @scenario.setter
    def scenario(self, value: Any) -> None:
        self.line.scenario = value

    @classmethod
    def load(cls, recipe: str | Path, plant: str | Path | None, options: RunOptions,
             simulation_factory: SimulationFactory | None = None,
             line: Line | None = None) -> Session:
        """Validate first: raises ConfigError and nothing starts if anything is wrong."""
        vr = load_recipe(recipe, plant if line is None else line.plant,
                         dict(options.overrides))
        if options.simulate and simulation_factory is None and line is None:
            from modulecontrol.simulators import check_plant

            check_plant(vr.plant)  # what serve_plant would refuse, refused before a start
        session = cls(vr, options, simulation_factory, line)
        if options.faults is not None and line is None:
            from modulecontrol.simulators import load_scenario

            session.scenario = load_scenario(options.faults, vr.plant)
        return session

    @property
    def tick(self) -> float:
        if self.options.tick is not None:
            return self.options.tick
        return max(1.0, self.line.options.speed * self.options.poll_interval)

    async def start(self) -> None:
        """Simulators (if asked), then connect every module; raises DriverError on failure."""
        await self.line.start()

    async def run(self) -> RunOutcome:
        """The whole run: start, record, execute, shut down, report."""
        if not self._owns_line:
            return await self.execute()
        try:  # one live writer per database: a second run on it is refused here
            self.line.open_records()
        except RecordsError as exc:
            return RunOutcome(None, EXIT_INVALID, message=str(exc))
        try:
            try:
                await self.start()
            except DriverError as exc:
                await self.line.close()  # simulators that did start
                return RunOutcome(None, EXIT_CONNECTION, message=str(exc))
            return await self.execute()
        finally:
            await self.line.close_records()

    def _wire_optimize_history(self, orch: Orchestrator) -> None:
        """An ``optimize`` step continues its campaign from the records database (the
        experiments of earlier runs, or of this run before a restart)."""
        hist = self.historian
        if hist is None:
            return

        def history(name: str) -> list[ExperimentRecord]:
            hist.flush_sync()
            return recorded_experiments(hist.path, name)

        orch.interpreter.optimize_history = history

    def recipe_hash(self) -> str:
        """SHA-256 of the recipe file as the run record stores it (what a resume checks)."""
        text = _read_or_none(self.vr.file)
        return content_hash(text) if text is not None else ""

    async def execute(self, resume: ResumePoint | None = None) -> RunOutcome:
        """Run the recipe on the started line and close its record; the line stays
        connected only if the session does not own it. With ``resume``, take up that run
        where its position says (its record reopened, the gap recorded) instead of
        starting one."""
        opts = self.options
        result: RunResult | None = None
        keeper: asyncio.Task[None] | None = None
        try:
            taken_up = None
            if resume is None:
                await self._open_record()
            else:
                taken_up = await self._reopen_record(resume)
            orch = Orchestrator(self.vr, self.proxies, clock=self.clock, operator=self.operator,
                                tick=self.tick, alarms=self.line.alarms,
                                plant_alarms=self.line.plant_alarms,
                                resume=taken_up,
                                on_comm_loss=opts.on_comm_loss)  # type: ignore[arg-type]
            self.orchestrator = orch
            for listener in self.listeners:
                orch.subscribe(listener)
            self._wire_records(orch)
            self._wire_optimize_history(orch)
            for started in self.on_started:
                started(self)
            keeper = asyncio.get_running_loop().create_task(self._keep_position(orch))
            result = await orch.run()
            outcome = RunOutcome(result, _EXIT[result], self.run_id, events=orch.log.events,
                                 sim_seconds=self.clock.now(),
                                 reason="" if result is RunResult.COMPLETED else orch.end_reason)
        finally:
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            try:
                if self.orchestrator is not None and result is not RunResult.COMPLETED:
                    await self._safe_states(self.orchestrator,
                                            aborted=result is RunResult.ABORTED)
            finally:
                if self._owns_line:
                    await self._shutdown()
        await self._close_record(outcome)
        for finished in self.on_finished:
            finished(self, outcome)
        return outcome

    async def _safe_states(self, orch: Orchestrator, *, aborted: bool) -> None:
        """Leave the plant safe before the links close: every module's safe state, stage by
        stage in the plant's shutdown order (feeds first), each read back so the record
        shows where the module was left. A stopped run (a Stop, a shutdown signal) or one
        that failed gets them here; an aborted one got them from its Abort fan-out already
        and is only read back. A completed run ends as its recipe meant it to."""
        for stage in orch.stages:
            for tag in stage:
                proxy = self.proxies.get(tag)
                if proxy is None or (not proxy.type.safe_state and not any(
                        da.safe_value is not None for da in proxy.type.data_assemblies)):
                    continue
                errors: list[str] = []
                if not aborted:
                    try:
                        async with asyncio.timeout(10.0):
                            errors = await proxy.apply_safe_state()
                    except TimeoutError:
                        errors = ["no answer within 10 s"]
                try:
                    async with asyncio.timeout(10.0):
                        await proxy.refresh()
                except (DriverError, TimeoutError) as exc:
                    errors.append(f"read back: {str(exc) or 'no answer within 10 s'}")
                if not aborted or errors:
                    orch.log.emit(EventKind.SAFE_STATE, tag,
                                  "safe state applied" if not errors
                                  else f"safe state incomplete: {'; '.join(errors)}",
                                  errors=errors)

    async def _shutdown(self) -> None:
        await self.line.close()

    async def _open_record(self) -> None:
        assert self.historian is not None
        recipe_text, plant_text = _read_or_none(self.vr.file), _read_or_none(self.vr.plant.file)
        metadata: dict[str, Any] = {
            "tag_groups": {**_plot_groups(self.proxies), **_twin_groups(self.vr)},
            "plant": self.vr.plant.plant.name,
            # beside the plant file's hash (the record's plant_hash): which calibrated
            # overlays its models ran with, by path and content hash
            "calibrations": [c.record(self.vr.plant.base_dir)
                             for c in self.vr.plant.calibrations],
            "tag_notes": _tag_notes(self.proxies),
            "limits": _alarm_limits(self.vr),
            "simulated": self.line.options.simulate,
            "speed": self.line.options.speed,
            # the records are stamped with this clock: an accelerated run's times are
            # simulated, so the report says so and keeps the wall-clock start apart
            "clock": {"mode": self.clock.mode.value, "scale": self.clock.scale,
                      "wall_start_utc": _dt.datetime.now(_dt.UTC).isoformat(
                          timespec="seconds")},
        }
        metadata["mode"] = run_mode(self.options)
        if self.recipe_version is not None:
            rv = self.recipe_version
            metadata["recipe_version"] = {"id": rv.id, "state": rv.state.value,
                                          "content_hash": rv.content_hash}
        if self.vr.recipe.report is not None:
            metadata["figures"] = self.vr.recipe.report
        self.run_id = await self.historian.start_run(
            self.vr.recipe.name,
            recipe_version=self.vr.recipe.version,
            recipe_text=recipe_text,
            plant_text=plant_text,
            parameters={n: p.text() for n, p in self.vr.parameters.items()},
            metadata=metadata,
            operator=self.options.operator,
        )
        await self._record_overrides()

    async def _reopen_record(self, point: ResumePoint) -> Resume:
        """The interrupted run's record reopened with a ``run_resumed`` event that states
        the gap, and what the orchestrator needs to take the run up: its position, the time
        since it was written, the recorded history of the steady-state signals."""
        hist = self.historian
        assert hist is not None
        now = self.clock.now()
        t_pos = float(point.position.get("t", now))
        gap = max(0.0, now - t_pos)
        epoch0 = self.clock.datetime(0.0).timestamp()
        gap_to = self.clock.datetime().timestamp()
        await hist.resume_run(point.run_id, {
            "gap": gap, "gap_from": point.gap_from, "gap_to": gap_to,
            "step": str(point.position.get("step", "")), "recipe_hash": self.recipe_hash(),
            "message": f"resumed after {gap:.0f} s (simulated) without control, at step "
                       f"'{point.position.get('step', '')}'"})
        self.run_id = point.run_id
        await hist.flush()
        history: dict[str, list[tuple[float, float]]] = {}
        for ss in self.vr.recipe.steady_state:
            try:  # bounded: one day before the restart is more than any window
                rows = query_tag(hist.path, ss.signal, gap_to - 86400.0, gap_to, 100_000)
            except RecordsError:
                continue  # not a recorded tag: the detector starts an empty window
            history[ss.signal] = [(t - epoch0, v) for t, v, q in rows.points
                                  if v is not None and q >= 192]
        if self.vr.recipe.twin is None:
            return Resume(point.position, gap, history, measured_at=now)
        # the twin replays what was written, so it takes up at the run's state (not at an
        # empty line, whose predictions would raise its mismatch alarms); read in a worker
        # thread: a run's record is a query of all its samples and events
        record = await asyncio.to_thread(run_samples, hist.path, point.run_id)
        return Resume(point.position, gap, history, record=record,
                      elapsed=gap_to - record.run.t_start, measured_at=now)

    def _write_position(self, orch: Orchestrator) -> None:
        """The run's position into its record (chained like every event)."""
        hist = self.historian
        if hist is None or self.run_id is None:
            return
        hist.record_event(EventKind.RUN_POSITION, "recipe", {
            "position": orch.position(), "recipe_hash": self._recipe_hash,
            "parameters": {n: p.text() for n, p in self.vr.parameters.items()}},
            run_id=self.run_id)

    async def _keep_position(self, orch: Orchestrator) -> None:
        """Between transitions, the position every few ticks (a wait's time counted)."""
        while True:
            await self.clock.sleep(POSITION_TICKS * self.tick)
            self._write_position(orch)

    async def _record_overrides(self) -> None:
        """Every ``--set`` as an operator action and audit entry: who, old and new value.

        Why: an override changes how the batch is made; the release reviewer must see it in
        the audit trail with the value it replaced, not only in the run's parameters.
        """
        hist = self.historian
        assert hist is not None
        for name, raw in sorted(self.options.overrides.items()):
            spec = self.vr.recipe.parameters[name]
            new = self.vr.parameters[name].text()
            await asyncio.wrap_future(hist.record_operator_action(
                self.options.operator, "set parameter", name,
                old_value=_as_written(spec.default, spec.unit), new_value=new,
                reason=f"--set {name}={raw} at the start of the run (recipe default replaced)"))

    def _wire_records(self, orch: Orchestrator) -> None:
        hist = self.historian
        assert hist is not None

        def state_change(ev: Event, payload: dict[str, Any]) -> None:
            payload["state"], payload["previous"] = ev.data.get("new"), ev.data.get("old")
            hist.record_event(EventKind.STATE_CHANGE, ev.source, payload)

        def step_started(ev: Event, payload: dict[str, Any]) -> None:
            # one Gantt row per unit procedure, showing its steps in turn
            payload["step"] = ev.source
            hist.record_event(EventKind.STEP_TRANSITION, str(ev.data.get("block", "")), payload)

        def block_finished(ev: Event, payload: dict[str, Any]) -> None:
            hist.record_event(EventKind.STEP_TRANSITION, ev.source, {**payload, "step": "(done)"})

        def alarm_raised(ev: Event, payload: dict[str, Any]) -> None:
            hist.raise_alarm(ev.source, ev.message,
                             _PRIORITY.get(str(ev.data.get("priority")), 500), payload)

        def alarm_cleared(ev: Event, payload: dict[str, Any]) -> None:
            hist.clear_alarm(ev.source, payload)

        def alarm_state(ev: Event, payload: dict[str, Any]) -> None:
            record_alarm_state(hist, ev.source, payload)

        def exception_moved(ev: Event, payload: dict[str, Any]) -> None:
            # a bypass or divert override: a person's begin or end is audited (and the
            # begin signed) by the service that checked the signature; the program's ends
            # (expired, run ended, an interlock tripped) are audited here
            hist.record_event(ev.kind, ev.source, payload)
            user = str(ev.data.get("user") or "")
            on = ev.data.get("bypassed", ev.data.get("overridden"))
            if user in (AUTO, PROCESS) and on is False:
                what, on_ = (("interlock bypass", "interlock")
                             if ev.kind is EventKind.INTERLOCK_BYPASS
                             else ("divert override", "divert"))
                # the object the service audits the bypass on (``run:N/interlock:NAME``)
                target = f"run:{self.run_id}/{on_}:{ev.source}"
                hist.record_audit(user, f"{what} ended", target, old_value=ev.data,
                                  new_value=None, reason=str(ev.data.get("reason") or "ended"))

        def operator_action(ev: Event, payload: dict[str, Any]) -> None:
            via = ev.data.get("automatic")
            with contextlib.suppress(ValueError):
                if via:  # answered by the program, not by a person: never "the operator"
                    hist.record_operator_action(
                        str(ev.data.get("user") or AUTO_USER), AUTOMATIC_ANSWER, ev.source,
                        new_value=ev.data.get("answer"),
                        reason=f"prompt: {ev.message}; answered automatically ({via})")
                else:
                    hist.record_operator_action(
                        str(ev.data.get("user") or self.options.operator), "answer",
                        ev.source, new_value=ev.data.get("answer"),
                        reason=f"prompt: {ev.message}")

        def optimize_experiment(ev: Event, payload: dict[str, Any]) -> None:
            # the outcome (what a restart replays) and, audited, the set points it applied
            hist.record_event(EventKind.OPTIMIZE_EXPERIMENT, ev.source, payload)
            hist.record_operator_action(
                OPTIMIZER_USER, "optimize_setpoints", ev.source,
                new_value=ev.data.get("setpoints"), reason=ev.message)

        def optimize_best(ev: Event, payload: dict[str, Any]) -> None:
            # where the campaign leaves the line: a set-point change as audited as each
            # experiment's
            hist.record_event(EventKind.OPTIMIZE_BEST, ev.source, payload)
            hist.record_operator_action(
                OPTIMIZER_USER, "optimize_best", ev.source,
                new_value=ev.data.get("setpoints"), reason=ev.message)

        recorders: dict[EventKind, Callable[[Event, dict[str, Any]], None]] = {
            EventKind.RECIPE_STATE: state_change,
            EventKind.SERVICE_STATE: state_change,
            EventKind.STEP_STARTED: step_started,
            EventKind.BLOCK_FINISHED: block_finished,
            EventKind.ALARM_RAISED: alarm_raised,
            EventKind.ALARM_CLEARED: alarm_cleared,
            EventKind.ALARM_STATE: alarm_state,
            EventKind.INTERLOCK_BYPASS: exception_moved,
            EventKind.DIVERT_OVERRIDE: exception_moved,
            EventKind.OPERATOR_ACTION: operator_action,
            EventKind.OPTIMIZE_EXPERIMENT: optimize_experiment,
            EventKind.OPTIMIZE_BEST: optimize_best,
        }
        """Kinds recorded by their own rule; the rest are stored under their declared kind."""

        self._recipe_hash = self.recipe_hash()

        def on_event(ev: Event) -> None:
            payload = {"message": ev.message, "sim_time": ev.t, **_jsonable(ev.data)}
            record = recorders.get(ev.kind)
            try:
                if record is not None:
                    record(ev, payload)
                else:
                    hist.record_event(PAYLOADS[ev.kind].stored_as or ev.kind, ev.source,
                                      payload)
                if ev.kind in _POSITION_AT:
                    self._write_position(orch)
            except Exception as exc:  # the event log makes it listener_failed too
                hist.note_lost(records=1, error=f"event {ev.kind.value} #{ev.seq} not"
                               f" recorded: {type(exc).__name__}: {exc}")
                raise

        orch.subscribe(on_event)
        self._record_twin(orch, hist)

        if self.simulation is not None:
            def on_fault(rec: Any) -> None:
                orch.log.emit(EventKind.SIM_FAULT, rec.module,
                              f"simulated fault {rec.fault} {rec.event}",
                              fault=rec.fault, phase=rec.event, sim_time=rec.time)

            self.simulation.faults.on_record(on_fault)

    @staticmethod
    def _record_twin(orch: Orchestrator, hist: Historian) -> None:
        """The twin's predictions and mismatches as samples (``twin.ANALYZER.SIGNAL``, in the
        analyzer's unit), beside the analyzer's own, for the report and a later fit."""
        twin = orch.supervisor.twin
        if twin is None:
            return
        units = {f"twin.{twin.spec.analyzer}.{n}": u for n, u in twin.units.items()}
        for name, unit in units.items():
            hist.configure_tag(name, TagConfig(unit=unit, deadband=0.0, max_interval=600.0))
            hist.configure_tag(f"{name}.mismatch", TagConfig(unit=unit, deadband=0.0,
                                                            max_interval=600.0))

        def on_values(t: float, values: Mapping[str, float]) -> None:
            # recorded at the historian's now: the tick that computed them
            for tag, v in values.items():
                if math.isfinite(v):
                    hist.record_sample(tag, float(v))

        twin.on_values(on_values)

    async def _close_record(self, outcome: RunOutcome) -> None:
        hist = self.historian
        if hist is None:
            return
        try:
            await hist.flush()  # every sample in or counted lost before the result is judged
            if self.run_id is not None and outcome.result is not None:
                result = RecordResult(outcome.result.value)
                if hist.losses and result is RecordResult.COMPLETED:
                    result = RecordResult.COMPLETED_WITH_DATA_LOSS
                notes = [outcome.reason] if outcome.reason else []
                notes += [f"data loss: {x.describe()}" for x in hist.losses]
                await hist.end_run(self.run_id, result, "; ".join(notes))
        finally:
            await hist.flush()
            self._judge_losses(hist, outcome)
        if self.run_id is not None and self.options.report_dir is not None:
            from modulecontrol.records import report, run_figures

            out = self.options.report_dir / f"run-{self.run_id}.html"
            db, run_id = self.options.db, self.run_id

            def write() -> dict[str, Any]:
                report(db, run_id, "html", out)
                return dict(run_figures(db, run_id))

            try:
                # in a worker thread: seconds of plots and queries that, on the event loop,
                # stalled the drivers of a control service whose line stays connected
                # between runs (the station's browser test saw every OPC UA link time out
                # as a campaign ended, and the next run start on lost modules)
                async with self.clock.hold():
                    outcome.figures = await asyncio.to_thread(write)
                outcome.report = out
            except Exception as exc:  # a report problem must not hide the run's result
                _log.exception("report failed")
                outcome.message = f"report failed: {exc}"


    @staticmethod
    def _judge_losses(hist: Historian, outcome: RunOutcome) -> None:
        """A lost record is never only logged: the outcome carries it, and a completed run
        exits with its own code, so scripts and operators cannot take it for a clean one."""
        outcome.data_loss = list(hist.losses)
        if not outcome.data_loss:
            return
        if outcome.exit_code == EXIT_COMPLETED:
            outcome.exit_code = EXIT_DATA_LOSS
        lost = "; ".join(x.describe() for x in outcome.data_loss)
        outcome.message = "; ".join(m for m in (outcome.message, f"data loss: {lost}") if m)


def _plot_groups(proxies: Mapping[str, ModuleProxy]) -> dict[str, str]:
    """Which plot each recorded tag goes to: states to the Gantt chart only, on/off signals
    together, the analyzer and crystallizer on their own, channel and method numbers
    together (a product changeover is read from them); the rest by unit (the default)."""
    groups: dict[str, str] = {}
    for tag, proxy in proxies.items():
        category = proxy.type.category
        for svc in proxy.type.services:
            groups[f"{tag}.{svc.name}.StateCur"] = "-"
        for da in proxy.type.data_assemblies:
            name = f"{tag}.{da.name}"
            if da.kind == "bool":
                groups[name] = "on/off signals"
            elif da.kind != "number":
                groups[name] = "-"
            elif category == "analyzer":
                groups[name] = "analyzer signals"
            elif category == "crystallizer" and da.unit not in ("degC", "K"):
                groups[name] = "crystallizer"
            elif not da.unit:  # inlet channels, analyzer methods: integer step traces
                groups[name] = "selections"
    return groups


def _twin_groups(vr: ValidatedRecipe) -> dict[str, str]:
    """The twin's predictions on the analyzer's plot, beside what it measured (same unit,
    same axis); the mismatches on a plot of their own."""
    twin = vr.recipe.twin
    if twin is None:
        return {}
    out = {}
    for name in twin.predict:
        out[f"twin.{twin.analyzer}.{name}"] = "analyzer signals"
        out[f"twin.{twin.analyzer}.{name}.mismatch"] = "twin mismatch (reading - prediction)"
    return out


def _tag_notes(proxies: Mapping[str, ModuleProxy]) -> dict[str, str]:
    """What each recorded pressure is measured against (descriptor ``pressure_reference``),
    for the report's unit labels ("bara", "barg", "kPa, differential")."""
    return {f"{tag}.{da.name}": da.pressure_reference
            for tag, proxy in proxies.items() for da in proxy.type.data_assemblies
            if da.pressure_reference is not None}


def _alarm_limits(vr: ValidatedRecipe) -> list[dict[str, Any]]:
    """The recipe's alarm limits in the unit of their signal, for the report's trends (drawn
    as lines on the signal's axis, never rescaling it). A limit that does not resolve to a
    number in that unit is left out of the drawing; the alarm itself was checked by
    ``validate`` and is supervised all the same."""
    out: list[dict[str, Any]] = []
    for al in vr.recipe.alarms:
        info = vr.signals.get(al.signal)
        unit = info.unit if info is not None else ""
        for kind in ("high", "low"):
            raw = vr.resolve(getattr(al, kind))
            if raw is None or isinstance(raw, bool):
                continue
            try:
                value = float(raw) if isinstance(raw, int | float) else convert(str(raw), unit)
            except (UnitError, ValueError):
                continue
            if math.isfinite(value):  # the kind only where the alarm has both limits
                both = al.high is not None and al.low is not None
                out.append({"tag": al.signal, "name": f"{al.name} {kind}" if both else al.name,
                            "value": value})
    return out


def _jsonable(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = str(v)
        elif isinstance(v, str | int | float | bool) or v is None:
            out[k] = v
        elif isinstance(v, list | tuple):
            out[k] = [x if isinstance(x, str | int | float | bool) else str(x) for x in v]
        elif isinstance(v, dict):
            out[k] = {str(a): (b if isinstance(b, str | int | float | bool) else str(b))
                      for a, b in v.items()}
        else:
            out[k] = str(v)
    return out


async def run_recipe(recipe: str | Path, plant: str | Path | None = None,
                     options: RunOptions | None = None) -> RunOutcome:
    """Validate, run and record; the convenience entry point for scripts and tests."""
    session = Session.load(recipe, plant, options or RunOptions())
    return await session.run()

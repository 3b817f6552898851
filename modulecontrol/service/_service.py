"""The control service: one long-running process per line.

It holds the line (:class:`~modulecontrol.session.Line`: clock, simulators if asked, one
proxy per module, the historian recording their values) for its whole life, and runs the
queued recipe runs on it one at a time, each as a :class:`~modulecontrol.session.Session`
on that line: the same code path as ``modulecontrol run``, only the line outlives the run.
The queue and the active run are rows of the records database (``_store.py``), so they
survive the process. Everything the service and its runs emit goes to one event stream
with sequence numbers (``_stream.py``).

Every command names the user behind it; accepted commands are operator actions in the
records (with an audit entry), refused ones are audit entries too (:meth:`refused`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from modulecontrol.alarms import AlarmChange, AlarmRefused, UnknownAlarm
from modulecontrol.descriptors import PlantConfig, load_plant
from modulecontrol.drivers import DriverError
from modulecontrol.errors import ConfigError
from modulecontrol.events import Event, EventKind
from modulecontrol.mtpcore import (
    PARAM_CLASSES,
    SCA,
    WRITABLE_CLASSES,
    MtpError,
    commands_in,
    enabled_commands,
)
from modulecontrol.optimize import Campaign
from modulecontrol.orchestrator import remaining
from modulecontrol.proxy import Modes
from modulecontrol.recipe import walk_steps
from modulecontrol.records import (
    AuditTrail,
    Meaning,
    RecipeBook,
    RecipeVersion,
    RecordsError,
    Signature,
    SignatureError,
    TagConfig,
    TagFilter,
    TagHistory,
    alarm_kpis_of,
    last_event,
    last_sample_time,
    list_runs,
    query_tag,
    recipe_content_hash,
)
from modulecontrol.service._auth import LoginLimiter, granted, new_token, verify_password
from modulecontrol.service._signing import (
    DIVERT_OVERRIDE,
    INTERLOCK_BYPASS,
    OUT_OF_RANGE,
    RECIPE_RELEASE,
    RECORD_APPROVAL,
    SignaturePolicy,
    Signer,
    SignRefused,
)
from modulecontrol.service._store import (
    FINAL,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    QueuedRun,
    ServiceStore,
    TokenInfo,
)
from modulecontrol.service._stream import EventStream
from modulecontrol.session import Line, ResumePoint, RunOptions, RunOutcome, Session
from modulecontrol.statemachine import (
    Command,
    CommandRefused,
    OperationMode,
    SourceMode,
    State,
    StateChange,
)

_log = logging.getLogger(__name__)

COMMANDS = {"hold": Command.HOLD, "resume": Command.UNHOLD, "stop": Command.STOP,
            "abort": Command.ABORT}
"""The run commands of the API and the CLI, by the word the operator uses."""

_SIGNER_AUDITED = ("signature refused", "too many failed attempts", "sign as yourself")
"""Refusals the :class:`Signer` has put in the audit trail already."""
_ALARM_ACTIONS = ("ack", "shelve", "unshelve", "out-of-service", "return-to-service")
"""The alarm commands of the API and the CLI (docs/alarms.md)."""


API = "the control API"
"""How a command came, by default (``via`` of the commands): the HTTP API."""


def _over(via: str) -> str:
    return "" if via == API else f" over {via}"


class ServiceError(Exception):
    """A request the service cannot carry out; ``status`` is its HTTP status, ``detail``
    says what to do, ``problems`` are located input problems (``file:line:col: ...``)."""

    def __init__(self, status: int, title: str, detail: str,
                 problems: list[str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.problems = problems or []


@dataclass
class ServiceOptions:
    plant: Path
    simulate: bool = False
    speed: float = 1.0
    db: Path = Path("runs/modulecontrol.db")
    recipes: Path = Path("recipes")
    """Runs may be started only of recipes under this folder."""
    report_dir: Path | None = Path("runs")
    poll_interval: float = 0.1
    retain_events: int = 10_000
    token_ttl: float = 8 * 3600.0
    """Longest lifetime of a token in seconds."""
    keep_plant: bool = True
    """Simulated plant: served in its own process that outlives this one, so a restart
    (``kill -9``, a crash) reattaches to it running, rather than starting a new plant."""
    signatures: Path | None = None
    """The site's signature policy (YAML, docs/signatures.md); None: the defaults (every
    signed action of issue 21, two-person rule on recipe release)."""


class ControlService:
    """Start with :meth:`start`, close with :meth:`close`; everything else is a request."""

    def __init__(self, options: ServiceOptions) -> None:
        self.options = options
        self.stream = EventStream(options.retain_events)
        self.limiter = LoginLimiter()
        self.line: Line | None = None
        self.store: ServiceStore | None = None
        self._audit: AuditTrail | None = None
        self._active: tuple[int, Session] | None = None
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._alarm_clock: asyncio.Task[None] | None = None
        self._running: asyncio.Task[RunOutcome] | None = None
        self._to_resume: list[tuple[QueuedRun, ResumePoint]] = []
        """Runs a previous life of the service left running, taken up first."""
        self.recipes = options.recipes.resolve()
        self.policy = (SignaturePolicy.load(options.signatures) if options.signatures
                       else SignaturePolicy())
        self.book: RecipeBook | None = None
        self.signer: Signer | None = None

    # ------------------------------------------------------------------ life
    async def start(self) -> None:
        """Load and check the plant, take the records, connect every module, start the
        queue. Raises ConfigError (the plant), RecordsError (the database is in use or not
        a records database) or DriverError (a module cannot be reached)."""
        opts = self.options
        plant: PlantConfig = load_plant(opts.plant)
        if opts.simulate:
            from modulecontrol.simulators import check_plant

            check_plant(plant)
        self.line = Line(plant, self._run_options())
        self.line.watch_plant_alarms()
        self.line.open_records()
        recorded_until = last_sample_time(opts.db)
        self.store = ServiceStore(opts.db)
        self._audit = AuditTrail(opts.db, key_path=self.line.options.records_key,
                                 anchor_path=self.line.options.anchor)
        self.book = RecipeBook(opts.db, key_path=self.line.options.records_key,
                               anchor_path=self.line.options.anchor)
        self.signer = Signer(self.store, self.book, self.limiter)
        left = self.store.running()
        try:
            await self.line.start()
        except DriverError:
            await self.line.close()
            await self._close_records()
            raise
        interrupted: list[int] = []
        for queued in left:
            point, why = self._resume_point(queued, recorded_until)
            if point is None:
                self.store.set_state(queued.id, INTERRUPTED, message=why)
                interrupted.append(queued.id)
                self._publish(EventKind.RUN_ENDED.value, "service",
                              f"run {queued.id} was interrupted: {why}",
                              {"result": "interrupted"}, run=queued.id)
            else:
                self._to_resume.append((queued, point))
        if self.line.reattached:
            self._reattached(recorded_until, interrupted,
                             [q.id for q, _ in self._to_resume])
        for proxy in self.line.proxies.values():
            proxy.on_state(self._on_service_state)
        self._stream_values(self.line)
        self.line.alarm_listeners.append(self._alarm_published)
        self.line.alarm_event_listeners.append(
            lambda ev: self._publish(ev.kind.value, ev.source, ev.message,
                                     {k: _plain(v) for k, v in ev.data.items()}))
        self._worker = asyncio.get_running_loop().create_task(self._run_queue(),
                                                              name="run queue")
        self._alarm_clock = asyncio.get_running_loop().create_task(self._tick_alarms(),
                                                                   name="alarm clock")
        self._wake.set()

    def _resume_point(self, queued: QueuedRun, recorded_until: float | None
                      ) -> tuple[ResumePoint | None, str]:
        """Where a run left running can be taken up, or why it cannot: only on the plant it
        left running (reattached, not started afresh), with the very recipe file it started
        with (same SHA-256) and a position in its record."""
        line = self.line
        assert line is not None
        if not line.reattached:
            return None, ("the service stopped during it and the plant was not found "
                          "running: a run is taken up only on the plant it left running")
        if queued.record_run is None:
            return None, "the service stopped before the run opened its record"
        try:
            info = next(r for r in list_runs(self.options.db) if r.id == queued.record_run)
            session = Session.load(self.recipes / queued.recipe, None,
                                   self._run_options(queued.parameters, queued.requested_by),
                                   line=line)
        except (StopIteration, RecordsError) as exc:
            return None, f"its record {queued.record_run} cannot be read: {exc}"
        except ConfigError as exc:
            return None, ("its recipe no longer loads: "
                          + "; ".join(map(str, exc.problems)))
        if session.recipe_hash() != info.recipe_hash:
            return None, (f"the recipe file {queued.recipe} changed since the run started "
                          f"(SHA-256 {info.recipe_hash[:12]}... then, "
                          f"{session.recipe_hash()[:12]}... now): not resumed on another "
                          f"recipe")
        found = last_event(self.options.db, EventKind.RUN_POSITION.value, queued.record_run)
        if found is None:
            return None, "no position of the run was recorded"
        try:
            position = json.loads(found[1])["position"]
        except (ValueError, KeyError, TypeError) as exc:
            return None, f"its recorded position cannot be read: {exc!r}"
        return ResumePoint(queued.record_run, position, recorded_until), ""

    def _reattached(self, recorded_until: float | None, interrupted: list[int],
                    resumed: list[int]) -> None:
        """The plant was found running (a previous life of the service ended without
        stopping it: ``kill -9``, a crash) and every module was read in its current state,
        nothing written. The gap in the record is recorded as such, an event in the
        records and the stream; from here on every value is recorded again."""
        line = self.line
        assert line is not None and line.historian is not None
        now = line.clock.datetime().timestamp()
        data: dict[str, Any] = {"gap_from": recorded_until, "gap_to": now,
                                "modules": sorted(line.proxies), "interrupted": interrupted,
                                "resumed": resumed}
        gap = (f"{now - recorded_until:.0f} s (simulated) without a record"
               if recorded_until is not None else "no earlier record")
        message = (f"reattached to the running plant ({len(line.proxies)} modules, read, "
                   f"nothing written); {gap}")
        line.historian.record_event(EventKind.PLANT_REATTACHED, "service",
                                    {"message": message, **data})
        self._publish(EventKind.PLANT_REATTACHED.value, "service", message, data)

    async def close(self) -> None:
        """Stop the active run (Stop, as a terminal's second Ctrl-C does), then the line."""
        if self._active is not None:
            orch = self._active[1].orchestrator
            if orch is not None:
                orch.try_command(Command.STOP, "the control service is shutting down")
        if self._running is not None:  # the run ends, its record closes: bounded
            await asyncio.wait({self._running}, timeout=60.0)
        for task in (self._worker, self._alarm_clock):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.line is not None:
            await self.line.close()
        await self._close_records()

    async def _close_records(self) -> None:
        if self.line is not None:
            await self.line.close_records()
        if self._audit is not None:
            self._audit.close()
        if self.book is not None:
            self.book.close()
        if self.store is not None:
            self.store.close()

    def _run_options(self, parameters: dict[str, str] | None = None,
                     user: str = "operator", mode: str = "") -> RunOptions:
        o = self.options
        return RunOptions(simulate=o.simulate, speed=o.speed, db=o.db,
                          overrides=dict(parameters or {}), report_dir=o.report_dir,
                          poll_interval=o.poll_interval, operator=user,
                          keep_plant=o.simulate and o.keep_plant, mode=mode or None)

    # ------------------------------------------------------------------ the queue
    def resolve_recipe(self, name: str) -> Path:
        """A recipe named by its path under the recipes folder (``.yaml`` optional); a
        request never names a file outside it."""
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise ServiceError(422, "recipe outside the recipes folder",
                               f"'{name}': name a recipe by its path under {self.recipes}")
        path = (self.recipes / rel).resolve()
        if path.suffix not in (".yaml", ".yml"):
            path = path.with_name(path.name + ".yaml")
        if not path.is_relative_to(self.recipes) or not path.is_file():
            raise ServiceError(404, "no such recipe",
                               f"no recipe '{name}' under {self.recipes}")
        return path

    def submit(self, recipe: str, parameters: dict[str, str], user: str,
               mode: str = "") -> QueuedRun:
        """Validate the recipe against the plant with these parameters and its run mode
        (production: only an effective version), then queue it."""
        store, line = self._ready()
        path = self.resolve_recipe(recipe)
        try:
            Session.load(path, None, self._run_options(parameters, user, mode), line=line)
        except ConfigError as exc:
            raise ServiceError(422, "invalid recipe, parameters or run mode",
                               f"{len(exc.problems)} problem(s) in '{recipe}': "
                               + "; ".join(p.message for p in exc.problems),
                               [str(p) for p in exc.problems]) from None
        queued = store.enqueue(str(path.relative_to(self.recipes)), parameters, user, mode)
        self.record_action(user, "queue run", f"run {queued.id}",
                           new_value={"recipe": queued.recipe, "parameters": parameters,
                                      "mode": mode or None})
        self._publish(EventKind.RUN_QUEUED.value, "service",
                      f"run {queued.id} queued: {queued.recipe}",
                      {"run": queued.id, "recipe": queued.recipe, "user": user},
                      run=queued.id)
        self._wake.set()
        return queued

    async def _run_queue(self) -> None:
        """One run at a time, oldest first; first the runs taken up after a restart."""
        store, line = self._ready()
        while self._to_resume:
            left, point = self._to_resume.pop(0)
            await self._execute(left, store, line, point)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (queued := store.next_queued()) is not None:
                await self._execute(queued, store, line)

    async def _execute(self, queued: QueuedRun, store: ServiceStore, line: Line,
                       resume: ResumePoint | None = None) -> None:
        try:
            session = Session.load(self.recipes / queued.recipe, None,
                                   self._run_options(queued.parameters, queued.requested_by,
                                                     queued.mode),
                                   line=line)
        except ConfigError as exc:  # changed on disk (or no longer effective) since queued
            store.set_state(queued.id, "failed", message="; ".join(map(str, exc.problems)))
            return
        session.listeners.append(self._forward(queued.id))
        # the record's run, in the queue as soon as it is open: what a restart takes up
        session.on_started.append(
            lambda s: store.set_state(queued.id, RUNNING, record_run=s.run_id))
        self._active = (queued.id, session)
        if resume is None:
            store.set_state(queued.id, RUNNING)
        try:
            if resume is None:
                await self._reset_at_rest(line, queued.requested_by)
            else:
                gap = line.clock.now() - float(resume.position.get("t", line.clock.now()))
                step = resume.position.get("step", "")
                self._publish(EventKind.RUN_RESUMED.value, "service",
                              f"run {queued.id} resumed at step '{step}' after {gap:.0f} s "
                              f"(simulated) without control",
                              {"gap": gap, "step": step, "gap_from": resume.gap_from},
                              run=queued.id)
            self._running = asyncio.get_running_loop().create_task(session.execute(resume))
            outcome = await self._running
        except Exception as exc:  # the run failed, not the service: recorded and said
            _log.exception("run %d failed", queued.id)
            store.set_state(queued.id, "failed", record_run=session.run_id,
                            message=f"{type(exc).__name__}: {exc}")
            self._publish(EventKind.RUN_ENDED.value, "service", f"run {queued.id} failed: "
                          f"{exc}", {"result": "failed"}, run=queued.id)
        else:
            result = outcome.result.value if outcome.result is not None else "failed"
            store.set_state(queued.id, result, record_run=outcome.run_id,
                            message=outcome.message)
            # said once the queue's record is final: a client that sees run_ended and
            # reads the run finds its result
            self._publish(EventKind.RUN_ENDED.value, "recipe", f"recipe {result}",
                          {"result": result}, run=queued.id)
        finally:
            self._active = None
            self._running = None

    async def _reset_at_rest(self, line: Line, user: str) -> None:
        """Services that a previous run left Stopped or Completed are reset to Idle before
        the next run, as ``modulecontrol run`` finds them in a fresh process; a reset
        changes no output. Aborted services are left alone: an abort is looked at first,
        and the run's first step on such a service holds and says why."""
        for tag, proxy in line.proxies.items():
            for name, svc in proxy.services.items():
                if svc.state in (State.STOPPED, State.COMPLETED):
                    await svc.command(Command.RESET)
                    await svc.wait_for(State.IDLE, timeout=10.0)
                    self.record_action(user, "reset before the run", f"{tag}.{name}",
                                       audit=False)

    # ------------------------------------------------------------------ commands
    def command(self, run_id: int, action: str, user: str) -> QueuedRun:
        """hold, resume, stop or abort the run; stop or abort of a queued run cancels it."""
        store, _ = self._ready()
        queued = self._run_or_404(run_id)
        cmd = COMMANDS.get(action)
        if cmd is None:
            raise ServiceError(404, "no such command",
                               f"'{action}': use one of {', '.join(COMMANDS)}")
        if queued.state == QUEUED and cmd in (Command.STOP, Command.ABORT):
            store.set_state(run_id, "cancelled", message=f"{action} by {user} while queued")
            self.record_action(user, f"cancel run ({action})", f"run {run_id}")
            self._publish(EventKind.RUN_CANCELLED.value, "service", f"run {run_id} cancelled",
                          {"run": run_id, "user": user}, run=run_id)
            return self._run_or_404(run_id)
        orch = self._orchestrator(queued)
        try:
            orch.command(cmd, f"{user} over the API")
        except CommandRefused as exc:
            raise ServiceError(409, "command refused",
                               f"{action}: {exc} (recipe is {orch.machine.state.label})"
                               ) from None
        self.record_action(user, action, f"run {run_id}")
        return self._run_or_404(run_id)

    def acknowledge(self, run_id: int, alarm: str, user: str) -> None:
        """Acknowledge an alarm of the running run (the alarm's life cycle records it)."""
        self._orchestrator(self._run_or_404(run_id))
        self._alarm_do(alarm, "ack", user)
        # every client sees it (the historian's own event is in the record only)
        self._publish(EventKind.ALARM_ACKED.value, alarm, f"{alarm} acknowledged by {user}",
                      {"user": user}, run=run_id)

    # ------------------------------------------------------------------ alarms
    def alarms(self) -> dict[str, Any]:
        """Every alarm of the line with its life-cycle state (docs/alarms.md)."""
        line = self._ready()[1]
        now = line.clock.now()
        return {"t_now": now, "clock_start": line.clock.start.timestamp(),
                "alarms": [{**a, "value": _plain(a["value"])} for a in line.alarms.view(now)],
                "banner": line.alarms.unacknowledged(),
                "philosophy": line.alarms.philosophy.model_dump(mode="json")}

    async def alarm_command(self, name: str, action: str, user: str, role: str,
                            reason: str = "", duration: str | float | None = None
                            ) -> dict[str, Any]:
        """ack, shelve (reason, duration), unshelve, out-of-service (reason; engineer or
        admin), return-to-service. Accepted ones are recorded by the life cycle with their
        audit entry; refused ones are audit entries too."""
        from modulecontrol.alarms import seconds

        try:
            if action not in _ALARM_ACTIONS:
                raise ServiceError(404, "no such alarm command",
                                   f"'{action}': use one of {', '.join(_ALARM_ACTIONS)}")
            secs = 0.0
            if action == "shelve":
                try:
                    secs = seconds(duration if duration is not None else "")
                except ValueError as exc:
                    raise ServiceError(422, "invalid shelve duration", str(exc)) from None
            self._alarm_do(name, action, user, role, reason, secs)
        except ServiceError as exc:
            await self.refused(user, f"alarm {action}", name, exc.detail)
            raise
        return next(a for a in self.alarms()["alarms"] if a["name"] == name)

    def _alarm_do(self, name: str, action: str, user: str, role: str = "",
                  reason: str = "", secs: float = 0.0) -> AlarmChange:
        line = self._ready()[1]
        board, now = line.alarms, line.clock.now()
        try:
            if action == "ack":
                return board.ack(name, user, now)
            if action == "shelve":
                return board.shelve(name, user, reason, secs, now)
            if action == "unshelve":
                return board.unshelve(name, user, now, reason)
            if action == "out-of-service":
                return board.remove(name, user, role, reason, now)
            return board.restore(name, user, role, reason, now)
        except UnknownAlarm as exc:
            raise ServiceError(404, "no such alarm", str(exc.args[0])) from None
        except AlarmRefused as exc:
            raise ServiceError(409, "alarm command refused", f"{name}: {exc}") from None
        except PermissionError as exc:
            raise ServiceError(403, "not allowed", str(exc)) from None

    def alarm_kpis(self, run: int | None, day: str | None) -> dict[str, Any]:
        """KPIs of a run (of the queue) or a UTC day (``YYYY-MM-DD``) from the records.
        Blocking: call it in a worker thread."""
        line = self._ready()[1]
        if (run is None) == (day is None):
            raise ServiceError(422, "run or day", "give one of run=N or day=YYYY-MM-DD")
        record_run = None
        if run is not None:
            queued = self._run_or_404(run)
            record_run = queued.record_run
            if record_run is None and self._active is not None and self._active[0] == run:
                record_run = self._active[1].run_id
            if record_run is None:
                raise ServiceError(409, "no record yet", f"run {run} has not started")
        try:
            kpis = alarm_kpis_of(self.options.db, run=record_run, day=day,
                                 philosophy=line.alarms.philosophy)
        except ValueError as exc:
            raise ServiceError(422, "invalid KPI query", str(exc)) from None
        except RecordsError as exc:
            raise ServiceError(404, "no such run", str(exc)) from None
        return {"run": run, "day": day, **kpis.as_dict()}

    def _alarm_published(self, change: AlarmChange) -> None:
        why = f": {change.reason}" if change.reason else ""
        self._publish(EventKind.ALARM_STATE.value, change.name,
                      f"{change.previous.value} -> {change.state.value} "
                      f"({change.trigger.value} by {change.user}){why}", change.data())

    async def _tick_alarms(self) -> None:
        """Between runs (during a run the supervision tick does it), on the line's clock:
        the plant file's alarms are evaluated, shelves run out, standing alarms re-alarm."""
        line = self._ready()[1]
        period = max(1.0, line.options.speed * self.options.poll_interval)
        while True:
            if self._active is None:
                try:
                    line.evaluate_plant_alarms()
                    line.alarms.tick(line.clock.now())
                except Exception as exc:  # recorded and streamed, never only logged
                    _log.exception("alarm clock tick failed")
                    error = f"alarm clock: {type(exc).__name__}: {exc}"
                    assert line.historian is not None
                    line.historian.record_event(EventKind.SUPERVISION_FAILED, "alarms",
                                                {"message": error, "error": error})
                    self._publish(EventKind.SUPERVISION_FAILED.value, "alarms", error,
                                  {"error": error})
            await line.clock.sleep(period)

    def answer(self, run_id: int, prompt: int, choice: str, user: str) -> None:
        queued = self._run_or_404(run_id)
        self._orchestrator(queued)
        assert self._active is not None
        try:
            self._active[1].operator.answer(prompt, choice)
        except KeyError:
            raise ServiceError(404, "no such prompt",
                               f"run {run_id} has no open prompt {prompt}: GET "
                               f"/api/v1/runs/{run_id} lists the open ones") from None
        except ValueError as exc:
            raise ServiceError(422, "not a choice of the prompt", str(exc)) from None
        self.record_action(user, "answer prompt", f"run {run_id} prompt {prompt}",
                           new_value=choice)

    def _orchestrator(self, queued: QueuedRun) -> Any:
        if self._active is None or self._active[0] != queued.id:
            raise ServiceError(409, "run not active",
                               f"run {queued.id} is {queued.state}, not running: only the "
                               f"running run takes commands")
        orch = self._active[1].orchestrator
        if orch is None:
            raise ServiceError(409, "run starting",
                               f"run {queued.id} is still starting: try again in a moment")
        return orch

    def _run_or_404(self, run_id: int) -> QueuedRun:
        queued = self._ready()[0].run(run_id)
        if queued is None:
            raise ServiceError(404, "no such run", f"no run {run_id}: GET /api/v1/runs "
                               "lists them")
        return queued

    # ------------------------------------------------------------------ records of who did what
    def record_action(self, user: str, action: str, target: str, *, new_value: Any = None,
                      audit: bool = True, via: str = API) -> None:
        """An accepted write: an operator action with its audit entry, one commit."""
        line = self._ready()[1]
        assert line.historian is not None
        line.historian.record_operator_action(user, action, target, new_value=new_value,
                                              reason=f"{action} over {via}",
                                              audit=audit)

    async def refused(self, user: str, action: str, target: str, why: str) -> None:
        """A refused request, in the audit trail: who tried what, and why it was refused."""
        assert self._audit is not None
        await self._audit.append_async(user or "(anonymous)", f"refused: {action}", target,
                                       reason=why)

    # ------------------------------------------------------------------ users
    async def login(self, name: str, password: str, scopes: frozenset[str] | None,
                    ttl: float | None) -> tuple[str, TokenInfo]:
        store = self._ready()[0]
        wait = self.limiter.blocked_for(name)
        if wait > 0:
            await self.refused(name, "login", "token", "too many failed logins")
            raise ServiceError(429, "too many failed logins",
                               f"too many failed logins for '{name}': try again in "
                               f"{wait:.0f} s")
        user = store.user(name)
        ok = await asyncio.to_thread(verify_password, user.pw_hash if user else None, password)
        if user is None or not ok:
            self.limiter.failed(name)
            await self.refused(name, "login", "token", "wrong user name or password")
            raise ServiceError(401, "login failed", "wrong user name or password")
        self.limiter.succeeded(name)
        life = min(self.options.token_ttl, ttl or self.options.token_ttl)
        token = new_token()
        info = TokenInfo(user.name, user.role, granted(user.role, scopes), time.time() + life)
        store.add_token(token, user.name, info.scopes, info.expires)
        return token, info

    def identify(self, token: str) -> TokenInfo | None:
        return self._ready()[0].token(token)

    # ------------------------------------------------------------------ signatures
    def _book(self) -> tuple[RecipeBook, Signer]:
        self._ready()
        assert self.book is not None and self.signer is not None
        return self.book, self.signer

    def _authenticate(self, username: str, password: str, action: str, obj: str,
                      session_user: str) -> Any:
        """Re-authentication at the moment of signing (blocking: argon2)."""
        try:
            return self._book()[1].authenticate(username, password, action=action, obj=obj,
                                                session_user=session_user)
        except SignRefused as exc:
            raise ServiceError(exc.status, exc.title, exc.detail) from None

    def recipes_view(self) -> dict[str, Any]:
        """Recipe versions with their signatures, and the recipe files under the recipes
        folder with the life-cycle state of their content (what production mode runs)."""
        book = self._book()[0]
        versions = [_version_json(v, book.signatures(v.object)) for v in book.versions()]
        files = []
        for path in sorted(self.recipes.rglob("*.y*ml")):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if "kind: Recipe" not in text:
                continue
            rv = book.by_hash(recipe_content_hash(text))
            effective = [v for v in book.versions(rv.name)
                         if v.state.value == "effective"] if rv else []
            files.append({"recipe": str(path.relative_to(self.recipes)),
                          "content_hash": recipe_content_hash(text),
                          "version": None if rv is None else rv.id,
                          "state": None if rv is None else rv.state.value,
                          "runs_in_production": any(v.content_hash == rv.content_hash
                                                    for v in effective) if rv else False})
        return {"versions": versions, "files": files}

    def register_recipe(self, recipe: str, user: str) -> dict[str, Any]:
        """A recipe file under the recipes folder, validated against the plant, stored as a
        new draft version (its canonical text and content hash)."""
        from modulecontrol.recipe import load_recipe

        line = self._ready()[1]
        path = self.resolve_recipe(recipe)
        try:
            vr = load_recipe(path, line.plant)
        except ConfigError as exc:
            raise ServiceError(422, "invalid recipe",
                               f"{len(exc.problems)} problem(s) in '{recipe}'",
                               [str(p) for p in exc.problems]) from None
        try:
            rv = self._book()[0].register(vr.recipe.name, vr.recipe.version,
                                          path.read_text(encoding="utf-8"), user)
        except SignatureError as exc:
            raise ServiceError(409, "version exists", str(exc)) from None
        return _version_json(rv, [])

    def recipe_step(self, version: int, action: str, session_user: str, username: str,
                    password: str, reason: str) -> dict[str, Any]:
        """One signed life-cycle step of a recipe version (blocking: call in a thread)."""
        book = self._book()[0]
        try:
            book.version(version)
        except RecordsError as exc:
            raise ServiceError(404, "no such recipe version", str(exc)) from None
        obj = f"recipe_version:{version}"
        user = self._authenticate(username, password, f"recipe {action}", obj, session_user)
        try:
            rv, _sig = book.transition(version, action, user=user.name,
                                       printed_name=user.printed_name, reason=reason,
                                       two_person=RECIPE_RELEASE in self.policy.two_person)
        except SignatureError as exc:
            book.record_refusal(user.name, f"recipe {action}", obj, str(exc))
            raise ServiceError(409, "life-cycle step refused", str(exc)) from None
        return _version_json(rv, book.signatures(rv.object))

    def approve_run(self, run_id: int, session_user: str, username: str, password: str,
                    reason: str, meaning: str = "approved") -> dict[str, Any]:
        """Sign a finished run's batch record (blocking: call in a thread)."""
        queued = self._run_or_404(run_id)
        if queued.state not in FINAL or queued.record_run is None:
            raise ServiceError(409, "run not finished",
                               f"run {run_id} is {queued.state}: its batch record is signed "
                               f"when it has ended")
        try:
            sense = Meaning(meaning)
        except ValueError:
            raise ServiceError(422, "no such meaning",
                               f"'{meaning}': one of {', '.join(m.value for m in Meaning)}"
                               ) from None
        obj = f"run:{queued.record_run}"
        user = self._authenticate(username, password, RECORD_APPROVAL, obj, session_user)
        try:
            sig = self._book()[0].sign_run(queued.record_run, user=user.name,
                                           printed_name=user.printed_name, meaning=sense,
                                           reason=reason)
        except SignatureError as exc:
            raise ServiceError(409, "signature refused", str(exc)) from None
        # the report written at the run's end has no signature yet: the next request for it
        # writes it again from the records, with the signature (not here: a report with its
        # figures takes seconds, and the signature is recorded already)
        folder = self.options.report_dir or self.options.db.parent
        (folder / f"run-{queued.record_run}.html").unlink(missing_ok=True)
        return _signature_json(sig)

    def run_signatures(self, run_id: int) -> list[dict[str, Any]]:
        queued = self._run_or_404(run_id)
        if queued.record_run is None:
            return []
        return [_signature_json(s)
                for s in self._book()[0].signatures(f"run:{queued.record_run}")]

    # ------------------------------------------------------------------ reading
    def plant(self) -> dict[str, Any]:
        """Modules with their services' states and their values with unit and quality."""
        line = self._ready()[1]
        modules = []
        for tag, proxy in line.proxies.items():
            values = {}
            for da in proxy.type.data_assemblies:
                tv = proxy.values.get(da.name)
                kept = proxy.parameters.get(da.name) if tv is None else None
                values[da.name] = {
                    "value": _plain(tv.value) if tv is not None else _plain(kept),
                    "unit": da.unit,
                    # a parameter the proxy keeps (not bound on the device) is known exactly
                    "quality": (tv.quality.name.lower() if tv is not None
                                else "good" if kept is not None else "unknown"),
                    "t": tv.timestamp if tv is not None else None,
                }
            modules.append({
                "tag": tag, "type": proxy.type.name, "faulted": proxy.faulted,
                "fault": proxy.fault,
                "services": {n: s.state.label for n, s in proxy.services.items()},
                "command_en": {n: [c.label for c in sorted(self._enabled(proxy, n))]
                               for n in proxy.services},
                "modes": self._modes(proxy),
                "values": values,
            })
        active = self._active[0] if self._active else None
        return {"plant": line.plant.plant.name, "simulated": self.options.simulate,
                "speed": self.options.speed, "active_run": active, "modules": modules,
                # the twin's overlays the simulated models run with (path, hash, what)
                "calibrations": [c.record(line.plant.base_dir) for c in line.plant.calibrations],
                "events_head": self.stream.head, "stream": self.stream.epoch,
                "clock_start": line.clock.start.timestamp(), "clock_now": line.clock.now()}

    def run_view(self, queued: QueuedRun) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": queued.id, "recipe": queued.recipe, "parameters": queued.parameters,
            "requested_by": queued.requested_by, "t_requested": queued.t_requested,
            "state": queued.state, "record_run": queued.record_run,
            "t_started": queued.t_started, "t_ended": queued.t_ended,
            "message": queued.message, "final": queued.state in FINAL,
            "mode": queued.mode or ("simulation" if self.options.simulate else "development"),
        }
        if self._active is not None and self._active[0] == queued.id:
            session = self._active[1]
            out["record_run"] = session.run_id
            orch = session.orchestrator
            if orch is not None:
                out["recipe_state"] = orch.machine.state.label
                out["step"] = orch.progress.step
                out["held_by"] = orch.held_by()
                out["awaits_operator"] = orch.awaits_operator()
                pr = orch.progress
                rest = remaining(session.vr, pr)
                now = self._ready()[1].clock.now()
                out["progress"] = {"steps_done": pr.steps_done, "steps_total": pr.steps_total,
                                   "step_elapsed": pr.step_elapsed,
                                   "step_duration": pr.step_duration,
                                   # line time: the run's own, not the wall clock's
                                   "elapsed": (None if pr.started is None
                                               else now - pr.started),
                                   # planned time still to run, at least: the steps in
                                   # remaining_unknown add a length the recipe does not say
                                   "remaining": rest.known,
                                   "remaining_unknown": rest.unknown}
            out["plan"] = [{"block": b.name,
                            "steps": [getattr(st, "name", None) or "" for st in b.steps],
                            # the named steps nested in each (a repeat's, a parallel's)
                            "inner": [[n for _, x in list(walk_steps([st]))[1:]
                                       if (n := getattr(x, "name", None))]
                                      for st in b.steps]}
                           for b in session.vr.recipe.procedure]
            out["t_now"] = self._ready()[1].clock.now()
            recipe = session.vr.recipe
            # every parameter of this run with its value (defaults and overrides), and what
            # the recipe supervises, so a station shows them before their first event
            out["parameter_values"] = {n: p.text() for n, p in session.vr.parameters.items()}
            out["steady_states"] = [s.name for s in recipe.steady_state]
            out["divert"] = None if recipe.divert is None else recipe.divert.valve
            if orch is not None:  # interlocks (tripped, bypassed) and the divert override
                out.update(orch.supervisor.exceptions())
                if orch.campaign is not None:
                    out["optimize"] = _campaign_json(orch.campaign)
            out["prompts"] = [{"id": p.id, "source": p.source, "message": p.message,
                               "choices": p.choices}
                              for p in session.operator.pending.values()]
        return out

    def runs(self) -> list[QueuedRun]:
        return self._ready()[0].runs()

    def run(self, run_id: int) -> QueuedRun:
        return self._run_or_404(run_id)

    def history(self, tag: str, start: float, end: float, max_points: int) -> TagHistory:
        try:
            return query_tag(self.options.db, tag, start, end, max_points)
        except RecordsError as exc:
            raise ServiceError(404, "no such tag", str(exc)) from None
        except ValueError as exc:
            raise ServiceError(422, "invalid query", str(exc)) from None

    # ------------------------------------------------------------------ operator mode
    def topology(self) -> dict[str, Any]:
        """The plant as the descriptors say it: modules with their category, ports,
        services (procedures and their parameters) and data assemblies (unit, limits,
        whether an operator may set it), and the flow connections. A station generates its
        diagram and faceplates from this, with no per-module code."""
        line = self._ready()[1]
        modules = []
        for tag, proxy in line.proxies.items():
            mt = proxy.type
            modules.append({
                "tag": tag, "type": mt.name, "category": mt.category,
                "description": line.plant.instance(tag).description or mt.description,
                "ports": [{"name": p.name, "direction": p.direction} for p in mt.ports],
                "services": [{
                    "name": svc.name, "description": svc.description,
                    "config_parameters": list(svc.config_parameters),
                    "procedures": [{"name": pr.name, "id": pr.id, "default": pr.default,
                                    "parameters": svc.parameters(pr)}
                                   for pr in svc.procedures],
                } for svc in mt.services],
                "assemblies": [{
                    "name": da.name, "class": str(da.class_), "description": da.description,
                    "unit": da.unit, "min": _plain(da.min), "max": _plain(da.max),
                    "kind": da.kind, "settable": self._settable(proxy, da.name),
                    "parameter": da.class_ in PARAM_CLASSES,
                } for da in mt.data_assemblies],
            })
        connections = [{"from": c.from_, "to": c.to} for c in line.plant.plant.connections]
        return {"plant": line.plant.plant.name, "modules": modules, "connections": connections}

    @staticmethod
    def _settable(proxy: Any, assembly: str) -> bool:
        da = proxy.type.assembly(assembly)
        return da.class_ in WRITABLE_CLASSES

    def _not_while_running(self, what: str) -> None:
        """Module commands and set points in operator mode are taken between runs only:
        while a recipe runs, the orchestrator owns the services (its supervision, holds and
        divert would fight a hand on the same service)."""
        if self._active is not None:
            raise ServiceError(409, "a run owns the line",
                               f"{what}: run {self._active[0]} is active and commands the "
                               f"modules; stop it (or wait for its end) to operate modules "
                               f"by hand")

    def _proxy_or_404(self, tag: str) -> Any:
        line = self._ready()[1]
        proxy = line.proxies.get(tag)
        if proxy is None:
            raise ServiceError(404, "no such module",
                               f"no module '{tag}' (modules: {', '.join(line.proxies)})")
        return proxy

    async def module_command(self, tag: str, service: str, action: str,
                             procedure: str | None, parameters: dict[str, str],
                             user: str, *, via: str = API) -> dict[str, Any]:
        """A service command in operator mode: only what CommandEn enables in the service's
        present state, parameters within their limits; accepted ones are operator actions
        with their audit entry, refused ones are audit entries too. ``via`` names the way
        the command came (the API, Sparkplug), in the records."""
        target = f"{tag}.{service}"
        try:
            proxy = self._proxy_or_404(tag)
            svc = proxy.services.get(service)
            if svc is None:
                raise ServiceError(404, "no such service",
                                   f"{tag} has no service '{service}' (services: "
                                   f"{', '.join(proxy.services) or 'none'})")
            try:
                cmd = Command.from_label(action)
            except ValueError as exc:
                raise ServiceError(404, "no such command", str(exc)) from None
            self._not_while_running(f"{action} {target}")
            enabled = self._enabled(proxy, service)
            if cmd not in enabled:
                raise ServiceError(409, "command not enabled",
                                   f"{action} {target}: not enabled in {svc.state.label} "
                                   f"(enabled: {', '.join(c.label for c in enabled) or 'none'})")
            try:
                await svc.command(cmd, procedure=procedure or None,
                                  parameters=dict(parameters) or None)
            except (ValueError, KeyError) as exc:
                raise ServiceError(422, "invalid parameters",
                                   f"{action} {target}: {exc}") from None
        except ServiceError as exc:
            await self.refused(user, f"{action} {target}{_over(via)}", target, exc.detail)
            raise
        self.record_action(user, f"{cmd.label} in operator mode", target,
                           new_value={"procedure": procedure, "parameters": parameters},
                           via=via)
        return {"module": tag, "service": service, "state": svc.state.label}

    async def set_value(self, tag: str, assembly: str, value: str, user: str,
                        signature: tuple[str, str, str] | None = None, *,
                        via: str = API) -> dict[str, Any]:
        """A set point or parameter in operator mode, converted to the assembly's unit and
        refused outside its limits (the same check a recipe's parameters pass). A value
        outside the site's normal range (:class:`SignaturePolicy`) needs ``signature``
        (user name, password, reason) when the site declares it a signed action: checked
        before the write, and the audit entry of the change is signed."""
        target = f"{tag}.{assembly}"
        signer = None
        try:
            proxy = self._proxy_or_404(tag)
            names = [d.name for d in proxy.type.data_assemblies]
            if assembly not in names:
                raise ServiceError(404, "no such data assembly",
                                   f"{tag} has no data assembly '{assembly}' "
                                   f"(assemblies: {', '.join(names)})")
            if not self._settable(proxy, assembly):
                raise ServiceError(409, "not settable",
                                   f"{target} is measured, not set (set a parameter or set "
                                   f"point)")
            self._not_while_running(f"set {target}")
            try:
                wanted = proxy.type.assembly(assembly).coerce(value)
            except ValueError as exc:
                raise ServiceError(422, "outside limits", f"{target}: {exc}") from None
            if (isinstance(wanted, int | float) and self.policy.requires(OUT_OF_RANGE)
                    and self.policy.outside_normal(target, float(wanted))):
                lo, hi = self.policy.normal_ranges[target]
                if signature is None:
                    raise ServiceError(403, "signature required",
                                       f"{target} = {value} is outside its normal range "
                                       f"{lo:g}..{hi:g}: a signed change (user name, password "
                                       f"and reason)")
                signer = await asyncio.to_thread(self._authenticate, signature[0],
                                                 signature[1], OUT_OF_RANGE, target, user)
            try:
                coerced = await proxy.set(assembly, value)
            except ValueError as exc:
                raise ServiceError(422, "outside limits", f"{target}: {exc}") from None
        except ServiceError as exc:
            if exc.title not in _SIGNER_AUDITED:
                await self.refused(user, f"set {target}{_over(via)}", target, exc.detail)
            raise
        if signer is not None and signature is not None:
            await self._signed_change(signer, target, value, signature[2])
        else:
            self.record_action(user, "set in operator mode", target, new_value=value,
                               via=via)
        return {"module": tag, "assembly": assembly, "value": _plain(coerced),
                "unit": proxy.type.assembly(assembly).unit}

    async def _signed_change(self, signer: Any, target: str, value: str, reason: str) -> None:
        """A change outside its normal range: the operator action, its audit entry, and a
        signature on exactly that entry (``audit:SEQ``)."""
        await self._signed_action(signer, "set outside normal range", target, value,
                                  reason or "signed change", OUT_OF_RANGE)

    async def _signed_action(self, signer: Any, action: str, target: str, value: Any,
                             reason: str, signed: str) -> None:
        """A signed action: the operator action, its audit entry, and a signature
        (meaning *responsible for*) on exactly that entry (``audit:SEQ``), so the signature
        covers who did what to which object with which value and why."""
        line = self._ready()[1]
        assert line.historian is not None and self._audit is not None
        await asyncio.wrap_future(line.historian.record_operator_action(
            signer.name, action, target, new_value=value, reason=reason, audit=False))
        entry = await self._audit.append_async(signer.name, action, target, new_value=value,
                                               reason=reason)
        await asyncio.to_thread(self._book()[0].sign, f"audit:{entry.seq}", user=signer.name,
                                printed_name=signer.printed_name,
                                meaning=Meaning.RESPONSIBLE, action=signed, reason=reason)

    # ------------------------------------------------------------------ bypass, override
    async def _exception(self, run_id: int, what: str, signed: str, duration: str | float,
                         longest: float, user: str,
                         signature: tuple[str, str, str] | None) -> tuple[Any, float, Any]:
        """The checks a bypass and an override share: the run is running, the duration is a
        time within the site's maximum, and (when the site declares the action signed) the
        signer re-authenticates. Returns the supervisor, the seconds and the signer (None
        when the action is not signed here)."""
        from modulecontrol.alarms import seconds

        orch = self._orchestrator(self._run_or_404(run_id))
        try:
            secs = seconds(duration)
        except ValueError as exc:
            raise ServiceError(422, "invalid duration", f"{what}: {exc}") from None
        if not 0 < secs <= longest:
            raise ServiceError(422, "invalid duration",
                               f"{what}: {secs:g} s is not within 0 s .. {longest:g} s "
                               f"(the site's maximum, docs/signatures.md)")
        signer = None
        if self.policy.requires(signed):
            if signature is None:
                raise ServiceError(403, "signature required",
                                   f"{what}: a signed action (user name, password and reason)")
            signer = await asyncio.to_thread(self._authenticate, signature[0], signature[1],
                                             signed, what, user)
        return orch.supervisor, secs, signer

    def _exception_target(self, run_id: int, obj: str) -> str:
        """The audit object of a bypass or override: the record's run and what it is on,
        so the run's report finds its signatures."""
        if self._active is None or self._active[0] != run_id:  # ended while signing
            raise ServiceError(409, "run not active",
                               f"run {run_id} ended: nothing to bypass or override")
        return f"run:{self._active[1].run_id}/{obj}"

    async def bypass_interlock(self, run_id: int, name: str, duration: str | float,
                               user: str, role: str,
                               signature: tuple[str, str, str] | None) -> dict[str, Any]:
        """Bypass interlock ``name`` of the running run for ``duration`` (line time, at most
        the site's ``max_bypass``), engineer or admin only, signed when the site declares
        it (by default). The supervisor skips the action while bypassed, with an
        ``interlock_bypassed`` event each time; the bypass ends by itself."""
        what = f"bypass interlock {name} of run {run_id}"
        try:
            if role not in ("engineer", "admin"):
                raise ServiceError(403, "not allowed",
                                   f"{user} ({role}) may not bypass an interlock: engineer or "
                                   f"admin")
            sup, secs, signer = await self._exception(run_id, what, INTERLOCK_BYPASS, duration,
                                                      self.policy.max_bypass, user, signature)
            try:
                sup.interlock_named(name)
            except KeyError as exc:
                raise ServiceError(404, "no such interlock", str(exc.args[0])) from None
        except ServiceError as exc:
            if exc.title not in _SIGNER_AUDITED:
                await self.refused(user, "interlock bypass", f"run {run_id} interlock {name}",
                                   exc.detail)
            raise
        target = self._exception_target(run_id, f"interlock:{name}")
        reason = signature[2] if signature is not None else "interlock bypass"
        value = {"bypass_s": secs}
        if signer is not None:
            await self._signed_action(signer, "interlock bypass", target, value, reason,
                                      INTERLOCK_BYPASS)
        else:
            self.record_action(user, "interlock bypass", target, new_value=value)
        bypass = sup.bypass(name, signer.name if signer is not None else user, reason, secs)
        return {"run": run_id, "interlock": name, "bypass": bypass.data()}

    async def unbypass_interlock(self, run_id: int, name: str, user: str) -> dict[str, Any]:
        """End a bypass now (not signed: it gives the interlock back its action)."""
        try:
            sup = self._orchestrator(self._run_or_404(run_id)).supervisor
            try:
                sup.unbypass(name, user)
            except KeyError as exc:
                raise ServiceError(404, "no such interlock", str(exc.args[0])) from None
            except ValueError as exc:
                raise ServiceError(409, "not bypassed", str(exc)) from None
        except ServiceError as exc:
            await self.refused(user, "interlock unbypass", f"run {run_id} interlock {name}",
                               exc.detail)
            raise
        self.record_action(user, "interlock unbypass",
                           self._exception_target(run_id, f"interlock:{name}"))
        return {"run": run_id, "interlock": name, "bypass": None}

    async def override_divert(self, run_id: int, position: str, duration: str | float,
                              user: str, signature: tuple[str, str, str] | None
                              ) -> dict[str, Any]:
        """Hold the divert valve at ``product`` or ``waste`` for ``duration`` (line time, at
        most the site's ``max_override``), signed when the site declares it (by default);
        refused without divert, and to product while an interlock is tripped."""
        what = f"divert override of run {run_id}"
        try:
            if position not in ("product", "waste"):
                raise ServiceError(422, "no such position",
                                   f"'{position}': product or waste")
            sup, secs, signer = await self._exception(run_id, what, DIVERT_OVERRIDE, duration,
                                                      self.policy.max_override, user,
                                                      signature)
            if sup.divert is None:
                raise ServiceError(409, "no divert",
                                   f"run {run_id}'s recipe has no divert: nothing to override")
            if position == "product" and (tripped := sup.tripped()):
                raise ServiceError(409, "interlock tripped",
                                   f"interlock {', '.join(tripped)} is tripped: the stream "
                                   f"goes to waste until it clears (safe state first)")
        except ServiceError as exc:
            if exc.title not in _SIGNER_AUDITED:
                await self.refused(user, "divert override", f"run {run_id} divert", exc.detail)
            raise
        target = self._exception_target(run_id, f"divert:{sup.divert.valve}")
        reason = signature[2] if signature is not None else "divert override"
        value = {"position": position, "override_s": secs}
        if signer is not None:
            await self._signed_action(signer, "divert override", target, value, reason,
                                      DIVERT_OVERRIDE)
        else:
            self.record_action(user, "divert override", target, new_value=value)
        try:
            held = await sup.override_divert(position == "product",
                                             signer.name if signer is not None else user,
                                             reason, secs)
        except ValueError as exc:  # an interlock tripped while the signature was checked
            raise ServiceError(409, "override refused", str(exc)) from None
        return {"run": run_id, "valve": sup.divert.valve, "position": position,
                "override": held.data()}

    async def release_divert(self, run_id: int, user: str) -> dict[str, Any]:
        """Automatic divert control again, now (not signed: it ends a manual exception)."""
        try:
            sup = self._orchestrator(self._run_or_404(run_id)).supervisor
            try:
                sup.release_divert(user)
            except ValueError as exc:
                raise ServiceError(409, "not overridden", str(exc)) from None
        except ServiceError as exc:
            await self.refused(user, "divert release", f"run {run_id} divert", exc.detail)
            raise
        self.record_action(user, "divert release",
                           self._exception_target(run_id, f"divert:{sup.divert.valve}"))
        return {"run": run_id, "valve": sup.divert.valve, "override": None}

    async def switch_mode(self, tag: str, obj: str, operation: str | None,
                          source: str | None, user: str) -> dict[str, Any]:
        """The operation mode (Offline, Operator, Automatic) and then the source (Internal,
        External) of a service or a service parameter (``obj``), between runs, through the
        module's own mode handshake (a PEA's ``State*Op``/``Src*Op`` requests, confirmed by
        its ``*Act``; the proxy's state machine for a device without one). Accepted
        switches are operator actions with their audit entry; refused ones are audit
        entries too. A run's (and a faceplate command's) handshake requests Automatic and
        External again, as the MTP POL does."""
        target = f"{tag}.{obj}"
        wanted = []
        try:
            proxy = self._proxy_or_404(tag)
            svc, param = self._mode_object(proxy, obj)
            if operation is None and source is None:
                raise ServiceError(422, "nothing to switch",
                                   f"{target}: name an operation mode or a source")
            for text, kind in ((operation, OperationMode), (source, SourceMode)):
                if text is not None:
                    try:
                        wanted.append(kind(text))
                    except ValueError:
                        raise ServiceError(422, "no such mode",
                                           f"{target}: '{text}' is not one of "
                                           f"{', '.join(m.value for m in kind)}") from None
            self._not_while_running(f"switch {target}")
            for mode in wanted:
                try:
                    bound = await svc.switch_mode(mode, param)
                except (MtpError, DriverError) as exc:
                    raise ServiceError(409, "mode not switched",
                                       f"{target}: {mode.value} refused: {exc}") from None
                if not bound:
                    what = "operation mode" if isinstance(mode, OperationMode) else "source"
                    raise ServiceError(409, "no such mode", f"{target} has no {what} switch: "
                                       f"the module does not offer it")
        except ServiceError as exc:
            await self.refused(user, f"switch mode of {target}", target, exc.detail)
            raise
        modes = svc.modes(param)
        self.record_action(user, "switch mode", target,
                           new_value={"operation": operation, "source": source})
        self._publish(EventKind.MODE_CHANGED.value, target,
                      f"{target}: {', '.join(m.value for m in wanted)} by {user}",
                      {"module": tag, "object": obj, **_modes_json(modes)})
        return {"module": tag, "object": obj, **_modes_json(modes)}

    def _mode_object(self, proxy: Any, obj: str) -> tuple[Any, str | None]:
        """The service that switches ``obj`` (a service, or a parameter of one of them) and
        the parameter's name (None for the service itself)."""
        if obj in proxy.services:
            return proxy.services[obj], None
        for spec in proxy.type.services:
            names = set(spec.config_parameters)
            for pr in spec.procedures:
                names.update(pr.parameters)
            if obj in names:
                return proxy.services[spec.name], obj
        raise ServiceError(404, "no such service or parameter",
                           f"{proxy.tag} has no service or service parameter '{obj}' "
                           f"(services: {', '.join(proxy.services) or 'none'})")

    @staticmethod
    def _modes(proxy: Any) -> dict[str, dict[str, str | None]]:
        """The modes of every service and service parameter that has one, as last read."""
        out: dict[str, dict[str, str | None]] = {}
        for spec in proxy.type.services:
            svc = proxy.services[spec.name]
            names = list(spec.config_parameters)
            for pr in spec.procedures:
                names += [n for n in pr.parameters if n not in names]
            for obj, param in [(spec.name, None), *((n, n) for n in names)]:
                m = _modes_json(svc.modes(param))
                if m["operation"] is not None or m["source"] is not None:
                    out[obj] = m
        return out

    @staticmethod
    def _enabled(proxy: Any, service: str) -> frozenset[Command]:
        """CommandEn as the module says it (a PEA's own word), else the state table's."""
        raw = proxy.value(f"{service}.{SCA.COMMAND_EN}")
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return frozenset(commands_in(int(raw)))
        return enabled_commands(proxy.services[service].state)

    def _stream_values(self, line: Line) -> None:
        """Value changes into the event stream: every data assembly that carries a number,
        filtered by its deadband (``deadband`` of the descriptor; 0, i.e. changes only, if
        it has none) with the historian's filter; a change of quality always passes.

        ``source_time`` is the reading's own time (``TagValue.timestamp``, UNIX seconds):
        the device's timestamp where the transport carries one (OPC UA SourceTimestamp),
        else the time this process read it (Modbus, serial). Why it is added next to the
        event's ``t`` (the line's clock at publication): the age of a value when a client
        gets it starts at the device, not at the service, and a client (or the bench)
        can only tell the two apart with both."""
        filters: dict[str, TagFilter] = {}
        units: dict[str, str] = {}
        for tag, proxy in line.proxies.items():
            for da in proxy.type.data_assemblies:
                if da.kind == "number":
                    band = float(da.deadband) if da.deadband is not None else 0.0
                    filters[f"{tag}.{da.name}"] = TagFilter(TagConfig(deadband=band))
                    units[f"{tag}.{da.name}"] = da.unit

        def on_values(tag: str, values: Any) -> None:
            for name, tv in values.items():
                key = f"{tag}.{name}"
                f = filters.get(key)
                v = tv.value
                if f is None or isinstance(v, bool) or not isinstance(v, int | float):
                    continue
                quality = tv.quality.name.lower()
                if f.accept(time.monotonic(), float(v), 192 if quality == "good" else 0):
                    self._publish(EventKind.VALUE_CHANGED.value, key, "",
                                  {"module": tag, "assembly": name, "value": _plain(v),
                                   "unit": units[key], "quality": quality,
                                   "source_time": tv.timestamp})

        for proxy in line.proxies.values():
            proxy.on_values(on_values)

    # ------------------------------------------------------------------ records for the station
    def audit(self, user: str | None, action: str | None, obj: str | None,
              limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` audit entries (newest first) of ``user``, whose action
        contains ``action``, about ``obj``; the chain itself is verified by ``modulecontrol
        audit verify``, not here. Blocking: call it in a worker thread (it reads through a
        connection of its own, so the control loop's appends never wait on it)."""
        self._ready()
        out: list[dict[str, Any]] = []
        with AuditTrail(self.options.db) as trail:
            entries = list(trail.entries(obj or None))
        for e in entries:
            if user and e.user != user:
                continue
            if action and action.lower() not in e.action.lower():
                continue
            out.append({"seq": e.seq, "t_utc": e.t_utc, "user": e.user, "action": e.action,
                        "object": e.object, "old_value": e.old_value,
                        "new_value": e.new_value, "reason": e.reason})
        return out[::-1][:limit]

    def report_file(self, queued: QueuedRun) -> Path:
        """The batch report of a finished run: the one written at its end, else made now
        from the records (into the report folder, or next to the database). Blocking: call
        it in a worker thread; it touches no connection of the control loop."""
        run_id = queued.id
        if queued.state not in FINAL or queued.record_run is None:
            raise ServiceError(409, "no report yet",
                               f"run {run_id} is {queued.state}: its batch report is written "
                               f"when it ends")
        folder = self.options.report_dir or self.options.db.parent
        out = folder / f"run-{queued.record_run}.html"
        if not out.is_file():
            from modulecontrol.records import report

            folder.mkdir(parents=True, exist_ok=True)
            try:
                report(self.options.db, queued.record_run, "html", out)
            except RecordsError as exc:
                raise ServiceError(404, "no report", str(exc)) from None
        return out

    def live_inputs(self) -> dict[str, float]:
        """The line's inputs now (set points, run commands, temperatures the models take),
        as its proxies read them: the start of a live what-if. Call on the event loop."""
        from modulecontrol.twin import live_inputs

        line = self._ready()[1]

        def read(tag: str, assembly: str) -> Any:
            proxy = line.proxies.get(tag)
            return None if proxy is None else proxy.value(assembly)

        return live_inputs(line.plant, read)

    def running_record(self) -> int | None:
        """The records' id of the run in progress (None: none, or not yet recorded): a live
        what-if replays it. Call on the event loop, with :meth:`live_inputs`."""
        return self._active[1].run_id if self._active is not None else None

    def whatif(self, run: int | None, sets: Mapping[str, float], horizon: str,
               purity_spec: float = 90.0, live: Mapping[str, float] | None = None,
               start: Literal["state", "steady"] = "state", running: int | None = None
               ) -> dict[str, Any]:
        """``twin whatif`` of a recorded run of this line, or (``run`` None) from the line's
        state now: ``running`` (the record of the run in progress, :meth:`running_record`)
        replayed to its state (none: the steady state), then ``live``, the inputs
        :meth:`live_inputs` read (docs/digital-twin.md). Blocking: call it in a worker
        thread. ``start``: a recorded run's ``state`` or ``steady``."""
        from modulecontrol.twin import TwinError, duration_seconds, whatif, whatif_live

        try:
            ahead = duration_seconds(horizon, "horizon")
            plant = self._ready()[1].plant
            if run is None:
                return whatif_live(plant, live or {}, sets, ahead, purity_spec=purity_spec,
                                   running=None if running is None
                                   else (self.options.db, running)).as_dict()
            return whatif(plant, self.options.db, run, sets, ahead, purity_spec=purity_spec,
                          start=start).as_dict()
        except RecordsError as exc:
            raise ServiceError(404, "no such run", str(exc)) from None
        except (TwinError, ValueError) as exc:
            raise ServiceError(422, "invalid what-if", str(exc)) from None

    # ------------------------------------------------------------------ events
    def _publish(self, kind: str, source: str, message: str, data: dict[str, Any],
                 run: int | None = None) -> None:
        t = self.line.clock.now() if self.line is not None else 0.0
        self.stream.publish(t, kind, source, message, data, run)

    def _forward(self, run_id: int) -> Callable[[Event], None]:
        """A run's events into the stream; its service states are published by the line's
        own listener (below), which hears them with or without a run, and its end once
        the queue's record of it is final (:meth:`_execute`)."""
        def forward(ev: Event) -> None:
            if ev.kind not in (EventKind.SERVICE_STATE, EventKind.RUN_ENDED):
                self.stream.publish(ev.t, ev.kind.value, ev.source, ev.message,
                                    _json(ev.data), run_id)
        return forward

    def _on_service_state(self, tag: str, change: StateChange) -> None:
        data = {"old": change.old.label, "new": change.new.label, "module": tag}
        if change.reason:
            data["reason"] = change.reason
        self._publish(EventKind.SERVICE_STATE.value, change.service,
                      change.summary, data, run=self._active[0] if self._active else None)

    def _ready(self) -> tuple[ServiceStore, Line]:
        if self.store is None or self.line is None:
            raise ServiceError(503, "service starting", "the service is still starting")
        return self.store, self.line


def _campaign_json(c: Campaign) -> dict[str, Any]:
    """A running campaign as the run view shows it: its plan in the recipe's terms, the
    experiments so far (restored ones first: a campaign continues over runs) with the
    event payload the records hold, the one being made, and the best feasible one."""
    p = c.plan
    records = list(c.records)
    feasible = [r for r in records if r.feasible and r.objective is not None]
    best = max(feasible, key=lambda r: r.objective or 0.0) if feasible else None
    return {
        "name": p.name, "algorithm": p.algorithm, "prior": p.prior, "budget": p.experiments,
        "maximize": p.maximize, "constraints": [k.text for k in p.constraints],
        # how people read the SI objective and KPIs: {name: [unit, factor from SI]}
        "units": {k: [u, f] for k, (u, f) in p.shown.items()},
        "variables": [{"name": v.name, "targets": list(v.targets), "unit": v.unit,
                       "low": v.low, "high": v.high} for v in p.variables],
        "experiments": [r.payload() for r in records],
        "current": None if c.current is None else {"index": c.current[0],
                                                   "setpoints": c.current[1]},
        "best": None if best is None else best.index,
        # the search has ended: the step then runs the line at "best" (or fails without one)
        "done": c.result is not None, "converged": c.result is not None and c.result.converged,
    }


def _modes_json(modes: Modes) -> dict[str, str | None]:
    return {"operation": modes.operation.value if modes.operation is not None else None,
            "source": modes.source.value if modes.source is not None else None}


def _plain(v: Any) -> Any:
    if isinstance(v, bool | int | str) or v is None:
        return v
    if isinstance(v, float):
        return v if v == v and abs(v) != float("inf") else str(v)
    return str(v)


def _json(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out[k] = {str(a): _plain(b) for a, b in v.items()}
        elif isinstance(v, list | tuple):
            out[k] = [_plain(x) for x in v]
        else:
            out[k] = _plain(v)
    return out



def _signature_json(sig: Signature) -> dict[str, Any]:
    return {"id": sig.id, "t_utc": sig.t_utc, "user": sig.user,
            "printed_name": sig.printed_name, "meaning": sig.meaning, "action": sig.action,
            "object": sig.object, "signed_hash": sig.signed_hash, "reason": sig.reason}


def _version_json(rv: RecipeVersion, sigs: list[Signature]) -> dict[str, Any]:
    return {"id": rv.id, "name": rv.name, "version": rv.version,
            "content_hash": rv.content_hash, "state": rv.state.value, "author": rv.author,
            "t_utc": rv.t_utc, "signatures": [_signature_json(s) for s in sigs]}

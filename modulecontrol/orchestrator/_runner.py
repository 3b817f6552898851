"""The orchestrator: runs a validated recipe against module proxies.

The recipe itself is an MTP service state machine (the same VDI 2658 states as every module
service). Its commands fan out to the module services the recipe has started: Hold holds
them, Stop stops them, Abort aborts them and drives every module's safe state. Three parts do
the work, each in its own module: the procedure interpreter (``_interpreter.py``), the
supervisor of interlocks, alarms, steady state and divert (``_supervisor.py``) and the hold
arbitration between them (``_holds.py``). This class owns the recipe's state machine, wires
the three together and is the public face (``run``, ``command``, ``log``, ``progress``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modulecontrol.alarms import AlarmBoard
from modulecontrol.clock import Clock
from modulecontrol.descriptors import PlantConfig, shutdown_stages
from modulecontrol.drivers import DriverError
from modulecontrol.events import Event, EventKind, EventLog
from modulecontrol.optimize import Campaign
from modulecontrol.orchestrator._holds import HoldArbiter
from modulecontrol.orchestrator._interpreter import _TARGETS, Interpreter, Position, Progress
from modulecontrol.orchestrator._operator import OperatorChannel
from modulecontrol.orchestrator._plantalarms import PlantAlarms
from modulecontrol.orchestrator._supervisor import (
    CommLoss,
    ServiceKey,
    Supervisor,
    emit_service_command,
)
from modulecontrol.orchestrator._twin import TwinMonitor
from modulecontrol.proxy import ModuleProxy, ServiceProxy
from modulecontrol.recipe import Recipe, ValidatedRecipe
from modulecontrol.records import RunSamples
from modulecontrol.statemachine import (
    Channel,
    Command,
    CommandRefused,
    OperationMode,
    Procedure,
    ServiceStateMachine,
    SourceMode,
    State,
    StateChange,
    WorkContext,
)

_FINAL_FAILED = (State.ABORTED,)
"""The failure a fan-out waits for: Aborted, not Aborting, or an Abort fan-out would be
satisfied while its modules are still carrying the abort out."""
_AT_REST = (
    State.IDLE, State.STOPPED, State.ABORTED, State.COMPLETED, State.STOPPING, State.ABORTING,
)
"""Services a Stop fan-out leaves alone: at rest already, or on their way there."""


_HELD = tuple(s.label for s in (State.HOLDING, State.HELD, State.PAUSING, State.PAUSED))
_EXECUTING = tuple(s.label for s in (State.STARTING, State.EXECUTE, State.UNHOLDING,
                                     State.RESUMING))


@dataclass
class Resume:
    """A run to take up where a previous process left it (docs/operations.md)."""

    position: Mapping[str, Any]
    """:meth:`Orchestrator.position` as that process last wrote it."""
    gap: float
    """Simulated seconds from that writing to now (the plant ran on meanwhile)."""
    history: Mapping[str, Sequence[tuple[float, float]]] = field(default_factory=dict)
    """Recorded samples (simulated time, value in its unit) of the steady-state signals."""
    record: RunSamples | None = None
    """The run's record so far, for a recipe with a twin: what the twin replays to the
    run's state before its first tick (:meth:`TwinMonitor.resume`)."""
    elapsed: float = 0.0
    """Seconds from the run's start to now, on the record's time base."""
    measured_at: float | None = None
    """The clock's time when ``gap`` was measured. The time from then until the procedure
    is taken up (reading the record, the twin's replay: minutes of line time on a fast
    simulated clock) counts into the running waits too, as the plant ran on meanwhile."""


class RunResult(enum.Enum):
    COMPLETED = "completed"
    STOPPED = "stopped"
    ABORTED = "aborted"


class Orchestrator:
    """Runs one recipe on one plant. Create, then ``await run()``."""

    def __init__(
        self,
        recipe: ValidatedRecipe,
        proxies: Mapping[str, ModuleProxy],
        *,
        clock: Clock,
        operator: OperatorChannel | None = None,
        tick: float = 1.0,
        on_comm_loss: CommLoss = "hold",
        alarms: AlarmBoard | None = None,
        plant_alarms: PlantAlarms | None = None,
        resume: Resume | None = None,
    ) -> None:
        self.validated = recipe
        self.recipe: Recipe = recipe.recipe
        self.plant: PlantConfig = recipe.plant
        self.proxies = dict(proxies)
        self.clock = clock
        self.operator = operator or OperatorChannel()
        self.fan_out_timeout = 10.0
        """Wall seconds to wait for a module service to follow a recipe command."""
        self.log = EventLog(clock.now)
        self._procedure: asyncio.Task[None] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._used: dict[ServiceKey, ServiceProxy] = {}
        """The module services the recipe has started: the ones its commands fan out to."""
        self._held_by_us: set[ServiceKey] = set()
        self._executed = False
        """Execute was entered once: the causes to hold for that were there before the run
        are checked then, before the procedure may command anything."""
        self.end_reason = ""
        """Why the run ends early: the reason of the last Stop or Abort accepted (for the
        run record); empty while none was."""
        self.stages: list[list[str]] = shutdown_stages(self.plant)
        """The plant's safe stop order: Hold, Stop and Abort fan out stage by stage (feeds
        first), Unhold in the reverse order."""
        self.machine = ServiceStateMachine(
            f"recipe {self.recipe.name}",
            procedures=[Procedure(1, self.recipe.name, self_completing=True, is_default=True)],
            operation_mode=OperationMode.AUTOMATIC,
            source_mode=SourceMode.EXTERNAL,
            clock=clock.now,
        )
        self.holds = HoldArbiter(self.machine, self.try_command, 2 * self.fan_out_timeout)
        self.supervisor = Supervisor(
            recipe, self.proxies, clock=clock, log=self.log, holds=self.holds,
            operator=self.operator, command=self.try_command,
            recipe_state=lambda: self.machine.state, used=self._used, tick=tick,
            on_comm_loss=on_comm_loss, alarms=alarms, plant_alarms=plant_alarms,
        )  # fmt: skip
        self.alarms = self.supervisor.board
        """The alarm board the run feeds (the line's, when the line gave one)."""
        self.interpreter = Interpreter(
            recipe, self.proxies, clock=clock, log=self.log, machine=self.machine,
            command=self.try_command, supervisor=self.supervisor, operator=self.operator,
            used=self._used, tick=tick,
        )  # fmt: skip
        self.progress: Progress = self.interpreter.progress
        self.resume = resume
        """Set when this run takes up one a previous process left (``resumed`` says how)."""
        self.resumed = ""
        """After a resume: why the recipe holds for an operator decision ('' if it does not)."""
        self._hold_reason = ""
        """The reason of the hold command that took the recipe to Holding (:meth:`held_by`)."""
        if resume is not None:
            Position.from_dict(resume.position["interpreter"])  # refused before anything runs
        self.signals = self.supervisor.signals
        m = self.machine
        m.set_work(State.STARTING, self._w_starting)
        m.set_work(State.EXECUTE, self._w_execute)
        m.set_work(State.HOLDING, self._w_holding)
        m.set_work(State.UNHOLDING, self._w_unholding)
        m.set_work(State.STOPPING, self._w_stopping)
        m.set_work(State.ABORTING, self._w_aborting)
        m.set_work(State.COMPLETING, self._w_completing)
        m.subscribe(self._on_recipe_state)
        self._detach: list[Callable[[], None]] = []
        """Removes this run's listeners from the proxies, which outlive it on a service."""
        for proxy in self.proxies.values():
            self._detach.append(proxy.on_state(self._on_service_state))
            self._detach.append(proxy.on_fault(self.supervisor.on_fault))
            self._detach.append(proxy.on_listener_error(self._on_listener_error))
            self._detach.append(proxy.on_notice(self._on_notice))

    # ------------------------------------------------------------------ running
    async def run(self) -> RunResult:
        """Start the recipe and return when it has completed, stopped or aborted."""
        after: asyncio.Task[None] | None = None
        try:
            if self.resume is None:
                self.log.emit(
                    EventKind.RUN_STARTED,
                    "recipe",
                    f"recipe {self.recipe.name} started",
                    recipe=self.recipe.name,
                    version=self.recipe.version,
                    parameters={n: p.text() for n, p in self.validated.parameters.items()},
                    file=self.validated.file,
                )
            else:
                was = self._restore(self.resume)
                if self.supervisor.twin is not None:
                    await self._resume_twin(self.supervisor.twin, self.resume)
                self._resume_procedure(self.resume, was)
                after = asyncio.get_running_loop().create_task(self._take_up(self.resume, was))
            self._detach.append(self.alarms.route(self.supervisor.alarm_changed))
            self._monitor = asyncio.get_running_loop().create_task(self.supervisor.run())
            self.machine.command(Command.START, Channel.EXTERNAL)
            final = await self.machine.wait_for(State.COMPLETED, State.STOPPED, State.ABORTED)
        finally:
            if after is not None and not after.done():
                after.cancel()
            if self._monitor is not None:
                self._monitor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._monitor
            await self.machine.aclose()
            self.supervisor.end_exceptions()
            self.supervisor.release_alarms()
            while self._detach:
                self._detach.pop()()
        result = {
            State.COMPLETED: RunResult.COMPLETED,
            State.STOPPED: RunResult.STOPPED,
            State.ABORTED: RunResult.ABORTED,
        }[final]
        self.log.emit(EventKind.RUN_ENDED, "recipe", f"recipe {result.value}", result=result.value)
        return result

    # ------------------------------------------------------------------ restart
    def position(self) -> dict[str, Any]:
        """Where the run is (JSON), as a restarted process takes it up (:class:`Resume`):
        the recipe's state and holds, the procedure's position, the supervision's state and
        the state of every module service the recipe commands."""
        services: dict[str, Any] = {}
        for (tag, name), svc in self._used.items():
            machine = getattr(svc, "machine", None)
            services[f"{tag}.{name}"] = {
                "state": svc.state.label,
                "procedure": None if machine is None else int(machine.procedure_cur)}
        return {"state": self.machine.state.label, "held_by": self.held_by(),
                "t": self.clock.now(), "step": self.progress.step,
                "interpreter": self.interpreter.position.as_dict(),
                "supervisor": self.supervisor.snapshot(), "services": services}

    async def _resume_twin(self, twin: TwinMonitor, resume: Resume) -> None:
        """The twin to the run's state from its record (:meth:`TwinMonitor.resume`). A record
        that cannot be replayed leaves the twin at rest, and the run's events say so: its
        predictions are then of an empty line, and the mismatch alarms raise on them, as
        on any prediction that is wrong; nothing clears one.

        In a worker thread, before the supervision's first tick (the only other user of the
        twin): the replay is seconds of simulation (two hours of the lomustine line's twin:
        1.6 to 2 s of CPU, twice that on a busy machine), and on the event loop it stalled
        the drivers' exchanges of a control service that had reattached to its plant, whose
        timeouts then reported communication lost and held the run."""
        if resume.record is None:
            self.log.emit(EventKind.MESSAGE, "twin", "twin: no record of the run to replay; "
                          "its predictions start from an empty line")
            return
        try:
            how = await asyncio.to_thread(twin.resume, resume.record, resume.elapsed,
                                          self.clock.now)
        except Exception as exc:  # a model that cannot step, a value that is not a value
            self.log.emit(EventKind.MESSAGE, "twin",
                          f"twin: the run's record could not be replayed "
                          f"({type(exc).__name__}: {exc}); its predictions start from an "
                          "empty line")
            return
        self.log.emit(EventKind.MESSAGE, "twin",
                      f"twin: taken up at the run's state, {how}")

    def _restore(self, resume: Resume) -> str:
        """Everything but the recipe's own state; returns the state the run was in."""
        pos = resume.position
        state = str(pos.get("state", State.EXECUTE.label))
        self.supervisor.restore(pos.get("supervisor") or {}, resume.history)
        for key, saved in dict(pos.get("services") or {}).items():
            tag, _, name = str(key).partition(".")
            proxy = self.proxies.get(tag)
            svc = None if proxy is None else proxy.services.get(name)
            if svc is None:
                continue
            self._used[(tag, name)] = svc
            was = State.from_label(str(saved["state"]))
            adopt = getattr(svc, "adopt", None)
            if svc.state is State.IDLE and was is not State.IDLE and adopt is not None:
                with contextlib.suppress(ValueError):  # an acting state is not taken up
                    adopt(was, saved.get("procedure"),
                          "as the run's record has it (the module does not report its state)")
            if svc.state is State.HELD:
                self._held_by_us.add((tag, name))
        return state

    def _resume_procedure(self, resume: Resume, was: str) -> None:
        """The procedure at its position, the waits it was in counting the gap up to now:
        the last thing before the recipe starts again, so the seconds spent taking the run
        up count too (a wait that missed them ran that much longer than the recipe says;
        at 150x, the twin's replay alone was 12 minutes of an extra lot)."""
        gap = 0.0
        if was in _EXECUTING:
            late = 0.0 if resume.measured_at is None else self.clock.now() - resume.measured_at
            gap = resume.gap + max(0.0, late)
        self.interpreter.resume_from(Position.from_dict(resume.position["interpreter"]), gap)

    async def _take_up(self, resume: Resume, was: str) -> None:
        """Once the resumed recipe is in Execute: back to where it was. Held (or pausing)
        before the restart: held again, for the operator; stopping or aborting: that again."""
        await self.machine.wait_for(State.EXECUTE, State.STOPPED, State.ABORTED)
        if self.machine.state is not State.EXECUTE:
            return
        if was in _HELD:
            why = "; ".join(resume.position.get("held_by") or []) or "held by the operator"
            self.resumed = f"held before the restart ({why})"
            self.try_command(Command.HOLD, self.resumed)
        elif was in (State.STOPPING.label, State.STOPPED.label):
            self.try_command(Command.STOP, "the run was stopping before the restart")
        elif was in (State.ABORTING.label, State.ABORTED.label):
            self.try_command(Command.ABORT, "the run was aborting before the restart")

    def command(self, cmd: Command, reason: str = "operator") -> State:
        """Operator or supervisor command on the recipe (hold, unhold, stop, abort, ...)."""
        self.log.emit(
            EventKind.COMMAND, "recipe", f"{cmd.label} ({reason})", command=cmd.label, reason=reason
        )
        state = self.machine.command(cmd, Channel.EXTERNAL)
        if cmd in (Command.STOP, Command.ABORT):
            self.end_reason = reason
        if cmd is Command.HOLD and state is State.HOLDING:
            self._hold_reason = reason
        if cmd in (Command.UNHOLD, Command.STOP, Command.ABORT) and state in (
                State.UNHOLDING, State.EXECUTE, State.STOPPING, State.ABORTING):
            # no automatic unhold is commanded while a decision is awaited: this is one
            self.holds.decided()
        return state

    @property
    def campaign(self) -> Campaign | None:
        """The run's optimisation campaign once its step has begun (its experiments so far
        and the one being made), None in a run without one."""
        return self.interpreter.campaign

    def held_by(self) -> list[str]:
        """Why the recipe is held: the causes that hold it (interlocks, lost modules,
        operators' holds), or, when none of them does, the reason of the hold that put it
        there (a failed step or a resumed run waiting for an operator's decision). Without
        the second, a recipe held for a decision showed an empty list to the station and
        the API, and only the records said why."""
        decision = self.holds.decision
        if not self.awaits_operator():
            return self.holds.reasons() + ([decision] if decision else [])
        reason = decision or self._hold_reason
        return [reason] if reason else []

    def awaits_operator(self) -> bool:
        """Held (or holding) with no cause left that would unhold it by itself: only an
        operator's resume, stop or abort moves the run on."""
        return (self.machine.state in (State.HOLDING, State.HELD)
                and not self.holds.held)

    def try_command(self, cmd: Command, reason: str) -> bool:
        if self.machine.check(cmd, Channel.EXTERNAL) is not None:
            return False
        self.command(cmd, reason)
        return True

    # ------------------------------------------------------------------ state work
    async def _w_starting(self, ctx: WorkContext) -> None:
        if self._procedure is None:
            self._procedure = asyncio.get_running_loop().create_task(self.interpreter.run())

    async def _w_execute(self, ctx: WorkContext) -> None:
        if not self._executed:
            self._executed = True
            self.supervisor.take_up_faults()
            if self.holds.held and self.try_command(Command.HOLD,
                                                    "; ".join(self.holds.reasons())):
                return  # a cause from before the run (a module lost): nothing commanded yet
        self.interpreter.gate.set()
        assert self._procedure is not None
        await asyncio.shield(self._procedure)

    async def _w_completing(self, ctx: WorkContext) -> None:
        self.interpreter.gate.clear()

    async def _w_holding(self, ctx: WorkContext) -> None:
        self.interpreter.gate.clear()
        active = [
            k for k, svc in self._used.items() if svc.state in (State.EXECUTE, State.STARTING)
        ]
        self._held_by_us |= set(await self._fan_out(active, Command.HOLD, "recipe hold"))

    async def _w_unholding(self, ctx: WorkContext) -> None:
        held = sorted(self._held_by_us)
        self._held_by_us.clear()
        await self._fan_out(held, Command.UNHOLD, "recipe unhold")

    async def _w_stopping(self, ctx: WorkContext) -> None:
        self.interpreter.gate.clear()
        await self._cancel_procedure()
        active = [k for k, svc in self._used.items() if svc.state not in _AT_REST]
        await self._fan_out(active, Command.STOP, "recipe stop")

    async def _w_aborting(self, ctx: WorkContext) -> None:
        self.interpreter.gate.clear()
        await self._cancel_procedure()
        # Stage by stage: a stage's services abort and its modules reach their safe state
        # before the next stage is touched, so the feeds are off before heating and pressure.
        for tags, keys in self._in_stages(list(self._used)):
            active = [k for k in keys
                      if self._used[k].state not in (State.ABORTED, State.ABORTING)]
            await self._command_and_wait(active, Command.ABORT, "recipe abort")
            for tag in tags:
                errors = await self.proxies[tag].apply_safe_state()
                self.log.emit(
                    EventKind.SAFE_STATE,
                    tag,
                    "safe state applied"
                    if not errors
                    else f"safe state incomplete: {'; '.join(errors)}",
                    errors=errors,
                )

    def _in_stages(
        self, keys: Sequence[ServiceKey], *, reverse: bool = False
    ) -> list[tuple[list[str], list[ServiceKey]]]:
        """The module tags (with a proxy) and the service keys of each shutdown stage, in
        stop order (or reversed); a module in no stage belongs to a last one of its own."""
        order = {tag: i for i, stage in enumerate(self.stages) for tag in stage}
        last = len(self.stages)
        out: list[tuple[list[str], list[ServiceKey]]] = [([], []) for _ in range(last + 1)]
        for tag in self.proxies:
            out[order.get(tag, last)][0].append(tag)
        for key in keys:
            out[order.get(key[0], last)][1].append(key)
        out = [stage for stage in out if stage[0] or stage[1]]
        return out[::-1] if reverse else out

    async def _fan_out(
        self, keys: Sequence[ServiceKey], cmd: Command, why: str
    ) -> list[ServiceKey]:
        """Command every service in ``keys`` and wait until each has reached the command's
        target state, so the recipe's own state never runs ahead of its modules.

        Stage by stage in the plant's shutdown order, each stage waiting for its services
        before the next is commanded: a Hold or Stop leaves no feed running after the
        heating or pressure behind it has stopped. An Unhold restarts in the reverse order,
        so temperature and pressure are held again before the feeds resume.
        """
        done: list[ServiceKey] = []
        for _, stage in self._in_stages(keys, reverse=cmd is Command.UNHOLD):
            done += await self._command_and_wait(stage, cmd, why)
        return done

    async def _command_and_wait(
        self, keys: Sequence[ServiceKey], cmd: Command, why: str
    ) -> list[ServiceKey]:
        """Command the services in ``keys`` at once, then wait (bounded) for each target."""
        done: list[ServiceKey] = []
        for key in keys:
            svc = self._used[key]
            try:
                await svc.command(cmd)
            except (CommandRefused, DriverError, ValueError) as exc:
                self.log.emit(
                    EventKind.COMMAND_REFUSED, f"{key[0]}.{key[1]}", f"{cmd.label}: {exc}"
                )
                continue
            emit_service_command(self.log, key, cmd, why)
            done.append(key)
        for key in done:
            svc = self._used[key]
            try:
                await svc.wait_for(*_TARGETS[cmd], *_FINAL_FAILED, timeout=self.fan_out_timeout)
            except TimeoutError:
                self.log.emit(
                    EventKind.COMMAND_TIMEOUT,
                    f"{key[0]}.{key[1]}",
                    f"{cmd.label}: no {_TARGETS[cmd][0].label} within "
                    f"{self.fan_out_timeout:g} s (now {svc.state.label})",
                )
        return done

    async def _cancel_procedure(self) -> None:
        task = self._procedure
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _on_recipe_state(self, change: StateChange) -> None:
        self.log.emit(
            EventKind.RECIPE_STATE,
            "recipe",
            f"{change.old.label} -> {change.new.label}",
            old=change.old.label,
            new=change.new.label,
            reason=change.reason,
        )

    def _on_service_state(self, tag: str, change: StateChange) -> None:
        # why a service moved by itself (a state's work failed: Abort) goes into the
        # records, not only into the process's log
        why = {"reason": change.reason} if change.reason else {}
        self.log.emit(
            EventKind.SERVICE_STATE,
            change.service,
            change.summary,
            old=change.old.label,
            new=change.new.label,
            module=tag,
            **why,
        )

    def _on_notice(self, tag: str, message: str) -> None:
        self.log.emit(EventKind.HANDSHAKE_DEVIATION, tag, message, module=tag)

    # ------------------------------------------------------------------ status
    def _on_listener_error(self, tag: str, what: str, name: str, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        self.log.emit(EventKind.LISTENER_FAILED, name,
                      f"{tag} {what} listener {name} failed: {error}",
                      listener=name, event=f"{tag} {what}", error=error)

    def values(self) -> dict[str, Any]:
        """Every module's values in SI, plus the supervisor's derived signals."""
        return self.supervisor.values()

    def status(self) -> dict[str, Any]:
        return {
            "state": self.machine.state.label,
            "step": self.progress.step,
            "held_by": self.held_by(),
            "awaits_operator": self.awaits_operator(),
            "events": len(self.log.events),
        }

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        self.log.subscribe(listener)

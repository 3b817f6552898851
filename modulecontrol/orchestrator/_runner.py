"""The orchestrator: runs a validated recipe against module proxies.

The recipe itself is an MTP service state machine (the same VDI 2658 states as every module
service). Its commands fan out to the module services the recipe has started: Hold holds
them, Stop stops them, Abort aborts them and drives every module's safe state. The procedure
runs as its own task behind a gate that is open only in Execute, so Hold and Pause freeze the
sequence without losing its place, and timed waits do not count time spent held.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from modulecontrol.clock import Clock
from modulecontrol.descriptors import PlantConfig
from modulecontrol.descriptors._topology import feeds, residence_time
from modulecontrol.drivers import DriverError
from modulecontrol.expr import Condition, SignalInfo
from modulecontrol.orchestrator._events import Event, EventLog
from modulecontrol.orchestrator._monitor import (
    AlarmState,
    DivertControl,
    InterlockState,
    SteadyStateDetector,
)
from modulecontrol.orchestrator._operator import OperatorChannel
from modulecontrol.proxy import ModuleProxy
from modulecontrol.recipe import ValidatedRecipe
from modulecontrol.recipe._model import (
    AnyStep,
    GotoHandler,
    ParallelStep,
    PromptStep,
    Recipe,
    RepeatStep,
    SequenceStep,
    ServiceStep,
    SetStep,
    UnitProcedure,
    WaitStep,
)
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
from modulecontrol.units import to_si

_log = logging.getLogger(__name__)


class RunResult(enum.Enum):
    COMPLETED = "completed"
    STOPPED = "stopped"
    ABORTED = "aborted"


class StepFailed(Exception):
    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class _Goto(Exception):
    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


class _Ended(Exception):
    """The recipe left Execute for good (stop/abort): unwind the procedure."""


_TARGETS: dict[Command, tuple[State, ...]] = {
    Command.START: (State.EXECUTE,),
    Command.RESTART: (State.EXECUTE,),
    Command.STOP: (State.STOPPED,),
    Command.ABORT: (State.ABORTED,),
    Command.HOLD: (State.HELD,),
    Command.UNHOLD: (State.EXECUTE,),
    Command.PAUSE: (State.PAUSED,),
    Command.RESUME: (State.EXECUTE,),
    Command.RESET: (State.IDLE,),
    Command.COMPLETE: (State.COMPLETED,),
}
_FAILED = (State.ABORTED, State.ABORTING)


@dataclass
class Progress:
    """What a live view shows."""

    step: str = ""
    step_kind: str = ""
    step_started: float = 0.0
    step_duration: float | None = None
    step_elapsed: float = 0.0
    steps_done: int = 0
    steps_total: int = 0
    prompts: list[str] = field(default_factory=list)


class _Params:
    """Parameter substitution for the running recipe (values fixed at validation)."""

    def __init__(self, vr: ValidatedRecipe) -> None:
        self._vr = vr

    def resolve(self, raw: Any) -> Any:
        return self._vr.resolve(raw)

    def seconds(self, raw: Any) -> float:
        return self._vr.seconds(raw)

    def number(self, raw: Any) -> float:
        v = self.resolve(raw)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        return to_si(str(v))


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
        on_comm_loss: Literal["hold", "abort", "ignore"] = "hold",
    ) -> None:
        self.validated = recipe
        self.recipe: Recipe = recipe.recipe
        self.plant: PlantConfig = recipe.plant
        self.proxies = dict(proxies)
        self.clock = clock
        self.params = _Params(recipe)
        self.signals: dict[str, SignalInfo] = dict(recipe.signals)
        self.operator = operator or OperatorChannel()
        self.tick = tick
        self.on_comm_loss = on_comm_loss
        self.fan_out_timeout = 10.0
        """Wall seconds to wait for a module service to follow a recipe command."""
        self.log = EventLog(clock.now)
        self.progress = Progress(steps_total=_count_steps(self.recipe.procedure))
        self.derived: dict[str, Any] = {}
        self._gate = asyncio.Event()
        self._procedure: asyncio.Task[None] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._used: dict[tuple[str, str], Any] = {}
        self._held_by_us: set[tuple[str, str]] = set()
        self._hold_reasons: dict[str, str] = {}
        self._module_faults: dict[str, str] = {}
        """Each faulted module's fault text, so its recovery can say what cleared."""
        self._release_tasks: set[asyncio.Task[None]] = set()
        self._finished = asyncio.Event()
        self._goto_done = False
        self._block = ""
        self.machine = ServiceStateMachine(
            f"recipe {self.recipe.name}",
            procedures=[Procedure(1, self.recipe.name, self_completing=True, is_default=True)],
            operation_mode=OperationMode.AUTOMATIC,
            source_mode=SourceMode.EXTERNAL,
            clock=clock.now,
        )
        m = self.machine
        m.set_work(State.STARTING, self._w_starting)
        m.set_work(State.EXECUTE, self._w_execute)
        m.set_work(State.HOLDING, self._w_holding)
        m.set_work(State.UNHOLDING, self._w_unholding)
        m.set_work(State.STOPPING, self._w_stopping)
        m.set_work(State.ABORTING, self._w_aborting)
        m.set_work(State.COMPLETING, self._w_completing)
        m.subscribe(self._on_recipe_state)
        self.interlocks: list[InterlockState] = []
        self.alarms: list[AlarmState] = []
        self.steady: list[SteadyStateDetector] = []
        self.divert: DivertControl | None = None
        self._build_monitors()
        for proxy in self.proxies.values():
            proxy.on_state(self._on_service_state)
            proxy.on_fault(self._on_fault)

    # ------------------------------------------------------------------ setup
    def _cond(self, text: str) -> Condition:
        return self.validated.compile(text)

    def _build_monitors(self) -> None:
        r = self.recipe
        self.interlocks = [InterlockState(i, self._cond(i.when)) for i in r.interlocks]
        for a in r.alarms:
            info = self.signals.get(a.signal)
            unit = info.unit if info is not None else ""
            self.alarms.append(AlarmState.build(a, unit, self.params.resolve))
        for s in r.steady_state:
            info = self.signals.get(s.signal)
            unit = info.unit if info is not None else ""
            band_raw = self.params.resolve(s.band)
            band = (
                float(band_raw) * (to_si(1.0, unit) - to_si(0.0, unit))
                if isinstance(band_raw, int | float)
                else to_si(str(band_raw))
            )
            self.steady.append(SteadyStateDetector(s, band, self.params.number(s.residence_times)))
        if r.divert is not None:
            self.divert = DivertControl(r.divert.valve, self._cond(r.divert.product_when))
            self.divert.active = r.divert.enabled_from is None

    # ------------------------------------------------------------------ running
    async def run(self) -> RunResult:
        """Start the recipe and return when it has completed, stopped or aborted."""
        self.log.emit(
            "run_started",
            "recipe",
            f"recipe {self.recipe.name} started",
            recipe=self.recipe.name,
            version=self.recipe.version,
            parameters={n: p.text() for n, p in self.validated.parameters.items()},
            file=self.validated.file,
        )
        self._monitor = asyncio.get_running_loop().create_task(self._monitor_loop())
        try:
            self.machine.command(Command.START, Channel.EXTERNAL)
            final = await self.machine.wait_for(State.COMPLETED, State.STOPPED, State.ABORTED)
        finally:
            if self._monitor is not None:
                self._monitor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._monitor
            await self.machine.aclose()
        result = {
            State.COMPLETED: RunResult.COMPLETED,
            State.STOPPED: RunResult.STOPPED,
            State.ABORTED: RunResult.ABORTED,
        }[final]
        self.log.emit("run_ended", "recipe", f"recipe {result.value}", result=result.value)
        return result

    def command(self, cmd: Command, reason: str = "operator") -> State:
        """Operator or supervisor command on the recipe (hold, unhold, stop, abort, ...)."""
        self.log.emit(
            "command", "recipe", f"{cmd.label} ({reason})", command=cmd.label, reason=reason
        )
        return self.machine.command(cmd, Channel.EXTERNAL)

    def try_command(self, cmd: Command, reason: str) -> bool:
        if self.machine.check(cmd, Channel.EXTERNAL) is not None:
            return False
        self.command(cmd, reason)
        return True

    # ------------------------------------------------------------------ state work
    async def _w_starting(self, ctx: WorkContext) -> None:
        if self._procedure is None:
            self._procedure = asyncio.get_running_loop().create_task(self._run_procedure())

    async def _w_execute(self, ctx: WorkContext) -> None:
        self._gate.set()
        assert self._procedure is not None
        await asyncio.shield(self._procedure)

    async def _w_completing(self, ctx: WorkContext) -> None:
        self._gate.clear()

    async def _w_holding(self, ctx: WorkContext) -> None:
        self._gate.clear()
        active = [
            k for k, svc in self._used.items() if svc.state in (State.EXECUTE, State.STARTING)
        ]
        self._held_by_us |= set(await self._fan_out(active, Command.HOLD, "recipe hold"))

    async def _w_unholding(self, ctx: WorkContext) -> None:
        held = sorted(self._held_by_us)
        self._held_by_us.clear()
        await self._fan_out(held, Command.UNHOLD, "recipe unhold")

    async def _w_stopping(self, ctx: WorkContext) -> None:
        self._gate.clear()
        await self._cancel_procedure()
        rest = (
            State.IDLE,
            State.STOPPED,
            State.ABORTED,
            State.COMPLETED,
            State.STOPPING,
            State.ABORTING,
        )
        active = [k for k, svc in self._used.items() if svc.state not in rest]
        await self._fan_out(active, Command.STOP, "recipe stop")

    async def _w_aborting(self, ctx: WorkContext) -> None:
        self._gate.clear()
        await self._cancel_procedure()
        active = [
            k for k, svc in self._used.items() if svc.state not in (State.ABORTED, State.ABORTING)
        ]
        await self._fan_out(active, Command.ABORT, "recipe abort")
        for tag, proxy in self.proxies.items():
            errors = await proxy.apply_safe_state()
            self.log.emit(
                "safe_state",
                tag,
                "safe state applied"
                if not errors
                else f"safe state incomplete: {'; '.join(errors)}",
                errors=errors,
            )

    async def _fan_out(
        self, keys: Sequence[tuple[str, str]], cmd: Command, why: str
    ) -> list[tuple[str, str]]:
        """Command every service in ``keys`` and wait (bounded) until each has reached the
        command's target state, so the recipe's own state never runs ahead of its modules."""
        done: list[tuple[str, str]] = []
        for key in keys:
            svc = self._used[key]
            try:
                await svc.command(cmd)
            except (CommandRefused, DriverError, ValueError) as exc:
                self.log.emit("command_refused", f"{key[0]}.{key[1]}", f"{cmd.label}: {exc}")
                continue
            self._event_service_cmd(key, cmd, why)
            done.append(key)
        for key in done:
            svc = self._used[key]
            try:
                await svc.wait_for(*_TARGETS[cmd], *_FAILED, timeout=self.fan_out_timeout)
            except TimeoutError:
                self.log.emit(
                    "command_timeout",
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
            "recipe_state",
            "recipe",
            f"{change.old.label} -> {change.new.label}",
            old=change.old.label,
            new=change.new.label,
            reason=change.reason,
        )

    def _on_service_state(self, tag: str, change: StateChange) -> None:
        self.log.emit(
            "service_state",
            change.service,
            f"{change.old.label} -> {change.new.label}",
            old=change.old.label,
            new=change.new.label,
            module=tag,
        )

    def _on_fault(self, tag: str, fault: str | None) -> None:
        if fault is None:
            was = self._module_faults.pop(tag, "")
            what = ("communication restored" if not was or was.startswith("communication")
                    else f"cleared: {was}")
            self.log.emit("module_recovered", tag, what, was=was)
            if self.on_comm_loss == "hold":
                self._release_hold(f"module:{tag}", auto=True)
            return
        self._module_faults[tag] = fault
        self.log.emit("module_fault", tag, fault)
        if self.on_comm_loss == "hold":
            self._request_hold(f"module:{tag}", f"{tag}: {fault}")
        elif self.on_comm_loss == "abort":
            self.try_command(Command.ABORT, f"{tag}: {fault}")

    def _event_service_cmd(self, key: tuple[str, str], cmd: Command, why: str) -> None:
        self.log.emit(
            "command",
            f"{key[0]}.{key[1]}",
            f"{cmd.label} ({why})",
            command=cmd.label,
            module=key[0],
            service=key[1],
        )

    # ------------------------------------------------------------------ holds
    def _request_hold(self, key: str, reason: str) -> None:
        self._hold_reasons[key] = reason
        if self.machine.state in (State.EXECUTE, State.STARTING, State.UNHOLDING):
            asyncio.get_running_loop().call_soon(self.try_command, Command.HOLD, reason)

    def _release_hold(self, key: str, *, auto: bool) -> None:
        if self._hold_reasons.pop(key, None) is None:
            return
        if auto and not self._hold_reasons and self.machine.state is State.HELD:
            asyncio.get_running_loop().call_soon(self.try_command, Command.UNHOLD, f"{key} cleared")
        elif auto and not self._hold_reasons and self.machine.state is State.HOLDING:
            # The cause cleared while the hold was still being carried out: unhold once Held,
            # or the recipe would stay Held with nothing left to release it.
            task = asyncio.get_running_loop().create_task(self._unhold_once_held(key))
            self._release_tasks.add(task)
            task.add_done_callback(self._release_tasks.discard)

    async def _unhold_once_held(self, key: str) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.machine.wait_for(State.HELD), 2 * self.fan_out_timeout)
        if not self._hold_reasons and self.machine.state is State.HELD:
            self.try_command(Command.UNHOLD, f"{key} cleared")

    async def _gate_open(self) -> None:
        if self.machine.state in (State.STOPPING, State.STOPPED, State.ABORTING, State.ABORTED):
            raise _Ended()
        await self._gate.wait()

    # ------------------------------------------------------------------ procedure
    async def _run_procedure(self) -> None:
        try:
            await self._gate_open()
            for block in self.recipe.procedure:
                await self._run_block(block)
        except _Goto as g:
            await self._run_cleanup(g.target)
            self.try_command(Command.STOP, f"cleanup {g.target} done")
            await asyncio.Event().wait()  # Stopping cancels us
        except _Ended:
            return

    async def _run_cleanup(self, name: str) -> None:
        block = next(b for b in self.recipe.cleanup if b.name == name)
        self.log.emit("goto", "recipe", f"going to cleanup {name}", target=name)
        self._goto_done = True
        await self._run_block(block)

    async def _run_block(self, block: UnitProcedure) -> None:
        self._block = block.name
        self.log.emit("block_started", block.name, f"unit procedure {block.name}")
        await self._run_steps(block.steps, block.name)
        self.log.emit("block_finished", block.name, f"unit procedure {block.name} done")

    async def _run_steps(self, steps: Sequence[AnyStep], where: str) -> None:
        for i, step in enumerate(steps):
            await self._run_step(step, f"{where}[{i + 1}]")

    async def _run_step(self, step: AnyStep, where: str) -> None:
        label = self.validated.label(step)
        if step.name is None and isinstance(step, ServiceStep):
            call = step.service
            label = f"{call.module}.{call.service} {call.command}"
        kind = _kind(step)
        while True:
            await self._gate_open()
            self.progress.step, self.progress.step_kind = label, kind
            self.progress.step_started = self.clock.now()
            self.progress.step_duration = None
            self._divert_switch(step.name)
            self.log.emit(
                "step_started",
                label,
                f"{kind} step started",
                step_kind=kind,
                block=self._block,
                at=str(self.validated.location(step)),
            )
            timeout = self.params.seconds(step.timeout) if step.timeout is not None else None
            try:
                if timeout is None:
                    await self._do_step(step, label)
                else:
                    await self._with_timeout(self._do_step(step, label), timeout, label)
            except StepFailed as exc:
                handler = step.on_timeout if exc.timeout else step.on_error
                self.log.emit(
                    "step_timeout" if exc.timeout else "step_failed",
                    label,
                    str(exc),
                    handler=_handler_text(handler),
                )
                if await self._handle(handler, label, str(exc)):
                    continue  # retry after an operator unhold
                return
            if kind not in ("sequence", "parallel", "repeat"):
                self.progress.steps_done += 1
            self.log.emit("step_finished", label, f"{kind} step done", step_kind=kind)
            return

    async def _with_timeout(self, coro: Any, timeout: float, label: str) -> None:
        task = asyncio.ensure_future(coro)
        timer = asyncio.ensure_future(self._held_sleep(timeout))
        try:
            done, _ = await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                task.result()
                return
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StepFailed):
                await task
            raise StepFailed(f"timed out after {_fmt_s(timeout)}", timeout=True)
        finally:
            for t in (task, timer):
                if not t.done():
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t

    async def _handle(self, handler: Any, label: str, why: str) -> bool:
        """Apply an on_timeout/on_error handler; True means: retry the step."""
        if handler is None or handler == "hold":
            self.try_command(Command.HOLD, f"{label}: {why}")
            await asyncio.sleep(0)
            await self._gate_open()
            return True
        if handler == "continue":
            return False
        if handler in ("abort", "stop"):
            self.try_command(
                Command.ABORT if handler == "abort" else Command.STOP, f"{label}: {why}"
            )
            raise _Ended()
        if isinstance(handler, GotoHandler):
            if self._goto_done:
                self.try_command(Command.ABORT, f"{label}: {why} (inside cleanup)")
                raise _Ended()
            raise _Goto(handler.goto)
        raise StepFailed(f"unknown handler {handler!r}")

    async def _do_step(self, step: AnyStep, label: str) -> None:
        if isinstance(step, ServiceStep):
            await self._service_step(step, label)
        elif isinstance(step, SetStep):
            for target, raw in step.set.items():
                tag, assembly = target.split(".", 1)
                value = self.params.resolve(raw)
                try:
                    coerced = await self.proxies[tag].set(assembly, value)
                except (DriverError, ValueError) as exc:
                    raise StepFailed(f"set {target}: {exc}") from None
                self.log.emit(
                    "parameter_write",
                    target,
                    f"{target} = {value}",
                    value=coerced,
                    given=str(value),
                )
        elif isinstance(step, WaitStep):
            await self._wait_step(step, label)
        elif isinstance(step, PromptStep):
            prompt = self.operator.ask(label, step.prompt.message, step.prompt.choices)
            self.progress.prompts.append(step.prompt.message)
            self.log.emit(
                "operator_prompt",
                label,
                step.prompt.message,
                prompt=prompt.id,
                choices=step.prompt.choices,
            )
            try:
                answer = await prompt.future
            finally:
                with contextlib.suppress(ValueError):
                    self.progress.prompts.remove(step.prompt.message)
            self.log.emit(
                "operator_action",
                label,
                f"answered '{answer}'",
                user=self.operator.user,
                answer=answer,
            )
        elif isinstance(step, SequenceStep):
            await self._run_steps(step.sequence, label)
        elif isinstance(step, ParallelStep):
            async with asyncio.TaskGroup() as tg:
                for b, branch in enumerate(step.parallel):
                    tg.create_task(self._run_steps(branch, f"{label}/{b + 1}"))
        elif isinstance(step, RepeatStep):
            await self._repeat(step, label)

    async def _repeat(self, step: RepeatStep, label: str) -> None:
        spec = step.repeat
        if spec.times is not None:
            n = int(self.params.number(spec.times))
            for i in range(n):
                self.log.emit("iteration", label, f"iteration {i + 1} of {n}", index=i + 1)
                await self._run_steps(spec.steps, f"{label}#{i + 1}")
            return
        assert spec.until is not None
        cond = self._cond(spec.until)
        for i in range(spec.max):
            self.log.emit("iteration", label, f"iteration {i + 1}", index=i + 1)
            await self._run_steps(spec.steps, f"{label}#{i + 1}")
            if self._evaluate(cond):
                return
        raise StepFailed(f"'until {spec.until}' not reached in {spec.max} iterations")

    async def _service_step(self, step: ServiceStep, label: str) -> None:
        call = step.service
        proxy = self.proxies[call.module]
        svc = proxy.services[call.service]
        cmd = Command[call.command.upper()]
        params = {k: self.params.resolve(v) for k, v in call.parameters.items()}
        key = (call.module, call.service)
        self._used[key] = svc
        self.log.emit(
            "command",
            f"{call.module}.{call.service}",
            f"{cmd.label}" + (f" procedure {call.procedure}" if call.procedure else ""),
            command=cmd.label,
            procedure=call.procedure,
            parameters={k: str(v) for k, v in params.items()},
        )
        try:
            await svc.command(cmd, procedure=call.procedure, parameters=params or None)
        except (CommandRefused, DriverError, ValueError, KeyError) as exc:
            raise StepFailed(f"{call.module}.{call.service} {cmd.label}: {exc}") from None
        targets = self._targets(call, cmd)
        if not targets:
            return
        fail = tuple(s for s in _FAILED if s not in targets)
        state = await svc.wait_for(*targets, *fail)
        if state in fail:
            raise StepFailed(f"{call.module}.{call.service} went to {state.label}")

    def _targets(self, call: Any, cmd: Command) -> tuple[State, ...]:
        if call.wait_for is not None:
            return (State[call.wait_for.upper()],)
        if cmd is Command.START:
            mt = self.plant.type_of(call.module)
            service = mt.service(call.service)
            proc = (
                service.procedure(call.procedure)
                if call.procedure is not None
                else service.default_procedure
            )
            return (State.COMPLETED,) if proc.self_completing else (State.EXECUTE,)
        return _TARGETS.get(cmd, ())

    async def _wait_step(self, step: WaitStep, label: str) -> None:
        w = step.wait
        if w.duration is not None:
            total = self.params.seconds(w.duration)
            self.progress.step_duration = total
            await self._held_sleep(total, progress=True)
            return
        if w.until is not None:
            cond = self._cond(w.until)
            while True:
                await self._gate_open()
                if self._evaluate(cond):
                    return
                await self.clock.sleep(self.tick)
        assert w.residence_times is not None and w.path is not None
        n = self.params.number(w.residence_times)
        elapsed = 0.0
        while True:
            await self._gate_open()
            tau = residence_time(self.plant, w.path, self._feed_flows())
            self.progress.step_duration = n * tau if math.isfinite(tau) else None
            self.progress.step_elapsed = elapsed
            if math.isfinite(tau) and elapsed >= n * tau:
                return
            t0 = self.clock.now()
            await self.clock.sleep(self.tick)
            if self._gate.is_set():
                elapsed += self.clock.now() - t0

    async def _held_sleep(self, total: float, progress: bool = False) -> None:
        """Sleep ``total`` simulated seconds of Execute time (time held does not count)."""
        elapsed = 0.0
        while elapsed < total:
            await self._gate_open()
            t0 = self.clock.now()
            await self.clock.sleep(min(self.tick, total - elapsed))
            if self._gate.is_set():
                elapsed += self.clock.now() - t0
            if progress:
                self.progress.step_elapsed = elapsed

    def _feed_flows(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for tag, assembly in feeds(self.plant).items():
            proxy = self.proxies.get(tag)
            if proxy is None:
                continue
            v = proxy.value(assembly)
            da = proxy.type.assembly(assembly)
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[tag] = max(0.0, to_si(float(v), da.unit))
        return out

    # ------------------------------------------------------------------ supervision
    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for proxy in self.proxies.values():
            out.update(proxy.si_values())
        out.update(self.derived)
        return out

    def _evaluate(self, cond: Condition) -> bool | None:
        values = {k: v for k, v in self.values().items() if k in cond.signals}
        try:
            return cond.update(self.clock.now(), values)
        except TypeError:
            return None

    async def _monitor_loop(self) -> None:
        while True:
            try:
                await self._supervise()
            except Exception:
                _log.exception("supervision tick failed")
            await self.clock.sleep(self.tick)

    async def _supervise(self) -> None:
        now = self.clock.now()
        values = self.values()
        for il in self.interlocks:
            try:
                hit = il.condition.update(
                    now, {k: v for k, v in values.items() if k in il.condition.signals}
                )
            except TypeError:
                hit = None
            await self._interlock(il, bool(hit))
        for al in self.alarms:
            if not al.enabled:
                continue
            change = al.step(now, values.get(al.spec.signal))
            if change == "raise":
                self.log.emit(
                    "alarm_raised",
                    al.spec.name,
                    al.spec.message or f"{al.spec.signal} out of limits",
                    priority=al.spec.priority,
                    signal=al.spec.signal,
                    value=values.get(al.spec.signal),
                )
            elif change == "clear":
                self.log.emit(
                    "alarm_cleared",
                    al.spec.name,
                    f"{al.spec.signal} back in limits",
                    priority=al.spec.priority,
                )
        flows = self._feed_flows()
        for ss in self.steady:
            tau = residence_time(self.plant, ss.spec.path, flows)
            flag = ss.step(now, values.get(ss.spec.signal), tau)
            self.derived[f"steady.{ss.spec.name}"] = ss.steady
            if flag is not None:
                self.log.emit(
                    "steady_state",
                    ss.spec.name,
                    "steady state reached" if flag else "steady state lost",
                    steady=flag,
                    residence_time=tau,
                )
        values = self.values()
        if self.divert is not None:
            await self._divert(now, values)

    async def _interlock(self, il: InterlockState, hit: bool) -> None:
        spec = il.spec
        if hit and not il.active:
            il.active = True
            il.trips += 1
            self.log.emit(
                "interlock_tripped",
                spec.name,
                f"{spec.when} -> {spec.action}",
                action=spec.action,
                condition=spec.when,
            )
            if spec.action == "hold":
                self._request_hold(f"interlock:{spec.name}", f"interlock {spec.name}")
            elif spec.action in ("stop", "abort"):
                if spec.modules:
                    for tag in spec.modules:
                        await self._module_command(
                            tag, Command[spec.action.upper()], f"interlock {spec.name}"
                        )
                else:
                    self.try_command(Command[spec.action.upper()], f"interlock {spec.name}")
            elif spec.action == "safe_state":
                for tag in spec.modules or list(self.proxies):
                    errors = await self.proxies[tag].apply_safe_state()
                    self.log.emit("safe_state", tag, f"interlock {spec.name}", errors=errors)
        elif not hit and il.active:
            il.active = False
            self.log.emit("interlock_cleared", spec.name, f"{spec.when} no longer true")
            if spec.action == "hold":
                if spec.resume == "auto":
                    self._release_hold(f"interlock:{spec.name}", auto=True)
                else:
                    il.awaiting_ack = True
                    self._hold_reasons.pop(f"interlock:{spec.name}", None)
                    prompt = self.operator.ask(
                        spec.name,
                        f"Interlock {spec.name} cleared: resume the recipe?",
                        ["resume", "stop", "abort"],
                    )
                    self.log.emit(
                        "operator_prompt", spec.name, "resume after interlock?", prompt=prompt.id
                    )
                    asyncio.get_running_loop().create_task(self._after_ack(il, prompt.future))

    async def _after_ack(self, il: InterlockState, fut: asyncio.Future[str]) -> None:
        answer = await fut
        il.awaiting_ack = False
        self.log.emit(
            "operator_action",
            il.spec.name,
            f"answered '{answer}'",
            user=self.operator.user,
            answer=answer,
        )
        cmd = {"resume": Command.UNHOLD, "stop": Command.STOP, "abort": Command.ABORT}[answer]
        if cmd is Command.UNHOLD and self._hold_reasons:
            return
        self.try_command(cmd, f"operator after interlock {il.spec.name}")

    async def _module_command(self, tag: str, cmd: Command, why: str) -> None:
        for (mtag, sname), svc in self._used.items():
            if mtag == tag:
                with contextlib.suppress(CommandRefused, DriverError, ValueError):
                    await svc.command(cmd)
                    self._event_service_cmd((mtag, sname), cmd, why)

    async def _divert(self, now: float, values: Mapping[str, Any]) -> None:
        d = self.divert
        assert d is not None
        if not d.active:
            return
        try:
            ok = d.condition.update(
                now, {k: v for k, v in values.items() if k in d.condition.signals}
            )
        except TypeError:
            ok = None
        want = bool(ok) and self.machine.state is State.EXECUTE
        self.derived["divert.product"] = want
        if want != d.to_product:
            proxy = self.proxies[d.valve]
            assembly = _valve_assembly(proxy)
            try:
                await proxy.set(assembly, want)
            except (DriverError, ValueError) as exc:
                self.log.emit("divert_failed", d.valve, str(exc))
                return
            d.to_product = want
            d.switches += 1
            self.log.emit("divert", d.valve, "to product" if want else "to waste", to_product=want)

    def _divert_switch(self, step_name: str | None) -> None:
        """Divert control and alarms start and end at the steps the recipe names."""
        for al in self.alarms:
            if step_name is not None and step_name == al.spec.enabled_from and not al.enabled:
                al.enabled = True
                self.log.emit("alarm_enabled", al.spec.name, f"evaluated from {step_name}")
            elif step_name is not None and step_name == al.spec.disabled_from and al.enabled:
                al.enabled = False
                if al.active:
                    al.active = False
                    self.log.emit("alarm_cleared", al.spec.name,
                                  f"no longer evaluated from {step_name}",
                                  priority=al.spec.priority)
                self.log.emit("alarm_disabled", al.spec.name, f"not evaluated from {step_name}")
        spec, d = self.recipe.divert, self.divert
        if spec is None or d is None or step_name is None:
            return
        if step_name == spec.enabled_from and not d.active:
            d.active = True
            self.log.emit("divert_enabled", d.valve, f"divert control active from {step_name}")
        elif step_name == spec.disabled_from and d.active:
            d.active = False
            self.log.emit("divert_disabled", d.valve, f"divert control ends at {step_name}")
            if d.to_product:
                asyncio.get_running_loop().create_task(self._divert_to_waste())

    async def _divert_to_waste(self) -> None:
        d = self.divert
        assert d is not None
        proxy = self.proxies[d.valve]
        try:
            await proxy.set(_valve_assembly(proxy), False)
        except (DriverError, ValueError) as exc:
            self.log.emit("divert_failed", d.valve, str(exc))
            return
        d.to_product = False
        self.derived["divert.product"] = False
        self.log.emit("divert", d.valve, "to waste", to_product=False)

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        return {
            "state": self.machine.state.label,
            "step": self.progress.step,
            "held_by": sorted(self._hold_reasons.values()),
            "events": len(self.log.events),
        }

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        self.log.subscribe(listener)


def _valve_assembly(proxy: ModuleProxy) -> str:
    for da in proxy.type.data_assemblies:
        if da.class_ in ("BinVlv", "MonBinVlv"):
            return da.name
    raise ValueError(f"{proxy.tag} has no valve assembly (BinVlv) to divert with")


def _kind(step: AnyStep) -> str:
    for kind, cls in (
        ("service", ServiceStep),
        ("set", SetStep),
        ("wait", WaitStep),
        ("prompt", PromptStep),
        ("sequence", SequenceStep),
        ("parallel", ParallelStep),
        ("repeat", RepeatStep),
    ):
        if isinstance(step, cls):
            return kind
    return "step"


def _count_steps(blocks: Sequence[UnitProcedure]) -> int:
    def count(steps: Sequence[Any]) -> int:
        n = 0
        for s in steps:
            if isinstance(s, SequenceStep):
                n += count(s.sequence)
            elif isinstance(s, ParallelStep):
                n += sum(count(b) for b in s.parallel)
            elif isinstance(s, RepeatStep):
                n += count(s.repeat.steps)
            else:
                n += 1
        return n

    return sum(count(b.steps) for b in blocks)


def _handler_text(h: Any) -> str:
    if isinstance(h, GotoHandler):
        return f"goto {h.goto}"
    return str(h or "hold")


def _fmt_s(s: float) -> str:
    return f"{s / 60:g} min" if s >= 120 else f"{s:g} s"

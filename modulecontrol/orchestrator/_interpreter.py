"""The procedure interpreter: runs a recipe's unit procedures step by step.

It runs as one task behind a gate that the recipe's state machine opens only in Execute, so
Hold and Pause freeze the sequence without losing its place and timed waits do not count
time spent held. What a step kind does is one entry of the handler table
(:attr:`Interpreter.handlers`, the command-registry pattern of bluesky's run engine): a new
step kind is a model class in ``recipe/_model.py`` and one handler here, and a test checks
the table covers every kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from modulecontrol.clock import Clock
from modulecontrol.descriptors import residence_time
from modulecontrol.drivers import DriverError
from modulecontrol.events import EventKind, EventLog
from modulecontrol.mtpcore import COMMAND_TARGETS, MtpError
from modulecontrol.optimize import Campaign, ExperimentFailed, plan_from_recipe, plan_prior
from modulecontrol.orchestrator._monitor import si_number
from modulecontrol.orchestrator._operator import OperatorChannel
from modulecontrol.orchestrator._optimize import (
    EventJournal,
    History,
    LineExperimenter,
    NotLive,
    no_history,
)
from modulecontrol.orchestrator._supervisor import ServiceKey, Supervisor
from modulecontrol.proxy import ModuleProxy, ServiceProxy
from modulecontrol.recipe import (
    AnyStep,
    GotoHandler,
    OptimizeStep,
    ParallelStep,
    PromptStep,
    RepeatStep,
    SequenceStep,
    ServiceCall,
    ServiceStep,
    SetStep,
    StepPath,
    UnitProcedure,
    ValidatedRecipe,
    WaitStep,
    walk_steps,
)
from modulecontrol.statemachine import Command, CommandRefused, ServiceStateMachine, State

_TARGETS: dict[Command, tuple[State, ...]] = {c: (s,) for c, s in COMMAND_TARGETS.items()}
"""The stable state each command leads a service to: the MTP core's table, one tuple each."""
_FAILED = (State.ABORTED, State.ABORTING)
"""States that end a service step early: Aborting already means the step failed."""
_STABLE = (State.IDLE, State.EXECUTE, State.HELD, State.PAUSED, State.STOPPED,
           State.COMPLETED, State.ABORTED)
_ENDED = (State.STOPPING, State.STOPPED, State.ABORTING, State.ABORTED)

StepHandler = Callable[[Any, str], Awaitable[None]]

Resumability = Literal["structure", "continue", "repeat", "verify", "hold"]
RESUMABILITY: dict[type[AnyStep], Resumability] = {
    ServiceStep: "verify",
    SetStep: "repeat",
    WaitStep: "continue",
    PromptStep: "repeat",
    SequenceStep: "structure",
    ParallelStep: "structure",
    RepeatStep: "structure",
    OptimizeStep: "hold",
}
"""What a restarted controller does with a step it finds running (docs/operations.md):

- ``continue``: a wait goes on with the time already spent (the gap included: the plant
  ran on as the recipe left it), a condition is judged afresh;
- ``repeat``: writing the same set points again, asking the same question again is safe;
- ``verify``: a service command is not idempotent (a Start resets a pump's totaliser): the
  step is done if the service is in the command's target state, waited for if on its way
  there; otherwise whether the command was carried out cannot be verified, and the recipe
  holds for an operator decision (resume sends it again, stop or abort ends the run);
- ``hold``: cannot be resumed safely (an optimisation's experiment in flight): the recipe
  holds for an operator decision, and resume runs the step again;
- ``structure``: sequences, parallels and repeats resume where their inner steps were.
"""


def _key(path: Sequence[Any]) -> str:
    return "/".join(str(x) for x in path)


@dataclass
class Position:
    """Where the procedure is, as a restart needs it: the unit procedure, the index of the
    running step in every step list entered (``len`` when the list is done), the iteration
    of every repeat, and each running leaf step's state (``t0`` its start, ``elapsed`` the
    Execute time a wait has counted, ``phase`` ``commanded`` once a service step sent its
    command). Keys are the steps' paths in the recipe document."""

    section: str = "procedure"
    block: int = 0
    cursors: dict[str, int] = field(default_factory=dict)
    iterations: dict[str, int] = field(default_factory=dict)
    leaves: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"section": self.section, "block": self.block, "cursors": dict(self.cursors),
                "iterations": dict(self.iterations),
                "leaves": {k: dict(v) for k, v in self.leaves.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Position:
        """Raises ValueError for anything that is not a position this code wrote."""
        try:
            section = str(data["section"])
            if section not in ("procedure", "cleanup"):
                raise ValueError(f"unknown section {section!r}")
            leaves = {str(k): {"kind": str(v["kind"]), "t0": float(v["t0"]),
                               "elapsed": float(v["elapsed"]), "phase": str(v["phase"])}
                      for k, v in dict(data["leaves"]).items()}
            return cls(section, int(data["block"]),
                       {str(k): int(v) for k, v in dict(data["cursors"]).items()},
                       {str(k): int(v) for k, v in dict(data["iterations"]).items()}, leaves)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a recipe position: {exc!r}") from None

    def forget_below(self, path: Sequence[Any]) -> None:
        prefix = _key(path) + "/"
        for table in (self.cursors, self.iterations, self.leaves):
            for k in [k for k in table if k.startswith(prefix)]:
                del table[k]


class StepFailed(Exception):
    def __init__(self, message: str, *, timeout: bool = False,
                 unverified: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.unverified = unverified
        """A command whose exchange failed (the link): it may have been carried out."""


class _Goto(Exception):
    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


class _Ended(Exception):
    """The recipe left Execute for good (stop/abort): unwind the procedure."""


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
    started: float | None = None
    """Line time the procedure started at."""
    step_path: StepPath = ()
    """Where the step last started is written: the position the remaining time counts from."""
    iterations: dict[StepPath, tuple[int, int]] = field(default_factory=dict)
    """Each repeat's current iteration and its count (``until`` loops: their ``max``)."""


class Interpreter:
    """Runs the procedure of one recipe; :meth:`run` is the procedure task."""

    def __init__(
        self,
        recipe: ValidatedRecipe,
        proxies: Mapping[str, ModuleProxy],
        *,
        clock: Clock,
        log: EventLog,
        machine: ServiceStateMachine,
        command: Callable[[Command, str], bool],
        supervisor: Supervisor,
        operator: OperatorChannel,
        used: MutableMapping[ServiceKey, ServiceProxy],
        tick: float,
    ) -> None:
        self.validated = recipe
        self.recipe = recipe.recipe
        self.proxies = proxies
        self.clock = clock
        self.log = log
        self._machine = machine
        self._command = command
        self.supervisor = supervisor
        self.operator = operator
        self._used = used
        self.tick = tick
        self.gate = asyncio.Event()
        """Open only while the recipe is in Execute."""
        self.progress = Progress(steps_total=sum(
            1 for b in self.recipe.procedure for _, s in walk_steps(b.steps) if not s.branches()
        ))
        self._goto_done = False
        self.optimize_history: History = no_history
        self.campaign: Campaign | None = None
        """The run's optimisation campaign once its step has begun (kept after it ends)."""
        """Experiments of a campaign already in the records (set by the session)."""
        self._block = ""
        self.position = Position()
        """Where the procedure is now (the orchestrator's snapshot writes it down)."""
        self._resume: Position | None = None
        self.handlers: dict[type[AnyStep], StepHandler] = {
            ServiceStep: self._service_step,
            SetStep: self._set_step,
            WaitStep: self._wait_step,
            PromptStep: self._prompt_step,
            SequenceStep: self._nested_step,
            ParallelStep: self._parallel_step,
            RepeatStep: self._repeat_step,
            OptimizeStep: self._optimize_step,
        }
        """What each step kind does: one entry per kind."""

    def resume_from(self, position: Position, gap: float) -> None:
        """Start :meth:`run` at ``position`` rather than at the beginning; ``gap`` simulated
        seconds of Execute time passed since it was written (the plant ran on), counted
        into the running waits."""
        for leaf in position.leaves.values():
            leaf["elapsed"] = float(leaf["elapsed"]) + max(0.0, gap)
        self._resume = position

    def _skip(self, steps: Sequence[AnyStep]) -> None:
        self.progress.steps_done += sum(1 for _, s in walk_steps(list(steps))
                                        if not s.branches())

    # ------------------------------------------------------------------ structure
    async def run(self) -> None:
        try:
            await self.gate_open()
            if self.progress.started is None:  # a resumed run keeps its start
                self.progress.started = self.clock.now()
            r = self._resume
            if r is not None and r.section == "cleanup":
                for block in self.recipe.procedure:
                    self._skip(block.steps)
                raise _Goto(self.recipe.cleanup[r.block].name)
            start = r.block if r is not None else 0
            for i, block in enumerate(self.recipe.procedure):
                if i < start:
                    self._skip(block.steps)
                    continue
                await self._run_block(block, "procedure", i)
            self.position.block = len(self.recipe.procedure)
        except _Goto as g:
            await self._run_cleanup(g.target)
            self._command(Command.STOP, f"cleanup {g.target} done")
            await asyncio.Event().wait()  # Stopping cancels us
        except _Ended:
            return

    async def gate_open(self) -> None:
        if self._machine.state in _ENDED:
            raise _Ended()
        await self.gate.wait()

    async def _run_cleanup(self, name: str) -> None:
        block = next(b for b in self.recipe.cleanup if b.name == name)
        self.log.emit(EventKind.GOTO, "recipe", f"going to cleanup {name}", target=name)
        self._goto_done = True
        await self._run_block(block, "cleanup", self.recipe.cleanup.index(block))

    async def _run_block(self, block: UnitProcedure, section: str, index: int) -> None:
        self._block = block.name
        self.position.section, self.position.block = section, index
        self.log.emit(EventKind.BLOCK_STARTED, block.name, f"unit procedure {block.name}")
        await self._run_steps(block.steps)
        if section == "procedure":
            self.position.block = index + 1
        self.log.emit(EventKind.BLOCK_FINISHED, block.name, f"unit procedure {block.name} done")

    async def _run_steps(self, steps: Sequence[AnyStep]) -> None:
        if not steps:
            return
        key = _key(steps[0].path[:-1])
        start = self._resume.cursors.pop(key, 0) if self._resume is not None else 0
        self._skip(steps[:start])
        for j in range(start, len(steps)):
            self.position.cursors[key] = j
            await self._run_step(steps[j])
        self.position.cursors[key] = len(steps)

    def _leaf(self, step: AnyStep) -> dict[str, Any]:
        """The running leaf step's entry in the position (a fresh one outside a run)."""
        return self.position.leaves.get(_key(step.path)) or {"elapsed": 0.0}

    async def _run_step(self, step: AnyStep) -> None:
        label = step.title() or self.validated.label(step)
        kind = step.KIND
        key = _key(step.path)
        resumed = None
        if self._resume is not None and not step.branches():
            resumed = self._resume.leaves.pop(key, None)
        while True:
            await self.gate_open()
            p = self.progress
            p.step, p.step_kind, p.step_started = label, kind, self.clock.now()
            p.step_duration, p.step_elapsed, p.step_path = None, 0.0, step.path
            if step.branches():
                self.position.forget_below(step.path)
            else:
                self.position.leaves[key] = {
                    "kind": kind, "t0": resumed["t0"] if resumed else p.step_started,
                    "elapsed": resumed["elapsed"] if resumed else 0.0, "phase": "started"}
            self.supervisor.step_entered(step.name)
            self.log.emit(
                EventKind.STEP_STARTED, label, f"{kind} step started", step_kind=kind,
                block=self._block, at=str(self.validated.location(step)), path=list(step.path),
            )  # fmt: skip
            timeout = self.validated.seconds(step.timeout) if step.timeout is not None else None
            if timeout is not None and resumed is not None:  # the time it had already run
                timeout = max(0.0, timeout - (p.step_started - float(resumed["t0"])))
            if resumed is not None:
                decision = await self._resume_decision(step, label, resumed)
                resumed = None
                if decision == "done":
                    self._finished(step, kind)
                    return
                if decision is not None:  # an operator decides: resume runs the step again
                    self._hold_here(decision)
                    continue
            try:
                work = self.handlers[type(step)](step, label)
                if timeout is None:
                    await work
                else:
                    await self._with_timeout(work, timeout)
            except StepFailed as exc:
                handler = step.on_timeout if exc.timeout else step.on_error
                self.log.emit(
                    EventKind.STEP_TIMEOUT if exc.timeout else EventKind.STEP_FAILED,
                    label, str(exc), handler=_handler_text(handler),
                )  # fmt: skip
                if await self._handle(handler, label, str(exc), decision=not exc.unverified):
                    if exc.unverified and await self._carried_out(step, label):
                        self._finished(step, kind)
                        return
                    continue  # retry after an unhold (the operator's, or the link's return)
                self.position.leaves.pop(key, None)
                self.position.cursors[_key(step.path[:-1])] = int(step.path[-1]) + 1
                return
            self._finished(step, kind)
            return

    def _finished(self, step: AnyStep, kind: str) -> None:
        """Counted, moved past in the position, then said (a position written on this event
        resumes after the step)."""
        if not step.branches():
            self.progress.steps_done += 1
        self.position.leaves.pop(_key(step.path), None)
        self.position.cursors[_key(step.path[:-1])] = int(step.path[-1]) + 1
        label = step.title() or self.validated.label(step)
        self.log.emit(EventKind.STEP_FINISHED, label, f"{kind} step done", step_kind=kind)

    async def _resume_decision(self, step: AnyStep, label: str,
                               leaf: Mapping[str, Any]) -> str | None:
        """What to do with a step a restart found running (:data:`RESUMABILITY`): None runs
        it (on), ``"done"`` moves past it, any other text holds the recipe with that text."""
        how = RESUMABILITY[type(step)]
        if how == "hold":
            return (f"{label}: a {step.KIND} step cannot be resumed safely after a restart; "
                    f"resume runs it again, stop or abort ends the run")
        if how != "verify" or not isinstance(step, ServiceStep):
            return None
        call = step.service
        svc = self.proxies[call.module].services[call.service]
        cmd = Command[call.command.upper()]
        self._used[(call.module, call.service)] = svc
        targets = self._targets(call, cmd)
        where = f"{call.module}.{call.service}"
        state = svc.state
        if targets and state in targets:
            return "done"
        on_the_way = state not in _STABLE or (
            state is State.EXECUTE and targets == (State.COMPLETED,))
        if targets and on_the_way:
            fail = tuple(s for s in _FAILED if s not in targets)
            try:
                state = await svc.wait_for(*targets, *fail, timeout=60.0)
            except TimeoutError:
                state = svc.state
            if state in targets:
                return "done"
        sent = "was sent" if leaf.get("phase") == "commanded" else "may have been sent"
        wanted = " or ".join(t.label for t in targets) or "its target"
        return (f"{label}: {cmd.label} of {where} {sent} before the restart and {where} is "
                f"{state.label}, not {wanted}: whether it was carried out cannot be verified; "
                f"resume sends it again, stop or abort ends the run")

    async def _carried_out(self, step: AnyStep, label: str) -> bool:
        """After the resume of a service step whose command's exchange failed (a link lost
        as it was sent; resumed by the operator or by the link's return): True if the
        service is in the command's target state, or reaches it from the acting state it is
        in (the restart's verification), so the command was carried out and is not sent
        again (it would be refused: a Start is not enabled in Execute, and the run held
        again on that). Said in the run's events."""
        if not isinstance(step, ServiceStep):
            return False
        if await self._resume_decision(step, label, {"phase": "commanded"}) != "done":
            return False
        call = step.service
        svc = self.proxies[call.module].services[call.service]
        cmd = Command[call.command.upper()]
        self.log.emit(EventKind.MESSAGE, label,
                      f"{call.module}.{call.service} is {svc.state.label}: the {cmd.label} "
                      f"whose exchange failed was carried out; not sent again")
        return True

    def _hold_here(self, reason: str, *, decision: bool = True) -> None:
        """Hold the recipe for an operator decision on the step it is at; the step goes on
        (runs again) only once the recipe is back in Execute. The gate closes now: the
        Holding work that closes it too runs a few loop turns later, and a step tried again
        meanwhile sent its command again without anyone deciding so (the service bench's
        records: 'SP1.Dosing start' failed three times in 5 ms, Start sent three times).

        With ``decision`` (a failed step, a step a restart cannot verify) only an operator
        ends the hold: a cause that clears meanwhile (a link back) does not. Without, the
        failure was the link itself as a command went out: its return may end the hold, and
        the step then first looks whether the command was carried out
        (:meth:`_carried_out`) before sending it again."""
        if decision:
            self.supervisor.holds.await_decision(reason)
        if self._command(Command.HOLD, reason) or self._machine.state is not State.EXECUTE:
            self.gate.clear()

    async def _with_timeout(self, work: Awaitable[None], timeout: float) -> None:
        task = asyncio.ensure_future(work)
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

    async def _handle(self, handler: Any, label: str, why: str, *,
                      decision: bool = True) -> bool:
        """Apply an on_timeout/on_error handler; True means: retry the step."""
        if handler is None or handler == "hold":
            self._hold_here(f"{label}: {why}", decision=decision)
            await self.gate_open()
            return True
        if handler == "continue":
            return False
        if handler in ("abort", "stop"):
            self._command(Command.ABORT if handler == "abort" else Command.STOP, f"{label}: {why}")
            raise _Ended()
        if isinstance(handler, GotoHandler):
            if self._goto_done:
                self._command(Command.ABORT, f"{label}: {why} (inside cleanup)")
                raise _Ended()
            raise _Goto(handler.goto)
        raise StepFailed(f"unknown handler {handler!r}")

    # ------------------------------------------------------------------ step kinds
    async def _service_step(self, step: ServiceStep, label: str) -> None:
        call = step.service
        svc = self.proxies[call.module].services[call.service]
        cmd = Command[call.command.upper()]
        params = {k: self.validated.resolve(v) for k, v in call.parameters.items()}
        self._used[(call.module, call.service)] = svc
        self._leaf(step)["phase"] = "commanded"
        self.log.emit(
            EventKind.COMMAND,
            f"{call.module}.{call.service}",
            f"{cmd.label}" + (f" procedure {call.procedure}" if call.procedure else ""),
            command=cmd.label,
            procedure=call.procedure,
            parameters={k: str(v) for k, v in params.items()},
        )
        try:
            await svc.command(cmd, procedure=call.procedure, parameters=params or None)
        except DriverError as exc:  # the link: sent or not, carried out or not, unknown
            raise StepFailed(f"{call.module}.{call.service} {cmd.label}: {exc}",
                             unverified=True) from None
        except (CommandRefused, MtpError, ValueError, KeyError) as exc:
            # a PEA's refusal (CommandEn, procedure, parameter) fails the step, so its
            # handler holds or ends the run with the message, never a crashed recipe
            raise StepFailed(f"{call.module}.{call.service} {cmd.label}: {exc}") from None
        targets = self._targets(call, cmd)
        if not targets:
            return
        fail = tuple(s for s in _FAILED if s not in targets)
        state = await svc.wait_for(*targets, *fail)
        if state in fail:
            raise StepFailed(f"{call.module}.{call.service} went to {state.label}")

    def _targets(self, call: ServiceCall, cmd: Command) -> tuple[State, ...]:
        if call.wait_for is not None:
            return (State[call.wait_for.upper()],)
        if cmd is Command.START:
            service = self.validated.plant.type_of(call.module).service(call.service)
            proc = (
                service.procedure(call.procedure)
                if call.procedure is not None
                else service.default_procedure
            )
            return (State.COMPLETED,) if proc.self_completing else (State.EXECUTE,)
        return _TARGETS.get(cmd, ())

    async def _set_step(self, step: SetStep, label: str) -> None:
        for target, raw in step.set.items():
            tag, assembly = target.split(".", 1)
            value = self.validated.resolve(raw)
            try:
                coerced = await self.proxies[tag].set(assembly, value)
            except (DriverError, ValueError) as exc:
                raise StepFailed(f"set {target}: {exc}") from None
            self.log.emit(
                EventKind.PARAMETER_WRITE, target, f"{target} = {value}",
                value=coerced, given=str(value),
            )  # fmt: skip

    async def _prompt_step(self, step: PromptStep, label: str) -> None:
        spec = step.prompt
        prompt = self.operator.ask(label, spec.message, spec.choices)
        self.progress.prompts.append(spec.message)
        self.log.emit(
            EventKind.OPERATOR_PROMPT, label, spec.message, prompt=prompt.id,
            choices=spec.choices,
        )  # fmt: skip
        try:
            answer = await prompt.future
        finally:
            with contextlib.suppress(ValueError):
                self.progress.prompts.remove(spec.message)
        self.log.emit(
            EventKind.OPERATOR_ACTION, label, f"answered '{answer}'",
            answer=answer, **prompt.answer_data(),
        )  # fmt: skip

    async def _nested_step(self, step: AnyStep, label: str) -> None:
        for _, steps in step.branches():
            await self._run_steps(steps)

    async def _parallel_step(self, step: ParallelStep, label: str) -> None:
        async with asyncio.TaskGroup() as tg:
            for branch in step.parallel:
                tg.create_task(self._run_steps(branch))

    async def _repeat_step(self, step: RepeatStep, label: str) -> None:
        spec = step.repeat
        key = _key(step.path)
        start = self._resume.iterations.pop(key, 0) if self._resume is not None else 0
        if spec.times is not None:
            n = int(si_number(self.validated, spec.times))
            for i in range(start, n):
                self._iteration(step, i, start)
                self.progress.iterations[step.path] = (i + 1, n)
                self.log.emit(EventKind.ITERATION, label, f"iteration {i + 1} of {n}",
                              index=i + 1)
                await self._run_steps(spec.steps)
            return
        assert spec.until is not None
        cond = self.validated.compile(spec.until)
        for i in range(start, spec.max):
            self._iteration(step, i, start)
            self.progress.iterations[step.path] = (i + 1, spec.max)
            self.log.emit(EventKind.ITERATION, label, f"iteration {i + 1}", index=i + 1)
            await self._run_steps(spec.steps)
            if self.supervisor.evaluate(cond):
                return
        raise StepFailed(f"'until {spec.until}' not reached in {spec.max} iterations")

    def _iteration(self, step: RepeatStep, i: int, resumed_at: int) -> None:
        """A new iteration starts its inner steps afresh; a resumed one where they were."""
        if i != resumed_at or self._resume is None:
            self.position.forget_below(step.path)
        self.position.iterations[_key(step.path)] = i

    async def _optimize_step(self, step: OptimizeStep, label: str) -> None:
        plan = plan_from_recipe(self.validated)
        line = LineExperimenter(self.validated, self.proxies, self.supervisor, self.clock,
                                self.log, self.tick, self.gate_open, self.gate.is_set)
        journal = EventJournal(self.log, plan, self.optimize_history)
        try:
            self.campaign = Campaign(plan, line, journal,
                                     prior=plan_prior(plan, self.validated.plant))
            result = await self.campaign.run()
        except NotLive as exc:
            raise StepFailed(f"optimize {plan.name}: {exc}") from None
        except ValueError as exc:  # the twin cannot be the prior (no steady state at all)
            raise StepFailed(f"optimize {plan.name}: {exc}") from None
        # the campaign's outcome is where the line runs on: its best feasible point, not the
        # last one the search happened to ask (which may violate a constraint)
        best = result.best
        if best is None:
            raise StepFailed(f"optimize {plan.name}: no feasible experiment in "
                             f"{len(result.records)}; the line stays at the last one's set "
                             "points")
        try:
            await line.apply(best.setpoints, plan)
        except ExperimentFailed as exc:
            raise StepFailed(f"optimize {plan.name}: the best point: {exc}") from None
        self.log.emit(EventKind.OPTIMIZE_BEST, plan.name,
                      f"campaign {plan.name}: the line runs at experiment {best.index + 1}, "
                      f"the best feasible of {len(result.records)} (objective "
                      f"{plan.show('objective', best.objective)})", index=best.index,
                      setpoints=dict(best.setpoints), objective=best.objective,
                      experiments=len(result.records))

    async def _wait_step(self, step: WaitStep, label: str) -> None:
        w = step.wait
        leaf = self._leaf(step)
        if w.duration is not None:
            total = self.validated.seconds(w.duration)
            self.progress.step_duration = total
            await self._held_sleep(total, progress=True, leaf=leaf)
            return
        if w.until is not None:
            cond = self.validated.compile(w.until)
            while True:
                await self.gate_open()
                if self.supervisor.evaluate(cond):
                    return
                await self.clock.sleep(self.tick)
        assert w.residence_times is not None and w.path is not None
        n = si_number(self.validated, w.residence_times)
        elapsed = float(leaf["elapsed"])
        while True:
            await self.gate_open()
            tau = residence_time(self.validated.plant, w.path, self.supervisor.feed_flows())
            self.progress.step_duration = n * tau if math.isfinite(tau) else None
            self.progress.step_elapsed = elapsed
            if math.isfinite(tau) and elapsed >= n * tau:
                return
            t0 = self.clock.now()
            await self.clock.sleep(self.tick)
            if self.gate.is_set():
                elapsed += self.clock.now() - t0
                leaf["elapsed"] = elapsed

    async def _held_sleep(self, total: float, progress: bool = False,
                          leaf: dict[str, Any] | None = None) -> None:
        """Sleep ``total`` simulated seconds of Execute time (time held does not count);
        with ``leaf``, from the time it has counted already, kept up to date in it."""
        elapsed = float(leaf["elapsed"]) if leaf is not None else 0.0
        while elapsed < total:
            await self.gate_open()
            t0 = self.clock.now()
            await self.clock.sleep(min(self.tick, total - elapsed))
            if self.gate.is_set():
                elapsed += self.clock.now() - t0
                if leaf is not None:
                    leaf["elapsed"] = elapsed
            if progress:
                self.progress.step_elapsed = elapsed


def _handler_text(h: Any) -> str:
    if isinstance(h, GotoHandler):
        return f"goto {h.goto}"
    return str(h or "hold")


def _fmt_s(s: float) -> str:
    return f"{s / 60:g} min" if s >= 120 else f"{s:g} s"

"""How long a run still has to go: the recipe's planned step durations, from where it is.

A recipe says the length of some steps (``wait: {duration: 1 h}``, a repeat's ``times``)
and not of others (``wait: {until: ...}``, an operator prompt, a self-completing procedure,
a wait for residence times that depend on the flows of the moment, an ``until`` loop). The
estimate adds what is known from the current step on and names what is not, so an operator
reads "at least 7 h 20 min, and 2 steps of unknown length (steady, nitrite_check)" rather
than a number that pretends. Holds, timeouts and gotos are not foreseen: it is the plan's
remaining time, recomputed each time it is asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from modulecontrol.orchestrator._interpreter import Progress
from modulecontrol.orchestrator._monitor import si_number
from modulecontrol.recipe import (
    AnyStep,
    ParallelStep,
    PromptStep,
    RepeatStep,
    SequenceStep,
    ServiceStep,
    SetStep,
    StepPath,
    UnitProcedure,
    ValidatedRecipe,
    WaitStep,
)
from modulecontrol.statemachine import State


@dataclass
class Estimate:
    """``known`` seconds of planned duration; ``unknown``: labels of the steps still to run
    whose length the recipe does not say (the run takes at least ``known``)."""

    known: float = 0.0
    unknown: list[str] = field(default_factory=list)

    def add(self, other: Estimate, times: int = 1) -> Estimate:
        self.known += times * other.known
        self.unknown += [u for u in other.unknown if u not in self.unknown] if times else []
        return self


def planned(vr: ValidatedRecipe, step: AnyStep) -> Estimate:
    """The planned duration of a whole step (its nested steps included)."""
    label = step.title() or vr.label(step)
    if isinstance(step, WaitStep):
        if step.wait.duration is not None:
            return Estimate(vr.seconds(step.wait.duration))
        return Estimate(unknown=[label])
    if isinstance(step, SetStep):
        return Estimate()
    if isinstance(step, ServiceStep):
        return Estimate(unknown=[label]) if _waits_for_completion(vr, step) else Estimate()
    if isinstance(step, SequenceStep):
        return _sum(vr, step.sequence)
    if isinstance(step, ParallelStep):
        out = Estimate()
        for branch in step.parallel:
            b = _sum(vr, branch)
            out.known = max(out.known, b.known)
            out.unknown += [u for u in b.unknown if u not in out.unknown]
        return out
    if isinstance(step, RepeatStep):
        if step.repeat.times is None:
            return Estimate(unknown=[label])
        return Estimate().add(_sum(vr, step.repeat.steps), _times(vr, step))
    assert isinstance(step, PromptStep) or step.KIND == "optimize", step.KIND
    return Estimate(unknown=[label])  # an operator's answer, an optimisation campaign


def remaining(vr: ValidatedRecipe, progress: Progress) -> Estimate:
    """The planned time from the current step (``progress.step_path``) to the procedure's
    end: the rest of the current step, of each enclosing repeat's iterations and sequence,
    then the following unit procedures. A run in a cleanup block has only that block left."""
    cur = progress.step_path
    blocks = vr.recipe.procedure
    if not cur:
        return _sum_blocks(vr, blocks)
    if cur[0] != "procedure":
        cleanup = vr.recipe.cleanup[int(cur[1])]
        return _rest(vr, cleanup.steps, cur, progress)
    b = int(cur[1])
    out = _rest(vr, blocks[b].steps, cur, progress)
    return out.add(_sum_blocks(vr, blocks[b + 1:]))


def _sum_blocks(vr: ValidatedRecipe, blocks: Sequence[UnitProcedure]) -> Estimate:
    out = Estimate()
    for block in blocks:
        out.add(_sum(vr, block.steps))
    return out


def _sum(vr: ValidatedRecipe, steps: Sequence[AnyStep]) -> Estimate:
    out = Estimate()
    for st in steps:
        out.add(planned(vr, st))
    return out


def _contains(step: AnyStep, cur: StepPath) -> bool:
    return cur[:len(step.path)] == step.path


def _rest(vr: ValidatedRecipe, steps: Sequence[AnyStep], cur: StepPath,
          progress: Progress) -> Estimate:
    """What is left of ``steps`` when the current step is in one of them."""
    for j, st in enumerate(steps):
        if _contains(st, cur):
            return _within(vr, st, cur, progress).add(_sum(vr, steps[j + 1:]))
    return _sum(vr, steps)


def _within(vr: ValidatedRecipe, step: AnyStep, cur: StepPath, progress: Progress) -> Estimate:
    """What is left of ``step``, which is or holds the current step."""
    if step.path == cur:
        whole = planned(vr, step)
        if step.branches():  # a container just entered: all of it is ahead
            return whole
        if progress.step_duration is not None:  # the step knows its own length now
            return Estimate(max(0.0, progress.step_duration - progress.step_elapsed))
        if whole.unknown:
            return whole
        return Estimate(max(0.0, whole.known - progress.step_elapsed))
    if isinstance(step, SequenceStep):
        return _rest(vr, step.sequence, cur, progress)
    if isinstance(step, ParallelStep):  # the current branch's rest: the others may be longer
        branch = next(b for b in step.parallel if b and _contains_any(b, cur))
        return _rest(vr, branch, cur, progress)
    if isinstance(step, RepeatStep):
        out = _rest(vr, step.repeat.steps, cur, progress)
        if step.repeat.times is None:
            label = step.title() or vr.label(step)
            return out.add(Estimate(unknown=[label]))
        n = _times(vr, step)
        i = progress.iterations.get(step.path, (1, n))[0]
        return out.add(_sum(vr, step.repeat.steps), max(0, n - i))
    return planned(vr, step)


def _contains_any(steps: Sequence[AnyStep], cur: StepPath) -> bool:
    return any(_contains(s, cur) for s in steps)


def _times(vr: ValidatedRecipe, step: RepeatStep) -> int:
    return int(si_number(vr, step.repeat.times))


def _waits_for_completion(vr: ValidatedRecipe, step: ServiceStep) -> bool:
    """A start of a self-completing procedure waits for Completed (the default ``wait_for``)."""
    call = step.service
    completed = State.COMPLETED.label
    if call.command != "start" or call.wait_for not in (None, completed):
        return call.wait_for == completed
    try:
        svc = vr.plant.type_of(call.module).service(call.service)
        proc = (svc.procedure(call.procedure) if call.procedure is not None
                else svc.default_procedure)
    except KeyError:
        return True  # not knowable here: said as unknown, not guessed as zero
    return proc.self_completing

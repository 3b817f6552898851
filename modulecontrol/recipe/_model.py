"""The recipe language (YAML, ISA-88 inspired) as pydantic models.

A recipe is data: header, typed parameters, plant-wide blocks (interlocks, alarms,
steady-state detectors, divert control) and a procedure of unit procedures whose steps are
one of a small set of kinds. Conditions stay strings here; the validator parses them with
:mod:`modulecontrol.expr` against the plant's signals.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, Field, PrivateAttr, Tag, field_validator, model_validator

from modulecontrol.descriptors import Ident, Model, UnitStr
from modulecontrol.mtpcore import StateLabel

PARAM_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

CommandName = Literal[
    "start", "stop", "hold", "unhold", "pause", "resume", "abort", "reset", "restart", "complete"
]


class ParameterSpec(Model):
    """A recipe parameter: typed, with unit, default and range; overridable at run time."""

    type: Literal["number", "integer", "duration", "bool", "string"] = "number"
    unit: UnitStr = ""
    default: Any = None
    min: Any = None
    max: Any = None
    choices: list[str] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _unit_for_type(self) -> ParameterSpec:
        if self.type == "duration" and not self.unit:
            object.__setattr__(self, "unit", "s")
        if self.type in ("bool", "string") and self.unit:
            raise ValueError(f"a {self.type} parameter has no unit")
        return self


class GotoHandler(Model):
    goto: Ident


Handler = Literal["hold", "abort", "stop", "continue"] | GotoHandler
"""What happens when a step times out or fails: hold the recipe (operator decides), abort,
stop, carry on, or go to a named block of the ``cleanup`` section."""


StepPath = tuple[str | int, ...]
"""Where a step is written in its recipe, e.g. ``("procedure", 0, "steps", 2)``."""


class _StepBase(Model):
    """What every step kind has. A kind is one subclass: its ``KIND`` (the YAML key) and its
    ``branches`` (nested steps) are all the structure that walkers need; what a kind *does*
    is looked up by class in the one handler table of each concern (validator, interpreter),
    and a test checks that every table covers every kind."""

    KIND: ClassVar[str] = ""
    name: Ident | None = None
    description: str = ""
    timeout: Any = None
    """Duration (``'10 min'`` or ``${param}``); without one a step may wait for ever."""
    on_timeout: Handler | None = None
    on_error: Handler | None = None
    _path: StepPath = PrivateAttr(default=())

    @property
    def path(self) -> StepPath:
        """The step's stable place in its recipe (set when the recipe is built): what
        locates it in the file and names it in logs, instead of side tables by ``id()``."""
        return self._path

    def branches(self) -> list[tuple[StepPath, list[AnyStep]]]:
        """The nested step lists, each with its path below this step (none for a leaf)."""
        return []

    @classmethod
    def raw_branches(cls, body: Any) -> list[tuple[StepPath, list[Any]]]:
        """:meth:`branches` of raw YAML data (the body under the kind key), for the checks
        that run before the model is built; whatever is malformed is left to the schema."""
        return []

    @classmethod
    def spec(cls) -> type[Model] | None:
        """The model of the body under the kind key when it is a mapping (its keys are
        checked with suggestions before the schema phase)."""
        return None

    def title(self) -> str | None:
        """How a log names the step when its place is not the best name."""
        return self.name


class ServiceCall(Model):
    module: Ident
    service: Ident
    procedure: Ident | int | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    command: CommandName = "start"
    wait_for: StateLabel | None = None
    """State to wait for; by default the state the command leads to (Execute after start,
    Completed after start of a self-completing procedure, Stopped after stop, ...)."""


class ServiceStep(_StepBase):
    KIND: ClassVar[str] = "service"
    service: ServiceCall

    @classmethod
    def spec(cls) -> type[Model] | None:
        return ServiceCall

    def title(self) -> str | None:
        call = self.service
        return self.name or f"{call.module}.{call.service} {call.command}"


class SetStep(_StepBase):
    KIND: ClassVar[str] = "set"
    set: dict[str, Any] = Field(min_length=1)
    """``MODULE.ASSEMBLY: value`` pairs, written in order."""


class WaitSpec(Model):
    duration: Any = None
    until: str | None = None
    residence_times: Any = None
    path: list[Ident] | None = None
    """For ``residence_times``: the flow path as ``[FROM_MODULE, TO_MODULE]`` (or more
    intermediate modules); its volume over its current flow is one residence time."""

    @field_validator("duration")
    @classmethod
    def _duration_has_unit(cls, v: Any) -> Any:
        """A bare number could be seconds or minutes: it needs its unit (docs/descriptors.md,
        Units)."""
        bare = isinstance(v, int | float) and not isinstance(v, bool)
        if isinstance(v, str):
            try:
                float(v.strip())
                bare = True
            except ValueError:
                pass
        if bare:
            raise ValueError(f"duration needs a unit of dimension [time], e.g. '{v} s' or "
                             f"'{v} min'")
        return v

    @model_validator(mode="after")
    def _one(self) -> WaitSpec:
        given = [
            k for k in ("duration", "until", "residence_times") if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError("a wait needs exactly one of 'duration', 'until', 'residence_times'")
        if self.residence_times is not None and not self.path:
            raise ValueError("'residence_times' needs a 'path' of modules, e.g. [P1, V1]")
        if self.path is not None and self.residence_times is None:
            raise ValueError("'path' only goes with 'residence_times'")
        return self


class WaitStep(_StepBase):
    KIND: ClassVar[str] = "wait"
    wait: WaitSpec

    @classmethod
    def spec(cls) -> type[Model] | None:
        return WaitSpec


class PromptSpec(Model):
    message: str
    choices: list[str] = Field(default_factory=lambda: ["ok"])


class PromptStep(_StepBase):
    KIND: ClassVar[str] = "prompt"
    prompt: PromptSpec

    @classmethod
    def spec(cls) -> type[Model] | None:
        return PromptSpec


class SequenceStep(_StepBase):
    KIND: ClassVar[str] = "sequence"
    sequence: list[Step] = Field(min_length=1)

    def branches(self) -> list[tuple[StepPath, list[AnyStep]]]:
        return [(("sequence",), self.sequence)]

    @classmethod
    def raw_branches(cls, body: Any) -> list[tuple[StepPath, list[Any]]]:
        return [(("sequence",), body)] if isinstance(body, list) else []


class ParallelStep(_StepBase):
    KIND: ClassVar[str] = "parallel"
    parallel: list[list[Step]] = Field(min_length=2)
    """Branches run at the same time; the step ends when every branch has ended."""

    def branches(self) -> list[tuple[StepPath, list[AnyStep]]]:
        return [(("parallel", b), branch) for b, branch in enumerate(self.parallel)]

    @classmethod
    def raw_branches(cls, body: Any) -> list[tuple[StepPath, list[Any]]]:
        if not isinstance(body, list):
            return []
        return [(("parallel", b), br) for b, br in enumerate(body) if isinstance(br, list)]


class RepeatSpec(Model):
    times: Any = None
    until: str | None = None
    max: int = Field(default=1000, ge=1, le=1_000_000)
    """Upper bound on iterations of an ``until`` loop: every loop in a recipe is bounded."""
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _bound(self) -> RepeatSpec:
        if (self.times is None) == (self.until is None):
            raise ValueError("a repeat needs exactly one of 'times' or 'until'")
        return self


class RepeatStep(_StepBase):
    KIND: ClassVar[str] = "repeat"
    repeat: RepeatSpec

    def branches(self) -> list[tuple[StepPath, list[AnyStep]]]:
        return [(("repeat", "steps"), self.repeat.steps)]

    @classmethod
    def raw_branches(cls, body: Any) -> list[tuple[StepPath, list[Any]]]:
        steps = body.get("steps") if isinstance(body, dict) else None
        return [(("repeat", "steps"), steps)] if isinstance(steps, list) else []

    @classmethod
    def spec(cls) -> type[Model] | None:
        return RepeatSpec


class OptimizeStep(_StepBase):
    """Run the recipe's ``optimize`` block (named ``optimize``): its experiments, one after
    the other, on the running line; the step ends when the budget is spent or the search
    has converged (docs/optimisation.md)."""

    KIND: ClassVar[str] = "optimize"
    optimize: Ident


STEP_CLASSES: tuple[type[AnyStep], ...] = (
    ServiceStep, SetStep, WaitStep, PromptStep, SequenceStep, ParallelStep, RepeatStep,
    OptimizeStep)
"""Every step kind, once: the YAML keys, the discriminator and the walkers derive from it."""
STEP_KINDS = tuple(c.KIND for c in STEP_CLASSES)
STEP_CLASS_OF: dict[str, type[AnyStep]] = {c.KIND: c for c in STEP_CLASSES}


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kinds = [k for k in STEP_KINDS if k in value]
        return kinds[0] if len(kinds) == 1 else None
    kind = getattr(value, "KIND", None)
    return kind if isinstance(kind, str) and kind in STEP_CLASS_OF else None


Step = Annotated[
    Annotated[ServiceStep, Tag("service")]
    | Annotated[SetStep, Tag("set")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[PromptStep, Tag("prompt")]
    | Annotated[SequenceStep, Tag("sequence")]
    | Annotated[ParallelStep, Tag("parallel")]
    | Annotated[RepeatStep, Tag("repeat")]
    | Annotated[OptimizeStep, Tag("optimize")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message=f"a step needs exactly one of: {', '.join(STEP_KINDS)}",
    ),
]

class UnitProcedure(Model):
    """A named block of steps (an ISA-88 unit procedure or operation)."""

    name: Ident
    description: str = ""
    steps: list[Step] = Field(min_length=1)


class Interlock(Model):
    """While ``when`` is true, ``action`` is taken; the recipe resumes per ``resume``."""

    name: Ident
    when: str
    action: Literal["hold", "stop", "abort", "safe_state"] = "hold"
    modules: list[Ident] = Field(default_factory=list)
    """For ``safe_state`` (and optionally ``stop``/``abort``): the modules acted on; empty
    means the whole recipe (``hold``/``stop``/``abort``) or every module (``safe_state``)."""
    resume: Literal["auto", "ack"] = "ack"
    """After a hold: resume by itself when the condition clears, or wait for an operator."""
    description: str = ""
    group: Ident | None = None
    """First-out group: of the interlocks and alarms of one group, the first to trip is
    marked first out (docs/alarms.md)."""


ALARM_OLD_WORDS = {"deadband": "hysteresis", "on_delay": "delay"}
"""The recipe alarm's earlier names of two keys, still read: ``deadband`` and ``on_delay``
are the words of ISA-18.2 and of the plant file's module alarms, so one limit alarm is
written the same in both files."""


class Alarm(Model):
    """Limit alarm on one signal with deadband, on-delay and priority: the plant file's
    module alarm (``descriptors.ModuleAlarm``) on any signal, with recipe-only keys (steps
    that enable, disable or suppress it). ``hysteresis`` and ``delay`` are read as their
    older names of ``deadband`` and ``on_delay``."""

    name: Ident
    signal: str
    high: Any = None
    low: Any = None
    deadband: Any = 0
    """Return-to-normal margin inside the limit."""
    on_delay: Any = 0
    """Out of limits this long before the alarm is raised."""
    priority: Literal["low", "medium", "high", "urgent"] = "medium"
    message: str = ""
    enabled_from: Ident | None = None
    """Name of the step from which the alarm is evaluated (default: from the start), so a
    purity alarm does not fire while the line is still filling."""
    disabled_from: Ident | None = None
    """Name of the step from which the alarm is no longer evaluated (shutdown)."""
    group: Ident | None = None
    """First-out group (with interlocks of the same group)."""
    realarm_after: Any = None
    """Annunciate again when still in alarm this long after acknowledgement (default: the
    plant's alarm philosophy)."""
    suppressed_in: list[Ident] = Field(default_factory=list)
    """Suppressed by design while the recipe is in one of these steps (docs/alarms.md)."""
    suppressed_when: dict[str, list[str]] = Field(default_factory=dict)
    """Suppressed by design while a module service is in one of these states:
    ``{P1.Dosing: [Idle, Stopped]}``."""

    _written: dict[str, str] = PrivateAttr(default_factory=dict)
    """The key each of ``deadband`` and ``on_delay`` was written as (for error locations)."""

    @model_validator(mode="wrap")
    @classmethod
    def _older_names(cls, data: Any, handler: Any) -> Alarm:
        written: dict[str, str] = {}
        if isinstance(data, dict):
            data = dict(data)
            for new, old in ALARM_OLD_WORDS.items():
                if old in data:
                    if new in data:
                        raise ValueError(f"both '{new}' and its older name '{old}': write "
                                         f"'{new}' only")
                    data[new] = data.pop(old)
                    written[new] = old
        alarm: Alarm = handler(data)
        alarm._written = written
        return alarm

    def key(self, name: str) -> str:
        """The key ``name`` (``deadband``, ``on_delay``) was written as in the file."""
        return self._written.get(name, name)

    @model_validator(mode="after")
    def _limit(self) -> Alarm:
        if self.high is None and self.low is None:
            raise ValueError("an alarm needs 'high', 'low' or both")
        return self


class SteadyState(Model):
    """``signal`` within ``band`` for ``residence_times`` residence times of ``path``."""

    name: Ident
    signal: str
    band: Any
    residence_times: Any = 3
    path: list[Ident] = Field(min_length=2)


class Divert(Model):
    """Route to product while ``product_when`` holds, else to waste; volumes are counted."""

    valve: Ident
    product_when: str
    enabled_from: Ident | None = None
    """Name of the step from which divert control is active (default: from the start)."""
    disabled_from: Ident | None = None
    """Name of the step from which divert control ends, the valve to waste (shutdown)."""


class TwinMismatch(Model):
    """The model-plant mismatch alarm on one predicted signal: the analyzer's reading minus
    what the twin predicted for it one dead time earlier, beyond ``band`` either way for
    ``hold``, raises an alarm (named ``name``, default ``twin_<signal>``)."""

    signal: Ident
    band: Any
    hold: Any = "5 min"
    name: Ident | None = None
    priority: Literal["low", "medium", "high", "urgent"] = "high"
    message: str = ""

    def alarm_name(self) -> str:
        return self.name or f"twin_{self.signal}"


class Twin(Model):
    """Real-time quality prediction: the plant's models upstream of ``analyzer`` run beside
    the run, fed each supervision tick with the measured inputs (set points, run commands,
    temperatures), and predict its signals ahead of its dead time. They are published as
    ``twin.ANALYZER.SIGNAL`` (conditions may use them, e.g. divert while the analyzer is
    offline) and the mismatch as ``twin.ANALYZER.SIGNAL.mismatch`` (docs/digital-twin.md)."""

    analyzer: Ident
    predict: list[Ident] = Field(min_length=1)
    dt: Any = "10 s"
    """The twin's simulation step."""
    mismatch: list[TwinMismatch] = Field(default_factory=list)
    enabled_from: Ident | None = None
    """Name of the step from which the mismatch alarms are evaluated (e.g. once the line is
    steady); the prediction itself runs from the start."""
    disabled_from: Ident | None = None


class DecisionVariable(Model):
    """One decision variable of an ``optimize`` block: a value in ``unit`` between ``min`` and
    ``max`` written to every parameter in ``set`` (``TAG.Assembly``; two feeds kept in ratio
    are one variable written to both)."""

    name: Ident
    set: list[str] = Field(min_length=1)
    unit: UnitStr = ""
    min: Any
    max: Any
    start: Any = None
    """Where the search starts (default: the middle of the box)."""


KpiName = Literal["yield", "throughput", "space_time_yield"]


class Objective(Model):
    """What a campaign maximises, from the window means of signals:

    * ``throughput``: the ``product`` rate signal (e.g. ``CR1.CrystalRate``);
    * ``yield``: product / limiting reagent fed, the reagent fed being ``feed`` (its flow
      signal) times ``feed_concentration``, the product converted with ``product_molar_mass``
      when its signal is a mass rate;
    * ``space_time_yield``: throughput / ``volume`` (the reaction volume);
    * ``weighted``: the sum over ``weights`` of each KPI divided by its value in the first
      experiment (so weights compare relative changes, not units)."""

    maximize: Literal["yield", "throughput", "space_time_yield", "weighted"]
    product: str
    feed: str | None = None
    feed_concentration: Any = None
    product_molar_mass: Any = None
    volume: Any = None
    weights: dict[KpiName, float] | None = None


class Optimize(Model):
    """A self-optimising campaign: ``experiments`` experiments, each applying a point of the
    decision variables, waiting for the steady-state detector ``steady``, averaging the
    signals over ``window`` and recording the point (docs/optimisation.md)."""

    name: Ident = "optimize"
    variables: list[DecisionVariable] = Field(min_length=1, max_length=10)
    objective: Objective
    constraints: list[str] = Field(default_factory=list)
    """Conditions ``SIGNAL >= value`` or ``SIGNAL <= value`` on window means."""
    experiments: int = Field(default=25, ge=1, le=500)
    steady: Ident
    window: Any = "10 min"
    settle_timeout: Any = "4 h"
    """An experiment that does not reach steady state in this time counts as failed."""
    algorithm: Literal["cobyla", "nelder-mead", "bayes"] = "cobyla"
    """The search (``modulecontrol.optimize.ALGORITHMS``): scipy's COBYLA (default) or
    Nelder-Mead, or ``bayes``, Gaussian-process Bayesian optimisation."""
    step: float = Field(default=0.2, gt=0.0, le=1.0)
    """First step of the search as a fraction of each variable's range."""
    tolerance: float = Field(default=0.01, gt=0.0, lt=1.0)
    """The search has converged when its steps are below this fraction of the ranges."""
    prior: Literal["none", "twin"] = "none"
    """``twin`` (``bayes`` only): the plant's models at steady state, with the plant's
    calibrations, are the search's prior; its design shrinks to the start and the twin's
    best point inside the constraints."""


class Recipe(Model):
    kind: Literal["Recipe"] = "Recipe"
    name: str
    version: str = "1.0.0"
    product: str = ""
    plant: str | None = None
    """Plant file, relative to the recipe (``--plant`` on the command line overrides it)."""
    author: str = ""
    description: str = ""
    parameters: dict[Ident, ParameterSpec] = Field(default_factory=dict)
    interlocks: list[Interlock] = Field(default_factory=list)
    alarms: list[Alarm] = Field(default_factory=list)
    steady_state: list[SteadyState] = Field(default_factory=list)
    divert: Divert | None = None
    twin: Twin | None = None
    """Real-time quality prediction beside the run (docs/digital-twin.md)."""
    optimize: Optimize | None = None
    """A self-optimising campaign, validated with the recipe and run by
    ``modulecontrol.optimize.Campaign`` (docs/optimisation.md)."""
    procedure: list[UnitProcedure] = Field(min_length=1)
    cleanup: list[UnitProcedure] = Field(default_factory=list)
    report: dict[str, Any] | None = None
    """Which tags mean what for the batch report's figures (feeds, product, purity, divert):
    see ``FigureSpec`` in docs/records.md."""
    display: list[str] = Field(default_factory=list)
    """Signals shown in the live view of ``modulecontrol run`` (``TAG.Assembly``)."""
    """Blocks reached only through ``goto`` handlers; the recipe ends (Stopped) after one."""

    @field_validator("parameters")
    @classmethod
    def _no_reserved(cls, v: dict[str, ParameterSpec]) -> dict[str, ParameterSpec]:
        return v

    @model_validator(mode="after")
    def _place_steps(self) -> Recipe:
        """Give every step its path (its place in the document), once, here."""
        for section, blocks in (("procedure", self.procedure), ("cleanup", self.cleanup)):
            for i, block in enumerate(blocks):
                for path, step in walk_steps(block.steps, (section, i, "steps")):
                    step._path = path
        return self

    def all_steps(self) -> Iterator[AnyStep]:
        """Every step, nested ones included, in document order (procedure, then cleanup)."""
        for block in (*self.procedure, *self.cleanup):
            for _, step in walk_steps(block.steps):
                yield step


for _cls in (SequenceStep, ParallelStep, RepeatSpec, UnitProcedure, Recipe):
    _cls.model_rebuild()


def walk_steps(steps: list[AnyStep], prefix: StepPath = ()) -> Iterator[tuple[StepPath, AnyStep]]:
    """Each step of ``steps`` and its nested steps, depth first, with its path."""
    for j, step in enumerate(steps):
        path = (*prefix, j)
        yield path, step
        for sub, branch in step.branches():
            yield from walk_steps(branch, (*path, *sub))


def step_kind(step: AnyStep) -> str:
    return step.KIND


AnyStep = (ServiceStep | SetStep | WaitStep | PromptStep | SequenceStep | ParallelStep
           | RepeatStep | OptimizeStep)

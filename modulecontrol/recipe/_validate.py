"""Loading and validating recipes against a plant, every problem located.

Why all of this happens before a run: a recipe drives real pumps and heaters for hours. A
typo in a service name, a flow outside a pump's limits, a condition comparing a pressure with
a temperature or a ``hold`` sent to a service that is not running must stop the recipe at
load time, each reported as ``file:line:col: message`` like a compiler would, so nothing
runs until every problem is fixed.

The checks run in two phases: the schema (pydantic models of :mod:`._model`, with step kinds
and unknown keys explained), then the meaning against the plant (parameters, modules,
services, values, conditions, paths, handlers, names and service states). The second phase
needs a valid schema, so a file with schema errors reports only those.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pint
from pydantic import ValidationError

from modulecontrol.descriptors import ModuleType, PlantConfig, Procedure, load_plant
from modulecontrol.errors import ConfigError, Location, Problem, did_you_mean, did_you_mean_signal
from modulecontrol.expr import (
    BoolLit,
    Condition,
    ExprSyntaxError,
    SignalInfo,
    check,
    compile_condition,
    parse,
)
from modulecontrol.mtpcore import State
from modulecontrol.recipe._model import (
    PARAM_REF,
    STEP_CLASS_OF,
    STEP_KINDS,
    AnyStep,
    GotoHandler,
    OptimizeStep,
    ParallelStep,
    PromptStep,
    Recipe,
    RepeatStep,
    SequenceStep,
    ServiceCall,
    ServiceStep,
    SetStep,
    WaitStep,
    _StepBase,
    walk_steps,
)
from modulecontrol.recipe._optimize import ConstraintShapeError, parse_constraint
from modulecontrol.recipe._params import ResolvedParameter, resolve_parameter, spec_problems
from modulecontrol.recipe._signals import plant_signals
from modulecontrol.recipe._states import STABLE_STATES, TRANSIENT_TARGET, enabled, transition
from modulecontrol.units import UnitError, parse_quantity, parse_unit, ureg
from modulecontrol.yamlio import PathKey, YamlDoc, load_yaml, validation_problems

if TYPE_CHECKING:  # the records package is imported when a report section is checked
    from modulecontrol.records import FigureSpec

__all__ = [
    "ResolvedParameter",
    "ValidatedRecipe",
    "load_recipe",
    "recipe_from_doc",
    "validate_recipe_doc",
    "validate_recipe_with_plant",
]

MAX_STEP_DEPTH = 20
"""Deepest nesting of sequence/parallel/repeat steps; deeper recipes are rejected."""

_COMMON_STEP_KEYS = tuple(n for n in _StepBase.model_fields)
_ANY_REF = re.compile(r"\$\{([^}]*)\}?")


class _Unresolved:
    """A value that uses a parameter without a value (reported elsewhere): skip its checks."""


_UNRESOLVED = _Unresolved()
_IDLE, _EXECUTE, _COMPLETED = State.IDLE.label, State.EXECUTE.label, State.COMPLETED.label


# --------------------------------------------------------------------------- schema phase


def _strip_step_tags(loc: PathKey) -> PathKey:
    """Drop the union tag pydantic inserts after each step index (``steps.0.wait.until``)."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if i > 0 and isinstance(loc[i - 1], int) and part in STEP_KINDS:
            continue
        out.append(part)
    return tuple(out)


def _step_lists(data: Any) -> Iterator[tuple[PathKey, list[Any]]]:
    """Every list of steps in raw recipe data (top-level blocks only)."""
    if not isinstance(data, dict):
        return
    for section in ("procedure", "cleanup"):
        blocks = data.get(section)
        if not isinstance(blocks, list):
            continue
        for i, block in enumerate(blocks):
            if isinstance(block, dict) and isinstance(block.get("steps"), list):
                yield (section, i, "steps"), block["steps"]


def _raw_step_problems(doc: YamlDoc) -> tuple[list[Problem], set[Location], set[Location]]:
    """Step kinds and keys explained with suggestions, before pydantic's generic messages.

    Returns the problems, the locations of steps already explained, and those of keys.
    """
    problems: list[Problem] = []
    steps_done: set[Location] = set()
    keys_done: set[Location] = set()

    def key_problem(path: PathKey, msg: str) -> None:
        loc = doc.locate(path, key=True)
        keys_done.add(loc)
        problems.append(Problem(msg, loc))

    def visit(path: PathKey, steps: list[Any], depth: int) -> None:
        if depth > MAX_STEP_DEPTH:
            problems.append(
                Problem(f"steps nest more than {MAX_STEP_DEPTH} levels deep", doc.locate(path))
            )
            steps_done.add(doc.locate(path))
            return
        for j, step in enumerate(steps):
            spath = (*path, j)
            if not isinstance(step, dict):
                continue
            kinds = [k for k in STEP_KINDS if k in step]
            if not kinds:
                unknown = [k for k in step if k not in _COMMON_STEP_KEYS]
                steps_done.add(doc.locate(spath))
                if unknown:
                    key_problem(
                        (*spath, unknown[0]),
                        f"unknown step kind '{unknown[0]}'{did_you_mean(unknown[0], STEP_KINDS)}",
                    )
                else:
                    problems.append(
                        Problem(f"a step needs one of: {', '.join(STEP_KINDS)}", doc.locate(spath))
                    )
                continue
            if len(kinds) > 1:
                steps_done.add(doc.locate(spath))
                key_problem(
                    (*spath, kinds[1]),
                    f"a step has more than one kind ({', '.join(kinds)}): "
                    "one step does one thing, split it",
                )
                continue
            kind = kinds[0]
            for k in step:
                if k != kind and k not in _COMMON_STEP_KEYS:
                    key_problem(
                        (*spath, k),
                        f"unknown key '{k}' in a {kind} step"
                        f"{did_you_mean(k, (*_COMMON_STEP_KEYS, kind))}",
                    )
            body = step[kind]
            cls = STEP_CLASS_OF[kind]
            model = cls.spec()
            if model is not None and isinstance(body, dict):
                allowed = list(model.model_fields)
                for k in body:
                    if k not in allowed:
                        key_problem(
                            (*spath, kind, k), f"unknown key '{k}'{did_you_mean(k, allowed)}"
                        )
            for sub, branch in cls.raw_branches(body):
                visit((*spath, *sub), branch, depth + 1)

    for path, steps in _step_lists(doc.data):
        visit(path, steps, 1)
    return problems, steps_done, keys_done


def recipe_from_doc(doc: YamlDoc) -> Recipe:
    """The schema phase: a :class:`Recipe` or a :class:`ConfigError` with every problem."""
    if not isinstance(doc.data, dict):
        raise ConfigError.single(
            f"expected a mapping of keys (a Recipe document), got {type(doc.data).__name__}",
            doc.locate(()),
        )
    raw_problems, steps_done, keys_done = _raw_step_problems(doc)
    if raw_problems and any("nest more than" in p.message for p in raw_problems):
        raise ConfigError(raw_problems)
    try:
        recipe = Recipe.model_validate(doc.data)
    except ValidationError as exc:
        problems = list(raw_problems)
        for p in validation_problems(exc, doc, Recipe, rewrite=_strip_step_tags):
            if p.location in keys_done and p.message.startswith("unknown key"):
                continue
            if p.location in steps_done:
                continue
            problems.append(p)
        raise ConfigError(_sorted(problems)) from None
    except RecursionError:
        raise ConfigError.single("recipe nests too deeply", doc.locate(())) from None
    if raw_problems:
        raise ConfigError(_sorted(raw_problems))
    return recipe


# --------------------------------------------------------------------------- result


@dataclass
class ValidatedRecipe:
    """A recipe that passed every check, with what a run needs to execute and log it.

    ``parameters`` are the values for this run (defaults with ``--set`` overrides applied);
    ``signals`` is the catalogue conditions were checked against (see
    :func:`~modulecontrol.recipe.plant_signals`); :meth:`location` gives the
    ``file:line:col`` of any step for event logs.
    """

    recipe: Recipe
    plant: PlantConfig
    parameters: dict[str, ResolvedParameter]
    signals: dict[str, SignalInfo]
    file: str
    doc: YamlDoc

    def resolve(self, value: Any) -> Any:
        """``value`` with every ``${name}`` replaced, recursively through lists and dicts.

        A string that is exactly ``${name}`` becomes the parameter's value (a quantity string
        such as ``'0.5 mL/min'`` for numbers with a unit, so assemblies convert it safely; a
        bool or string as is); a reference inside longer text is replaced by its text.
        """
        return _substitute(value, self.parameters)

    def seconds(self, value: Any) -> float:
        """A duration (``'10 min'``, ``30``, ``'${t}'``) in seconds."""
        return _to_seconds(self.resolve(value))

    def location(self, step: AnyStep) -> Location:
        """Where ``step`` is written, for logs and run records."""
        return self.doc.locate(step.path)

    def label(self, step: AnyStep) -> str:
        """The step's name, or its place such as ``heat.steps[2]`` when it has none."""
        if step.name:
            return step.name
        path = step.path
        section, index = path[0], path[1]
        blocks = self.recipe.procedure if section == "procedure" else self.recipe.cleanup
        out = blocks[int(index)].name
        for part in path[2:]:
            out += f"[{part}]" if isinstance(part, int) else f".{part}"
        return out

    def steps(self) -> Iterator[tuple[AnyStep, PathKey]]:
        """Every step (nested ones included) with its path, in document order."""
        for step in sorted(self.recipe.all_steps(), key=lambda s: self.doc.locate(s.path).line):
            yield step, step.path

    def parameter_values(self) -> dict[str, Any]:
        """Parameters in the form :func:`~modulecontrol.expr.compile_condition` takes."""
        return {n: p.for_check() for n, p in self.parameters.items()}

    def compile(self, condition: str) -> Condition:
        """Compile a condition of this recipe against its signals and parameter values."""
        return compile_condition(condition, self.signals, self.parameter_values())


def _substitute(value: Any, params: Mapping[str, ResolvedParameter | None]) -> Any:
    if isinstance(value, str):
        m = PARAM_REF.fullmatch(value.strip())
        if m:
            p = params.get(m.group(1))
            if p is None:
                return _UNRESOLVED
            return p.substitute()
        unresolved = False

        def repl(match: re.Match[str]) -> str:
            nonlocal unresolved
            p = params.get(match.group(1))
            if p is None:
                unresolved = True
                return match.group(0)
            return p.text()

        out = PARAM_REF.sub(repl, value)
        return _UNRESOLVED if unresolved else out
    if isinstance(value, list):
        items = [_substitute(v, params) for v in value]
        return _UNRESOLVED if any(i is _UNRESOLVED for i in items) else items
    if isinstance(value, dict):
        d = {k: _substitute(v, params) for k, v in value.items()}
        return _UNRESOLVED if any(v is _UNRESOLVED for v in d.values()) else d
    return value


def _to_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a duration like '10 s' or '5 min', got {value!r}")
    try:
        q = parse_quantity(value, "s")
        return float(q.to(parse_unit("s")).magnitude)
    except UnitError as exc:
        raise ValueError(str(exc)) from None
    except (pint.errors.PintError, ValueError, TypeError, OverflowError):
        raise ValueError(f"'{value}' is not a duration (write e.g. '10 s' or '5 min')") from None


def _naming(message: str, name: str) -> str:
    """Prefix a value error with the assembly's name when the message does not say it."""
    return message if name in message else f"{name}: {message}"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _close(word: str, choices: list[str]) -> str:
    """A did-you-mean hint only when something is close (the caller lists the choices)."""
    hint = did_you_mean(word, choices)
    return hint if hint.startswith(" (did you mean") else ""


def _sorted(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    unique: list[Problem] = []
    for p in problems:
        if str(p) not in seen:
            seen.add(str(p))
            unique.append(p)

    def key(p: Problem) -> tuple[int, int]:
        loc = p.location
        return (loc.line, loc.col) if loc else (0, 0)

    return sorted(unique, key=key)


# --------------------------------------------------------------------------- meaning phase

Key = tuple[str, str]
States = frozenset[str] | None
"""Possible stable states of one service at a point in the recipe; None means unknown."""


@dataclass
class _Flow:
    """Service states along one path through the steps, for the command-sequence check."""

    states: dict[Key, States] = field(default_factory=dict)
    self_completing: dict[Key, bool] = field(default_factory=dict)

    def copy(self) -> _Flow:
        return _Flow(dict(self.states), dict(self.self_completing))

    def get(self, key: Key) -> States:
        s = self.states.get(key, frozenset({_IDLE}))
        if s is not None and self.self_completing.get(key) and _EXECUTE in s:
            s = s | {_COMPLETED}
        return s

    def merge(self, other: _Flow) -> _Flow:
        out = self.copy()
        for key in set(self.states) | set(other.states):
            a, b = self.get(key), other.get(key)
            out.states[key] = None if a is None or b is None else a | b
        for key, v in other.self_completing.items():
            out.self_completing[key] = v or out.self_completing.get(key, False)
        return out


def _flow_unchanged(path: PathKey, step: AnyStep, flow: _Flow, depth: int) -> _Flow:
    """Steps that command no module service leave the service states as they were."""
    return flow


@dataclass
class _ServiceInfo:
    key: Key
    procedure: Procedure | None


class _Validator:
    def __init__(
        self,
        doc: YamlDoc,
        recipe: Recipe,
        config: PlantConfig,
        overrides: Mapping[str, str],
        text: str | None,
    ) -> None:
        self.doc = doc
        self.recipe = recipe
        self.config = config
        self.overrides = overrides
        self.lines = text.splitlines() if text is not None else None
        self.problems: list[Problem] = []
        self.params: dict[str, ResolvedParameter | None] = {}
        self.check_params: dict[str, Any] = {}
        self.signals: dict[str, SignalInfo] = {}
        self.condition_paths: set[PathKey] = set()
        self.services: dict[PathKey, _ServiceInfo] = {}
        """The module service each service step commands, by the step's path."""
        self.static_checks: dict[type[AnyStep], Callable[[PathKey, Any], None]] = {
            ServiceStep: self.service_step,
            SetStep: self.set_step,
            WaitStep: self.wait_step,
            PromptStep: self.prompt_step,
            SequenceStep: self.nested_steps,
            ParallelStep: self.nested_steps,
            RepeatStep: self.repeat_step,
            OptimizeStep: self.optimize_step,
        }
        """What each step kind checks besides what every step checks (one entry per kind)."""
        self.flows: dict[type[AnyStep], Callable[[PathKey, Any, _Flow, int], _Flow]] = {
            ServiceStep: self.flow_service,
            SetStep: _flow_unchanged,
            WaitStep: _flow_unchanged,
            PromptStep: _flow_unchanged,
            OptimizeStep: _flow_unchanged,
            SequenceStep: self.flow_sequence,
            ParallelStep: self.flow_parallel,
            RepeatStep: self.flow_repeat,
        }
        """How each step kind changes the service states the recipe can be in."""
        self.step_names: dict[str, PathKey] = {}
        self.gotos: set[str] = set()
        self.tags = {m.tag for m in config.plant.modules}

    # ---------------------------------------------------------------- helpers

    def add(self, path: PathKey, message: str, *, key: bool = False) -> None:
        self.problems.append(Problem(message, self.doc.locate(path, key=key)))

    def locate_col(self, path: PathKey, col: int) -> Location:
        """Column ``col`` (1-based) of the string at ``path``, as a file position.

        Plain and quoted one-line scalars map exactly (a quote adds one); block scalars
        (``|``, ``>``), folded lines and escapes fall back to the value's start.
        """
        base = self.doc.locate(path)
        if self.lines is None or path not in self.doc.values:
            return base
        line, c0 = self.doc.values[path]
        if line >= len(self.lines):
            return base
        src = self.lines[line]
        ch = src[c0 : c0 + 1]
        if ch in ("|", ">"):
            return base
        offset = 1 if ch in ('"', "'") else 0
        col0 = c0 + offset + col - 1
        if col0 >= len(src):
            return base
        return Location(self.doc.file, line + 1, col0 + 1)

    def module(self, path: PathKey, tag: str) -> ModuleType | None:
        if tag not in self.tags:
            self.add(
                path,
                f"unknown module '{tag}' in plant {self.config.plant.name}"
                f"{did_you_mean(tag, self.tags)}",
            )
            return None
        return self.config.instance_types.get(tag)

    def resolve(self, value: Any) -> Any:
        return _substitute(value, self.params)

    def duration(self, path: PathKey, raw: Any, what: str, *, zero: bool = False) -> float | None:
        value = self.resolve(raw)
        if value is _UNRESOLVED:
            return None
        try:
            seconds = _to_seconds(value)
        except ValueError as exc:
            self.add(path, f"{what}: {exc}")
            return None
        if seconds < 0 or (seconds == 0 and not zero):
            self.add(path, f"{what} must be {'zero or ' if zero else ''}positive, got {raw!r}")
            return None
        return seconds

    def positive_number(self, path: PathKey, raw: Any, what: str, *, integer: bool) -> None:
        value = self.resolve(raw)
        if value is _UNRESOLVED:
            return
        if isinstance(value, str):
            try:
                q = parse_quantity(value)
                value = float(q.to(ureg.dimensionless).magnitude)
            except (UnitError, pint.errors.PintError, ValueError, TypeError):
                self.add(path, f"{what} must be a number, got {raw!r}")
                return
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            self.add(path, f"{what} must be a positive number, got {raw!r}")
            return
        if integer and not float(value).is_integer():
            self.add(path, f"{what} must be a whole number, got {raw!r}")

    def condition(self, path: PathKey, text: str) -> Any:
        self.condition_paths.add(path)
        try:
            expr = parse(text)
        except ExprSyntaxError as exc:
            self.problems.append(Problem(exc.message, self.locate_col(path, exc.col)))
            return None
        for p in check(expr, self.signals, self.check_params):
            self.problems.append(Problem(p.message, self.locate_col(path, p.col)))
        return expr

    def signal_quantity(
        self, path: PathKey, raw: Any, signal: SignalInfo, what: str, *, difference: bool
    ) -> float | None:
        """``raw`` as a value of (or, with ``difference``, a span of) ``signal``, in SI."""
        value = self.resolve(raw)
        if value is _UNRESOLVED:
            return None
        unit = signal.unit
        offset = not ureg.Quantity(1.0, parse_unit(unit))._is_multiplicative
        default = f"delta_{unit}" if difference and offset else unit
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            self.add(path, f"{what} must be a number or a quantity in {unit or 'no unit'}")
            return None
        try:
            q = parse_quantity(value, default)
            if difference and not q._is_multiplicative:
                self.add(
                    path,
                    f"{what} is a difference: write it in K or delta_{q.units:~}, "
                    f"not as an absolute temperature ({raw!r})",
                )
                return None
            si = float(q.to_base_units().magnitude)
            if q.dimensionality != parse_unit(unit).dimensionality:
                raise pint.errors.DimensionalityError(q.units, unit)
        except UnitError as exc:
            self.add(path, f"{what}: {exc}")
            return None
        except (pint.errors.PintError, ValueError, TypeError, OverflowError):
            self.add(path, f"{what} {raw!r} is not compatible with the signal's unit '{unit}'")
            return None
        return si

    def flow_path(self, path: PathKey, modules: list[str]) -> None:
        known = [m for m in modules if m in self.tags]
        for i, tag in enumerate(modules):
            self.module((*path, i), tag)
        if len(known) != len(modules):
            return
        graph: dict[str, set[str]] = {}
        for c in self.config.plant.connections:
            graph.setdefault(c.source[0], set()).add(c.target[0])
        for i in range(len(modules) - 1):
            a, b = modules[i], modules[i + 1]
            seen = {a}
            todo = [a]
            while todo:
                for nxt in graph.get(todo.pop(), ()):
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
            if b not in seen or a == b:
                self.add(
                    (*path, i + 1),
                    f"no flow path from {a} to {b} through the plant's connections"
                    + (f" ({a} feeds: {', '.join(sorted(graph[a]))})" if graph.get(a) else ""),
                )
                return

    def goto(self, path: PathKey, handler: Any) -> None:
        if isinstance(handler, GotoHandler):
            self.gotos.add(handler.goto)
            blocks = [b.name for b in self.recipe.cleanup]
            if handler.goto not in blocks:
                self.add(
                    (*path, "goto"),
                    f"goto '{handler.goto}': no such block in 'cleanup'"
                    f"{did_you_mean(handler.goto, blocks)}",
                )

    # ---------------------------------------------------------------- phases

    def run(self) -> ValidatedRecipe:
        self.check_parameters()
        self.signals = plant_signals(self.config, self.recipe)
        self.check_names()
        for i, block in enumerate(self.recipe.procedure):
            self.static_steps(("procedure", i, "steps"), block.steps)
        for i, block in enumerate(self.recipe.cleanup):
            self.static_steps(("cleanup", i, "steps"), block.steps)
        self.check_plantwide()
        self.check_report()
        self.check_optimize()
        self.check_reachability()
        flow = _Flow()
        for i, block in enumerate(self.recipe.procedure):
            flow = self.flow_steps(("procedure", i, "steps"), block.steps, flow, 0)
        for i, block in enumerate(self.recipe.cleanup):
            unknown = _Flow({k: None for k in flow.states}, {})
            self.flow_steps(("cleanup", i, "steps"), block.steps, unknown, 0)
        self.scan_references((), self.doc.data)
        if self.problems:
            raise ConfigError(_sorted(self.problems))
        params = {n: p for n, p in self.params.items() if p is not None}
        return ValidatedRecipe(
            self.recipe, self.config, params, self.signals, self.doc.file, self.doc
        )

    def check_report(self) -> None:
        """``display`` names signals; ``report`` is the batch report's figure mapping."""
        for i, name in enumerate(self.recipe.display):
            if name not in self.signals:
                hint = did_you_mean_signal(name, self.signals)
                self.add(("display", i), f"unknown signal '{name}'{hint}")
        if self.recipe.report is None:
            return
        from modulecontrol.records import FigureSpec

        try:
            spec = FigureSpec.model_validate(self.recipe.report)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
                msg = str(err["msg"]).removeprefix("Value error, ")
                self.add(("report", *loc), f"report.{'.'.join(map(str, loc))}: {msg}")
            return
        self.check_report_steps(spec)

    def check_report_steps(self, spec: FigureSpec) -> None:
        """Intervals and lots are bounded by named steps: a misspelt one would leave a lot's
        figures empty after hours of running, so it is an error here, where it is written."""
        steps = {st.name for st in self.recipe.all_steps() if st.name is not None}
        hint_pool = sorted(steps)

        def step(path: PathKey, name: str | None, what: str) -> None:
            if name is not None and name not in steps:
                self.add(path, f"{what}: no step named '{name}' in the recipe"
                         f"{did_you_mean(name, hint_pool)}")

        for i, iv in enumerate(spec.intervals):
            base: PathKey = ("report", "intervals", i)
            step((*base, "start"), iv.start, f"interval '{iv.name}' start")
            step((*base, "end"), iv.end, f"interval '{iv.name}' end")
            for fig, val in iv.values.items():
                step((*base, "values", fig, "at"), val.at, f"interval '{iv.name}' value {fig}")
                if val.tag not in self.signals:
                    self.add((*base, "values", fig, "tag"), f"interval '{iv.name}' value"
                             f" {fig}: unknown signal '{val.tag}'"
                             f"{did_you_mean_signal(val.tag, self.signals)}")
        for i, lot in enumerate(spec.lots):
            base = ("report", "lots", i)
            step((*base, "start"), lot.start, f"lot '{lot.name}' start")
            step((*base, "end"), lot.end, f"lot '{lot.name}' end")
            if lot.end == lot.start:
                self.add((*base, "end"), f"lot '{lot.name}': end is its start step"
                         f" '{lot.start}': the lot would be empty")

    def check_parameters(self) -> None:
        specs = self.recipe.parameters
        for name, value in self.overrides.items():
            if name not in specs:
                self.problems.append(
                    Problem(
                        f"unknown parameter '{name}'{did_you_mean(name, specs)}",
                        Location(f"--set {name}={value}"),
                    )
                )
        for name, spec in specs.items():
            path: PathKey = ("parameters", name)
            bad_spec = spec_problems(spec)
            for key, msg in bad_spec:
                self.add((*path, key), f"parameter '{name}': {msg}")
            self.params[name] = None
            self.check_params[name] = SignalInfo(
                spec.unit if spec.type in ("number", "integer", "duration") else "",
                "bool" if spec.type == "bool" else "str" if spec.type == "string" else "number",
            )
            if bad_spec:
                continue
            if spec.default is not None:
                try:
                    self.params[name] = resolve_parameter(name, spec, spec.default, "default")
                except ValueError as exc:
                    self.add((*path, "default"), f"parameter '{name}': default {exc}")
            if name in self.overrides:
                raw = self.overrides[name]
                try:
                    self.params[name] = resolve_parameter(name, spec, raw, "override")
                except ValueError as exc:
                    self.problems.append(
                        Problem(f"parameter '{name}': {exc}", Location(f"--set {name}={raw}"))
                    )
                    self.params[name] = None
            elif spec.default is None:
                self.add(
                    path,
                    f"parameter '{name}' has no default: give it with --set {name}=VALUE",
                    key=True,
                )
            p = self.params[name]
            if p is not None:
                self.check_params[name] = p.for_check()

    def check_names(self) -> None:
        blocks: dict[str, PathKey] = {}
        for section in ("procedure", "cleanup"):
            for i, block in enumerate(getattr(self.recipe, section)):
                if block.name in blocks:
                    self.add(
                        (section, i, "name"),
                        f"block name '{block.name}' is used twice "
                        f"(first at line {self.doc.locate(blocks[block.name]).line})",
                    )
                else:
                    blocks[block.name] = (section, i, "name")
        named: tuple[tuple[str, list[Any], str], ...] = (
            ("interlock", self.recipe.interlocks, "interlocks"),
            ("alarm", self.recipe.alarms, "alarms"),
            ("steady-state detector", self.recipe.steady_state, "steady_state"),
        )
        for what, items, key in named:
            seen: set[str] = set()
            for i, item in enumerate(items):
                if item.name in seen:
                    self.add((key, i, "name"), f"{what} name '{item.name}' is used twice")
                seen.add(item.name)

    def static_steps(self, path: PathKey, steps: list[Any]) -> None:
        for j, step in enumerate(steps):
            self.static_step((*path, j), step)

    def static_step(self, path: PathKey, step: AnyStep) -> None:
        if step.name is not None:
            if step.name in self.step_names:
                first = self.doc.locate(self.step_names[step.name]).line
                self.add(
                    (*path, "name"),
                    f"step name '{step.name}' is used twice (first at line {first})",
                )
            else:
                self.step_names[step.name] = (*path, "name")
        if step.timeout is not None:
            self.duration((*path, "timeout"), step.timeout, "timeout")
        elif step.on_timeout is not None:
            self.add(
                (*path, "on_timeout"),
                "'on_timeout' without a 'timeout' never fires: add 'timeout: DURATION'",
                key=True,
            )
        for hkey in ("on_timeout", "on_error"):
            self.goto((*path, hkey), getattr(step, hkey))
        self.static_checks[type(step)](path, step)

    def nested_steps(self, path: PathKey, step: AnyStep) -> None:
        for sub, branch in step.branches():
            self.static_steps((*path, *sub), branch)

    def repeat_step(self, path: PathKey, step: RepeatStep) -> None:
        spec = step.repeat
        rpath = (*path, "repeat")
        if spec.times is not None:
            self.positive_number((*rpath, "times"), spec.times, "times", integer=True)
        if spec.until is not None:
            self.condition((*rpath, "until"), spec.until)
        self.nested_steps(path, step)

    def prompt_step(self, path: PathKey, step: PromptStep) -> None:
        choices = step.prompt.choices
        if not choices:
            self.add((*path, "prompt", "choices"), "a prompt needs at least one choice")
        elif len(set(choices)) != len(choices):
            self.add((*path, "prompt", "choices"), "prompt choices must be different")

    def service_step(self, path: PathKey, step: ServiceStep) -> None:
        call = step.service
        spath = (*path, "service")
        mt = self.module((*spath, "module"), call.module)
        if mt is None:
            return
        names = [s.name for s in mt.services]
        if call.service not in names:
            self.add(
                (*spath, "service"),
                f"module {call.module} ({mt.name}) has no service '{call.service}'"
                f"{did_you_mean(call.service, names)}",
            )
            return
        svc = mt.service(call.service)
        proc: Procedure | None
        if call.procedure is None:
            proc = svc.default_procedure
        else:
            try:
                proc = svc.procedure(call.procedure)
            except KeyError:
                listed = ", ".join(f"{p.name} ({p.id})" for p in svc.procedures)
                self.add(
                    (*spath, "procedure"),
                    f"{call.module}.{call.service} has no procedure '{call.procedure}'"
                    f"{_close(str(call.procedure), [p.name for p in svc.procedures])}"
                    f"; procedures: {listed}",
                )
                proc = None
        self.services[step.path] = _ServiceInfo((call.module, call.service), proc)
        for name, raw in call.parameters.items():
            ppath = (*spath, "parameters", name)
            wrong = svc.not_a_parameter(name, proc, call.module)
            if wrong:
                self.add(ppath, wrong, key=True)
                continue
            value = self.resolve(raw)
            if value is _UNRESOLVED:
                continue
            try:
                mt.assembly(name).coerce(value)
            except ValueError as exc:
                self.add(ppath, f"{call.module}.{call.service}: {_naming(str(exc), name)}")

    def set_step(self, path: PathKey, step: SetStep) -> None:
        for target, raw in step.set.items():
            tpath = (*path, "set", target)
            da = self.write_target(tpath, target, key=True)
            if da is None:
                continue
            value = self.resolve(raw)
            if value is _UNRESOLVED:
                continue
            try:
                da.coerce(value)
            except ValueError as exc:
                self.add(tpath, f"set {target.split('.')[0]}: {_naming(str(exc), da.name)}")

    def write_target(self, tpath: PathKey, target: str, *, key: bool) -> Any:
        """The writable data assembly ``target`` (``TAG.Assembly``) names, else a problem
        and None (set steps and optimize variables write the same way)."""
        parts = target.split(".")
        if len(parts) != 2:
            self.add(tpath, f"'{target}': write MODULE.ASSEMBLY, e.g. P1.FlowSetpoint", key=key)
            return None
        tag, name = parts
        if tag not in self.tags:
            self.add(tpath, f"unknown module '{tag}'{did_you_mean(tag, self.tags)}", key=key)
            return None
        mt = self.config.instance_types.get(tag)
        if mt is None:
            return None
        das = [d.name for d in mt.data_assemblies]
        if name not in das:
            self.add(
                tpath,
                f"module {tag} ({mt.name}) has no data assembly '{name}'"
                f"{did_you_mean(name, das)}",
                key=key,
            )
            return None
        da = mt.assembly(name)
        if not da.writable:
            writable = [d.name for d in mt.data_assemblies if d.writable]
            self.add(
                tpath,
                f"{target} is {_article(da.class_)} {da.class_}, which cannot be written "
                f"(writable: {', '.join(writable) or 'none'})",
                key=key,
            )
            return None
        return da

    def wait_step(self, path: PathKey, step: WaitStep) -> None:
        spec = step.wait
        wpath = (*path, "wait")
        if spec.duration is not None:
            self.duration((*wpath, "duration"), spec.duration, "wait duration")
        if spec.until is not None:
            expr = self.condition((*wpath, "until"), spec.until)
            if isinstance(expr, BoolLit) and not expr.value and step.timeout is None:
                self.add(
                    (*wpath, "until"),
                    "this wait never ends ('until: false' without a timeout): "
                    "the steps after it cannot be reached",
                )
        if spec.residence_times is not None:
            self.positive_number(
                (*wpath, "residence_times"), spec.residence_times, "residence_times", integer=False
            )
            self.flow_path((*wpath, "path"), list(spec.path or []))

    def check_plantwide(self) -> None:
        r = self.recipe
        for i, il in enumerate(r.interlocks):
            self.condition(("interlocks", i, "when"), il.when)
            for k, tag in enumerate(il.modules):
                self.module(("interlocks", i, "modules", k), tag)
        plant_alarms = {a.name: m.tag for m in self.config.plant.modules for a in m.alarms}
        for i, al in enumerate(r.alarms):
            apath: PathKey = ("alarms", i)
            if al.name in plant_alarms:
                self.add((*apath, "name"), f"alarm name '{al.name}' is an alarm of the plant "
                         f"(on {plant_alarms[al.name]}): name this one otherwise")
            self.phase_steps(apath, al)
            sig = self.signals.get(al.signal)
            if sig is None:
                self.add(
                    (*apath, "signal"),
                    f"unknown signal '{al.signal}'{did_you_mean_signal(al.signal, self.signals)}",
                )
                continue
            if sig.kind != "number":
                self.add(
                    (*apath, "signal"),
                    f"alarm on {al.signal} ({sig.kind}): limit alarms need a number signal; "
                    "use an interlock for true/false signals",
                )
                continue
            lims = {}
            for key in ("high", "low"):
                raw = getattr(al, key)
                if raw is not None:
                    lims[key] = self.signal_quantity(
                        (*apath, key), raw, sig, f"alarm {key}", difference=False
                    )
            word = al.key("deadband")
            hyst = self.signal_quantity((*apath, word), al.deadband, sig, word, difference=True)
            if hyst is not None and hyst < 0:
                self.add((*apath, word), f"{word} must not be negative")
            lo, hi = lims.get("low"), lims.get("high")
            if lo is not None and hi is not None and lo >= hi:
                self.add((*apath, "low"), "alarm low limit must be below its high limit")
            self.duration((*apath, al.key("on_delay")), al.on_delay, f"alarm {al.key('on_delay')}",
                          zero=True)
            if al.realarm_after is not None:
                self.duration((*apath, "realarm_after"), al.realarm_after, "realarm_after")
            self.suppression(apath, al)
        for i, ss in enumerate(r.steady_state):
            spath: PathKey = ("steady_state", i)
            sig = self.signals.get(ss.signal)
            if sig is None:
                self.add(
                    (*spath, "signal"),
                    f"unknown signal '{ss.signal}'{did_you_mean_signal(ss.signal, self.signals)}",
                )
            elif sig.kind != "number":
                self.add((*spath, "signal"), f"steady state needs a number signal, not {sig.kind}")
            else:
                band = self.signal_quantity((*spath, "band"), ss.band, sig, "band", difference=True)
                if band is not None and band <= 0:
                    self.add((*spath, "band"), "band must be positive")
            self.positive_number(
                (*spath, "residence_times"), ss.residence_times, "residence_times", integer=False
            )
            self.flow_path((*spath, "path"), ss.path)
        if r.divert is not None:
            d = r.divert
            mt = self.module(("divert", "valve"), d.valve)
            if mt is not None and "Divert" not in [s.name for s in mt.services]:
                self.add(
                    ("divert", "valve"),
                    f"module {d.valve} ({mt.name}) has no Divert service: "
                    "divert control needs a divert valve module",
                )
            self.condition(("divert", "product_when"), d.product_when)
            self.phase_steps(("divert",), d)
        if r.twin is not None:
            self.check_twin(r.twin)

    def check_twin(self, tw: Any) -> None:
        """The ``twin`` block: a simulated analyzer, number signals of it, mismatch alarms
        on predicted signals with a positive band, and names no alarm already has."""
        path: PathKey = ("twin",)
        mt = self.module((*path, "analyzer"), tw.analyzer)
        self.duration((*path, "dt"), tw.dt, "twin dt")
        self.phase_steps(path, tw)
        if mt is None:
            return
        if mt.simulator is None:
            self.add((*path, "analyzer"), f"module {tw.analyzer} ({mt.name}) has no simulator "
                     "model: the twin runs the plant's simulator models")
            return
        for i, name in enumerate(tw.predict):
            sig = self.signals.get(f"{tw.analyzer}.{name}")
            if sig is None or sig.kind != "number":
                known = [d.name for d in mt.data_assemblies if d.kind == "number"]
                self.add((*path, "predict", i), f"{tw.analyzer} has no number signal "
                         f"'{name}'{did_you_mean(name, known)}")
        alarms = {a.name for a in self.recipe.alarms}
        for i, m in enumerate(tw.mismatch):
            mpath: PathKey = (*path, "mismatch", i)
            if m.signal not in tw.predict:
                self.add((*mpath, "signal"), f"mismatch on '{m.signal}', which the twin does "
                         f"not predict (predict: {', '.join(tw.predict)})")
                continue
            sig = self.signals.get(f"{tw.analyzer}.{m.signal}")
            if sig is not None:
                band = self.signal_quantity((*mpath, "band"), m.band, sig, "band",
                                            difference=True)
                if band is not None and band <= 0:
                    self.add((*mpath, "band"), "band must be positive")
            self.duration((*mpath, "hold"), m.hold, "mismatch hold", zero=True)
            if m.alarm_name() in alarms:
                self.add((*mpath, "name") if m.name else (*mpath, "signal"),
                         f"alarm name '{m.alarm_name()}' is used twice (an alarm of the recipe "
                         "has it): give the mismatch a 'name'")
            alarms.add(m.alarm_name())

    def optimize_step(self, path: PathKey, step: OptimizeStep) -> None:
        opt = self.recipe.optimize
        if opt is None:
            self.add((*path, "optimize"), f"no 'optimize' block named '{step.optimize}': "
                     "declare the campaign under 'optimize:' beside 'procedure:'")
        elif opt.name != step.optimize:
            self.add((*path, "optimize"), f"no 'optimize' block named '{step.optimize}'"
                     f"{did_you_mean(step.optimize, [opt.name])}")

    def check_optimize(self) -> None:
        """The ``optimize`` block: variables write writable assemblies within their limits,
        the objective's signals and quantities exist in their units, constraints are
        ``SIGNAL >= value`` conditions, ``steady`` names a detector."""
        opt = self.recipe.optimize
        if opt is None:
            return
        base: PathKey = ("optimize",)
        for i, var in enumerate(opt.variables):
            vpath: PathKey = (*base, "variables", i)
            bounds: dict[str, float] = {}
            for key in ("min", "max", "start"):
                raw = self.resolve(getattr(var, key))
                if raw is None or raw is _UNRESOLVED:
                    continue
                try:
                    bounds[key] = float(parse_quantity(raw, var.unit or None)
                                        .to(parse_unit(var.unit) if var.unit else "")
                                        .magnitude)
                except (UnitError, pint.errors.PintError, ValueError, TypeError):
                    self.add((*vpath, key), f"variable '{var.name}': {key} {raw!r} is not a "
                             f"number in {var.unit or 'no unit'}")
            lo, hi = bounds.get("min"), bounds.get("max")
            if lo is not None and hi is not None and not lo < hi:
                self.add((*vpath, "max"), f"variable '{var.name}': max must be above min")
            start = bounds.get("start")
            if start is not None and lo is not None and hi is not None and not lo <= start <= hi:
                self.add((*vpath, "start"), f"variable '{var.name}': start {start:g} is "
                         f"outside [{lo:g}, {hi:g}] {var.unit}")
            for j, target in enumerate(var.set):
                tpath: PathKey = (*vpath, "set", j)
                da = self.write_target(tpath, target, key=False)
                if da is None:
                    continue
                for key in ("min", "max"):
                    if key in bounds:
                        try:
                            da.coerce(f"{bounds[key]!r} {var.unit}".strip())
                        except ValueError as exc:
                            self.add((*vpath, key), f"variable '{var.name}' -> {target}: "
                                     f"{_naming(str(exc), da.name)}")
        obj = opt.objective
        opath: PathKey = (*base, "objective")
        for key in ("product", "feed"):
            name = getattr(obj, key)
            if name is None:
                continue
            sig = self.signals.get(name)
            if sig is None:
                self.add((*opath, key), f"unknown signal '{name}'"
                         f"{did_you_mean_signal(name, self.signals)}")
            elif sig.kind != "number":
                self.add((*opath, key), f"the objective needs a number signal, not {sig.kind}")
        kpis = set(obj.weights or {}) if obj.maximize == "weighted" else {obj.maximize}
        if obj.maximize == "weighted" and not obj.weights:
            self.add(opath, "maximize: weighted needs 'weights' (e.g. {yield: 1, throughput: 1})")
        needs = {"yield": ("feed", "feed_concentration"), "space_time_yield": ("volume",)}
        for kpi in sorted(kpis):
            for key in needs.get(kpi, ()):
                if getattr(obj, key) is None:
                    self.add(opath, f"maximize {kpi} needs objective '{key}'")
        for key, dim in (("feed_concentration", "mol/m**3"), ("volume", "m**3"),
                         ("product_molar_mass", "kg/mol")):
            raw = self.resolve(getattr(obj, key))
            if raw is None or raw is _UNRESOLVED:
                continue
            try:
                value = float(parse_quantity(raw).to(dim).magnitude)
            except (UnitError, pint.errors.PintError, ValueError, TypeError):
                self.add((*opath, key), f"{key} {raw!r} is not a quantity of {dim} "
                         "(write it with its unit)")
                continue
            if value <= 0:
                self.add((*opath, key), f"{key} must be positive")
        for i, text in enumerate(opt.constraints):
            cpath: PathKey = (*base, "constraints", i)
            if self.condition(cpath, text) is None:
                continue
            try:
                parse_constraint(text)
            except ConstraintShapeError as exc:
                self.problems.append(Problem(exc.message, self.locate_col(cpath, exc.col)))
        detectors = [d.name for d in self.recipe.steady_state]
        if opt.steady not in detectors:
            self.add((*base, "steady"), f"no steady-state detector '{opt.steady}'"
                     f"{did_you_mean(opt.steady, detectors)}; declare it under steady_state")
        self.duration((*base, "window"), opt.window, "optimize window")
        self.duration((*base, "settle_timeout"), opt.settle_timeout, "optimize settle_timeout")
        if opt.prior == "twin":
            if opt.algorithm != "bayes":
                self.add((*base, "prior"), f"prior: twin needs algorithm: bayes (the "
                         f"'{opt.algorithm}' search takes no prior)")
            if self.config.plant.species is None:
                self.add((*base, "prior"), "prior: twin needs the plant's models: the plant "
                         f"{self.config.plant.name} names no 'species' file for its simulators")

    def phase_steps(self, path: PathKey, obj: Any) -> None:
        """``enabled_from`` / ``disabled_from`` must name steps of the procedure."""
        procedure_steps = [n for n, p in self.step_names.items() if p[0] == "procedure"]
        for key in ("enabled_from", "disabled_from"):
            name = getattr(obj, key)
            if name is not None and name not in procedure_steps:
                self.add(
                    (*path, key),
                    f"no step named '{name}' in the procedure"
                    f"{did_you_mean(name, procedure_steps)}",
                )

    def suppression(self, path: PathKey, al: Any) -> None:
        """``suppressed_in`` names steps; ``suppressed_when`` module services and states."""
        steps = list(self.step_names)
        for k, name in enumerate(al.suppressed_in):
            if name not in steps:
                self.add((*path, "suppressed_in", k),
                         f"no step named '{name}'{did_you_mean(name, steps)}")
        for key, states in al.suppressed_when.items():
            tag, _, service = key.partition(".")
            mt = self.config.instance_types.get(tag)
            names = [sv.name for sv in mt.services] if mt is not None else []
            if mt is None or service not in names:
                self.add((*path, "suppressed_when", key),
                         f"'{key}' is not MODULE.Service of the plant"
                         f"{did_you_mean(service, names) if mt is not None else ''}")
                continue
            for j, label in enumerate(states):
                try:
                    State.from_label(label)
                except ValueError as exc:
                    self.add((*path, "suppressed_when", key, j), str(exc))

    def check_reachability(self) -> None:
        for i, block in enumerate(self.recipe.cleanup):
            if block.name not in self.gotos:
                self.add(
                    ("cleanup", i, "name"),
                    f"cleanup block '{block.name}' is never reached: "
                    f"no handler has 'goto: {block.name}'",
                )

    def flow_steps(self, path: PathKey, steps: list[Any], flow: _Flow, depth: int) -> _Flow:
        for j, step in enumerate(steps):
            flow = self.flow_step((*path, j), step, flow, depth)
        return flow

    def flow_step(self, path: PathKey, step: AnyStep, flow: _Flow, depth: int) -> _Flow:
        before = flow
        flow = self.flows[type(step)](path, step, flow, depth)
        if "continue" in (step.on_error, step.on_timeout):
            flow = flow.merge(before)
        return flow

    def flow_service(self, path: PathKey, step: ServiceStep, flow: _Flow, depth: int) -> _Flow:
        info = self.services.get(step.path)
        if info is not None:
            return self.command(path, step.service, info, flow)
        if step.service.module in self.tags:
            return flow
        # A mistyped module (reported once, by service_step) meant one of the modules that
        # have this service: their states are unknown from here on, so a later command to the
        # module meant ("stop" of R1.Tempering after 'R9' was started) is not reported again.
        out = flow.copy()
        for tag in self.tags:
            mt = self.config.instance_types.get(tag)
            if mt is not None and any(s.name == step.service.service for s in mt.services):
                out.states[(tag, step.service.service)] = None
        return out

    def flow_sequence(self, path: PathKey, step: SequenceStep, flow: _Flow, depth: int) -> _Flow:
        return self.flow_steps((*path, "sequence"), step.sequence, flow, depth)

    def flow_parallel(self, path: PathKey, step: ParallelStep, flow: _Flow, depth: int) -> _Flow:
        results = []
        owner: dict[Key, int] = {}
        for b, branch in enumerate(step.parallel):
            bpath = (*path, "parallel", b)
            touched = self.touched(branch)
            for key in sorted(touched):
                if key in owner:
                    self.add(
                        bpath,
                        f"{key[0]}.{key[1]} is commanded in parallel branches "
                        f"{owner[key] + 1} and {b + 1}: their order is undefined",
                    )
                else:
                    owner[key] = b
            results.append(self.flow_steps(bpath, branch, flow.copy(), depth))
        merged = flow.copy()
        for key, b in owner.items():
            merged.states[key] = results[b].states.get(key, flow.get(key))
            if key in results[b].self_completing:
                merged.self_completing[key] = results[b].self_completing[key]
        for r in results:  # states a branch made unknown (a step on a mistyped module) stay so
            for key, st in r.states.items():
                if st is None and key not in owner:
                    merged.states[key] = None
        return merged

    def flow_repeat(self, path: PathKey, step: RepeatStep, flow: _Flow, depth: int) -> _Flow:
        rpath = (*path, "repeat", "steps")
        out = self.flow_steps(rpath, step.repeat.steps, flow, depth + 1)
        once = step.repeat.times is not None and self.resolve(step.repeat.times) in (1, "1")
        if not once:
            if depth >= 3:
                for key in self.touched(step.repeat.steps):
                    out.states[key] = None
            else:
                for _ in range(len(STABLE_STATES) + 1):
                    again = out.merge(self.flow_steps(rpath, step.repeat.steps, out, depth + 1))
                    if again.states == out.states:
                        break
                    out = again
        return out

    def touched(self, steps: list[AnyStep]) -> set[Key]:
        """The module services that ``steps`` (nested ones included) command."""
        return {info.key for _, s in walk_steps(steps)
                if (info := self.services.get(s.path)) is not None}

    def command(self, path: PathKey, call: ServiceCall, info: _ServiceInfo, flow: _Flow) -> _Flow:
        key = info.key
        cmd = call.command
        current = flow.get(key)
        flow = flow.copy()
        name = f"{key[0]}.{key[1]}"
        if current is None:
            results = {t for s in STABLE_STATES if (t := transition(s, cmd)) is not None}
        else:
            bad = sorted(s for s in current if transition(s, cmd) is None)
            if bad:
                hints = "; ".join(f"in {s}: {', '.join(enabled(s)) or 'none'}" for s in bad)
                self.add(
                    (*path, "service", "command")
                    if "command" in call.model_fields_set
                    else (*path, "service"),
                    f"'{cmd}' is not possible here: {name} "
                    f"{'is' if len(current) == 1 else 'may be'} in {' or '.join(bad)} "
                    f"(possible {hints})",
                )
            results = {t for s in current if (t := transition(s, cmd)) is not None}
        if not results:
            flow.states[key] = None
            return flow
        if cmd in ("start", "restart"):
            flow.self_completing[key] = bool(info.procedure and info.procedure.self_completing)
        selfc = flow.self_completing.get(key, False)
        reachable = set(results) | ({_COMPLETED} if selfc and _EXECUTE in results else set())
        if call.wait_for is not None:
            target = TRANSIENT_TARGET.get(call.wait_for, call.wait_for)
            if target not in reachable:
                why = (
                    f" ({info.procedure.name} does not complete by itself)"
                    if target == _COMPLETED and info.procedure and not selfc
                    else ""
                )
                self.add(
                    (*path, "service", "wait_for"),
                    f"wait_for {call.wait_for}: '{cmd}' of {name} leads to "
                    f"{' or '.join(sorted(reachable))}, never {target}{why}",
                )
                flow.states[key] = frozenset(reachable)
                return flow
            flow.states[key] = frozenset({target})
        elif cmd in ("start", "restart") and selfc:
            flow.states[key] = frozenset({_COMPLETED})
        else:
            flow.states[key] = frozenset(results)
        return flow

    def scan_references(self, path: PathKey, data: Any) -> None:
        """``${name}`` of undefined parameters anywhere outside conditions (checked there)."""
        if isinstance(data, dict):
            for k, v in data.items():
                self.scan_references((*path, k), v)
        elif isinstance(data, list):
            for i, v in enumerate(data):
                self.scan_references((*path, i), v)
        elif isinstance(data, str) and path not in self.condition_paths and "${" in data:
            for m in _ANY_REF.finditer(data):
                name = m.group(1)
                loc = self.locate_col(path, m.start() + 1)
                if not m.group(0).endswith("}") or not re.fullmatch(
                    r"[A-Za-z_][A-Za-z0-9_]*", name
                ):
                    self.problems.append(
                        Problem(f"malformed parameter reference '{m.group(0)}'", loc)
                    )
                elif name not in self.recipe.parameters:
                    self.problems.append(
                        Problem(
                            f"unknown parameter '{name}'"
                            f"{did_you_mean(name, self.recipe.parameters)}",
                            loc,
                        )
                    )


# --------------------------------------------------------------------------- entry points


def _plant_for(doc: YamlDoc, recipe: Recipe, plant: PlantConfig | str | Path | None) -> PlantConfig:
    if isinstance(plant, PlantConfig):
        return plant
    if plant is not None:
        return load_plant(plant)
    if recipe.plant is None:
        raise ConfigError.single(
            "the recipe names no plant: add 'plant: path/to/plant.yaml' (relative to the "
            "recipe) or give --plant PLANT",
            doc.locate(("name",), key=True),
        )
    path = Path(recipe.plant)
    if not path.is_absolute():
        path = Path(doc.file).parent / path
    if not path.is_file():
        raise ConfigError.single(
            f"plant file '{recipe.plant}' not found (looked for {path})", doc.locate(("plant",))
        )
    return load_plant(path)


def validate_recipe_doc(
    doc: YamlDoc,
    plant: PlantConfig | str | Path | None = None,
    overrides: Mapping[str, str] | None = None,
    text: str | None = None,
) -> ValidatedRecipe:
    """Validate a parsed recipe document against a plant (by default the one it names).

    ``text`` is the file's source, used to map columns inside conditions exactly; without
    it the file is read again when it exists.
    """
    recipe = recipe_from_doc(doc)
    config = _plant_for(doc, recipe, plant)
    if text is None:
        try:
            text = Path(doc.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = None
    return _Validator(doc, recipe, config, overrides or {}, text).run()


def load_recipe(
    path: str | Path,
    plant: PlantConfig | str | Path | None = None,
    overrides: Mapping[str, str] | None = None,
) -> ValidatedRecipe:
    """Load, validate and resolve a recipe; :class:`ConfigError` lists every problem.

    ``plant`` overrides the recipe's ``plant:``; ``overrides`` are ``--set name=value``
    strings, parsed with units and checked like defaults.
    """
    p = Path(path)
    doc = load_yaml(p)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    return validate_recipe_doc(doc, plant, overrides, text)


def validate_recipe_with_plant(
    doc: YamlDoc, plant_path: str | Path | None = None
) -> ValidatedRecipe:
    """For ``modulecontrol validate RECIPE --plant PLANT``."""
    return validate_recipe_doc(doc, plant_path)


"""A self-optimising campaign: experiments chosen by a search, run on a plant, recorded.

Why the split: *what* is measured (:class:`Experimenter`: apply set points, wait for steady
state, average a window) depends on where the campaign runs (a line through its drivers, or
a model); *where it is kept* (:class:`Journal`) is the records database, so a restarted
campaign reads its experiments back and its search (``_algorithms``) asks the same next
point as if nothing had happened. The campaign itself only keeps the order: ask, record the
set points (audited), measure, record the outcome (historian event), repeat.

Fail safe: an experiment that cannot be measured (no steady state in time, a missing or
non-finite mean) is recorded as failed, counted against the budget, treated by the search
as the worst outcome and as violating every constraint; it is never dropped.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._algorithms import ALGORITHMS, Algorithm, ScipySearch, Search, Trial
from ._bayes import BayesSearch, Prior
from ._plan import Plan


class ExperimentFailed(Exception):
    """The experiment could not be measured; the message says why."""


class Experimenter(Protocol):
    """Runs one experiment: apply ``setpoints`` (``TAG.Assembly`` -> value in the variable's
    unit), wait for steady state, return the window means of ``plan.signals`` in SI. Raises
    :class:`ExperimentFailed` when it cannot."""

    async def run(self, setpoints: Mapping[str, float], plan: Plan) -> Mapping[str, float]: ...


@dataclass(frozen=True)
class ExperimentRecord:
    """One experiment as recorded: ``x`` in the unit box (what the search replays), set
    points, window means (SI), KPIs, the objective and constraint margins; ``error`` for a
    failed one."""

    index: int
    x: tuple[float, ...]
    setpoints: Mapping[str, float]
    means: Mapping[str, float] = field(default_factory=dict)
    kpis: Mapping[str, float] = field(default_factory=dict)
    objective: float | None = None
    margins: tuple[float, ...] = ()
    error: str = ""

    @property
    def feasible(self) -> bool:
        return self.objective is not None and all(m >= 0.0 for m in self.margins)

    def payload(self) -> dict[str, Any]:
        """The event payload (JSON); :meth:`from_payload` reads it back exactly."""
        return {"index": self.index, "x": list(self.x), "setpoints": dict(self.setpoints),
                "means": dict(self.means), "kpis": dict(self.kpis),
                "objective": self.objective, "margins": list(self.margins),
                "feasible": self.feasible, "error": self.error}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> ExperimentRecord:
        obj = data.get("objective")
        return cls(int(data["index"]), tuple(float(v) for v in data["x"]),
                   {str(k): float(v) for k, v in data["setpoints"].items()},
                   {str(k): float(v) for k, v in data.get("means", {}).items()},
                   {str(k): float(v) for k, v in data.get("kpis", {}).items()},
                   None if obj is None else float(obj),
                   tuple(float(v) for v in data.get("margins", ())), str(data.get("error", "")))


class Journal(Protocol):
    """Where a campaign's experiments are kept (the records database, or memory)."""

    def history(self) -> Sequence[ExperimentRecord]:
        """The experiments recorded so far, in order."""
        ...

    async def applying(self, index: int, setpoints: Mapping[str, float]) -> None:
        """Record (audited) that experiment ``index`` writes these set points."""
        ...

    async def finished(self, record: ExperimentRecord) -> None:
        """Record the outcome; must not return before it is stored."""
        ...


class MemoryJournal:
    """A journal in memory (tests, benches); ``records`` survive for a new campaign."""

    def __init__(self, records: Sequence[ExperimentRecord] = ()) -> None:
        self.records = list(records)
        self.applied: list[tuple[int, dict[str, float]]] = []

    def history(self) -> Sequence[ExperimentRecord]:
        return list(self.records)

    async def applying(self, index: int, setpoints: Mapping[str, float]) -> None:
        self.applied.append((index, dict(setpoints)))

    async def finished(self, record: ExperimentRecord) -> None:
        self.records.append(record)


@dataclass(frozen=True)
class CampaignResult:
    """All experiments (restored ones first), the best feasible one, and why it ended."""

    records: tuple[ExperimentRecord, ...]
    converged: bool

    @property
    def best(self) -> ExperimentRecord | None:
        feasible = [r for r in self.records if r.feasible]
        return max(feasible, key=lambda r: r.objective or 0.0) if feasible else None

    def curve(self) -> list[float | None]:
        """Best feasible objective after each experiment (None until one is feasible)."""
        out: list[float | None] = []
        best: float | None = None
        for r in self.records:
            if r.feasible and r.objective is not None and (best is None or r.objective > best):
                best = r.objective
            out.append(best)
        return out


def make_search(plan: Plan, prior: Prior | None = None) -> Search:
    """The plan's algorithm (the one place that maps a name to an implementation); ``prior``
    is the twin a plan with ``prior: twin`` needs (:class:`TwinPrior`)."""
    if plan.prior == "twin" and prior is None:
        raise ValueError(f"optimize {plan.name}: prior: twin, but no twin was given to the "
                         "search")
    if plan.prior != "twin" and prior is not None:
        raise ValueError(f"optimize {plan.name}: a prior was given, but the plan says "
                         f"prior: {plan.prior}")
    if plan.algorithm == "bayes":
        return BayesSearch(plan.start(), len(plan.constraints), tolerance=plan.tolerance,
                           prior=prior)
    if prior is not None:
        raise ValueError(f"optimize {plan.name}: the '{plan.algorithm}' search takes no prior")
    algorithm = _SCIPY.get(plan.algorithm)
    if algorithm is None:
        raise ValueError(f"unknown optimize algorithm '{plan.algorithm}' "
                         f"(known: {', '.join(ALGORITHMS)})")
    return ScipySearch(algorithm, plan.start(), len(plan.constraints), step=plan.step,
                       tolerance=plan.tolerance)


_SCIPY: dict[str, Algorithm] = {"cobyla": "cobyla", "nelder-mead": "nelder-mead"}


class Campaign:
    """Run ``plan`` with ``experimenter``, keeping every experiment in ``journal``."""

    def __init__(self, plan: Plan, experimenter: Experimenter, journal: Journal,
                 search: Search | None = None, prior: Prior | None = None) -> None:
        self.plan = plan
        self.experimenter = experimenter
        self.journal = journal
        self.search = search or make_search(plan, prior)
        self.records: list[ExperimentRecord] = []
        """The experiments so far, restored ones first (filled by :meth:`run`): what a
        station shows of a campaign while it runs."""
        self.current: tuple[int, dict[str, float]] | None = None
        """The experiment being made (index, set points), None between experiments."""
        self.result: CampaignResult | None = None
        """How the campaign ended, once it has (:meth:`run`'s result)."""

    def _trials(self, records: Sequence[ExperimentRecord]) -> list[Trial]:
        """The search's view: objectives relative to the first measured one, so step sizes
        and constraint margins weigh alike whatever the objective's unit."""
        ref = next((abs(r.objective) for r in records if r.objective), 1.0) or 1.0
        return [Trial(r.x, None if r.objective is None else r.objective / ref, r.margins)
                for r in records]

    def evaluate(self, index: int, x: tuple[float, ...], setpoints: Mapping[str, float],
                 means: Mapping[str, float], reference: Mapping[str, float] | None
                 ) -> ExperimentRecord:
        """KPIs, objective and margins of measured ``means``; a missing or non-finite value
        makes the experiment failed (it cannot be judged, so it does not pass)."""
        bad = [s for s in self.plan.signals if not math.isfinite(means.get(s, math.nan))]
        if bad:
            return ExperimentRecord(index, x, setpoints, dict(means),
                                    error=f"no finite window mean of {', '.join(bad)}")
        kpis = self.plan.kpis(means)
        value = self.plan.objective(kpis, reference)
        margins = tuple(c.margin(means[c.signal]) for c in self.plan.constraints)
        return ExperimentRecord(index, x, setpoints, dict(means), kpis, value, margins)

    async def run(self) -> CampaignResult:
        records = self.records = list(self.journal.history())
        converged = False
        while len(records) < self.plan.experiments:
            # in a worker thread: a Bayesian ask fits its models, and with the twin as prior
            # the first one solves the twin's steady state some 125 times (seconds), which
            # must not stall the event loop that supervises the line meanwhile
            x = await asyncio.to_thread(self.search.ask, self._trials(records))
            if x is None:
                converged = True
                break
            index = len(records)
            setpoints = self.plan.setpoints(x)
            await self.journal.applying(index, setpoints)
            self.current = (index, dict(setpoints))
            try:
                means = await self.experimenter.run(setpoints, self.plan)
            except ExperimentFailed as exc:
                record = ExperimentRecord(index, x, setpoints, error=str(exc))
            else:
                reference = next((r.kpis for r in records if r.objective is not None), None)
                record = self.evaluate(index, x, setpoints, means, reference)
            finally:
                self.current = None
            await self.journal.finished(record)
            records.append(record)
        self.result = CampaignResult(tuple(records), converged)
        return self.result

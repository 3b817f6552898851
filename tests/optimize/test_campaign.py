"""Self-optimising campaigns: search, records, restart, failures (docs/optimisation.md)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from modulecontrol.optimize import (
    Campaign,
    CampaignResult,
    ExperimentFailed,
    HistorianJournal,
    MemoryJournal,
    Plan,
    SteadyStateExperimenter,
    Trial,
    Variable,
    plan_from_recipe,
)
from modulecontrol.recipe import load_recipe, parse_constraint
from modulecontrol.records import AuditTrail, Historian, verify_audit
from modulecontrol.simulators.lomustine import build_line

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "recipes" / "examples" / "lomustine_optimize.yaml"


def toy_plan(experiments: int = 20) -> Plan:
    """Maximise y = 10 - (a - 3)^2 - (b - 1)^2 with a + b <= 3.5: the optimum is on the
    constraint, at a = 2.75, b = 0.75 (objective 9.875)."""
    return Plan(
        name="toy", variables=(Variable("a", ("X.A",), 0.0, 5.0), Variable("b", ("X.B",),
                                                                          -2.0, 2.0)),
        maximize="throughput", product="X.Y",
        constraints=(parse_constraint("X.S <= 3.5"),), experiments=experiments)


class Toy:
    """A plant that answers at once; ``fail_at`` experiments cannot be measured."""

    def __init__(self, fail_at: frozenset[int] = frozenset(), nan_at: frozenset[int] =
                 frozenset()) -> None:
        self.calls = 0
        self.fail_at = fail_at
        self.nan_at = nan_at

    async def run(self, setpoints: Mapping[str, float], plan: Plan) -> Mapping[str, float]:
        self.calls += 1
        if self.calls in self.fail_at:
            raise ExperimentFailed("no steady state within 4 h")
        a, b = setpoints["X.A"], setpoints["X.B"]
        y = 10.0 - (a - 3.0) ** 2 - (b - 1.0) ** 2
        return {"X.Y": math.nan if self.calls in self.nan_at else y, "X.S": a + b}


async def test_campaign_approaches_a_constrained_optimum() -> None:
    result = await Campaign(toy_plan(), Toy(), MemoryJournal()).run()
    best = result.best
    assert best is not None and best.feasible
    assert best.objective is not None and best.objective > 0.95 * 9.875
    assert best.means["X.S"] <= 3.5
    curve = [v for v in result.curve() if v is not None]
    assert curve == sorted(curve)  # the best so far never gets worse


async def test_constraint_margins_and_kpis_are_recorded() -> None:
    result = await Campaign(toy_plan(3), Toy(), MemoryJournal()).run()
    for r in result.records:
        assert r.kpis["throughput"] == r.means["X.Y"]
        assert r.margins[0] == pytest.approx((3.5 - r.means["X.S"]) / 3.5)
        assert r.feasible == (r.means["X.S"] <= 3.5)


async def test_failed_experiments_are_recorded_counted_and_never_feasible() -> None:
    journal = MemoryJournal()
    result = await Campaign(toy_plan(6), Toy(fail_at=frozenset({2}), nan_at=frozenset({4})),
                            journal).run()
    assert len(result.records) == 6
    failed = [r for r in result.records if r.error]
    assert [r.index for r in failed] == [1, 3]
    assert "no steady state" in failed[0].error
    assert "X.Y" in failed[1].error
    assert not any(r.feasible for r in failed)
    assert len(journal.applied) == 6  # set points written for every one of them


async def interrupted_and_resumed(plan: Callable[[int], Plan], cut: int, total: int,
                                  db: Path) -> CampaignResult:
    """A campaign of ``total`` experiments interrupted after ``cut`` and restarted from the
    records database ``db``; asserts it asks what an uninterrupted one asks."""
    straight = await Campaign(plan(total), Toy(), MemoryJournal()).run()
    h = Historian(db, flush_interval=0.05)
    try:
        await h.start_run("optimise")
        first = await Campaign(plan(cut), Toy(), HistorianJournal(h, "toy", total)).run()
        assert len(first.records) == cut
        resumed = await Campaign(plan(total), Toy(), HistorianJournal(h, "toy", total)).run()
    finally:
        await h.close()
    assert [r.x for r in resumed.records] == [r.x for r in straight.records]
    assert [r.objective for r in resumed.records] == [r.objective for r in straight.records]
    return resumed


async def test_restarted_campaign_continues_with_the_same_points(tmp_path: Path) -> None:
    """Interrupted after 4 experiments, restarted from the records database: the campaign
    asks what an uninterrupted one asks, and every experiment is audited and chained."""
    db = tmp_path / "records.db"
    resumed = await interrupted_and_resumed(toy_plan, 4, 9, db)
    with AuditTrail(db) as trail:
        entries = list(trail.entries("toy"))
    assert len(entries) == 9
    assert entries[0].user == "optimizer" and entries[0].reason == "experiment 1 of 9"
    assert json.loads(json.dumps(entries[4].new_value)) == resumed.records[4].setpoints
    assert verify_audit(db).ok


def test_example_recipe_compiles_to_its_plan() -> None:
    plan = plan_from_recipe(load_recipe(EXAMPLE))
    assert [v.name for v in plan.variables] == ["t_r2", "feed", "nitrite"]
    assert plan.variables[1].targets == ("P1.FlowSetpoint", "P2.FlowSetpoint")
    assert plan.setpoints(plan.start()) == pytest.approx(
        {"R2.TempSP": 25.0, "P1.FlowSetpoint": 0.375, "P2.FlowSetpoint": 0.375, "P3.Rate": 0.45})
    (c,) = plan.constraints
    assert (c.signal, c.sense) == ("PAT1.Purity", 1)
    assert c.bound == pytest.approx(0.9)
    assert plan.window == 600.0 and plan.steady == "purity"
    # the crystal rate is computed in kg/s and shown in the crystallizer's g/h
    unit, factor = plan.shown["objective"]
    assert unit == "g/h" and factor == pytest.approx(3.6e6)
    assert plan.show("objective", 0.1076 / 3.6e6) == "0.1076 g/h"
    assert plan.show("yield", 0.62) == "62 %"
    assert plan.shown["space_time_yield"][0] == "g/h/L"
    assert plan.show("objective", None) == "none"


async def test_short_lomustine_campaign_improves_on_the_operating_point() -> None:
    """Six experiments on the lomustine models at steady state, no noise: deterministic."""
    plan = plan_from_recipe(load_recipe(EXAMPLE))
    plan = dataclasses.replace(plan, experiments=6)
    model = SteadyStateExperimenter(lambda params: build_line(parameters=params))
    result = await Campaign(plan, model, MemoryJournal()).run()
    start = result.records[0]
    assert start.feasible  # the plant's operating point meets the purity spec
    best = result.best
    assert best is not None and best.objective is not None and start.objective is not None
    assert best.objective > 1.05 * start.objective
    assert best.means["PAT1.Purity"] >= 0.9


def test_the_docs_show_the_example_block_as_shipped() -> None:
    """docs/optimisation.md quotes the example recipe's block; it must stay the same text."""
    doc = (ROOT / "docs" / "optimisation.md").read_text(encoding="utf-8")
    block = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert block.startswith("optimize:\n")
    assert block in EXAMPLE.read_text(encoding="utf-8")


class _AskWaitingForTheLoop:
    """A search whose ask returns only once a task on the event loop has run: if the
    campaign asked on the loop's own thread, that task could never run."""

    def __init__(self) -> None:
        self.loop_ran = threading.Event()

    def ask(self, trials: Sequence[Trial]) -> tuple[float, ...] | None:
        if not self.loop_ran.wait(30):  # a bound against a hang, not a timing check
            raise AssertionError("the event loop did not run while the search was asked")
        return None  # converged


async def test_the_search_is_asked_off_the_event_loop() -> None:
    """A Bayesian ask fits its models, and with the twin as prior the first one solves the
    twin some 125 times: the loop that supervises the line must go on meanwhile."""
    search = _AskWaitingForTheLoop()

    async def on_the_loop() -> None:
        await asyncio.sleep(0)
        search.loop_ran.set()

    task = asyncio.create_task(on_the_loop())
    result = await Campaign(toy_plan(3), Toy(), MemoryJournal(), search).run()
    await task
    assert result.converged and not result.records

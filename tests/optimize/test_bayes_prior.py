"""``BayesSearch(prior=...)``: the twin as the Bayesian search's prior (docs/optimisation.md,
"The twin as a prior")."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from modulecontrol.errors import ConfigError
from modulecontrol.optimize import (
    BayesSearch,
    Campaign,
    HistorianJournal,
    Journal,
    MemoryJournal,
    SteadyStateExperimenter,
    Trial,
    TwinPrior,
    line_on_models,
    make_search,
    plan_from_recipe,
)
from modulecontrol.optimize.cli import run_on_models
from modulecontrol.recipe import load_recipe
from modulecontrol.records import Historian
from tests.optimize.test_campaign import Toy, toy_plan
from tests.twin.conftest import ROOT

CENTRE = np.array([0.8, 0.7, 0.3])
X0 = (0.2, 0.2, 0.8)
OPTIMUM = 1.955
"""Maximise 2 - |x - CENTRE|^2 with x0 + x1 <= 1.2: the centre projected on the constraint,
(0.65, 0.55, 0.3), is worth 1.955."""


def _plant(x: tuple[float, ...]) -> tuple[float, tuple[float, ...]]:
    return (2.0 - float(np.sum((np.asarray(x) - CENTRE) ** 2)), ((1.2 - x[0] - x[1]) / 1.2,))


def _twin(x: tuple[float, ...]) -> tuple[float, tuple[float, ...]]:
    """A twin that is close but wrong: its optimum is 0.05 off in two variables, its
    constraint 4 % looser than the plant's, and its objective 10 % larger."""
    centre = CENTRE + np.array([-0.05, 0.0, 0.05])
    return (1.1 * (2.0 - float(np.sum((np.asarray(x) - centre) ** 2))),
            ((1.25 - x[0] - x[1]) / 1.2,))


def _campaign(search: BayesSearch, budget: int = 25) -> list[Trial]:
    """The search on ``_plant``, objectives relative to the first experiment's as a
    campaign gives them (the twin's are relative to its own at the start)."""
    trials: list[Trial] = []
    raw: list[float] = []
    for _ in range(budget):
        x = search.ask(trials)
        if x is None:
            break
        value, margins = _plant(x)
        raw.append(value)
        trials.append(Trial(x, value / raw[0], margins))
    return trials


def _figures(trials: list[Trial]) -> tuple[int | None, int]:
    """Experiments until a feasible 95 % of the optimum, and experiments violating."""
    best = -math.inf
    reached = None
    for i, t in enumerate(trials, 1):
        value, margins = _plant(t.x)
        if min(margins) >= 0.0:
            best = max(best, value)
        if reached is None and best >= 0.95 * OPTIMUM:
            reached = i
    return reached, sum(min(_plant(t.x)[1]) < 0.0 for t in trials)


def test_a_close_twin_shortens_the_design_and_the_violations() -> None:
    flat = _campaign(BayesSearch(X0, 1))
    prior = _campaign(BayesSearch(X0, 1, prior=_twin))
    flat_reached, flat_violations = _figures(flat)
    prior_reached, prior_violations = _figures(prior)
    # the flat search's design is the start and a 6-point hypercube; the twin's is the
    # start and the twin's best point inside its constraints by 1 %
    assert BayesSearch(X0, 1).initial == 7 and BayesSearch(X0, 1, prior=_twin).initial == 2
    # the twin's optimum (0.75, 0.7, 0.35) projected on its constraint less 1 %,
    # x0 + x1 <= 1.238, as far as 65 samples of the twin show it
    second = np.asarray(prior[1].x)
    assert float(np.linalg.norm(second - np.array([0.644, 0.594, 0.35]))) < 0.05, second
    assert second[0] + second[1] <= 1.238 + 1e-3
    assert prior_reached is not None and flat_reached is not None
    assert prior_reached <= 3 < flat_reached, (prior_reached, flat_reached)
    assert prior_violations < flat_violations, (prior_violations, flat_violations)
    best = max(_plant(t.x)[0] for t in prior if min(_plant(t.x)[1]) >= 0.0)
    assert best >= 0.99 * OPTIMUM


def test_a_prior_search_is_a_function_of_the_trials() -> None:
    """A restarted campaign samples the same twin and asks the same point."""
    trials = _campaign(BayesSearch(X0, 1, prior=_twin), budget=6)
    first = BayesSearch(X0, 1, prior=_twin).ask(trials)
    assert first is not None and first == BayesSearch(X0, 1, prior=_twin).ask(list(trials))
    assert min(math.dist(first, t.x) for t in trials) >= 0.01


def test_a_twin_without_any_steady_state_is_refused() -> None:
    search = BayesSearch(X0, 1, prior=lambda x: None)
    with pytest.raises(ValueError, match="the twin has no steady state at any of the 65 "
                                         "points it was sampled at"):
        search.ask([])


def test_a_twin_with_the_wrong_number_of_margins_is_refused() -> None:
    search = BayesSearch(X0, 2, prior=_twin)
    with pytest.raises(ValueError, match="the prior gave 1 margins for 2 constraints"):
        search.ask([])


def test_points_where_the_twin_has_no_steady_state_count_as_failed() -> None:
    """The twin fails beyond x0 > 0.9: its best point stays clear of there."""
    def partial(x: tuple[float, ...]) -> tuple[float, tuple[float, ...]] | None:
        return None if x[0] > 0.9 else _twin(x)

    trials = _campaign(BayesSearch(X0, 1, prior=partial), budget=2)
    assert trials[1].x[0] < 0.9


def test_the_twin_prior_on_the_lomustine_models_is_the_plans_objective_and_margins() -> None:
    vr = load_recipe(ROOT / "recipes" / "examples" / "lomustine_optimize.yaml")
    plan = plan_from_recipe(vr)
    prior = TwinPrior(lambda p: line_on_models(vr.plant, p), plan)
    start = plan.start()
    objective, margins = prior(start) or (math.nan, ())
    means = SteadyStateExperimenter(lambda p: line_on_models(vr.plant, p)).true_means(
        plan.setpoints(start), plan)
    assert objective == plan.objective(plan.kpis(means), None) > 0.0
    assert margins == tuple(c.margin(means[c.signal]) for c in plan.constraints)


def _example(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    example = ROOT / "recipes" / "examples" / "lomustine_optimize.yaml"
    text = example.read_text(encoding="utf-8")
    plant = (example.parent / "../lomustine/plant.yaml").resolve()
    for old, new in (("plant: ../lomustine/plant.yaml", f"plant: {plant.as_posix()}"),
                     *edits):
        assert old in text, old
        text = text.replace(old, new)
    recipe = tmp_path / "prior.yaml"
    recipe.write_text(text, encoding="utf-8")
    return recipe


def test_a_recipe_with_prior_twin_runs_its_second_experiment_at_the_twins_best(
        tmp_path: Path) -> None:
    recipe = _example(tmp_path, ("  algorithm: cobyla\n", "  algorithm: bayes\n  prior: twin\n"))
    plan = plan_from_recipe(load_recipe(recipe))
    assert plan.prior == "twin"
    with pytest.raises(ValueError, match="prior: twin, but no twin was given to the search"):
        make_search(plan)
    result = run_on_models(recipe, experiments=3)
    # on the models the twin is the line itself: its best point (purity >= 90 % with 1 %
    # of the bound to spare) is feasible and beats the start by far (the brute-force
    # optimum is 1.53x the start's)
    first, second = result.records[0], result.records[1]
    assert second.feasible and first.objective is not None and second.objective is not None
    assert second.objective > 1.3 * first.objective
    assert all(r.feasible for r in result.records)


@pytest.mark.parametrize(("edit", "message"), [
    (("  algorithm: cobyla\n", "  algorithm: cobyla\n  prior: twin\n"),
     r"prior\.yaml:\d+:\d+: prior: twin needs algorithm: bayes \(the 'cobyla' search takes "
     r"no prior\)"),
    (("  algorithm: cobyla\n", "  algorithm: bayes\n  prior: digital\n"),
     r"prior\.yaml:\d+:\d+: .*'none' or 'twin'"),
])
def test_a_wrong_prior_is_a_located_error(tmp_path: Path, edit: tuple[str, str],
                                          message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_recipe(_example(tmp_path, edit))


def test_prior_twin_on_a_plant_without_models_is_a_located_error(tmp_path: Path) -> None:
    """A plant that names no species file cannot be simulated, so it has no twin."""
    line = ROOT / "recipes" / "lomustine"
    text = (line / "plant.yaml").read_text(encoding="utf-8")
    assert "\nspecies: species.yaml\n" in text
    (tmp_path / "plant.yaml").write_text(text.replace("\nspecies: species.yaml\n", "\n"),
                                         encoding="utf-8")
    recipe = _example(tmp_path, ("  algorithm: cobyla\n", "  algorithm: bayes\n  prior: twin\n"))
    recipe.write_text(recipe.read_text(encoding="utf-8").replace(
        f"plant: {(line / 'plant.yaml').as_posix()}", "plant: plant.yaml"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"prior\.yaml:\d+:\d+: prior: twin needs the plant's "
                                          r"models: the plant lomustine-line names no 'species' "
                                          r"file"):
        load_recipe(recipe)


def test_the_prior_is_the_twin_itself_at_the_experiments_points() -> None:
    """The prior's processes are conditioned on the twin at every experiment's point too:
    there the prior mean is the twin's value (relative to its value at the start), not the
    64 samples' interpolation."""
    search = BayesSearch(X0, 1, prior=_twin)
    trials = _campaign(search, budget=5)
    x = np.array([t.x for t in trials])
    ref = _twin(X0)[0]
    twin_objective = np.array([_twin(t.x)[0] / ref for t in trials])
    objective, margins = search._prior_at(x).predict(x)
    # to the processes' fitted noise (their hyperparameters are the samples')
    assert objective == pytest.approx(twin_objective, abs=1e-4)
    assert margins[:, 0] == pytest.approx([_twin(t.x)[1][0] for t in trials], abs=1e-4)
    sampled_only = search._prior().predict(x)[0]
    assert np.max(np.abs(objective - twin_objective)) < 0.2 * np.max(
        np.abs(sampled_only - twin_objective))


async def test_a_campaign_with_a_prior_restored_from_its_records_asks_the_same_points(
        tmp_path: Path) -> None:
    plan = dataclasses.replace(toy_plan(9), algorithm="bayes", prior="twin")

    def twin(x: tuple[float, ...]) -> tuple[float, tuple[float, ...]]:
        """The toy with its optimum 0.1 off in a and its constraint 0.05 tighter."""
        sp = plan.setpoints(x)
        a, b = sp["X.A"], sp["X.B"]
        return (10.0 - (a - 2.9) ** 2 - (b - 1.0) ** 2,
                (plan.constraints[0].margin(a + b + 0.05),))

    def campaign(experiments: int, journal: Journal) -> Campaign:
        return Campaign(dataclasses.replace(plan, experiments=experiments), Toy(), journal,
                        prior=twin)

    straight = await campaign(9, MemoryJournal()).run()
    h = Historian(tmp_path / "records.db", flush_interval=0.05)
    try:
        await h.start_run("optimise")
        first = await campaign(4, HistorianJournal(h, "toy", 9)).run()
        assert len(first.records) == 4
        resumed = await campaign(9, HistorianJournal(h, "toy", 9)).run()
    finally:
        await h.close()
    assert [r.x for r in resumed.records] == [r.x for r in straight.records]
    assert [r.objective for r in resumed.records] == [r.objective for r in straight.records]
    best = straight.best
    assert best is not None and best.objective is not None and best.objective >= 0.95 * 9.875

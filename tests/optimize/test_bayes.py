"""``algorithm: bayes``: Gaussian-process Bayesian optimisation behind the ask/tell interface
(docs/optimisation.md, "Bayesian optimisation")."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modulecontrol.optimize import (
    ALGORITHMS,
    BayesSearch,
    Campaign,
    MemoryJournal,
    Plan,
    Trial,
    make_search,
    plan_from_recipe,
)
from modulecontrol.recipe import Optimize, load_recipe
from tests.optimize.test_campaign import Toy, interrupted_and_resumed, toy_plan

TOY_OPTIMUM = 9.875


def bayes_plan(experiments: int = 25) -> Plan:
    return dataclasses.replace(toy_plan(experiments), algorithm="bayes")


def _distances(points: list[tuple[float, ...]]) -> list[float]:
    return [math.dist(a, b) for a, b in itertools.combinations(points, 2)]


async def test_reaches_95_percent_of_a_constrained_optimum_within_25_experiments() -> None:
    """The toy's optimum (9.875) lies on its constraint a + b <= 3.5."""
    plan = bayes_plan(25)
    assert isinstance(make_search(plan), BayesSearch)
    result = await Campaign(plan, Toy(), MemoryJournal()).run()
    assert len(result.records) <= 25
    best = result.best
    assert best is not None and best.objective is not None
    assert best.objective >= 0.95 * TOY_OPTIMUM
    assert best.means["X.S"] <= 3.5
    # never the same point twice: every pair farther apart than the tolerance
    assert min(_distances([r.x for r in result.records])) >= plan.tolerance


def test_reaches_95_percent_of_an_optimum_on_a_constraint_in_three_variables() -> None:
    """Maximise 2 - |x - (0.8, 0.7, 0.3)|^2 with x0 + x1 <= 1.2: the optimum is the centre
    projected on the constraint, (0.65, 0.55, 0.3), worth 1.955."""
    centre = np.array([0.8, 0.7, 0.3])
    search = BayesSearch((0.2, 0.2, 0.8), 1)
    trials: list[Trial] = []
    for _ in range(25):
        x = search.ask(trials)
        if x is None:
            break
        assert all(0.0 <= v <= 1.0 for v in x)
        trials.append(Trial(x, 2.0 - float(np.sum((np.asarray(x) - centre) ** 2)),
                            ((1.2 - x[0] - x[1]) / 1.2,)))
    best = max(t.objective or -math.inf for t in trials if t.feasible)
    assert best >= 0.95 * 1.955
    assert min(_distances([t.x for t in trials])) >= search.tolerance


def test_initial_design_starts_at_the_start_and_has_max_5_2d_plus_1_points() -> None:
    assert BayesSearch((0.5,), 0).initial == 5
    search = BayesSearch((0.25, 0.5, 0.75), 2)
    assert search.initial == 7
    assert search.ask([]) == (0.25, 0.5, 0.75)
    trials = [Trial(p, 1.0, (0.1, 0.1)) for p in search.design[:3]]
    assert search.ask(trials) == search.design[3]


def _trials(draw: st.DrawFn) -> list[Trial]:
    """Some of the initial design (so that the models decide the point once it is all
    measured), then points anywhere; one in four failed."""
    design = BayesSearch((0.5, 0.5), 1).design
    whole = draw(st.integers(0, 3)) > 0  # three in four: the models decide
    points = design if whole else design[:draw(st.integers(0, len(design)))]
    unit = st.floats(0.0, 1.0, allow_nan=False)
    points += [(draw(unit), draw(unit)) for _ in range(draw(st.integers(0, 7)))]
    out = []
    for x in points:
        failed = draw(st.integers(0, 3)) == 0  # one in four cannot be measured
        objective = None if failed else draw(st.floats(-5.0, 5.0, allow_nan=False))
        out.append(Trial(x, objective, (draw(st.floats(-0.5, 0.5, allow_nan=False)),)))
    return out


trial_lists = st.composite(_trials)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(trials=trial_lists())
def test_same_trials_same_point_never_a_measured_one(trials: list[Trial]) -> None:
    """A fresh search (a restarted campaign) asks what the running one asks; the point is
    in the box and never within the tolerance of a measured (or failed) point."""
    first = BayesSearch((0.5, 0.5), 1).ask(trials)
    again = BayesSearch((0.5, 0.5), 1).ask(list(trials))
    assert first == again
    if first is not None:
        assert all(0.0 <= v <= 1.0 for v in first)
        assert all(math.dist(first, t.x) >= 0.01 for t in trials)


async def test_restored_campaign_asks_the_same_points(tmp_path: Path) -> None:
    """Interrupted after 6 experiments (past the initial design of 5), restarted from the
    records database: the same points and outcomes as an uninterrupted campaign."""
    await interrupted_and_resumed(bayes_plan, 6, 9, tmp_path / "records.db")


async def test_failed_experiments_are_infeasible_worst_and_not_repeated() -> None:
    result = await Campaign(bayes_plan(12), Toy(fail_at=frozenset({2, 7, 8})),
                            MemoryJournal()).run()
    failed = [r for r in result.records if r.error]
    assert [r.index for r in failed] == [1, 6, 7]
    assert not any(r.feasible for r in failed)
    assert min(_distances([r.x for r in result.records])) >= 0.01
    assert result.best is not None and result.best.feasible


def test_only_failed_trials_explore_away_from_them() -> None:
    search = BayesSearch((0.5, 0.5), 1)
    trials = [Trial(p, None, ()) for p in search.design]
    x = search.ask(trials)
    assert x is not None and x == BayesSearch((0.5, 0.5), 1).ask(trials)
    assert min(math.dist(x, t.x) for t in trials) >= 0.1


def test_converges_at_a_measured_optimum() -> None:
    """Maximise -|x - 0.3|^2 in one variable with the optimum measured densely: nothing
    left to improve, so the search says so instead of asking next to a measured point."""
    xs = [i / 40 for i in range(41)]
    trials = [Trial((x,), -((x - 0.3) ** 2), ()) for x in xs]
    assert BayesSearch((0.5,), 0, tolerance=0.03).ask(trials) is None


def test_recipe_model_and_algorithms_agree() -> None:
    annotation = Optimize.model_fields["algorithm"].annotation
    assert typing.get_args(annotation) == ALGORITHMS
    assert "bayes" in ALGORITHMS


def test_unknown_algorithm_is_rejected_with_the_known_ones() -> None:
    plan = dataclasses.replace(toy_plan(), algorithm="bayesian")
    with pytest.raises(ValueError, match=r"unknown optimize algorithm 'bayesian' "
                                         r"\(known: cobyla, nelder-mead, bayes\)"):
        make_search(plan)


def test_a_recipe_block_with_algorithm_bayes_validates_and_makes_a_bayes_search(
        tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    example = root / "recipes" / "examples" / "lomustine_optimize.yaml"
    text = example.read_text(encoding="utf-8")
    assert "  algorithm: cobyla\n" in text
    plant = (example.parent / "../lomustine/plant.yaml").resolve()
    text = text.replace("  algorithm: cobyla\n", "  algorithm: bayes\n")
    text = text.replace("plant: ../lomustine/plant.yaml", f"plant: {plant}")
    recipe = tmp_path / "bayes.yaml"
    recipe.write_text(text, encoding="utf-8")
    plan = plan_from_recipe(load_recipe(recipe))
    assert plan.algorithm == "bayes"
    search = make_search(plan)
    assert isinstance(search, BayesSearch) and search.initial == 7
    assert search.ask([]) == pytest.approx(plan.start())


_OTHER_PROCESS = """
import json, sys
from modulecontrol.optimize import BayesSearch, Trial
raw = json.loads(sys.stdin.read())
trials = [Trial(tuple(x), o, tuple(m)) for x, o, m in raw]
print(json.dumps(BayesSearch((0.5, 0.5), 1).ask(trials)))
"""


def test_another_process_with_one_blas_thread_asks_the_same_point() -> None:
    """A restarted service may run with another number of BLAS threads, which changes the
    last bits of LAPACK's results; the search must not depend on them."""
    search = BayesSearch((0.5, 0.5), 1)
    trials: list[Trial] = []
    for _ in range(10):
        x = search.ask(trials)
        assert x is not None
        a, b = 5.0 * x[0], -2.0 + 4.0 * x[1]
        trials.append(Trial(x, 10.0 - (a - 3.0) ** 2 - (b - 1.0) ** 2,
                            ((3.5 - a - b) / 3.5,)))
    here = search.ask(trials)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _OTHER_PROCESS], input=json.dumps(
        [[t.x, t.objective, t.margins] for t in trials]), capture_output=True, text=True,
        env=env, cwd=root, timeout=120, check=True)
    there = json.loads(out.stdout)
    assert here is not None and there is not None
    assert tuple(there) == here

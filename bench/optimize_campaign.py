"""Benchmark: the self-optimising campaign of recipes/examples/lomustine_optimize.yaml on the
lomustine models (docs/optimisation.md, "Measured").

The reference optimum is found once by brute force over the same box: a grid of
``OPTIMIZE_GRID``^3 points of the noise-free steady state, refined by a finer grid around the
best feasible point. Then the campaign runs for 10 seeds; a seed draws the measurement noise
(1 % on the crystal rate, 0.2 % relative on the purity) and jitters the start point. Judged
on the noise-free values of the points it tried: experiments until a truly feasible point
reaches 95 % of the optimum, and experiments that truly violated the purity constraint.

``OPTIMIZE_ALGORITHMS`` (comma-separated, default ``cobyla``) names the searches to compare on
the same seeds; the first one's figures are the top-level ones, and with more than one every
algorithm's figures are under ``algorithms``. ``OPTIMIZE_SEEDS`` (default 10) sets the seeds.
``bayes-twin`` and ``bayes-stale`` are ``bayes`` with the twin as its prior: the line's own
models, and models that are wrong (``STALE``, ``OPTIMIZE_STALE``). ``OPTIMIZE_CONSTRAINT``
replaces the recipe's constraint (e.g. ``PAT1.Purity >= 97 %``, which binds at the optimum
where the recipe's 90 % does not).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import math
import os
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modulecontrol.descriptors import PlantConfig, load_plant
from modulecontrol.optimize import (
    BayesSearch,
    Campaign,
    MemoryJournal,
    Plan,
    ScipySearch,
    Search,
    SteadyStateExperimenter,
    TwinPrior,
    plan_from_recipe,
)
from modulecontrol.recipe import load_recipe, parse_constraint
from modulecontrol.simulators import SimulatedPlant
from modulecontrol.simulators.lomustine import DEFAULT_PLANT, build_line
from modulecontrol.twin import ParamRef, with_parameters

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "examples" / "lomustine_optimize.yaml"
NOISE = {"CR1.CrystalRate": 0.01, "PAT1.Purity": 0.002}
SEEDS = range(int(os.environ.get("OPTIMIZE_SEEDS", "10")))


def line(params: Mapping[str, Mapping[str, float]]) -> SimulatedPlant:
    return build_line(parameters=params)


class Truth:
    """Noise-free objective and feasibility of a point of the unit box, cached."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.model = TwinPrior(line, plan)  # the line's own models, noise-free
        self.cache: dict[tuple[float, ...], tuple[float, bool]] = {}

    def __call__(self, x: tuple[float, ...]) -> tuple[float, bool]:
        key = tuple(round(v, 12) for v in x)
        if key not in self.cache:
            got = self.model(x)
            if got is None:
                raise RuntimeError(f"the lomustine models have no steady state at {x}")
            value, margins = got
            self.cache[key] = (value, all(m >= 0.0 for m in margins))
        return self.cache[key]


def brute_force(truth: Truth, n: int) -> tuple[float, tuple[float, ...]]:
    dims = len(truth.plan.variables)
    best = (-np.inf, (0.5,) * dims)
    for x in itertools.product(np.linspace(0.0, 1.0, n), repeat=dims):
        value, ok = truth(tuple(float(v) for v in x))
        if ok and value > best[0]:
            best = (value, tuple(float(v) for v in x))
    h = 1.0 / (n - 1)
    for d in itertools.product(np.linspace(-h, h, 5), repeat=dims):
        x = tuple(float(min(max(b + e, 0.0), 1.0)) for b, e in zip(best[1], d, strict=True))
        value, ok = truth(x)
        if ok and value > best[0]:
            best = (value, x)
    return float(best[0]), best[1]


#: The stale twin of ``bayes-stale``: the line's models with the nitrosation 20 % slower than
#: the line's (a twin not yet fitted to the line's runs, say). ``OPTIMIZE_STALE`` replaces it:
#: ``PARAM=FACTOR`` pairs, comma-separated
STALE = {name.strip(): float(factor) for name, _, factor in (
    pair.partition("=") for pair in os.environ.get(
        "OPTIMIZE_STALE", "R2.reactions.nitrosation_equilibrium.k_ref=0.8").split(","))}


@functools.cache
def _stale_config() -> PlantConfig:
    config = load_plant(DEFAULT_PLANT)
    refs = {ParamRef.resolve(config, name): factor for name, factor in STALE.items()}
    return with_parameters(config, {r: r.value * f for r, f in refs.items()})


def stale_line(params: Mapping[str, Mapping[str, float]]) -> SimulatedPlant:
    return build_line(_stale_config(), parameters=params)


def search_for(algorithm: str, plan: Plan, x0: list[float]) -> Search:
    if algorithm == "bayes":
        return BayesSearch(x0, len(plan.constraints), plan.tolerance)
    if algorithm == "bayes-twin":  # the twin is the line's own models
        return BayesSearch(x0, len(plan.constraints), plan.tolerance,
                           prior=TwinPrior(line, plan))
    if algorithm == "bayes-stale":
        return BayesSearch(x0, len(plan.constraints), plan.tolerance,
                           prior=TwinPrior(stale_line, plan))
    if algorithm not in ("cobyla", "nelder-mead"):
        raise ValueError(f"unknown algorithm '{algorithm}'")
    return ScipySearch("cobyla" if algorithm == "cobyla" else "nelder-mead", x0,
                       len(plan.constraints), plan.step, plan.tolerance)


def one_seed(plan: Plan, truth: Truth, optimum: float, seed: int,
             algorithm: str = "cobyla") -> dict[str, Any]:
    rng = np.random.default_rng(1000 + seed)
    x0 = [float(v) for v in np.clip(np.asarray(plan.start())
                                    + rng.normal(0.0, 0.05, len(plan.variables)), 0.0, 1.0)]
    search = search_for(algorithm, plan, x0)
    campaign = Campaign(plan, SteadyStateExperimenter(line, NOISE, seed), MemoryJournal(),
                        search)
    result = asyncio.run(campaign.run())
    curve: list[float] = []
    best = 0.0
    violations = 0
    for r in result.records:
        value, ok = truth(r.x)
        violations += not ok
        if ok and r.feasible:  # the campaign can only pick what it measured as feasible
            best = max(best, value / optimum)
        curve.append(round(best, 4))
    reached = next((i + 1 for i, v in enumerate(curve) if v >= 0.95), None)
    return {"experiments": len(result.records), "converged": result.converged,
            "best_fraction": curve[-1] if curve else 0.0, "experiments_to_95": reached,
            "violations": violations, "curve": curve}


def figures(plan: Plan, truth: Truth, optimum: float, algorithm: str) -> dict[str, Any]:
    """One algorithm's campaigns over the seeds, summarised (and printed)."""
    t0 = time.perf_counter()
    runs = [one_seed(plan, truth, optimum, s, algorithm) for s in SEEDS]
    reached = [r["experiments_to_95"] or math.inf for r in runs]  # inf: never in the budget
    median_reached = statistics.median(reached)
    length = max(len(r["curve"]) for r in runs)
    median_curve = [statistics.median(r["curve"][min(i, len(r["curve"]) - 1)] for r in runs)
                    for i in range(length)]
    out = {
        "algorithm": algorithm,
        "seeds": len(runs),
        "median_experiments_to_95_percent": (
            median_reached if math.isfinite(median_reached) else None),
        "median_best_fraction": statistics.median(r["best_fraction"] for r in runs),
        "violations_per_seed": [r["violations"] for r in runs],
        "median_violations": statistics.median(r["violations"] for r in runs),
        "median_curve": median_curve,
        "campaign_seconds": round(time.perf_counter() - t0, 1),
        "runs": runs,
    }
    print(f"== {algorithm}: median best fraction of the optimum after each experiment:",
          flush=True)
    for i, v in enumerate(median_curve, 1):
        print(f"  {i:2d} {'#' * round(40 * v):40s} {v:.3f}", flush=True)
    print(f"median experiments to 95 %: {out['median_experiments_to_95_percent']}, "
          f"per seed: {[r['experiments_to_95'] for r in runs]}, "
          f"best fraction per seed: {[r['best_fraction'] for r in runs]}, "
          f"violations per seed: {out['violations_per_seed']}", flush=True)
    return out


def run() -> dict[str, Any]:
    plan = plan_from_recipe(load_recipe(RECIPE))
    if os.environ.get("OPTIMIZE_CONSTRAINT"):  # e.g. "PAT1.Purity >= 97 %": one that binds
        plan = dataclasses.replace(plan, constraints=(
            parse_constraint(os.environ["OPTIMIZE_CONSTRAINT"]),))
    truth = Truth(plan)
    optimum, x_opt = brute_force(truth, int(os.environ.get("OPTIMIZE_GRID", "8")))
    print(f"optimum by brute force: {optimum * 3.6e9:.1f} mg/h crystals at "
          f"{ {k: round(v, 3) for k, v in plan.setpoints(x_opt).items()} }", flush=True)
    algorithms = [a.strip() for a in
                  os.environ.get("OPTIMIZE_ALGORITHMS", "cobyla").split(",") if a.strip()]
    each = {a: figures(plan, truth, optimum, a) for a in algorithms}
    first = dict(each[algorithms[0]])
    del first["algorithm"], first["seeds"], first["campaign_seconds"]
    out: dict[str, Any] = {
        "optimum": {"objective_SI": optimum, "mg_per_h": optimum * 3.6e9,
                    "point": plan.setpoints(x_opt), "grid_points": len(truth.cache)},
        **first,
    }
    if len(algorithms) > 1:
        out["algorithms"] = each
    return out


if __name__ == "__main__":
    from modulecontrol.bootstrap import configure

    configure()  # the composition root of this script
    import json

    print(json.dumps(run(), indent=2))

"""``modulecontrol optimize RECIPE``: a recipe's campaign run on the twin, before the line.

Each experiment of the ``optimize`` block is the steady state of the plant's models at the
point (:class:`SteadyStateExperimenter`), calibrated by the overlays of ``twin fit`` that the
plant file includes (``calibrations:``) and by ``--calibration`` when given: a second per
experiment instead of hours, so the search's path, the number of experiments it needs and
where it ends can be seen before the line spends reagent on it, and the point it finds is a
candidate start for the campaign on the line. Nothing is written to a plant or a records database.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from modulecontrol.errors import ConfigError
from modulecontrol.optimize._campaign import Campaign, CampaignResult, MemoryJournal
from modulecontrol.optimize._plan import plan_from_recipe
from modulecontrol.optimize._simulated import (
    SteadyStateExperimenter,
    line_on_models,
    plan_prior,
)
from modulecontrol.recipe import load_recipe
from modulecontrol.twin import TwinError, apply_overlay
from modulecontrol.units import to_si

__all__ = ["optimize_cmd", "run_on_models"]


def run_on_models(recipe: str | Path, plant: str | Path | None = None,
                  calibration: str | Path | None = None,
                  experiments: int | None = None) -> CampaignResult:
    """The recipe's ``optimize`` campaign on the plant's models at steady state."""
    vr = load_recipe(recipe, plant)
    config = vr.plant if calibration is None else apply_overlay(vr.plant, calibration)
    plan = plan_from_recipe(vr)
    if experiments is not None:
        if experiments < 1:
            raise ValueError("--experiments must be at least 1")
        from dataclasses import replace

        plan = replace(plan, experiments=experiments)
    experimenter = SteadyStateExperimenter(lambda p: line_on_models(config, p))
    return asyncio.run(Campaign(plan, experimenter, MemoryJournal(),
                                prior=plan_prior(plan, config)).run())


def optimize_cmd(
    recipe: Annotated[Path, typer.Argument(help="Recipe with an 'optimize' block.")],
    plant: Annotated[Path | None, typer.Option("--plant", help="Plant file (default: the "
                                               "recipe's).")] = None,
    calibration: Annotated[Path | None, typer.Option(
        "--calibration", help="Calibrated overlay of `twin fit --overlay`: the models as "
        "fitted to the line's runs, on top of the plant file's own 'calibrations'.")] = None,
    experiments: Annotated[int | None, typer.Option("--experiments", help="Budget (default: "
                                                    "the block's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the experiments as JSON.")
                       ] = False,
) -> None:
    """Run a recipe's optimize campaign on the twin (the plant's models at steady state):
    every experiment, the best feasible point. Writes nothing."""
    try:
        result = run_on_models(recipe, plant, calibration, experiments)
    except (ConfigError, TwinError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({"experiments": [r.payload() for r in result.records],
                               "converged": result.converged,
                               "best": None if result.best is None else result.best.index},
                              indent=2))
        return
    config = load_recipe(recipe, plant).plant

    def shown(signal: str, si: float) -> str:
        """A window mean in its assembly's unit (the plant's), as the operator reads it."""
        tag, _, assembly = signal.partition(".")
        try:
            unit = config.type_of(tag).assembly(assembly).unit
        except (KeyError, ValueError):
            unit = ""
        return f"{signal} {si / to_si(1.0, unit):.4g} {unit}" if unit else f"{signal} {si:.4g}"

    first = next((r.objective for r in result.records if r.objective), None)
    for r in result.records:
        points = ", ".join(f"{k}={v:.4g}" for k, v in r.setpoints.items())
        means = ", ".join(shown(k, v) for k, v in r.means.items())
        rel = f" (x{r.objective / first:.3f} of the first)" if first and r.objective else ""
        verdict = (f"error: {r.error}" if r.error else
                   f"{means}{rel}{'' if r.feasible else '  INFEASIBLE'}")
        typer.echo(f"{r.index + 1:3d}  {points}  ->  {verdict}")
    best = result.best
    ending = "converged" if result.converged else "budget spent"
    if best is None:
        typer.echo(f"no feasible experiment in {len(result.records)} ({ending})")
        return
    rel = f" (x{best.objective / first:.3f} of the first)" if first and best.objective else ""
    typer.echo(f"best: experiment {best.index + 1} of {len(result.records)} ({ending}): "
               + ", ".join(f"{k}={v:.4g}" for k, v in best.setpoints.items()) + rel)

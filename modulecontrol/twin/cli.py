"""CLI of the digital twin: ``modulecontrol twin fit`` and ``modulecontrol twin record``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from modulecontrol.descriptors import load_plant
from modulecontrol.records import DEFAULT_DB, RecordsError
from modulecontrol.twin._fit import fit, write_overlay
from modulecontrol.twin._model import ParamRef, TwinError, with_parameters
from modulecontrol.twin._record import record_simulated_run

app = typer.Typer(help="The digital twin: calibrate the plant's models on recorded runs.",
                  no_args_is_help=True)

PlantOpt = Annotated[Path, typer.Option("--plant", help="Plant file whose models are fitted.")]
DbOpt = Annotated[Path, typer.Option("--db", help="Records database (SQLite file).")]


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


@app.command("fit")
def fit_cmd(
    run: Annotated[int, typer.Argument(help="Run id (see `modulecontrol runs`).")],
    param: Annotated[list[str], typer.Option("--param", help="TAG.path of a simulator "
                                             "parameter, e.g. R1.reactions.carbamylation.k_ref")],
    plant: PlantOpt,
    db: DbOpt = Path(DEFAULT_DB),
    runs: Annotated[list[int] | None, typer.Option("--runs", help="More runs to fit "
                                                   "together with RUN.")] = None,
    measure: Annotated[list[str] | None, typer.Option(
        "--measure", help="TAG.Assembly to fit against (default: the analyzers').")] = None,
    dt: Annotated[float, typer.Option("--dt", help="Simulation step, s.")] = 5.0,
    overlay: Annotated[Path | None, typer.Option("--overlay", help="Write the calibrated "
                                                 "parameters here (YAML).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Least squares of PARAMs over the replayed runs: estimates, 95 % intervals,
    correlations and identifiability warnings."""
    try:
        config = load_plant(plant)
        result = fit(config, db, [run, *(runs or [])], param, measure or (), dt)
        if overlay is not None:
            write_overlay(config, result, overlay)
    except (TwinError, RecordsError, OSError, ValueError) as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        for e in result.estimates:
            typer.echo(f"{e.name} = {e.value:.6g} {e.unit}  95% CI [{e.low:.6g}, {e.high:.6g}]"
                       f"  (was {e.initial:.6g})")
        names = [e.name.rsplit(".", 2)[-2] + "." + e.name.rsplit(".", 1)[-1]
                 for e in result.estimates]
        typer.echo("correlation: " + "; ".join(
            f"{names[i]}~{names[j]} {result.correlation[i, j]:+.3f}"
            for i in range(len(names)) for j in range(i + 1, len(names))))
        typer.echo(f"{result.n_points} points from runs {result.runs} "
                   f"({result.n_transient} transient samples left out), "
                   f"rms scaled residual {result.rms:.3g}")
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)


@app.command("record")
def record_cmd(
    plant: PlantOpt,
    db: DbOpt,
    set_: Annotated[list[str], typer.Option("--set", help="TAG.Assembly=value held from "
                                            "the start, e.g. R1.TempSP=60")],
    measure: Annotated[list[str], typer.Option("--measure", help="TAG.Assembly to record.")],
    duration: Annotated[float, typer.Option("--duration", help="Simulated seconds.")] = 1200,
    interval: Annotated[float, typer.Option("--interval", help="Sample interval, s.")] = 30,
    noise: Annotated[float, typer.Option("--noise", help="Relative measurement noise.")] = 0.01,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    dt: Annotated[float, typer.Option("--dt", help="Simulation step, s.")] = 5.0,
    truth: Annotated[list[str] | None, typer.Option(
        "--truth", help="TAG.path=value: a parameter the simulated plant has instead.")] = None,
) -> None:
    """Record a simulated run with known parameters (to check a fit, or for examples)."""
    try:
        config = load_plant(plant)
        changes = {}
        for item in truth or []:
            name, _, value = item.partition("=")
            changes[ParamRef.resolve(config, name)] = float(value)
        settings = {}
        for item in set_:
            name, sep, value = item.partition("=")
            if not sep:
                raise TwinError(f"--set {item}: write TAG.Assembly=value")
            settings[name] = float(value)
        run = record_simulated_run(with_parameters(config, changes), db, settings=settings,
                                   outputs=measure, duration=duration, interval=interval,
                                   noise=noise, seed=seed, dt=dt)
    except (TwinError, RecordsError, OSError, ValueError) as exc:
        _fail(str(exc))
        return
    typer.echo(f"run {run}")

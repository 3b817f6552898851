"""CLI of the digital twin: ``modulecontrol twin fit``, ``twin record`` and ``twin whatif``."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from modulecontrol.descriptors import load_plant
from modulecontrol.records import DEFAULT_DB, RecordsError
from modulecontrol.twin._fit import fit, write_overlay
from modulecontrol.twin._model import ParamRef, TwinError, with_parameters
from modulecontrol.twin._record import record_simulated_run
from modulecontrol.twin._report import record_calibration, write_fit_report
from modulecontrol.twin._whatif import WhatIf, duration_seconds, whatif

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
    param: Annotated[list[str], typer.Option(
        "--param", help="TAG.path of a simulator parameter, e.g. "
        "R1.reactions.carbamylation.k_ref, R1.thermostat.tau, R2.n_tanks (a whole number: "
        "fitted by its profile), P1.flow_calibration")],
    plant: PlantOpt,
    db: DbOpt = Path(DEFAULT_DB),
    runs: Annotated[list[int] | None, typer.Option("--runs", help="More runs to fit "
                                                   "together with RUN.")] = None,
    measure: Annotated[list[str] | None, typer.Option(
        "--measure", help="TAG.Assembly to fit against (default: the analyzers').")] = None,
    dt: Annotated[float, typer.Option("--dt", help="Simulation step, s.")] = 5.0,
    transient: Annotated[bool, typer.Option(
        "--transient", help="Fit every sample against the dynamic replay of the run from "
        "rest (parameters of the transient: a thermostat's tau), not only the steady "
        "windows against the steady solve.")] = False,
    overlay: Annotated[Path | None, typer.Option("--overlay", help="Write the calibrated "
                                                 "parameters here (YAML) and record it, with "
                                                 "the fit's provenance, in the audit trail "
                                                 "of --db.")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Write the fit report "
                                                "(fit-report.md, residuals.png, "
                                                "correlation.png, fit.json) into this "
                                                "folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Least squares of PARAMs over the replayed runs: estimates, 95 % intervals,
    correlations and identifiability warnings."""
    try:
        config = load_plant(plant)
        result = fit(config, db, [run, *(runs or [])], param, measure or (), dt, transient)
        if report is not None:
            write_fit_report(result, report)
        if overlay is not None:
            write_overlay(config, result, overlay)
            entry = record_calibration(db, result, overlay, plant=Path(config.file).name)
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
        if len(names) > 1:
            typer.echo("correlation: " + "; ".join(
                f"{names[i]}~{names[j]} {result.correlation[i, j]:+.3f}"
                for i in range(len(names)) for j in range(i + 1, len(names))))
        left = ("every sample against the dynamic replay" if result.transient
                else f"{result.n_transient} transient samples left out")
        typer.echo(f"{result.n_points} points from runs {result.runs} ({left}), "
                   f"rms scaled residual {result.rms:.3g}")
    if report is not None:
        typer.echo(f"report: {report / 'fit-report.md'}", err=as_json)
    if overlay is not None:
        typer.echo(f"overlay: {overlay} (audit entry {entry.seq})", err=as_json)
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


def parse_sets(items: list[str]) -> dict[str, float]:
    """``TAG.Assembly=value`` items as a mapping; the error names the item."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or "." not in name:
            raise TwinError(f"--set {item}: write TAG.Assembly=value (e.g. R1.TempSP=60)")
        try:
            out[name] = float(value)
        except ValueError:
            raise TwinError(f"--set {item}: '{value}' is not a number") from None
    return out


LiveWhatIf = Callable[[str, Mapping[str, float], str, float], dict[str, Any]]
"""``(server, changes, horizon, purity spec) -> the what-if as JSON`` from a running control
service's live state. The composition root (:mod:`modulecontrol.cli`) installs it with
:func:`use_live`: the service's client lives in a layer above this one."""

_live: list[LiveWhatIf] = []


def use_live(fn: LiveWhatIf) -> None:
    """Install how ``twin whatif --live`` asks a control service (once, by the root CLI)."""
    _live[:] = [fn]


@app.command("whatif")
def whatif_cmd(
    set_: Annotated[list[str], typer.Option("--set", help="TAG.Assembly=value, the proposed "
                                            "change, e.g. R1.TempSP=60")],
    run: Annotated[int | None, typer.Argument(help="Run id whose end state is the start "
                                              "(or --live).")] = None,
    plant: Annotated[Path | None, typer.Option(
        "--plant", help="Plant file whose models are simulated (not with --live: the "
        "service's own).")] = None,
    live: Annotated[bool, typer.Option("--live", help="Start from the state of the line a "
                                       "control service runs: the run in progress replayed, "
                                       "then the inputs it holds now (--server, token in "
                                       "MODULECONTROL_TOKEN).")] = False,
    server: Annotated[str, typer.Option("--server", envvar="MODULECONTROL_SERVER",
                                        help="URL of the control service (with --live).")
                      ] = "http://127.0.0.1:8470",
    db: DbOpt = Path(DEFAULT_DB),
    horizon: Annotated[str, typer.Option("--horizon", help="How far ahead, e.g. 2h.")] = "2h",
    dt: Annotated[float, typer.Option("--dt", help="Simulation step, s.")] = 10.0,
    spec: Annotated[float, typer.Option("--purity-spec", help="Purity below which the "
                                        "stream is off-spec, %.")] = 90.0,
    start: Annotated[str, typer.Option(
        "--start", help="Where RUN's what-if starts: state (the run's state at its end, the "
        "twin's replay of its inputs) or steady (the steady state at the inputs it held "
        "there).")] = "state",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Simulate a proposed change ahead from RUN's end state, or from a running line's
    state: time to the new steady state, yield, purity, throughput, off-spec volume."""
    try:
        if live == (run is not None):
            raise TwinError("give RUN (a recorded run's end state) or --live (a running "
                            "line's inputs), not both or neither")
        changes = parse_sets(set_)
        duration_seconds(horizon, "--horizon")
        if live:
            if not _live:
                raise TwinError("--live needs the control service's client (run it as "
                                "`modulecontrol twin whatif --live`)")
            result = WhatIf.from_dict(_live[0](server, changes, horizon, spec))
        else:
            if plant is None:
                raise TwinError("--plant: the plant file whose models are simulated")
            assert run is not None
            if start not in ("state", "steady"):
                raise TwinError(f"--start {start}: write state or steady")
            result = whatif(load_plant(plant), db, run, changes,
                            duration_seconds(horizon, "--horizon"), dt=dt, purity_spec=spec,
                            start="steady" if start == "steady" else "state")
    except (TwinError, RecordsError, OSError, ValueError) as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    b = result.before
    settle = ("not within the horizon" if result.time_to_steady_s == float("inf")
              else f"{result.time_to_steady_s / 60:.1f} min")
    yields = ("n/a" if result.yield_pct is None
              else f"{b['yield_pct']:.1f} -> {result.yield_pct:.1f} %")
    held = ", ".join(f"{k}={v:g}" for k, v in result.start.items())
    typer.echo(f"change: {', '.join(f'{k}={v:g}' for k, v in result.changes.items())}"
               f" (from {result.start_from}{': ' + held if held else ''})")
    for signal, e in result.estimate.items():
        typer.echo(f"start check: {signal} twin {e['twin']:.4g}, recorded {e['recorded']:.4g} "
                   f"(mean of the run's last {e['samples']:.0f} samples)")
    typer.echo(f"time to new steady state: {settle}")
    typer.echo(f"purity: {b['purity_pct']:.2f} -> {result.purity_pct:.2f} %")
    typer.echo(f"yield: {yields}")
    typer.echo(f"throughput: {b['throughput_g_h'] * 1000:.1f} -> "
               f"{result.throughput_g_h * 1000:.1f} mg/h")
    typer.echo(f"off-spec volume (purity < {result.purity_spec_pct:g} %): "
               f"{result.off_spec_ml:.1f} mL in {result.horizon_s / 3600:.2g} h")

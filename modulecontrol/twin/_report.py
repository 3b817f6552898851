"""What a fit leaves behind: its report (residual plots, correlation matrix) and its audit.

A calibration is judged by its residuals, not by its intervals alone: a trend left in them
(one run above, the other below; a drift with time) says the model lacks something that the
intervals, linearised around the optimum, cannot show. The report therefore draws the
residuals per output against time and against the fitted value, and the correlation matrix
as numbers and as a picture. The calibrated overlay changes what the plant's models compute,
so writing it is recorded in the records database's audit trail with the fit's provenance
(runs, time ranges, statistics), as any other change to what the line relies on.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from modulecontrol.records import AuditEntry, AuditTrail
from modulecontrol.twin._fit import FitResult

__all__ = ["record_calibration", "write_fit_report"]

CALIBRATION_ACTION = "twin calibration"
"""The audit trail's action for a calibrated overlay written by ``twin fit --overlay``."""


def _short(name: str) -> str:
    """``R2.reactions.nitrosation.k_ref`` -> ``nitrosation.k_ref``."""
    parts = name.split(".")
    return ".".join(parts[-2:]) if len(parts) > 2 else name


def write_fit_report(result: FitResult, directory: str | Path) -> Path:
    """Write ``fit-report.md`` with ``residuals.png`` and ``correlation.png`` (and the result
    as ``fit.json``) into ``directory``; returns the report's path."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    outputs = result.outputs
    fig = Figure(figsize=(9, 2.6 * len(outputs)))
    axes = fig.subplots(len(outputs), 2, squeeze=False)
    for row, name in enumerate(outputs):
        pts = [p for p in result.points if p.output == name]
        left, right = axes[row]
        for run in result.runs:
            mine = [p for p in pts if p.run == run]
            if not mine:
                continue
            t0 = min(p.t for p in mine)
            left.plot([(p.t - t0) / 60.0 for p in mine], [p.residual for p in mine], "o",
                      ms=3, label=f"run {run}")
            right.plot([p.fitted for p in mine], [p.residual for p in mine], "o", ms=3,
                       label=f"run {run}")
        for ax in (left, right):
            ax.axhline(0.0, color="0.5", lw=0.8)
            ax.set_ylabel(f"{name}\nmeasured - fitted")
        left.set_xlabel("min into the run" if result.transient
                        else "min into the run's steady window")
        right.set_xlabel("fitted value")
        left.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "residuals.png", dpi=90)

    names = [_short(e.name) for e in result.estimates]
    fig = Figure(figsize=(1.6 + 1.1 * len(names), 1.2 + 1.0 * len(names)))
    ax = fig.subplots()
    im = ax.imshow(result.correlation, vmin=-1.0, vmax=1.0, cmap="RdBu_r")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{result.correlation[i, j]:+.3f}", ha="center", va="center",
                    fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(out / "correlation.png", dpi=90)
    (out / "fit.json").write_text(json.dumps(_finite(result.as_dict()), indent=2),
                                  encoding="utf-8")

    which = (f"{result.n_points} samples of {', '.join(outputs)} against the dynamic "
             "replay (transient fit)" if result.transient else
             f"{result.n_points} steady samples of {', '.join(outputs)} "
             f"({result.n_transient} transient samples left out)")
    lines = ["# Twin fit", "", f"Runs {', '.join(map(str, result.runs))}; {which}; rms "
             f"scaled residual {result.rms:.3g}.", "",
             "| parameter | estimate | 95 % interval | written |",
             "|---|---|---|---|"]
    for e in result.estimates:
        lines.append(f"| {e.name} | {e.value:.6g} {e.unit} | [{e.low:.6g}, {e.high:.6g}] | "
                     f"{e.initial:.6g} |")
    lines += ["", "Correlation matrix:", "", "| | " + " | ".join(names) + " |",
              "|---" * (len(names) + 1) + "|"]
    for i, n in enumerate(names):
        lines.append(f"| {n} | " + " | ".join(f"{result.correlation[i, j]:+.3f}"
                                              for j in range(len(names))) + " |")
    by_output = {o: np.array([p.residual for p in result.points if p.output == o])
                 for o in outputs}
    lines += ["", "| output | samples | mean residual | rms residual |", "|---|---|---|---|"]
    for o, r in by_output.items():
        if len(r):
            lines.append(f"| {o} | {len(r)} | {float(r.mean()):.4g} | "
                         f"{float(np.sqrt((r * r).mean())):.4g} |")
    lines += [""] + [f"**Warning:** {w}" for w in result.warnings]
    lines += ["", "![residuals](residuals.png)", "", "![correlation](correlation.png)", ""]
    path = out / "fit-report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _finite(value: Any) -> Any:
    """JSON as the records store it (no NaN or infinity): an unbounded interval is None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def provenance(result: FitResult) -> dict[str, Any]:
    """What the audit entry keeps: estimates, runs and their time ranges, statistics."""
    def iso(t: float) -> str:
        return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="seconds")

    return {"estimates": [_finite(e.as_dict()) for e in result.estimates], "runs": result.runs,
            "time_ranges": [[iso(a), iso(b)] for a, b in result.windows],
            "outputs": result.outputs, "n_points": result.n_points,
            "n_transient": result.n_transient, "rms_scaled_residual": result.rms,
            "correlation": result.correlation.round(4).tolist(),
            "warnings": result.warnings, "note": "ci95 None: not identifiable"}


def record_calibration(db: str | Path, result: FitResult, overlay: str | Path, *,
                       plant: str, user: str | None = None) -> AuditEntry:
    """Append the written overlay and the fit's provenance to ``db``'s audit trail.

    The overlay's SHA-256 is kept too: a run made with the overlay included records the same
    hash (its run metadata's ``calibrations``), which leads from the batch record back to this
    entry and so to the runs and statistics of the fit."""
    who = user or f"os:{getpass.getuser()}"
    digest = hashlib.sha256(Path(overlay).read_bytes()).hexdigest()
    with AuditTrail(db) as trail:
        return trail.append(
            who, CALIBRATION_ACTION, f"overlay {Path(overlay).name}",
            new_value={"plant": plant, "overlay": Path(overlay).name, "sha256": digest,
                       **provenance(result)},
            reason=f"twin fit of {', '.join(e.name for e in result.estimates)} on runs "
                   f"{', '.join(map(str, result.runs))}")

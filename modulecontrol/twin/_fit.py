"""Parameter estimation: least squares over the dynamic simulation of recorded runs.

Each residual evaluation replays every run's recorded inputs through the plant's models
(only the modules upstream of the measured ones) and compares the model outputs with the
recorded measurements. Parameters are fitted as ``ln(value / written value)`` so they stay
positive and of one scale; confidence intervals come from the Jacobian at the optimum
(linearised, Student t), and a near-singular ``JᵀJ`` or a correlation near ±1 is reported as
a parameter that the data cannot identify, instead of an interval that pretends it can.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares
from scipy.stats import t as student_t

from modulecontrol.descriptors import PlantConfig
from modulecontrol.records import RunSamples, run_samples
from modulecontrol.simulators import build_models
from modulecontrol.twin._model import (
    FloatArray,
    ParamRef,
    Replay,
    TwinError,
    is_input,
    replay,
    upstream,
    with_parameters,
)

__all__ = ["FitResult", "ParameterEstimate", "fit"]

_log = logging.getLogger(__name__)

CORRELATION_LIMIT = 0.99
"""|correlation| above which two parameters are reported as not separately identifiable."""
CONDITION_LIMIT = 1e10
"""Condition number of JᵀJ (in ln-parameters) above which the fit is reported singular."""


@dataclass(frozen=True)
class ParameterEstimate:
    name: str
    value: float
    low: float
    high: float
    """95 % confidence interval (inf when the parameter is not identifiable)."""
    unit: str
    initial: float

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "ci95": [self.low, self.high],
                "unit": self.unit, "initial": self.initial}


@dataclass
class FitResult:
    estimates: list[ParameterEstimate]
    correlation: FloatArray
    warnings: list[str]
    runs: list[int]
    outputs: list[str]
    n_points: int
    rms: float
    """Root-mean-square of the scaled residuals at the optimum."""
    windows: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) of each run window, seconds since the Unix epoch."""

    def as_dict(self) -> dict[str, Any]:
        return {"estimates": [e.as_dict() for e in self.estimates],
                "correlation": self.correlation.round(4).tolist(),
                "warnings": self.warnings, "runs": self.runs, "outputs": self.outputs,
                "n_points": self.n_points, "rms_scaled_residual": self.rms,
                "windows": [list(w) for w in self.windows]}


def _outputs(config: PlantConfig, data: RunSamples, given: Sequence[str]) -> list[str]:
    if given:
        missing = [s for s in given if s not in data.series]
        if missing:
            raise TwinError(f"run {data.run.id} has no samples of {', '.join(missing)} "
                            f"(tags: {', '.join(sorted(data.series)[:20])})")
        return list(given)
    _, views = build_models(config)
    out = [s for s in sorted(data.series) if s.partition(".")[0] in views
           and views[s.partition(".")[0]].model.kind == "pat_analyzer"
           and not is_input(views, s) and s.partition(".")[2] not in ("Valid", "Method")]
    if not out:
        raise TwinError(f"run {data.run.id}: no analyzer samples to fit against; name the "
                        "measurements with --measure TAG.Assembly")
    return out


def fit(config: PlantConfig, db: str | Path, runs: Sequence[int], params: Sequence[str],
        measure: Sequence[str] = (), dt: float = 5.0) -> FitResult:
    """Fit ``params`` (``TAG.path``) to the measurements of ``runs`` in ``db``."""
    if not params:
        raise TwinError("name at least one --param TAG.path (e.g. "
                        "R1.reactions.carbamylation.k_ref)")
    refs = [ParamRef.resolve(config, p) for p in params]
    for r in refs:
        if r.value <= 0:
            raise TwinError(f"--param {r.name}: written value {r.value} must be > 0 "
                            "(the fit scales it)")
    recorded = [run_samples(db, r) for r in runs]
    outputs = _outputs(config, recorded[0], measure)
    _, all_views = build_models(config)
    sub = upstream(config, sorted({s.partition(".")[0] for s in outputs}))
    cases: list[tuple[Replay, dict[str, FloatArray], dict[str, FloatArray], FloatArray]] = []
    for data in recorded:
        t0 = data.run.t_start
        inputs = {s: (ts - t0, vs) for s, (ts, vs) in data.series.items()
                  if is_input(all_views, s)}
        times: dict[str, FloatArray] = {}
        ys: dict[str, FloatArray] = {}
        for s in outputs:
            if s not in data.series:
                raise TwinError(f"run {data.run.id} has no samples of {s}")
            ts, vs = data.series[s]
            ok = (ts >= t0) & np.isfinite(vs)
            times[s], ys[s] = ts[ok] - t0, vs[ok]
        scale = np.concatenate([np.full(len(ys[s]), max(float(np.abs(ys[s]).max()), 1e-30))
                                for s in outputs])
        cases.append((Replay(inputs, data.t_end - t0), times, ys, scale))
    observed = np.concatenate([np.concatenate([ys[s] for s in outputs]) / scale
                               for _, _, ys, scale in cases])

    def model(x: FloatArray) -> FloatArray:
        cfg = with_parameters(sub, {r: r.value * math.exp(v) for r, v in zip(refs, x,
                                                                           strict=True)})
        parts = []
        for rep, times, _, scale in cases:
            pred = replay(cfg, rep, outputs, dt, times)
            parts.append(np.concatenate([pred[s] for s in outputs]) / scale)
        return np.concatenate(parts)

    def residuals(x: FloatArray) -> FloatArray:
        r: FloatArray = model(x) - observed
        if not np.all(np.isfinite(r)):
            raise TwinError("the simulation gave a non-finite output at parameters "
                            f"{np.exp(x).tolist()} x written; bound the parameters closer")
        return r

    # the Jacobian by central differences over 0.1 % (see _central_jacobian): scipy's own
    # forward differences of 1e-8 stop the search early on the model's step-level round-off
    sol = least_squares(residuals, np.zeros(len(refs)), jac=lambda x: _central_jacobian(
        model, x), method="trf", xtol=1e-6, ftol=1e-10, gtol=1e-10, max_nfev=40)
    _log.info("fit: %d evaluations, status %d (%s)", sol.nfev, sol.status, sol.message)
    n, p = len(observed), len(refs)
    jac = np.asarray(sol.jac, dtype=float)
    jtj = jac.T @ jac
    dof = max(n - p, 1)
    s2 = float(sol.fun @ sol.fun) / dof
    warnings: list[str] = []
    cond = float(np.linalg.cond(jtj)) if p else 0.0
    singular = not math.isfinite(cond) or cond > CONDITION_LIMIT
    cov = s2 * np.linalg.pinv(jtj)
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(sd, sd)
    corr = np.where(np.isfinite(corr), corr, 0.0)
    np.fill_diagonal(corr, 1.0)
    insensitive = [r.name for r, d in zip(refs, np.diag(jtj), strict=True)
                   if d <= 1e-12 * max(float(np.diag(jtj).max()), 1e-300)]
    if insensitive:
        warnings.append(f"not identifiable: the data do not depend on {', '.join(insensitive)}"
                        " (e.g. an activation energy from runs at its reference temperature"
                        " only; add runs at other temperatures)")
    for i in range(p):
        for j in range(i + 1, p):
            if abs(corr[i, j]) > CORRELATION_LIMIT:
                warnings.append(
                    f"not identifiable separately: {refs[i].name} and {refs[j].name} are "
                    f"correlated {corr[i, j]:+.3f} (e.g. k_ref and Ea from one temperature;"
                    " add runs at another temperature, or fit one of them)")
    if singular and not warnings:
        warnings.append(f"not identifiable: JᵀJ is near singular (condition {cond:.3g})")
    tq = float(student_t.ppf(0.975, dof))
    bad = {r.name for r in refs} if singular else set(insensitive)
    estimates = []
    for r, x, d in zip(refs, sol.x, sd, strict=True):
        v = r.value * math.exp(x)
        if r.name in bad or not math.isfinite(d):
            lo, hi = -math.inf, math.inf
        else:
            lo, hi = v * math.exp(-tq * d), v * math.exp(tq * d)
        estimates.append(ParameterEstimate(r.name, v, lo, hi, r.unit, r.value))
    return FitResult(estimates, corr, warnings, list(runs), outputs, n,
                     math.sqrt(float(sol.fun @ sol.fun) / n),
                     [(d.run.t_start, d.t_end) for d in recorded])


def _central_jacobian(model: Any, x: FloatArray, h: float = 1e-3) -> FloatArray:
    """d model / d ln(parameter) by central differences of ``h``: the intervals' Jacobian.

    The optimiser's own forward-difference Jacobian is made for steps, not statistics: its
    tiny steps resolve the analyzer's sampling grid and the substeps' round-off, so it is
    recomputed here once, at the optimum, over a step that sees the model's smooth trend.
    """
    cols = []
    for i in range(len(x)):
        e = np.zeros(len(x))
        e[i] = h
        cols.append((model(x + e) - model(x - e)) / (2.0 * h))
    return np.stack(cols, axis=1) if cols else np.zeros((0, 0))


def write_overlay(config: PlantConfig, result: FitResult, path: str | Path) -> Path:
    """Write the estimates as ``modules: [{tag, overrides: {simulator: ...}}]`` with the
    fit's provenance. Each module's changed top-level simulator keys are written whole
    (``overrides.simulator`` replaces a key, e.g. the whole ``reactions`` list), so the
    overlay's entries can be copied over the plant file's instance overrides as they are.
    """
    from modulecontrol.yamlio import dump_yaml

    refs = {e.name: ParamRef.resolve(config, e.name) for e in result.estimates}
    fitted = with_parameters(config, {refs[e.name]: e.value for e in result.estimates})
    modules = []
    for tag in sorted({r.tag for r in refs.values()}):
        sim = fitted.type_of(tag).simulator
        assert sim is not None
        keys = sorted({str(r.path[0]) for r in refs.values() if r.tag == tag})
        modules.append({"tag": tag, "overrides": {"simulator": {k: sim.parameters[k]
                                                                for k in keys}}})
    doc = {"kind": "TwinCalibration", "plant": Path(config.file).name,
           "provenance": result.as_dict(), "modules": modules}
    out = Path(path)
    out.write_text(dump_yaml(doc), encoding="utf-8")
    return out

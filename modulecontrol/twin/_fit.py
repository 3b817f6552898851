"""Parameter estimation: least squares over the steady windows of recorded runs, or over
every sample against the dynamic replay (``transient``, for parameters of the transient).

The recorded inputs cut each run into constant-input stretches; one dynamic replay through
the plant's models (only the modules upstream of the measured ones) shows when each stretch
has settled, and the samples after that are compared with the models' steady state at those
inputs. Why the steady windows by default: the steady solve (a Newton solve per tank) costs a
fifth of a replay, and it needs no run that starts from rest. The transient fit replays
every run from rest at each evaluation; it became possible once the replay was smooth in the
parameters (its difference quotients had jumped with the step, d ln y / d ln Ea -19 then +87
for steps of 1e-3 and 1e-4: a thermostat dropped the rest of a step on leaving its power
limit, since fixed). Parameters are fitted as ``ln(value / written value)`` so they stay
positive and of one scale; confidence intervals come from the Jacobian at the optimum
(linearised, Student t), and a near-singular ``JᵀJ`` or a correlation near ±1 is reported as
a parameter that the data cannot identify, instead of an interval that pretends it can.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modulecontrol.descriptors import PlantConfig, calibrate
from modulecontrol.records import RunSamples, run_samples
from modulecontrol.simulators import build_models
from modulecontrol.twin._model import (
    FloatArray,
    ParamRef,
    Replay,
    Segment,
    TwinError,
    is_input,
    recorded_inputs,
    replay,
    segments,
    steady_outputs,
    upstream,
    with_parameters,
)

__all__ = ["FitPoint", "FitResult", "ParameterEstimate", "apply_overlay", "fit",
           "write_overlay"]

_log = logging.getLogger(__name__)

CORRELATION_LIMIT = 0.999
"""|correlation| above which two parameters are reported as not separately identifiable."""
SETTLE_BAND = 0.01
"""A sample is steady once the model's output stays within this fraction of its steady value
(then half as long again as margin): only such samples are fitted."""
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


@dataclass(frozen=True)
class FitPoint:
    """One fitted sample: run, output, time (s since the Unix epoch), measured and fitted
    value (the output's recorded unit)."""

    run: int
    output: str
    t: float
    observed: float
    fitted: float

    @property
    def residual(self) -> float:
        return self.observed - self.fitted


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
    n_transient: int = 0
    """Samples left out because the model had not settled there (see :func:`fit`)."""
    points: list[FitPoint] = field(default_factory=list)
    """Every fitted sample with the model's value at the optimum (for residual plots)."""
    transient: bool = False
    """Fitted over every sample against the dynamic replay (``--transient``), not over the
    steady windows against the steady solve."""

    def as_dict(self) -> dict[str, Any]:
        return {"estimates": [e.as_dict() for e in self.estimates],
                "correlation": self.correlation.round(4).tolist(),
                "warnings": self.warnings, "runs": self.runs, "outputs": self.outputs,
                "samples": "transient" if self.transient else "steady",
                "n_points": self.n_points, "n_transient": self.n_transient,
                "rms_scaled_residual": self.rms,
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
           and views[s.partition(".")[0]].link(s.partition(".")[2]) is not None
           and not is_input(views, s) and s.partition(".")[2] not in ("Valid", "Method")]
    if not out:
        raise TwinError(f"run {data.run.id}: no analyzer samples to fit against; name the "
                        "measurements with --measure TAG.Assembly")
    return out


def fit(config: PlantConfig, db: str | Path, runs: Sequence[int], params: Sequence[str],
        measure: Sequence[str] = (), dt: float = 5.0, transient: bool = False) -> FitResult:
    """Fit ``params`` (``TAG.path``) to the measurements of ``runs`` in ``db``.

    By default only the steady samples, against the models' steady solve (see the module
    docstring). ``transient``: every sample from the run's first replayed step on, against
    the dynamic replay of the run from a plant at rest. That is what parameters that only
    shape the transient need (a thermostat's time constant, a wall's heat transfer), which
    the steady samples do not depend on at all; it costs one replay of every run per
    evaluation."""
    if not params:
        raise TwinError("name at least one --param TAG.path (e.g. "
                        "R1.reactions.carbamylation.k_ref)")
    refs = [ParamRef.resolve(config, p) for p in params]
    for r in refs:
        if r.value <= 0:
            raise TwinError(f"--param {r.name}: written value {r.value} must be > 0 "
                            "(the fit scales it)")
    whole = [r for r in refs if r.integer]
    if len(whole) > 1:
        raise TwinError(f"--param {', '.join(r.name for r in whole)}: whole numbers are "
                        "fitted by a profile over their values, one at a time; fit one and "
                        "fix the others")
    cont = [r for r in refs if not r.integer]
    recorded = [run_samples(db, r) for r in runs]
    outputs = _outputs(config, recorded[0], measure)
    _, all_views = build_models(config)
    pinned = [s for s in outputs if is_input(all_views, s)]
    if pinned:
        raise TwinError(f"--measure {', '.join(pinned)}: a written input the fit replays "
                        "(its recorded value is what was written, not what the models "
                        "predict); measure an output, e.g. PAT1.Product")
    sub = upstream(config, sorted({s.partition(".")[0] for s in outputs}))
    sim_tags = [m.tag for m in sub.plant.modules]
    windows: list[tuple[Segment, dict[str, FloatArray]]] = []
    labels: list[tuple[int, str, float]] = []
    """(run, output, time) of each observed value, in the order of ``observed``."""
    observed_parts: list[FloatArray] = []
    dynamic: list[tuple[Replay, dict[str, FloatArray], dict[str, FloatArray]]] = []
    """Transient fit: each run's replay, sample times and values per output."""
    n_transient = 0
    for data in recorded:
        t0 = data.run.t_start
        rep = recorded_inputs(config, data, sim_tags)
        samples: dict[str, tuple[FloatArray, FloatArray]] = {}
        for s in outputs:
            if s not in data.series:
                raise TwinError(f"run {data.run.id} has no samples of {s}")
            ts, vs = data.series[s]
            ok = (ts >= t0) & np.isfinite(vs)
            samples[s] = (ts[ok] - t0, vs[ok])
        if transient:
            at = {s: ts[(ts >= dt) & (ts <= rep.duration)] for s, (ts, _) in samples.items()}
            ys = {s: vs[(ts >= dt) & (ts <= rep.duration)] for s, (ts, vs) in samples.items()}
            _check_starts_from_rest(sub, data.run.id, t0, rep, outputs, dt, at, ys)
            if any(len(y) for y in ys.values()):
                dynamic.append((rep, at, ys))
                observed_parts.append(np.concatenate([ys[s] for s in outputs]))
                labels.extend((data.run.id, s, t0 + float(t)) for s in outputs for t in at[s])
            continue
        for seg, since in _steady_windows(sub, rep, outputs, dt):
            ys = {s: vs[(ts >= since) & (ts < seg.end)] for s, (ts, vs) in samples.items()}
            at = {s: ts[(ts >= since) & (ts < seg.end)] for s, (ts, _) in samples.items()}
            n_transient += sum(int(((ts >= seg.start) & (ts < since)).sum())
                               for ts, _ in samples.values())
            if any(len(y) for y in ys.values()):
                windows.append((seg, ys))
                observed_parts.append(np.concatenate([ys[s] for s in outputs]))
                labels.extend((data.run.id, s, t0 + float(t)) for s in outputs for t in at[s])
    if transient and not dynamic:
        raise TwinError(f"runs {list(runs)}: no samples of {', '.join(outputs)} after the "
                        f"first replayed step of {dt:g} s")
    if not windows and not transient:
        raise TwinError(f"runs {list(runs)}: no steady samples (each constant-input stretch "
                        f"ends before the model settles within {SETTLE_BAND:.0%}); record "
                        "longer stretches at each operating point")
    observed = np.concatenate(observed_parts)
    fitted_values = [ys for _, ys in windows] + [ys for _, _, ys in dynamic]
    scale_of = {s: max(max((float(np.abs(ys[s]).max()) for ys in fitted_values if len(ys[s])),
                           default=0.0), 1e-30) for s in outputs}
    scale = np.concatenate([np.concatenate([np.full(len(ys[s]), scale_of[s]) for s in outputs])
                            for ys in fitted_values])
    observed = observed / scale

    fixed: dict[ParamRef, float] = {}
    """The whole-number parameter's value while the others are fitted (the profile)."""

    def model(x: FloatArray) -> FloatArray:
        cfg = with_parameters(sub, {**{r: r.value * math.exp(v) for r, v in zip(cont, x,
                                                                              strict=True)},
                                    **fixed})
        parts = []
        for seg, ys in windows:
            level = steady_outputs(cfg, seg.inputs, outputs)
            parts.append(np.concatenate([np.full(len(ys[s]), level[s]) for s in outputs]))
        for rep, at, _ in dynamic:
            track = replay(cfg, rep, outputs, dt, at)
            parts.append(np.concatenate([track[s] for s in outputs]))
        out: FloatArray = np.concatenate(parts) / scale
        return out

    def residuals(x: FloatArray) -> FloatArray:
        r: FloatArray = model(x) - observed
        if not np.all(np.isfinite(r)):
            raise TwinError("the simulation gave a non-finite output at parameters "
                            f"{np.exp(x).tolist()} x written; bound the parameters closer")
        return r

    def solve(start: FloatArray | None = None) -> Any:
        """The continuous parameters' least squares at the current ``fixed``, from ``start``
        (ln of the written values by default; the profile starts from its neighbour's)."""
        if not cont:  # nothing to move: the residuals at the written values
            return _Solved(np.zeros(0), residuals(np.zeros(0)), np.zeros((len(observed), 0)))
        # scipy's solver and distributions are imported with the fit, not the module: the
        # twin package loads with every run (its prediction) and the fit is a command
        from scipy.optimize import least_squares

        x0 = np.zeros(len(cont)) if start is None else start
        found = least_squares(residuals, x0, jac=lambda x: _central_jacobian(
            model, x), method="trf", xtol=1e-8, ftol=1e-12, gtol=1e-12, max_nfev=20)
        _log.info("fit: %d evaluations, status %d (%s)", found.nfev, found.status,
                  found.message)
        return found

    n, p = len(observed), len(refs)
    dof = max(n - p, 1)
    profile: tuple[int, float, float] | None = None
    """The whole number's estimate and 95 % interval (see :func:`_profile`)."""
    if whole:
        profile, sol = _profile(whole[0], fixed, solve, dof)
    else:
        sol = solve()
    jac = np.asarray(sol.jac, dtype=float)
    jtj = jac.T @ jac
    s2 = float(sol.fun @ sol.fun) / dof
    warnings: list[str] = []
    if sol.status == 0:
        warnings.append(f"the search stopped at its limit of {sol.nfev} evaluations before "
                        "converging: the estimates may not be the optimum (an unidentifiable "
                        "pair drifts along its ridge; otherwise start nearer, e.g. fit fewer "
                        "parameters first)")
    cond = float(np.linalg.cond(jtj)) if cont else 0.0
    singular = not math.isfinite(cond) or cond > CONDITION_LIMIT
    cov = s2 * np.linalg.pinv(jtj) if cont else np.zeros((0, 0))
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr_c = cov / np.outer(sd, sd)
    # the whole number has no linearised correlation: its row and column are 0
    where = [refs.index(r) for r in cont]
    corr = np.zeros((p, p))
    corr[np.ix_(where, where)] = np.where(np.isfinite(corr_c), corr_c, 0.0)
    np.fill_diagonal(corr, 1.0)
    insensitive = [r.name for r, d in zip(cont, np.diag(jtj), strict=True)
                   if d <= 1e-12 * max(float(np.diag(jtj).max()), 1e-300)]
    if profile is not None and not all(map(math.isfinite, profile[1:])):
        warnings.append(
            f"not identifiable: {whole[0].name} = {profile[0]} fits no better than the "
            "values up to the search's end on one side (the data hardly depend on it); "
            "record where it matters (a step change the line's dispersion shapes), or fix it")
    if insensitive:
        hint = ("" if transient else "; a parameter of the transient only, such as a "
                "thermostat's tau, needs --transient")
        warnings.append(f"not identifiable: the data do not depend on {', '.join(insensitive)}"
                        " (e.g. an activation energy from runs at its reference temperature"
                        f" only; add runs at other temperatures{hint})")
    for i in range(p):
        for j in range(i + 1, p):
            if abs(corr[i, j]) > CORRELATION_LIMIT:
                warnings.append(
                    f"not identifiable separately: {refs[i].name} and {refs[j].name} are "
                    f"correlated {corr[i, j]:+.3f} (e.g. k_ref and Ea from one temperature;"
                    " add runs at another temperature, or fit one of them)")
    if singular and not warnings:
        warnings.append(f"not identifiable: JᵀJ is near singular (condition {cond:.3g})")
    from scipy.stats import t as student_t  # with the fit (see solve)

    tq = float(student_t.ppf(0.975, dof))
    bad = {r.name for r in cont} if singular else set(insensitive)
    by_name = {}
    for r, x, d in zip(cont, sol.x, sd, strict=True):
        v = r.value * math.exp(x)
        if r.name in bad or not math.isfinite(d):
            lo, hi = -math.inf, math.inf
        else:
            lo, hi = v * math.exp(-tq * d), v * math.exp(tq * d)
        by_name[r.name] = ParameterEstimate(r.name, v, lo, hi, r.unit, r.value)
    if profile is not None:
        r = whole[0]
        by_name[r.name] = ParameterEstimate(r.name, float(profile[0]), profile[1], profile[2],
                                            r.unit, r.value)
    estimates = [by_name[r.name] for r in refs]
    fitted = (np.asarray(sol.fun, dtype=float) + observed) * scale
    points = [FitPoint(run, out, t, float(o), float(f)) for (run, out, t), o, f
              in zip(labels, observed * scale, fitted, strict=True)]
    return FitResult(estimates, corr, warnings, list(runs), outputs, n,
                     math.sqrt(float(sol.fun @ sol.fun) / n),
                     [(d.run.t_start, d.t_end) for d in recorded], n_transient, points,
                     transient)


REST_SAMPLES = 3
"""First samples of each fitted output compared with the replay from rest before a transient
fit (all of them must be off to refuse the run: one glitch at the start refuses nothing)."""
REST_NOISE = 5.0
"""Noise standard deviations a first sample must be off the replay from rest by (below,
see :func:`_check_starts_from_rest`)."""
REST_SPAN = 0.5
"""Fraction of the signal's span in the run a first sample must be off the replay from rest
by (below, see :func:`_check_starts_from_rest`)."""


@dataclass(frozen=True)
class OffRest:
    """An output whose first samples rule out a start from rest (:func:`off_rest`)."""

    signal: str
    t: float
    """Its first sample's time, s since the run start."""
    recorded: float
    replayed: float
    """The replay from rest at that time."""
    limit: float
    sigma: float
    span: float


def off_rest(config: PlantConfig, rep: Replay, outputs: Sequence[str], dt: float,
             at: dict[str, FloatArray], ys: dict[str, FloatArray]) -> list[OffRest]:
    """The outputs whose first samples say the run did not start from rest (a recording
    begun on a line already in production); empty when it did, or when nothing tells.

    The test of :func:`_check_starts_from_rest` (its docstring says why), also used by the
    what-if to choose where its replay of a run starts."""
    first = {s: at[s][:REST_SAMPLES] for s in outputs if len(at[s])}
    if not first:
        return []
    end = max(float(ts[-1]) for ts in first.values())
    rest = replay(config, Replay(rep.inputs, end), list(first), dt, first)
    off = []
    for s, ts in first.items():
        y, r = ys[s], rest[s]
        span = max(float(y.max()), float(r.max())) - min(float(y.min()), float(r.min()))
        sigma = _noise_sd(y)
        limit = max(REST_NOISE * sigma, REST_SPAN * span)
        if bool(np.all(np.abs(y[:len(ts)] - r) > limit)):
            off.append(OffRest(s, float(ts[0]), float(y[0]), float(r[0]), limit, sigma, span))
    return off


def _check_starts_from_rest(config: PlantConfig, run: int, t0: float, rep: Replay,
                            outputs: Sequence[str], dt: float, at: dict[str, FloatArray],
                            ys: dict[str, FloatArray]) -> None:
    """Refuse a transient fit of a run that does not start from rest (a recording begun on a
    line already in production): the fit would compare every sample with a replay that
    starts from an empty line, and find parameters that explain the wrong start-up.

    ``at``, ``ys``: each output's fitted sample times (s since the run start) and values.
    The first :data:`REST_SAMPLES` samples of each output are compared with the replay from
    rest at the written parameters (only that far is replayed: it costs a few steps). The
    run is refused on an output when every one of them is off by more than

        max(REST_NOISE x sigma, REST_SPAN x span)

    Why these two. ``sigma`` is the output's measurement noise in the run, from its second
    differences (the median of |y[i-1] - 2 y[i] + y[i+1]|, which is 0.6745 sqrt(6) sigma
    for white noise; differences cancel the level and slow trends, the median the steps of
    a transient): five of them is a miss that noise does not make (a two-sided 6e-7 per
    sample, and three in a row must miss). ``span`` is the signal's range in the run (the
    recorded samples and the replayed ones together: a run in production that stays at its
    level still spans from the replay's rest to it): a line at rest and one in production
    differ by about the whole span, while parameters still to be fitted move the first
    samples of a start-up by a fraction of it (little has happened yet), so half the span
    refuses the one and never the other. Neither alone suffices: the noise floor keeps a
    flat run (whose span is its noise) from being refused on a noisy first sample, the span
    keeps a start-up with parameters far from the truth from being refused on its first
    degrees of heating. Both are in the output's own unit, so no scale is assumed (a
    temperature's offset, a concentration's zero).

    Measured on R1's start-up to 40 °C (span 18 K, samples every 10 s): a thermostat tau
    from 20 s to 300 s against the written 60 s moves the first three samples by at most
    3.1 K (17 % of the span), and a recording begun 90 s or more into it is refused (11 to
    13 K off). One begun 30 to 60 s in is not (5 to 9.5 K): so early it looks like a start
    from rest with a faster thermostat. An analyzer behind its dead time reads exactly the
    rest value whatever the parameters, so a line in production is refused on its first
    sample of product.
    """
    off = off_rest(config, rep, outputs, dt, at, ys)
    if not off:
        return
    o = off[0]
    when = _dt.datetime.fromtimestamp(t0 + o.t, _dt.UTC).isoformat(timespec="seconds")
    also = f" (also {', '.join(x.signal for x in off[1:])})" if len(off) > 1 else ""
    n = min(REST_SAMPLES, len(at[o.signal]))
    raise TwinError(
        f"run {run} does not start from rest: {o.signal} at {when} ({o.t:g} s after the run "
        f"start) was {o.recorded:.4g} recorded, {o.replayed:.4g} in the replay from rest{also}; "
        f"its first {n} samples are all off by more than {o.limit:.3g} (the larger of "
        f"{REST_NOISE:g} x its noise SD {o.sigma:.3g} and {REST_SPAN:g} x its span "
        f"{o.span:.3g} "
        "in the run). --transient replays a run from a plant at rest (the models' initial "
        "state: an empty line); fit a run recorded on a line already in production on its "
        "steady windows (without --transient)")


def _noise_sd(y: FloatArray) -> float:
    """The measurement noise's standard deviation in ``y`` from its second differences
    (robust to the level, slow trends and a few steps; see :func:`_check_starts_from_rest`);
    0 for fewer than three samples."""
    if len(y) < 3:
        return 0.0
    d2 = y[:-2] - 2.0 * y[1:-1] + y[2:]
    return float(np.median(np.abs(d2))) / (0.6745 * math.sqrt(6.0))


@dataclass(frozen=True)
class _Solved:
    """A fit with nothing to move (only a whole number, at one of its values): the shape of
    scipy's result that :func:`fit` reads."""

    x: FloatArray
    fun: FloatArray
    jac: FloatArray
    status: int = 1
    nfev: int = 1


PROFILE_REACH = 12
"""Values of a whole-number parameter the profile tries on each side of its optimum before
it gives up looking for the end of the interval (each is a fit of the other parameters: a
flat profile, a whole number the others compensate, costs 2 x 12 of them)."""


def _profile(ref: ParamRef, fixed: dict[ParamRef, float], solve: Any,
             dof: int) -> tuple[tuple[int, float, float], Any]:
    """A whole-number parameter (a coil's ``n_tanks``) by its profile: the other parameters
    fitted at each value, the value with the least sum of squares kept.

    Why not least squares: the model is a step function of it (20 tanks or 21, never 20.4),
    so a gradient is zero or undefined. The sum of squares S(N) of a tanks-in-series model
    falls and rises once over N, so the search walks from the written value in the
    direction that lowers it until it rises. The 95 % interval is the profile-likelihood
    one, every N with (S(N) - S_min) / (S_min / dof) <= F(1, dof; 0.95) (the F test of one
    more parameter), widened value by value until a value fails it, at most
    :data:`PROFILE_REACH` values out: a side that never fails is reported infinite, with
    the warning that the data hardly depend on the parameter. Returns ((estimate, low,
    high), the other parameters' fit at the estimate).
    """
    from scipy.stats import f as f_dist

    low_bound = 1
    cache: dict[int, tuple[float, Any]] = {}

    def at(n: int) -> float:
        if n not in cache:
            fixed[ref] = float(n)
            near = cache.get(n - 1) or cache.get(n + 1)
            sol = solve(None if near is None else near[1].x)
            cache[n] = (float(sol.fun @ sol.fun), sol)
        return cache[n][0]

    best = max(low_bound, round(ref.value))
    for step in (-1, 1):
        while best + step >= low_bound and at(best + step) < at(best):
            best += step
    limit = at(best) * (1.0 + float(f_dist.ppf(0.95, 1, max(dof, 1))) / max(dof, 1))
    ends = []
    for step in (-1, 1):
        n = best
        end = float(n)
        for _ in range(PROFILE_REACH):
            if n + step < low_bound:
                end = float(n)
                break
            n += step
            if at(n) > limit:
                end = float(n - step)
                break
        else:
            end = math.inf * step
        ends.append(end)
    fixed[ref] = float(best)
    return (best, ends[0], ends[1]), cache[best][1]


def _steady_windows(config: PlantConfig, rep: Replay, outputs: Sequence[str],
                    dt: float) -> list[tuple[Segment, float]]:
    """Each constant-input stretch of the run with the time its steady samples start.

    One dynamic replay at the written parameters shows how long the line takes to settle
    after each change (residence times, the analyzer's dead time): the first time after
    which every output stays within :data:`SETTLE_BAND` of its steady value, plus half that
    settling time again. Stretches that never settle, or have no steady state at all (no
    flow: before the feeds start, while the line is stopped), give no samples
    (``since = end``); so does a stretch without a replayed step in it (shorter than
    ``dt``, between two writes): nothing shows that it settled, and taking its start as
    settled fitted a sample of the line before the write against the steady state after it.
    """
    grid = np.arange(dt, rep.duration + 1e-9, dt)
    track = replay(config, rep, outputs, dt, dict.fromkeys(outputs, grid))
    out = []
    for seg in segments(rep):
        # the output after each step taken wholly with this stretch's inputs (a step from
        # t - dt to t holds the inputs of t - dt)
        inside = (grid - dt >= seg.start - 1e-9) & (grid < seg.end)
        if not inside.any():
            out.append((seg, seg.end))
            continue
        try:
            level = steady_outputs(config, seg.inputs, outputs)
        except ValueError:  # no steady state there (no flow: before the feeds, a flush)
            out.append((seg, seg.end))
            continue
        settled = seg.start
        for s in outputs:
            far = np.abs(track[s] - level[s]) > SETTLE_BAND * max(abs(level[s]), 1e-30)
            late = grid[inside & far]
            if len(late):
                settled = max(settled, float(late[-1]) + dt)
        since = seg.start + 1.5 * (settled - seg.start)
        out.append((seg, min(since, seg.end) if settled < seg.end else seg.end))
    return out


def _central_jacobian(model: Any, x: FloatArray, h: float = 1e-3) -> FloatArray:
    """d model / d ln(parameter) by central differences of ``h`` (second order: the
    intervals' Jacobian is as exact as the steady solve allows)."""
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
        now = sim.overridable()
        modules.append({"tag": tag, "overrides": {"simulator": {k: now[k] for k in keys}}})
    doc = {"kind": "TwinCalibration", "plant": Path(config.file).name,
           "plant_name": config.plant.name, "provenance": result.as_dict(),
           "modules": modules}
    out = Path(path)
    out.write_text(dump_yaml(doc), encoding="utf-8")
    return out


def apply_overlay(config: PlantConfig, path: str | Path) -> PlantConfig:
    """``config`` with a calibrated overlay (:func:`write_overlay`) applied: each module
    entry's ``overrides.simulator`` keys replace the instance's (the original is untouched).
    The same function as the plant file's ``calibrations:`` key
    (:func:`modulecontrol.descriptors.calibrate`), so ``optimize --calibration`` and a plant
    that includes the overlay simulate the same models; every refusal is located in it."""
    return calibrate(config, path)

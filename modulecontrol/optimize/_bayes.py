"""Bayesian optimisation behind the same ask/tell interface, on numpy and scipy only.

Why no Gaussian-process library: a campaign has at most a few hundred experiments in at most
ten variables, so the model is a Cholesky factor of a small matrix; scikit-learn, GPyTorch or
BoTorch would add hundreds of megabytes for what some eighty lines of numpy do. scipy
already gives the likelihood's optimiser, the normal distribution and the quasi-random design.

Why it suits an ask/tell campaign: :meth:`BayesSearch.ask` is a pure function of the recorded
trials. The initial design is a fixed list (the start point, then a scrambled Latin
hypercube with a fixed seed); after it, every ask fits the models from scratch with
deterministic restarts and maximises the acquisition over a fixed candidate set, so a
campaign restored from its records asks exactly the point the lost one would have asked.

The models: one Gaussian process (Matern 5/2, one length scale per variable, hyperparameters
by maximum marginal likelihood) for the standardised objective and one per constraint margin.
The acquisition is the expected improvement over the best feasible objective times the
probability that every margin is >= 0; before any feasible point, the probability of
feasibility alone. An experiment that failed is the worst objective measured and violates
every constraint.

With a ``prior`` (the twin: the plant's models at steady state, :class:`TwinPrior`), the
models start from what the twin predicts instead of from a flat mean: the twin is sampled once
on a fixed quasi-random set, a Gaussian process through those samples is the prior mean of the
objective and of each margin, and the processes fitted to the experiments model only the
plant's difference from the twin. The initial design shrinks to the start and the twin's best
point inside the constraints: a Latin hypercube spends experiments wherever the box reaches,
infeasible corners included (most of the flat search's constraint violations on the lomustine
bench were design points), where the twin already knows which corners those are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._algorithms import Trial, _key

FloatArray = npt.NDArray[np.float64]

Prior = Callable[[tuple[float, ...]], "tuple[float, tuple[float, ...]] | None"]
"""The twin's objective and constraint margins at a point of the unit box, in the
campaign's units (the objective as the plan computes it, margins >= 0 inside); ``None``
where the twin has no steady state."""

_SQRT5 = math.sqrt(5.0)
_LOG_SCALE = (math.log(0.03), math.log(5.0))  # length scales in the unit box
_LOG_SIGNAL = (math.log(0.05), math.log(20.0))  # variance of the standardised values
_LOG_NOISE = (math.log(1e-6), math.log(0.5))
#: The variance of a plant's difference from its twin, in the twin's own variance: down to a
#: twin that is right to 1 % of its spread
_LOG_SIGNAL_DIFFERENCE = (math.log(1e-4), math.log(20.0))
_JITTER = 1e-9
#: The optimiser of the likelihood, in a box: SLSQP, not L-BFGS-B. Both are quasi-Newton in a
#: box; scipy 1.17's L-BFGS-B calls the (threaded) BLAS at every iteration, and on a busy
#: two-core machine that made an iteration 10-20x slower (2 ms against 0.2 ms per evaluation),
#: a 25-experiment campaign 8x slower.
_LOCAL = "SLSQP"
#: Fitted hyperparameters (logarithms) are rounded to this step: SLSQP calls LAPACK, whose
#: last bits depend on the number of BLAS threads (measured: hyperparameters 1e-14 apart
#: with 1 and 2 threads), and a restarted service must fit the same model from the same
#: records. A step of 0.1 % leaves the model as good and a mismatch only when a value falls
#: within 1e-14 of a step's edge.
_THETA_STEP = 1e-3


def _matern(a: FloatArray, b: FloatArray, scales: FloatArray, signal: float) -> FloatArray:
    diff = (a[:, None, :] - b[None, :, :]) / scales
    r = np.sqrt(np.maximum(np.sum(diff * diff, axis=-1), 0.0))
    out: FloatArray = signal * (1.0 + _SQRT5 * r + 5.0 / 3.0 * r * r) * np.exp(-_SQRT5 * r)
    return out


# Linear algebra without BLAS. The campaign's restart needs the same point from the same
# records in another process, perhaps with another number of BLAS threads; OpenBLAS sums in
# another order with another thread count (measured: asked points 1e-9 to 1e-4 apart), so the
# model is factorised and solved with numpy's element-wise operations and reductions, whose
# order does not depend on threads. Sizes are small (an experiment per row).


def _cholesky(a: FloatArray) -> FloatArray:
    """Lower Cholesky factor; raises ``np.linalg.LinAlgError`` if ``a`` is not positive."""
    n = a.shape[0]
    low = np.zeros_like(a)
    for j in range(n):
        row = low[j, :j]
        diag = float(a[j, j] - np.sum(row * row))
        if not diag > 0.0:
            raise np.linalg.LinAlgError("not positive definite")
        low[j, j] = math.sqrt(diag)
        if j + 1 < n:
            low[j + 1:, j] = (a[j + 1:, j] - np.sum(low[j + 1:, :j] * row, axis=1)) / low[j, j]
    return low


def _forward(low: FloatArray, b: FloatArray) -> FloatArray:
    """``low^-1 b`` for a lower-triangular ``low`` (``b``: a vector or columns)."""
    rhs = b.reshape(b.shape[0], -1)
    out = np.zeros(rhs.shape, dtype=np.float64)
    for j in range(low.shape[0]):
        out[j] = (rhs[j] - np.sum(low[j, :j, None] * out[:j], axis=0)) / low[j, j]
    return out.reshape(b.shape)


def _backward(low: FloatArray, b: FloatArray) -> FloatArray:
    """``low^-T b`` for a lower-triangular ``low``."""
    rhs = b.reshape(b.shape[0], -1)
    out = np.zeros(rhs.shape, dtype=np.float64)
    for j in range(low.shape[0] - 1, -1, -1):
        out[j] = (rhs[j] - np.sum(low[j + 1:, j, None] * out[j + 1:], axis=0)) / low[j, j]
    return out.reshape(b.shape)


def _solve(low: FloatArray, b: FloatArray) -> FloatArray:
    """``(low low^T)^-1 b``."""
    return _backward(low, _forward(low, b))


@dataclass(frozen=True)
class _GP:
    """A fitted Gaussian process of standardised values (zero mean)."""

    x: FloatArray
    scales: FloatArray
    signal: float
    chol: FloatArray  # lower Cholesky factor of K + noise
    alpha: FloatArray
    mean: float
    std: float
    noise: float = 0.0
    y: FloatArray | None = None
    """The standardised values it was conditioned on."""

    def through(self, x: FloatArray, values: FloatArray) -> _GP:
        """The same process (hyperparameters, standardisation) conditioned on other points:
        no likelihood to maximise, one factorisation."""
        y = (values - self.mean) / self.std
        k = _matern(x, x, self.scales, self.signal) + (self.noise + _JITTER) * np.eye(len(y))
        chol = _cholesky(k)
        return _GP(x, self.scales, self.signal, chol, _solve(chol, y), self.mean, self.std,
                   self.noise, y)

    def predict(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Mean and standard deviation at ``x`` (rows), in the original units."""
        ks = _matern(x, self.x, self.scales, self.signal)
        mu = np.sum(ks * self.alpha, axis=1)
        v = _forward(self.chol, ks.T)
        var = np.maximum(self.signal - np.sum(v * v, axis=0), 1e-12)
        return self.mean + self.std * mu, self.std * np.sqrt(var)


def _neg_log_likelihood(theta: FloatArray, x: FloatArray, y: FloatArray
                        ) -> tuple[float, FloatArray]:
    """Negative log marginal likelihood and its gradient in (log scales, log signal,
    log noise)."""
    d = x.shape[1]
    scales = np.exp(theta[:d])
    signal = math.exp(float(theta[d]))
    noise = math.exp(float(theta[d + 1]))
    diff2 = ((x[:, None, :] - x[None, :, :]) / scales) ** 2
    r = np.sqrt(np.sum(diff2, axis=-1))
    e = np.exp(-_SQRT5 * r)
    kf = signal * (1.0 + _SQRT5 * r + 5.0 / 3.0 * r * r) * e
    k = kf + (noise + _JITTER) * np.eye(len(y))
    try:
        c = _cholesky(k)
    except np.linalg.LinAlgError:
        return 1e10, np.zeros_like(theta)
    alpha = _solve(c, y)
    nll = 0.5 * float(np.sum(y * alpha)) + float(np.sum(np.log(np.diag(c)))) \
        + 0.5 * len(y) * math.log(2.0 * math.pi)
    w = np.outer(alpha, alpha) - _solve(c, np.eye(len(y)))
    grad = np.empty_like(theta)
    common = signal * 5.0 / 3.0 * (1.0 + _SQRT5 * r) * e
    for i in range(d):
        grad[i] = -0.5 * float(np.sum(w * common * diff2[:, :, i]))
    grad[d] = -0.5 * float(np.sum(w * kf))
    grad[d + 1] = -0.5 * noise * float(np.trace(w))
    return nll, grad


def _fit(x: FloatArray, values: FloatArray, scale: float | None = None) -> _GP:
    """The GP of ``values`` at ``x`` with maximum-likelihood hyperparameters, from a few
    fixed starts (deterministic).

    ``scale`` standardises instead of the values' own spread: the differences between the
    plant and a twin (:class:`_PriorModel`) are scaled by the twin's own variation, so that
    a difference as small as the measurement noise stays small. Scaled by their own spread,
    noise-sized differences became a unit signal, and the search chased the noise around a
    binding constraint."""
    mean = float(np.mean(values))
    std = float(np.std(values)) if scale is None else scale
    std = std if std > 1e-12 else 1.0
    y = (values - mean) / std
    d = x.shape[1]
    bounds = [_LOG_SCALE] * d + [_LOG_SIGNAL if scale is None else _LOG_SIGNAL_DIFFERENCE,
                                 _LOG_NOISE]
    from scipy.optimize import minimize  # with the search (see ScipySearch.ask)

    best: tuple[float, FloatArray] | None = None
    for scale, noise in ((0.3, 1e-3), (1.0, 1e-2), (0.1, 1e-4)):
        theta0 = np.array([math.log(scale)] * d + [0.0, math.log(noise)])
        res = minimize(_neg_log_likelihood, theta0, args=(x, y), jac=True, method=_LOCAL,
                       bounds=bounds, options={"maxiter": 100})
        value = float(res.fun)
        if math.isfinite(value) and (best is None or value < best[0]):
            best = (value, np.asarray(res.x, dtype=float))
    theta = best[1] if best is not None else np.array(
        [math.log(0.3)] * d + [0.0, math.log(1e-3)])
    theta = np.round(theta / _THETA_STEP) * _THETA_STEP
    scales = np.exp(theta[:d])
    signal = math.exp(float(theta[d]))
    noise = math.exp(float(theta[d + 1]))
    k = _matern(x, x, scales, signal) + (noise + _JITTER) * np.eye(len(y))
    chol = _cholesky(k)
    alpha = _solve(chol, y)
    return _GP(x, scales, signal, chol, alpha, mean, std, noise, y)


def _climb(f: Callable[[FloatArray], FloatArray], start: FloatArray, value: float,
           step: float = 0.05, smallest: float = 1e-4) -> tuple[FloatArray, float]:
    """Polish ``start`` by a compass search in the unit box: the best of the ``2 * dims``
    points a ``step`` away along each axis while it improves ``f`` (rows -> values), then
    half the step, down to ``smallest``. Numpy only: the same result whatever the BLAS
    threads (scipy's local optimisers call LAPACK, whose last bits depend on them)."""
    x = start
    axes = np.eye(start.size)
    while step >= smallest:
        trial = np.clip(np.vstack([x + step * axes, x - step * axes]), 0.0, 1.0)
        values = f(trial)
        i = int(np.argmax(values))
        if float(values[i]) > value:
            x, value = trial[i], float(values[i])
        else:
            step /= 2.0
    return x, value


def _failed_margin(measured: Sequence[float]) -> float:
    """The margin a failed experiment (or a twin's point without a steady state) counts
    with: below the worst measured one by half their spread (at least 0.01), and below 0,
    so the models see it as violating; -1 when nothing was measured."""
    if not measured:
        return -1.0
    spread = max(measured) - min(measured)
    return min(min(measured), 0.0) - max(0.5 * spread, 0.01)


@dataclass(frozen=True)
class _PriorModel:
    """The twin as a mean function: Gaussian processes through its samples, the objective
    relative to the twin's at the start (the campaign's objectives are relative to its first
    experiment, which is the start), and the twin's best point inside the constraints."""

    objective: _GP
    margins: tuple[_GP, ...]
    best: FloatArray
    ref: float = 1.0
    """The twin's objective at the start, which its relative objectives are divided by."""

    def predict(self, p: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The twin's relative objective (n,) and margins (n, constraints) at rows ``p``."""
        obj = self.objective.predict(p)[0]
        margins = np.zeros((len(p), len(self.margins)))
        for j, gp in enumerate(self.margins):
            margins[:, j] = gp.predict(p)[0]
        return obj, margins

    @classmethod
    def sample(cls, prior: Prior, points: FloatArray, n_constraints: int, margin: float,
               candidates: FloatArray) -> _PriorModel:
        """Evaluate the twin at ``points`` (the start first) and fit its processes. Where
        the twin has no steady state the point counts as a failed experiment does (the
        worst objective, below the worst margin); with none at all there is no prior."""
        values = [prior(_key(p)) for p in points]
        ok = np.array([v is not None and math.isfinite(v[0])
                       and all(math.isfinite(m) for m in v[1]) for v in values])
        if not ok.any():
            raise ValueError(f"the twin has no steady state at any of the {len(points)} "
                             "points it was sampled at: it cannot be the search's prior")
        for v in values:
            if v is not None and len(v[1]) != n_constraints:
                raise ValueError(f"the prior gave {len(v[1])} margins for "
                                 f"{n_constraints} constraints")
        obj = np.array([v[0] if v is not None and good else math.nan
                        for v, good in zip(values, ok, strict=True)])
        ref = abs(float(obj[0])) if ok[0] and obj[0] != 0.0 else float(
            np.median(np.abs(obj[ok]))) or 1.0
        obj = obj / ref
        obj[~ok] = float(np.min(obj[ok]))
        margins = np.zeros((len(points), n_constraints))
        for j in range(n_constraints):
            failed = _failed_margin([v[1][j] for v, good in zip(values, ok, strict=True)
                                     if good and v is not None])
            margins[:, j] = [v[1][j] if good and v is not None else failed
                             for v, good in zip(values, ok, strict=True)]
        model = cls(_fit(points, obj), tuple(_fit(points, margins[:, j])
                                              for j in range(n_constraints)), points[0], ref)
        # the twin's best point inside its constraints (by ``margin``): the best candidate,
        # polished by the compass search on the prior's mean with the margins as a penalty
        def merit(p: FloatArray) -> FloatArray:
            o, m = model.predict(p)
            short = np.sum(np.maximum(margin - m, 0.0), axis=1)
            out: FloatArray = o - 1e3 * short
            return out

        cands = np.vstack([candidates, points])
        values_c = merit(cands)
        i = int(np.argmax(values_c))
        start, _ = _climb(merit, cands[i], float(values_c[i]))
        return cls(model.objective, model.margins,
                   _refine(prior, start, ref, n_constraints, margin), ref)

    def including(self, xs: FloatArray, values: Sequence[tuple[float, tuple[float, ...]]]
                  ) -> _PriorModel:
        """The prior conditioned on the twin's own values at ``xs`` too (the experiments'
        points): exact there and near them, where the search is.

        Why: 64 samples leave the processes a few per cent off the twin in places, as large
        as the differences the search weighs near an optimum; the experiments' processes,
        which see only the plant's difference from the prior, then followed the prior's
        error (the lomustine bench with the line's own models as the twin: from the twin's
        best point at R2 57 degC back to 52 degC). Same hyperparameters, so it costs one
        factorisation per output."""
        if not len(xs):
            return self
        obj_gp = self.objective
        x = np.vstack([obj_gp.x, xs])
        obj = np.concatenate([_values(obj_gp), [v[0] / self.ref for v in values]])
        margins = tuple(gp.through(x, np.concatenate([_values(gp), [v[1][j] for v in values]]))
                        for j, gp in enumerate(self.margins))
        return _PriorModel(obj_gp.through(x, obj), margins, self.best, self.ref)


def _values(gp: _GP) -> FloatArray:
    """The values a process was conditioned on, in their own units."""
    assert gp.y is not None
    out: FloatArray = gp.mean + gp.std * gp.y
    return out


#: Evaluations of the twin itself when its best point is refined (:func:`_refine`)
PRIOR_REFINE = 60


def _refine(prior: Prior, start: FloatArray, ref: float, n_constraints: int,
            margin: float) -> FloatArray:
    """The twin's best point inside its constraints (by ``margin``), by COBYLA on the twin
    itself from the best point of its processes, at most :data:`PRIOR_REFINE` evaluations.

    Why on the twin and not on its processes: 65 samples in the box leave the processes'
    optimum a few per cent short where it lies on the box's edge (the lomustine line's, at
    R2's highest temperature: 96-97 % of it), and the experiments' models, which only see
    the plant's difference from the processes, then converged there. COBYLA is what the
    default search runs (deterministic, no BLAS), so a restored campaign refines alike."""
    seen: dict[tuple[float, ...], tuple[float, FloatArray]] = {}

    def at(x: FloatArray) -> tuple[float, FloatArray]:
        key = _key(x)
        if key not in seen:
            got = prior(key)
            if got is None or not math.isfinite(got[0]):
                seen[key] = (math.inf, np.full(n_constraints, -1.0))
            else:
                seen[key] = (-got[0] / ref, np.asarray(got[1], dtype=float) - margin)
        return seen[key]

    from scipy.optimize import minimize  # with the search (see ScipySearch.ask)

    cons = ([{"type": "ineq", "fun": lambda x: at(x)[1]}] if n_constraints else [])
    minimize(lambda x: at(x)[0], start, method="COBYLA", bounds=[(0.0, 1.0)] * start.size,
             constraints=cons, options={"rhobeg": 0.05, "tol": 1e-3,
                                        "maxiter": PRIOR_REFINE})
    feasible = [(v, k) for k, (v, m) in seen.items() if math.isfinite(v) and np.all(m >= 0.0)]
    if not feasible:  # nothing better known than the processes' point
        return start
    return np.asarray(min(feasible)[1], dtype=float)


class BayesSearch:
    """Gaussian-process Bayesian optimisation in the unit box, started at ``x0``.

    ``initial`` design points (default ``max(5, 2 * dims + 1)``: the start, then a scrambled
    Latin hypercube) come first; then each ask maximises the acquisition over ``candidates``
    quasi-random points plus points around the best so far, polished by a compass search.
    A point within ``tolerance`` (Euclidean, unit box) of a measured one is never asked;
    when the best candidate is that close and its expected improvement is below
    ``negligible`` (in the campaign's objective units, relative to the first experiment)
    the search has converged.

    With a ``prior`` (:data:`Prior`, the twin): the twin is sampled at the start and
    ``prior_points`` Sobol points, the design is the start and the twin's best point inside
    its constraints by ``prior_margin`` (default ``initial`` 2), the experiments' models are
    of the plant's difference from the twin, and a point whose probability of meeting every
    constraint is below ``prior_confidence`` is not asked while one is above it (module
    docstring; docs/optimisation.md, "The twin as a prior")."""

    def __init__(self, x0: Sequence[float], n_constraints: int, tolerance: float = 0.01,
                 initial: int | None = None, candidates: int = 1024, seed: int = 0,
                 negligible: float = 1e-4, prior: Prior | None = None,
                 prior_points: int = 64, prior_margin: float = 0.01,
                 prior_confidence: float = 0.9) -> None:
        self.x0 = np.clip(np.asarray(x0, dtype=float), 0.0, 1.0)
        self.dims = int(self.x0.size)
        self.n_constraints = n_constraints
        self.tolerance = tolerance
        self.initial = initial if initial is not None else (
            2 if prior is not None else max(5, 2 * self.dims + 1))
        self.seed = seed
        self.negligible = negligible
        self.prior = prior
        self.prior_points = prior_points
        self.prior_margin = prior_margin
        self.prior_confidence = prior_confidence
        self._prior_model: _PriorModel | None = None
        self._twin_at: dict[tuple[float, ...], tuple[float, tuple[float, ...]] | None] = {}
        self._design_points: list[tuple[float, ...]] | None = None
        from scipy.stats import qmc  # with the search (see ScipySearch.ask)

        m = max(math.ceil(math.log2(max(candidates, 2))), 1)
        self.candidates = np.asarray(
            qmc.Sobol(self.dims, scramble=True, rng=seed + 1).random_base2(m), dtype=float)
        self.local = np.random.default_rng(seed + 2).standard_normal((256, self.dims))

    @property
    def design(self) -> list[tuple[float, ...]]:
        """The initial design: the start, then a Latin hypercube, or with a prior the twin's
        best point inside the constraints (by ``prior_margin``) and, beyond ``initial = 2``,
        the hypercube's points the twin expects inside them. Built at the first use: with a
        prior it samples the twin."""
        if self._design_points is None:
            self._design_points = self._design()
        return self._design_points

    def _design(self) -> list[tuple[float, ...]]:
        from scipy.stats import qmc

        points = [_key(self.x0)]
        if self.initial <= 1:
            return points
        if self.prior is None:
            lhs = qmc.LatinHypercube(self.dims, rng=self.seed).random(self.initial - 1)
            return points + [_key(p) for p in lhs]
        model = self._prior()
        points.append(_key(model.best))
        lhs = qmc.LatinHypercube(self.dims, rng=self.seed).random(4 * self.initial)
        _, margins = model.predict(lhs)
        inside = lhs[np.all(margins >= self.prior_margin, axis=1)]
        points += [_key(p) for p in inside[: self.initial - 2]]
        return points

    def _prior_at(self, x: FloatArray) -> _PriorModel:
        """The prior conditioned on the twin at the experiments' points ``x`` as well
        (:meth:`_PriorModel.including`), each point solved once."""
        assert self.prior is not None
        model = self._prior()
        sampled = model.objective.x
        xs: list[tuple[float, ...]] = []
        values: list[tuple[float, tuple[float, ...]]] = []
        for row in x:
            key = _key(row)
            if key not in self._twin_at:
                self._twin_at[key] = self.prior(key)
            got = self._twin_at[key]
            if got is None or not (math.isfinite(got[0])
                                   and all(math.isfinite(m) for m in got[1])):
                continue
            if float(np.min(np.linalg.norm(sampled - row, axis=1))) < 1e-9 or \
                    any(float(np.linalg.norm(np.asarray(k) - row)) < 1e-9 for k in xs):
                continue
            xs.append(key)
            values.append(got)
        return model.including(np.array(xs, dtype=float).reshape(-1, self.dims), values)

    def _prior(self) -> _PriorModel:
        """The twin sampled at the start and ``prior_points`` scrambled Sobol points (fixed
        seed), a Gaussian process through each output: computed once per search."""
        if self._prior_model is None:
            assert self.prior is not None
            from scipy.stats import qmc

            m = max(math.ceil(math.log2(max(self.prior_points, 2))), 1)
            sobol = qmc.Sobol(self.dims, scramble=True, rng=self.seed + 3).random_base2(m)
            self._prior_model = _PriorModel.sample(
                self.prior, np.vstack([self.x0[None, :], sobol]), self.n_constraints,
                self.prior_margin, self.candidates)
        return self._prior_model

    def ask(self, trials: Sequence[Trial]) -> tuple[float, ...] | None:
        measured = {_key(t.x) for t in trials}
        for p in self.design:
            if p not in measured and not self._near(np.asarray(p), trials):
                return p
        return self._acquire(trials)

    def _near(self, x: FloatArray, trials: Sequence[Trial]) -> bool:
        if not trials:
            return False
        xs = np.array([_key(t.x) for t in trials], dtype=float)
        return bool(np.min(np.linalg.norm(xs - x, axis=1)) < self.tolerance)

    def _acquire(self, trials: Sequence[Trial]) -> tuple[float, ...] | None:
        x = np.array([_key(t.x) for t in trials], dtype=float)
        ok = np.array([t.objective is not None for t in trials])
        if not ok.any():  # nothing measured: explore, farthest from what failed
            return self._farthest(x)
        obj = np.array([t.objective if t.objective is not None else math.nan for t in trials])
        obj[~ok] = float(np.min(obj[ok]))  # failed: the worst objective measured
        margins = np.array([self._margins(trials, ok, j) for j in range(self.n_constraints)]
                           ).reshape(self.n_constraints, len(trials))
        prior = self._prior_at(x) if self.prior is not None else None
        if prior is not None:  # the experiments' models are of the plant's difference
            base_obj, base_margins = prior.predict(x)
            objective = _fit(x, obj - base_obj, prior.objective.std)
            constraints = [_fit(x, row, gp.std) for row, gp in
                           zip(margins - base_margins.T, prior.margins, strict=True)]
        else:
            objective = _fit(x, obj)
            constraints = [_fit(x, row) for row in margins]
        feasible = np.array([t.feasible for t in trials])
        best = float(np.max(obj[feasible])) if feasible.any() else None
        from scipy.special import log_ndtr, ndtr
        # With the twin's margins as the prior mean, the probability of feasibility is
        # sharp enough to keep to: a point below ``prior_confidence`` is not asked (unless
        # none is above). Without it, the search probed a binding constraint from both
        # sides, as the flat search does (lomustine, purity >= 97 %: 2-12 violations per
        # seed with the line's own models as the twin)
        gate = [math.log(self.prior_confidence)
                if prior is not None and best is not None else -math.inf]

        def acquisition(p: FloatArray) -> tuple[FloatArray, FloatArray]:
            """log of the acquisition and the expected improvement at rows ``p``."""
            log_pof = np.zeros(len(p))
            if prior is not None:
                p_obj, p_margins = prior.predict(p)
            for j, gp in enumerate(constraints):
                mu, sd = gp.predict(p)
                if prior is not None:
                    mu = mu + p_margins[:, j]
                log_pof += log_ndtr(mu / sd)
            if best is None:
                return log_pof, np.zeros(len(p))
            mu, sd = objective.predict(p)
            if prior is not None:
                mu = mu + p_obj
            z = (mu - best) / sd
            ei = sd * (z * ndtr(z) + np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi))
            ei = np.maximum(ei, 1e-300)
            return np.where(log_pof >= gate[0], np.log(ei) + log_pof, -np.inf), ei

        anchor = x[int(np.argmax(np.where(feasible, obj, -np.inf)))] if best is not None \
            else x[int(np.argmax(np.where(ok, obj, -np.inf)))]
        cands = np.vstack([self.candidates,
                           np.clip(anchor + 0.05 * self.local[:128], 0.0, 1.0),
                           np.clip(anchor + 0.15 * self.local[128:], 0.0, 1.0)])
        values, ei = acquisition(cands)
        if not np.isfinite(values).any():  # nothing that sure: the plain acquisition
            gate[0] = -math.inf
            values, ei = acquisition(cands)
        dist = np.min(np.linalg.norm(cands[:, None, :] - x[None, :, :], axis=-1), axis=1)
        top = int(np.argmax(values))
        if dist[top] < self.tolerance and best is not None and \
                float(ei[top]) * objective.std < self.negligible:
            return None
        values = np.where(dist >= self.tolerance, values, -np.inf)
        if not np.isfinite(values).any():
            return None
        order = np.argsort(-values, kind="stable")[:3]
        chosen = cands[order[0]]
        chosen_value = float(values[order[0]])
        for i in order:
            if not math.isfinite(float(values[i])):
                break
            p, value = _climb(lambda q: acquisition(q)[0], cands[i], float(values[i]))
            if value > chosen_value and not self._near(p, trials):
                chosen, chosen_value = p, value
        return _key(chosen)

    def _margins(self, trials: Sequence[Trial], ok: npt.NDArray[np.bool_], j: int
                 ) -> FloatArray:
        """Margin ``j`` of every trial; a failed one below the worst measured (violated)."""
        failed = _failed_margin([t.margins[j] for t, good in zip(trials, ok, strict=True)
                                 if good])
        return np.array([t.margins[j] if good else failed
                         for t, good in zip(trials, ok, strict=True)], dtype=float)

    def _farthest(self, x: FloatArray) -> tuple[float, ...] | None:
        dist = np.min(np.linalg.norm(self.candidates[:, None, :] - x[None, :, :], axis=-1),
                      axis=1)
        i = int(np.argmax(dist))
        return _key(self.candidates[i]) if dist[i] >= self.tolerance else None

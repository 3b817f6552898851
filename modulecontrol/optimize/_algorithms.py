"""Derivative-free search behind one small ask/tell interface.

Why ask/tell: an experiment on a plant takes hours, and the campaign must survive a restart
of the control service. So the search never holds the thread between experiments; its whole
state is the list of experiments made so far. :meth:`ScipySearch.ask` replays scipy's
minimiser from the start over the recorded outcomes and stops it at the first point it asks
for that has not been measured yet: the next experiment. scipy's minimisers are
deterministic, so a campaign restored from the records asks exactly the point the lost one
would have asked, and nothing but the records has to be kept.

Work in the unit box: every variable is scaled to [0, 1] between its bounds, so one step
size (``rhobeg``) fits variables of different units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: Every algorithm a plan can name (``make_search`` maps each to its implementation): scipy's
#: two here, and ``bayes`` (:class:`BayesSearch`, Gaussian-process Bayesian optimisation).
ALGORITHMS = ("cobyla", "nelder-mead", "bayes")
#: The algorithms of :class:`ScipySearch`.
SCIPY_ALGORITHMS = ("cobyla", "nelder-mead")
Algorithm = Literal["cobyla", "nelder-mead"]


@dataclass(frozen=True)
class Trial:
    """One finished experiment in unit-box coordinates: the objective (to maximise) and the
    constraint margins (>= 0 where satisfied); ``None`` when it could not be measured."""

    x: tuple[float, ...]
    objective: float | None
    margins: tuple[float, ...]

    @property
    def feasible(self) -> bool:
        return self.objective is not None and all(m >= 0.0 for m in self.margins)


class Search(Protocol):
    """What a campaign needs from an algorithm: the next point given what was measured."""

    def ask(self, trials: Sequence[Trial]) -> tuple[float, ...] | None:
        """The next point in the unit box, or ``None`` when the search has converged."""
        ...


class _Need(Exception):  # a control-flow signal, not an error
    def __init__(self, x: FloatArray) -> None:
        super().__init__()
        self.x = x


#: Objective given to the minimiser for an experiment that could not be measured: worse than
#: any measured one, so the search moves away from it (the campaign has tripped it as failed).
_FAILED = 1e6


class ScipySearch:
    """COBYLA (constraints as such; the default) or Nelder-Mead (constraints as a penalty),
    started at ``x0`` with first steps of ``step`` (unit box).

    Margins come relative to their bounds (0.01 = 1 % inside) and objectives relative to the
    first experiment; ``constraint_weight`` scales the margins so that being 1 % outside a
    bound weighs like losing 30 % of the objective. Measured on the lomustine bench
    (docs/optimisation.md): with the margins as they come, COBYLA's merit function traded
    purity for throughput and violated the constraint in a median of 3 experiments of 25;
    weighted, in 2, and reached 95 % of the optimum sooner."""

    def __init__(self, algorithm: Algorithm, x0: Sequence[float], n_constraints: int,
                 step: float = 0.2, tolerance: float = 0.01, penalty: float = 10.0,
                 constraint_weight: float = 30.0) -> None:
        if algorithm not in SCIPY_ALGORITHMS:
            raise ValueError(f"unknown scipy algorithm '{algorithm}' "
                             f"(known: {', '.join(SCIPY_ALGORITHMS)})")
        self.algorithm = algorithm
        self.x0 = np.clip(np.asarray(x0, dtype=float), 0.0, 1.0)
        self.n_constraints = n_constraints
        self.step = step
        self.tolerance = tolerance
        self.penalty = penalty
        self.constraint_weight = constraint_weight

    def ask(self, trials: Sequence[Trial]) -> tuple[float, ...] | None:
        known = {_key(t.x): t for t in trials}

        def trial(x: FloatArray) -> Trial:
            t = known.get(_key(x))
            if t is None:
                raise _Need(np.clip(x, 0.0, 1.0))
            return t

        def objective(x: FloatArray) -> float:
            t = trial(x)
            if t.objective is None:
                return _FAILED
            if self.algorithm == "cobyla":
                return -t.objective
            return -t.objective + self.penalty * self.constraint_weight * sum(
                max(-m, 0.0) for m in t.margins)

        def margins(x: FloatArray) -> FloatArray:
            t = trial(x)
            if t.objective is None:
                return np.full(self.n_constraints, -1.0)
            return self.constraint_weight * np.asarray(t.margins, dtype=float)

        # scipy's minimisers are imported with the search, not with the module: a run or the
        # control service loads this package with every recipe, few of which optimise
        from scipy.optimize import minimize

        bounds = [(0.0, 1.0)] * self.x0.size
        try:
            if self.algorithm == "cobyla":
                cons = ([{"type": "ineq", "fun": margins}] if self.n_constraints else [])
                minimize(objective, self.x0, method="COBYLA", bounds=bounds,
                         constraints=cons,
                         options={"rhobeg": self.step, "tol": self.tolerance,
                                  "maxiter": 10_000})
            else:
                simplex = np.vstack([self.x0] + [
                    np.clip(self.x0 + self.step * e * (1.0 if self.x0 @ e < 0.5 else -1.0),
                            0.0, 1.0) for e in np.eye(self.x0.size)])
                minimize(objective, self.x0, method="Nelder-Mead", bounds=bounds,
                         options={"initial_simplex": simplex, "xatol": self.tolerance,
                                  "fatol": 1e-9, "maxfev": 10_000})
        except _Need as need:
            return tuple(float(v) for v in need.x)
        return None


def _key(x: Sequence[float] | FloatArray) -> tuple[float, ...]:
    """Exact key of a point: floats survive JSON and SQLite unchanged, so a replayed search
    finds its recorded points again (clipped as :meth:`ScipySearch.ask` clips them)."""
    return tuple(float(min(max(v, 0.0), 1.0)) for v in x)

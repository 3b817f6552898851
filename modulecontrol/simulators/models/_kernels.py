"""The coil reactor's reaction sub-step, compiled: ROS2 per tank over the species the
reactions change and T, with its analytic Jacobian and the admissibility test of a step.

Why compiled (issue #19, item 5): a reaction sub-step is a small dense system per tank (9
unknowns for R1 of the lomustine line, 15 for R2, 20 tanks each). Batched over the tanks in
numpy it was about forty small array calls per sub-step, 0.3–0.5 ms, three sub-steps per
control step of 5 s: the reactors were three quarters of a step in every transient (a
start-up, a what-if after a change, a fit's replay, an optimiser's experiment). As loops over
tanks, reactions and the system compiled by numba, a sub-step of both reactors costs a few
microseconds. The code is written once, in plain loops that run under numba or, with
``NUMBA_DISABLE_JIT=1``, as Python (for debugging); there is no second numpy version of it to
keep equal. The tests hold it against the full-species numpy rates and Jacobian of
:class:`~._reactor.Kinetics` (which the steady-state solve and the BDF reference use) and the
step against ``solve_ivp``.

The functions are compiled on first use, not on import (``modulecontrol validate`` builds the
models and never steps them). The machine code is cached in the user's cache folder
(:func:`modulecontrol.cachedir.user_cache_folder`, ``MODULECONTROL_NUMBA_CACHE`` to move it or
``off``), only when that folder is the user's own: numba's cache is pickled data, read back as
trusted. Without the cache each process compiles once, about two seconds.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from modulecontrol.cachedir import user_cache_folder

from . import _integrate
from ._integrate import FloatArray

_log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

R_GAS = 8.314462618
#: ROS2's gamma, the one of :func:`._integrate.ros2_step`
GAMMA = float(_integrate._GAMMA)
#: a step is refused when a concentration falls below this fraction of the tank's active total
NEGATIVE_TOLERANCE = 1e-9
#: ... or a rate constant changes by more than this factor's logarithm across the step
MAX_RATE_CHANGE = math.log(2.0)


class Tables(NamedTuple):
    """The reaction set as the kernels read it (built by ``Kinetics``).

    Per reaction ``j`` and rate-law term ``t`` (padded with order 0): the species index into
    the full concentration vector, its order and its position among the active species (-1
    when the reactions do not change it, e.g. a catalyst). ``kf`` and ``kr`` are the arrays a
    ``deactivation`` fault scales in place, so they are passed, never copied.

    Why the non-zeros: a reaction changes two to four species and its rate reads one to
    three, so the Jacobian's product S^T dr/dc is a few dozen terms per tank, not
    reactions x species^2 (R2 of the lomustine line: 96 against 1 568)."""

    active: IntArray  # (na,) indices of the species some reaction changes
    idx_f: IntArray  # (nr, K)
    ord_f: FloatArray
    pos_f: IntArray
    idx_r: IntArray
    ord_r: FloatArray
    pos_r: IntArray
    kf: FloatArray  # (nr,)
    kr: FloatArray
    ef: FloatArray  # activation energies, J/mol
    er: FloatArray
    inv_tref: FloatArray  # 1/T_ref (0 for the Arrhenius form)
    # the stoichiometry by its non-zeros: per reaction, the active positions it changes and
    # their coefficients (padded with -1), and the active positions its rate reads (its
    # rate-law terms, forward and reverse, each once; padded with -1)
    s_pos: IntArray  # (nr, P)
    s_val: FloatArray  # (nr, P)
    d_pos: IntArray  # (nr, D)
    mdh: FloatArray  # (nr,) -dH
    reversible: bool


# -- the kernels, in plain loops ------------------------------------------------------------------
def _exp(x: float) -> float:
    # numba's exp overflows to inf; Python's raises (NUMBA_DISABLE_JIT)
    return math.exp(x) if x < 709.0 else math.inf


def _power(x: float, a: float) -> float:
    """x ** a, without the library call for the orders of most rate laws (0, 1, 2): pow()
    was most of a rate evaluation."""
    if a == 1.0:
        return x
    if a == 0.0:
        return 1.0
    if a == 2.0:
        return x * x
    out: float = x ** a
    return out


def _rates(cz: FloatArray, temp: float, t: Tables, r: FloatArray, drdc: FloatArray,
           drdt: FloatArray, with_jac: bool) -> None:
    """Rates r (nr,) of one tank at concentrations ``cz`` (all species) and ``temp``; with
    ``with_jac`` also dr/dc over the active species (nr, na) and dr/dT (nr,).

    d(prod c^a)/dc_i = a_i prod / c_i is evaluated with c floored at 1e-30 mol/m3, the exact
    limit (the other factors' product) for a first-order species at zero."""
    inv_t = 1.0 / temp
    dinv = inv_t * inv_t / R_GAS
    nr = t.kf.size
    na = t.active.size
    for j in range(nr):
        r[j] = 0.0
        if with_jac:
            drdt[j] = 0.0
            for a in range(na):
                drdc[j, a] = 0.0
        for direction in range(2 if t.reversible else 1):
            if direction == 0:
                idx, order, pos = t.idx_f, t.ord_f, t.pos_f
                k = t.kf[j] * _exp(-t.ef[j] / R_GAS * (inv_t - t.inv_tref[j]))
                ea = t.ef[j]
            else:
                idx, order, pos = t.idx_r, t.ord_r, t.pos_r
                k = -t.kr[j] * _exp(-t.er[j] / R_GAS * (inv_t - t.inv_tref[j]))
                ea = t.er[j]
            k_terms = idx.shape[1]  # the forward and reverse laws have their own widths
            prod = 1.0
            psafe = 1.0
            for term in range(k_terms):
                prod *= _power(max(cz[idx[j, term]], 0.0), order[j, term])
            r[j] += k * prod
            if with_jac:
                drdt[j] += k * ea * dinv * prod
                for term in range(k_terms):
                    psafe *= _power(max(cz[idx[j, term]], 1e-30), order[j, term])
                for term in range(k_terms):
                    p = pos[j, term]
                    if p >= 0:
                        safe = max(max(cz[idx[j, term]], 0.0), 1e-30)
                        drdc[j, p] += k * order[j, term] * psafe / safe


def _rhs(cz: FloatArray, temp: float, t: Tables, rho_cp: float, r: FloatArray,
         out: FloatArray) -> None:
    """Reaction derivatives of [c_active, T] of one tank into ``out`` (na + 1,)."""
    _rates(cz, temp, t, r, r[:0].reshape(0, 0), r[:0], False)
    na = t.active.size
    for a in range(na + 1):
        out[a] = 0.0
    acc = 0.0
    for j in range(r.size):
        for q in range(t.s_pos.shape[1]):
            a = t.s_pos[j, q]
            if a < 0:
                break
            out[a] += r[j] * t.s_val[j, q]
        acc += r[j] * t.mdh[j]
    out[na] = acc / rho_cp


def _add_rate(f: FloatArray, jac: FloatArray, row: int, coef: float, rj: float,
              drdt_j: float, drdc: FloatArray, j: int, d_pos: IntArray) -> None:
    """Add reaction ``j``'s share to row ``row`` of f and of the Jacobian: ``coef`` times
    its rate, its dr/dT and its dr/dc over the positions its rate reads."""
    f[row] += coef * rj
    jac[row, jac.shape[0] - 1] += coef * drdt_j
    for d in range(d_pos.shape[1]):
        b = d_pos[j, d]
        if b < 0:
            break
        jac[row, b] += coef * drdc[j, b]


def _rhs_jac(cz: FloatArray, temp: float, t: Tables, rho_cp: float, r: FloatArray,
             drdc: FloatArray, drdt: FloatArray, f: FloatArray, jac: FloatArray) -> None:
    """:func:`_rhs` and its Jacobian wrt [c_active, T] (na + 1, na + 1), by the
    non-zeros of the stoichiometry and of dr/dc (:class:`Tables`)."""
    _rates(cz, temp, t, r, drdc, drdt, True)
    na = t.active.size
    m = na + 1
    for a in range(m):
        f[a] = 0.0
        for b in range(m):
            jac[a, b] = 0.0
    for j in range(r.size):
        for q in range(t.s_pos.shape[1]):
            a = t.s_pos[j, q]
            if a < 0:
                break
            _add_rate(f, jac, a, t.s_val[j, q], r[j], drdt[j], drdc, j, t.d_pos)
        _add_rate(f, jac, na, t.mdh[j], r[j], drdt[j], drdc, j, t.d_pos)
    # the heat row divided once, as :func:`_rhs` does (the same rounding in both)
    for b in range(m):
        jac[na, b] /= rho_cp
    f[na] /= rho_cp


def _lu(w: FloatArray, piv: IntArray) -> bool:
    """LU factorisation in place with partial pivoting; False if singular."""
    m = w.shape[0]
    for col in range(m):
        best = col
        big = abs(w[col, col])
        for row in range(col + 1, m):
            if abs(w[row, col]) > big:
                big = abs(w[row, col])
                best = row
        piv[col] = best
        if big == 0.0 or not math.isfinite(big):
            return False
        if best != col:
            for k in range(m):
                tmp = w[col, k]
                w[col, k] = w[best, k]
                w[best, k] = tmp
        inv = 1.0 / w[col, col]
        for row in range(col + 1, m):
            w[row, col] *= inv
            factor = w[row, col]
            if factor != 0.0:
                for k in range(col + 1, m):
                    w[row, k] -= factor * w[col, k]
    return True


def _solve(lu: FloatArray, piv: IntArray, b: FloatArray) -> None:
    """Solve in place with the factors of :func:`_lu`."""
    m = lu.shape[0]
    for i in range(m):
        p = piv[i]
        if p != i:
            tmp = b[i]
            b[i] = b[p]
            b[p] = tmp
    for i in range(m):
        acc = b[i]
        for k in range(i):
            acc -= lu[i, k] * b[k]
        b[i] = acc
    for i in range(m - 1, -1, -1):
        acc = b[i]
        for k in range(i + 1, m):
            acc -= lu[i, k] * b[k]
        b[i] = acc / lu[i, i]


def _reaction_rhs(c: FloatArray, temp: FloatArray, rho_cp: float, active: Any, idx_f: Any,
                  ord_f: Any, pos_f: Any, idx_r: Any, ord_r: Any, pos_r: Any, kf: Any,
                  kr: Any, ef: Any, er: Any, inv_tref: Any, s_pos: Any, s_val: Any,
                  d_pos: Any, mdh: Any,
                  reversible: Any) -> FloatArray:
    """Reaction derivatives of [c[:, active], T] per tank (tanks, na + 1)."""
    t = Tables(active, idx_f, ord_f, pos_f, idx_r, ord_r, pos_r, kf, kr, ef, er, inv_tref,
               s_pos, s_val, d_pos, mdh, reversible)
    n = c.shape[0]
    na = t.active.size
    out = np.empty((n, na + 1))
    r = np.empty(t.kf.size)
    for i in range(n):
        _rhs(c[i], temp[i], t, rho_cp, r, out[i])
    return out


def _reaction_rhs_jac(c: FloatArray, temp: FloatArray, rho_cp: float, active: Any,
                      idx_f: Any, ord_f: Any, pos_f: Any, idx_r: Any, ord_r: Any,
                      pos_r: Any, kf: Any, kr: Any, ef: Any, er: Any, inv_tref: Any,
                      s_pos: Any, s_val: Any, d_pos: Any, mdh: Any, reversible: Any
                      ) -> tuple[FloatArray, FloatArray]:
    """:func:`_reaction_rhs` and the Jacobians (tanks, na + 1, na + 1)."""
    t = Tables(active, idx_f, ord_f, pos_f, idx_r, ord_r, pos_r, kf, kr, ef, er, inv_tref,
               s_pos, s_val, d_pos, mdh, reversible)
    n = c.shape[0]
    na = t.active.size
    nr = t.kf.size
    f = np.empty((n, na + 1))
    jac = np.empty((n, na + 1, na + 1))
    r = np.empty(nr)
    drdc = np.empty((nr, na))
    drdt = np.empty(nr)
    for i in range(n):
        _rhs_jac(c[i], temp[i], t, rho_cp, r, drdc, drdt, f[i], jac[i])
    return f, jac


def _reaction_step(c: FloatArray, temp: FloatArray, h: float, shift: FloatArray,
                   rho_cp: float, max_activation: float, active: Any, idx_f: Any,
                   ord_f: Any, pos_f: Any, idx_r: Any, ord_r: Any, pos_r: Any, kf: Any,
                   kr: Any, ef: Any, er: Any, inv_tref: Any, s_pos: Any, s_val: Any,
                  d_pos: Any, mdh: Any,
                   reversible: Any
                   ) -> tuple[FloatArray, FloatArray, BoolArray]:
    """One ROS2 step of size ``h`` of every tank's reactions, less the constant rate
    ``shift`` (tanks, na + 1; the balancing term, zeros for none), from (c, temp).

    Returns the new concentrations (all species; the inactive ones unchanged), temperatures
    and, per tank, whether the step is refused: not finite, T <= 0, a concentration below
    zero beyond :data:`NEGATIVE_TOLERANCE` of the tank's active total, a rate constant
    changed by more than a factor of 2 (the linearisation no longer holds) or a singular
    system. ROS2 (Verwer et al. 1999): W = I - gamma h J; W k1 = f(y);
    W k2 = f(y + h k1) - 2 k1; y1 = y + 1.5 h k1 + 0.5 h k2."""
    t = Tables(active, idx_f, ord_f, pos_f, idx_r, ord_r, pos_r, kf, kr, ef, er, inv_tref,
               s_pos, s_val, d_pos, mdh, reversible)
    n, ns = c.shape
    na = t.active.size
    nr = t.kf.size
    m = na + 1
    c1 = c.copy()
    t1 = np.empty(n)
    refused = np.zeros(n, dtype=np.bool_)
    r = np.empty(nr)
    drdc = np.empty((nr, na))
    drdt = np.empty(nr)
    f = np.empty(m)
    w = np.empty((m, m))
    piv = np.empty(m, dtype=np.intp)
    k1 = np.empty(m)
    k2 = np.empty(m)
    cz = np.empty(ns)
    gh = GAMMA * h
    for i in range(n):
        for s in range(ns):
            cz[s] = c[i, s]
        _rhs_jac(cz, temp[i], t, rho_cp, r, drdc, drdt, f, w)
        for a in range(m):
            for b in range(m):
                w[a, b] = -gh * w[a, b]
            w[a, a] += 1.0
            k1[a] = f[a] - shift[i, a]
        if not _lu(w, piv):
            refused[i] = True
            t1[i] = temp[i]
            continue
        _solve(w, piv, k1)
        for a in range(na):
            cz[t.active[a]] = c[i, t.active[a]] + h * k1[a]
        _rhs(cz, temp[i] + h * k1[na], t, rho_cp, r, k2)
        for a in range(m):
            k2[a] = k2[a] - shift[i, a] - 2.0 * k1[a]
        _solve(w, piv, k2)
        total0 = 0.0
        total1 = 0.0
        ok = True
        for a in range(na):
            s = t.active[a]
            v = c[i, s] + 1.5 * h * k1[a] + 0.5 * h * k2[a]
            c1[i, s] = v
            total0 += abs(c[i, s])
            total1 += abs(v)
            if not math.isfinite(v):
                ok = False
        tn = temp[i] + 1.5 * h * k1[na] + 0.5 * h * k2[na]
        t1[i] = tn
        if not (math.isfinite(tn) and tn > 0.0):
            ok = False
        if ok:
            floor = -NEGATIVE_TOLERANCE * (total0 + total1)
            for a in range(na):
                if c1[i, t.active[a]] < floor:
                    ok = False
        if ok and max_activation > 0.0:
            change = max_activation / R_GAS * abs(1.0 / temp[i] - 1.0 / tn)
            ok = change <= MAX_RATE_CHANGE
        refused[i] = not ok
    return c1, t1, refused


def _balance(c: FloatArray, temp: FloatArray, s_conc: FloatArray, s_temp: float, tj: float,
             inv_tau: float, kappa: float, rho_cp: float, active: Any, idx_f: Any,
             ord_f: Any, pos_f: Any, idx_r: Any, ord_r: Any, pos_r: Any, kf: Any, kr: Any,
             ef: Any, er: Any, inv_tref: Any, s_pos: Any, s_val: Any, d_pos: Any, mdh: Any,
             reversible: Any) -> tuple[FloatArray, FloatArray]:
    """The balancing rate of the coil's Strang splitting (``CoilReactor._balance``): half
    the reaction rate minus half the transport rate of each tank's active species (tanks,
    na) and temperature (tanks,), at the state (c, temp) with the inlet (s_conc, s_temp)."""
    t = Tables(active, idx_f, ord_f, pos_f, idx_r, ord_r, pos_r, kf, kr, ef, er, inv_tref,
               s_pos, s_val, d_pos, mdh, reversible)
    n = c.shape[0]
    na = active.size
    q_c = np.empty((n, na))
    q_t = np.empty(n)
    react = np.empty(na + 1)
    r = np.empty(kf.size)
    for i in range(n):
        _rhs(c[i], temp[i], t, rho_cp, r, react)
        for a in range(na):
            s = active[a]
            before = s_conc[s] if i == 0 else c[i - 1, s]
            q_c[i, a] = 0.5 * (react[a] - inv_tau * (before - c[i, s]))
        t_before = s_temp if i == 0 else temp[i - 1]
        q_t[i] = 0.5 * (react[na] - (inv_tau * (t_before - temp[i]) + kappa * (tj - temp[i])))
    return q_c, q_t


def _transport(c: FloatArray, temp: FloatArray, s_conc: FloatArray, s_temp: float,
               tj: float, v_t: float, tau_t: float, e: FloatArray, g_c: FloatArray,
               cum_e: FloatArray, cum_g: float, e_t: FloatArray, g_t: FloatArray,
               g_q: FloatArray, g_qt: FloatArray, cum_q: FloatArray, active: IntArray,
               q_c: FloatArray, q_t: FloatArray, with_source: bool
               ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The coil's exact transport over one step with the weights of
    ``CoilReactor._weights``: the new concentrations (tanks, species) and temperatures and
    the moles that left (species). The weight matrices are lower triangular (a tank reads
    only the tanks before it); a constant source ``q_c`` (tanks, active), ``q_t`` (tanks,)
    is integrated exactly when ``with_source``.

        moles = v_t (cum_e . c + cum_g c_in) [+ v_t tau_t cum_q . q_c on the active]
        c'    = e c + g_c c_in               [+ tau_t g_q q_c on the active]
        T'    = tj + e_t (T - tj) + g_t (T_in - tj)   [+ tau_t g_qt q_t]
    """
    n, ns = c.shape
    na = active.size
    c1 = np.empty((n, ns))
    t1 = np.empty(n)
    moles = np.empty(ns)
    for s in range(ns):
        acc = 0.0
        for j in range(n):
            acc += cum_e[j] * c[j, s]
        moles[s] = v_t * (acc + cum_g * s_conc[s])
    for i in range(n):
        for s in range(ns):
            acc = 0.0
            for j in range(i + 1):
                acc += e[i, j] * c[j, s]
            c1[i, s] = acc + g_c[i] * s_conc[s]
        acc = 0.0
        for j in range(i + 1):
            acc += e_t[i, j] * (temp[j] - tj)
        t1[i] = tj + acc + g_t[i] * (s_temp - tj)
    if with_source:
        for a in range(na):
            s = active[a]
            acc = 0.0
            for j in range(n):
                acc += cum_q[j] * q_c[j, a]
            moles[s] += v_t * tau_t * acc
            for i in range(n):
                acc = 0.0
                for j in range(i + 1):
                    acc += g_q[i, j] * q_c[j, a]
                c1[i, s] += tau_t * acc
        for i in range(n):
            acc = 0.0
            for j in range(i + 1):
                acc += g_qt[i, j] * q_t[j]
            t1[i] += tau_t * acc
    return c1, t1, moles


# -- compiled on first use -------------------------------------------------------------------------
class _Compiled(NamedTuple):
    rhs: Callable[..., FloatArray]
    rhs_jac: Callable[..., tuple[FloatArray, FloatArray]]
    step: Callable[..., tuple[FloatArray, FloatArray, BoolArray]]
    transport: Callable[..., tuple[FloatArray, FloatArray, FloatArray]]
    balance: Callable[..., tuple[FloatArray, FloatArray]]


_lock = threading.Lock()
_compiled: _Compiled | None = None


def _compile() -> _Compiled:
    """numba-compile the kernels (and what they call), with the on-disk cache when safe."""
    import numba  # here, not with the module: see the module docstring

    folder = user_cache_folder("numba", "MODULECONTROL_NUMBA_CACHE")
    if folder is not None:
        # read when a dispatcher is made (numba's config module declares it dynamically)
        numba.config.CACHE_DIR = str(folder)  # type: ignore[attr-defined]
    cache = folder is not None

    def jit(fn: Any) -> Any:
        # error_model "numpy": a division by zero gives inf or nan, as in numpy, and the step
        # is refused as not finite; numba's default ("python") would raise out of the step
        return numba.njit(cache=cache, nogil=True, error_model="numpy")(fn)

    # the helpers are compiled first and bound into the kernels' globals under their names:
    # numba resolves a called global at compile time, and a dispatcher there is inlined
    # into the caller's machine code
    scope = globals()
    helpers = {name: jit(scope[name])
               for name in ("_exp", "_power", "_lu", "_solve", "_add_rate")}
    rates = _rebind(_rates, helpers, jit)
    helpers["_rates"] = rates
    rhs = _rebind(_rhs, helpers, jit)
    helpers["_rhs"] = rhs
    rhs_jac = _rebind(_rhs_jac, helpers, jit)
    helpers["_rhs_jac"] = rhs_jac
    return _Compiled(_rebind(_reaction_rhs, helpers, jit),
                     _rebind(_reaction_rhs_jac, helpers, jit),
                     _rebind(_reaction_step, helpers, jit), jit(_transport),
                     _rebind(_balance, helpers, jit))


def _rebind(fn: Any, helpers: dict[str, Any], jit: Callable[[Any], Any]) -> Any:
    """``fn`` compiled with the compiled ``helpers`` in place of the Python ones."""
    import types

    scope = dict(fn.__globals__)
    scope.update(helpers)
    clone = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__,
                               fn.__closure__)
    clone.__module__ = fn.__module__
    clone.__qualname__ = fn.__qualname__
    return jit(clone)


def kernels() -> _Compiled:
    """The compiled kernels, compiling them on the first call (thread-safe)."""
    global _compiled
    if _compiled is None:
        with _lock:
            if _compiled is None:
                t0 = time.perf_counter()
                _compiled = _compile()
                took = time.perf_counter() - t0
                _log.log(logging.INFO if took > 2.0 else logging.DEBUG,
                         "reactor kernels compiled or loaded from the cache in %.1f s", took)
    return _compiled


def reaction_rhs(c: FloatArray, temp: FloatArray, t: Tables, rho_cp: float) -> FloatArray:
    """Reaction derivatives of [c[:, active], T] per tank, from all concentrations ``c``."""
    return kernels().rhs(c, temp, rho_cp, *t)


def reaction_rhs_jac(c: FloatArray, temp: FloatArray, t: Tables,
                     rho_cp: float) -> tuple[FloatArray, FloatArray]:
    """:func:`reaction_rhs` and its Jacobian wrt [c[:, active], T], (tanks, m, m)."""
    return kernels().rhs_jac(c, temp, rho_cp, *t)


def reaction_step(c: FloatArray, temp: FloatArray, h: float, shift: FloatArray, t: Tables,
                  rho_cp: float, max_activation: float
                  ) -> tuple[FloatArray, FloatArray, BoolArray]:
    """See :func:`_reaction_step`; compiled."""
    return kernels().step(c, temp, h, shift, rho_cp, max_activation, *t)


def transport(c: FloatArray, temp: FloatArray, s_conc: FloatArray, s_temp: float, tj: float,
              v_t: float, tau_t: float, weights: tuple[FloatArray, ...], active: IntArray,
              source: tuple[FloatArray, FloatArray] | None
              ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """See :func:`_transport`; compiled. ``weights`` as ``CoilReactor._weights`` gives them."""
    e, g_c, cum_e, cum_g, e_t, g_t, g_q, g_qt, cum_q = weights
    if source is None:
        q_c, q_t, with_source = _NO_SOURCE[0], _NO_SOURCE[1], False
    else:
        (q_c, q_t), with_source = source, True
    return kernels().transport(c, temp, s_conc, float(s_temp), float(tj), float(v_t),
                               float(tau_t), e, g_c, cum_e, float(cum_g[0]), e_t, g_t, g_q,
                               g_qt, cum_q, active, q_c, q_t, with_source)


_NO_SOURCE = (np.zeros((1, 1)), np.zeros(1))


def balance(c: FloatArray, temp: FloatArray, s_conc: FloatArray, s_temp: float, tj: float,
            inv_tau: float, kappa: float, t: Tables, rho_cp: float
            ) -> tuple[FloatArray, FloatArray]:
    """See :func:`_balance`; compiled."""
    return kernels().balance(c, temp, s_conc, float(s_temp), float(tj), float(inv_tau),
                             float(kappa), float(rho_cp), *t)


__all__ = ["Tables", "balance", "reaction_rhs", "reaction_rhs_jac", "reaction_step",
           "transport"]

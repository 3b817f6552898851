"""MSMPR (mixed-suspension, mixed-product-removal) crystallizer by the method of moments.

With size-independent growth G and nucleation B at negligible nucleus size (Randolph & Larson,
Theory of Particulate Processes, 1988), the moments mu_j = int L^j n(L) dL obey

    dmu0/dt = B + (mu0_in - mu0)/tau
    dmuj/dt = j G mu_{j-1} + (muj_in - muj)/tau           j = 1..4
    dc/dt   = (c_in - c)/tau - rho_c kv 3 G mu2 / M        (solute consumed by growth)
    dT/dt   = (T_in - T)/tau + kappa (T_jacket - T)         kappa = UA / (rho cp V)

    c*(T, phi) = f(T) exp(-beta phi)     f: polynomial in (T - T0) or Apelblat exp(A + B/T + C ln T)
    sigma = max(c - c*, 0) / c*          (no dissolution)
    G = kg sigma^g exp(-Eg/R (1/T - 1/T_ref)),  B = kb1 sigma^b1 + kb2 sigma^b2 M_T^j
    M_T = rho_c kv mu3 (suspension density), L10 = mu1/mu0, L43 = mu4/mu3

At steady state with constant B, G: mu_j = j! B tau (G tau)^j, so L10 = G tau, L43 = 4 G tau.
Dynamic integration: ROS2 (Rosenbrock; the formulas of ``ros2_step`` on Python floats, the
Jacobian written down but for B and G's differenced derivatives, W eliminated by the system's
structure: see ``_Vessel``) with sub-steps of at most ``max_substep``;
outflow integrals are carried as extra states so mass closes to round-off. Other dissolved
species wash out by the exact exponential of a CSTR.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from modulecontrol.units import UnitError

from . import _integrate
from ._base import ModelStateError, UnitModel, register_model
from ._integrate import FloatArray
from ._quantities import (
    Conductance,
    Density,
    MolarEnergy,
    NucleationRate,
    Temperature,
    Time,
    Velocity,
    Volume,
    is_bare,
    needs_unit,
    si,
    units_required,
)
from ._species import AMBIENT_PRESSURE, Solids, SpeciesTable, Stream, mix

R_GAS = 8.314462618


class Solubility(BaseModel):
    """Solubility in mol/m3 of liquid. ``polynomial``: c* = sum a_i (T - T0)^i;
    ``apelblat``: ln c* = A + B/T + C ln T (coefficients [A, B, C] fitted in these units).
    Antisolvent: c* is multiplied by exp(-antisolvent_exponent * phi), phi its volume fraction.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["polynomial", "apelblat"] = "polynomial"
    coefficients: list[float] = Field(min_length=1)
    reference_temperature: Temperature = 273.15
    antisolvent_exponent: float = 0.0

    def __call__(self, temp: float | FloatArray, phi: float = 0.0) -> float | FloatArray:
        out: float | FloatArray = np.maximum(self._pure(temp), 1e-12) * math.exp(
            -self.antisolvent_exponent * phi
        )
        return out

    def at(self, temp: float, factor: float) -> float:
        """c* at one temperature on Python floats, ``factor`` the antisolvent's
        ``exp(-antisolvent_exponent * phi)`` (constant over a step, so computed once).

        Why: the crystallizer evaluates c* a few times per step; the array form costs a few
        microseconds of numpy call overhead per evaluation for one value. The operations are
        those of :meth:`__call__` in the same order (the exponential and logarithm are
        numpy's), so the value is the same to the last bit."""
        return self.unmixed(temp) * factor

    def unmixed(self, temp: float) -> float:
        """c* at one temperature without antisolvent (what :meth:`at` multiplies by the
        antisolvent's factor): the part a crystallizer keeps per temperature while its
        antisolvent fraction still moves."""
        return max(float(self._pure(temp)), 1e-12)

    def _pure(self, temp: float | FloatArray) -> float | FloatArray:
        """c* without antisolvent, of one temperature or of an array (one formula for both
        :meth:`__call__` and :meth:`at`)."""
        if self.kind == "polynomial":
            x = temp - self.reference_temperature
            base = 0.0 * x
            for a in reversed(self.coefficients):  # Horner
                base = base * x + a
            return base
        a, b, c = ([*list(self.coefficients), 0.0, 0.0, 0.0])[:3]
        out: float | FloatArray = np.exp(a + b / temp + c * np.log(temp))
        return out


class MsmprParams(BaseModel):
    """Kinetic constants are SI: kb1, kb2 in #/(m3 s) (kb2 per (kg/m3)^j), kg in m/s.
    ``fixed_nucleation_rate`` / ``fixed_growth_rate`` override the kinetics (validation).
    ``cooling_profile`` [(t, T_jacket), ...] drives the jacket by linear interpolation in the
    model's own time; without it the jacket is ``jacket_temperature`` (or a linked thermostat).
    """

    model_config = ConfigDict(extra="forbid")
    volume: Volume = Field(gt=0)
    solute: str
    solutes: list[str] = Field(default_factory=list)
    """Further products the same kinetics and solubility apply to (model assumption), for a
    product changeover: the crystallizing solute follows the feed (see ``select_solute``)."""
    antisolvent: str | None = None
    crystal_density: Density = Field(gt=0)
    shape_factor: float = Field(default=math.pi / 6.0, gt=0)
    solubility: Solubility
    kb1: NucleationRate = Field(default=0.0, ge=0)
    b1: float = Field(default=2.0, ge=0)
    kb2: float = Field(default=0.0, ge=0)
    """Secondary nucleation constant, 1/(m**3 s) per (kg/m**3)**j; a quantity string is
    converted with the unit that ``j`` asks for."""
    b2: float = Field(default=1.0, ge=0)
    j: float = Field(default=1.0, ge=0)
    kg: Velocity = Field(default=0.0, ge=0)
    g: float = Field(default=1.0, ge=0)
    growth_activation_energy: MolarEnergy = 0.0
    reference_temperature: Temperature = 298.15
    fixed_nucleation_rate: NucleationRate | None = Field(default=None, ge=0)
    fixed_growth_rate: Velocity | None = Field(default=None, ge=0)
    ua: Conductance = Field(default=20.0, ge=0)
    initial_temperature: Temperature = 298.15
    jacket_temperature: Temperature = 298.15
    cooling_profile: list[tuple[Time, Temperature]] | None = None
    max_substep: Time = Field(default=30.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _kb2_unit(cls, data: Any, info: ValidationInfo) -> Any:
        """kb2's unit depends on the exponent j, so it is converted here, with j known."""
        if not isinstance(data, dict) or data.get("kb2") in (None, 0):
            return data
        j = data.get("j", 1.0)
        if isinstance(j, bool) or not isinstance(j, int | float):
            return data  # j's own validation reports it
        value = data["kb2"]
        dim = f"1/([volume][time])/([mass]/[volume])**{j:g}"
        example = f"1/(m**3*s)/(kg/m**3)**{j:g}"
        if units_required(info) and is_bare(value):
            raise ValueError(needs_unit("kb2", value, dim, example))
        try:
            return {**data, "kb2": si(value, f"1/(m**3*s)/(kg/m**3)**{j:g}")}
        except UnitError:
            raise ValueError(f"kb2 '{value}' needs a unit of dimension {dim}, e.g. "
                             f"'{example}'") from None


# state layout: c, mu0..mu4, T, then outflow integrals of c and mu0..mu4
_C, _MU, _T, _CUM = 0, slice(1, 6), 6, slice(7, 13)
_NSTATE = 13
_NON_NEGATIVE = [_C, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]
"""The state values that are never below zero: solute, moments and their outflow integrals
(every one but the temperature)."""
_GAMMA = float(_integrate._GAMMA)
_DYNAMIC = 7
"""The states that feed back into the rates (solute, moments, temperature); the outflow
integrals after them never do."""


def _power(x: float, e: float) -> float:
    """``x ** e`` as numpy computes it for float64 arrays: numpy's power (a vector library
    on AVX-512 machines) and the C library's pow behind Python's ``**`` differ in the last
    bit for some inputs, and the finite-difference Jacobian turns a last-bit difference of a
    rate into a 1e-9 relative difference of a Jacobian entry. The exponents 1 and 2 (the
    usual ones) are exact products, as numpy's are; any other goes through numpy."""
    if e == 1.0:
        return x
    if e == 2.0:
        return x * x
    return float(np.power(x, e))


class _Kinetics:
    """Nucleation, growth and supersaturation of one crystallizer at a given antisolvent
    fraction, on Python floats.

    Why floats: the crystallizer integrates one small system per step, and numpy's call
    overhead (about a microsecond per operation on a one-element array) made the kinetics
    cost more than all the arithmetic of the step. The parameters are read at construction
    (the crystallizer builds one again when they or the antisolvent fraction change: a
    changed parameter takes effect at the next step, as before), and the operations are
    those the array form had, in the same order, so every rate is the same to the last
    bit.
    """

    __slots__ = ("_at_last", "_at_other", "_b1", "_b2", "_ea", "_exponent", "_fixed_b",
                 "_fixed_g", "_g", "_inv_tref", "_j", "_kb1", "_kb2", "_kg", "_rk", "_sol",
                 "factor")

    def __init__(self, p: MsmprParams, rk: float, phi: float) -> None:
        self._sol = p.solubility
        self._exponent = p.solubility.antisolvent_exponent
        self.factor = 1.0
        """The antisolvent's factor on c*, exp(-antisolvent_exponent * phi)."""
        self.set_fraction(phi)
        self._fixed_g, self._fixed_b = p.fixed_growth_rate, p.fixed_nucleation_rate
        self._kg, self._g = p.kg, p.g
        self._ea = -p.growth_activation_energy / R_GAS
        self._inv_tref = 1.0 / p.reference_temperature
        self._kb1, self._b1, self._kb2, self._b2, self._j = p.kb1, p.b1, p.kb2, p.b2, p.j
        self._rk = rk
        # (temperature, c*, Arrhenius factor) of the last two temperatures evaluated
        self._at_last = self._at_other = (math.nan, math.nan, math.nan)

    def set_fraction(self, phi: float) -> None:
        """Take the antisolvent fraction ``phi`` (the kept c* values do not depend on it)."""
        self.factor = math.exp(-self._exponent * phi)

    @property
    def reads_mu3(self) -> bool:
        """Whether B depends on mu3 (secondary nucleation through the suspension density)."""
        return self._fixed_b is None and self._kb2 != 0.0

    def solubility(self, temp: float) -> float:
        """c* at ``temp`` (see :meth:`_at`)."""
        return self._at(temp)[1] * self.factor

    def _at(self, temp: float) -> tuple[float, float, float]:
        """(temp, c* without antisolvent, the growth's Arrhenius factor) at ``temp``; the
        last two temperatures' are kept.

        Why two: both depend on the temperature only (the antisolvent's factor is applied
        after, the operations of :meth:`Solubility.at`), and a step evaluates the rates four
        times at a few temperatures; in steady production the vessel's temperature stays
        the same, so the temperature and the Jacobian's perturbed one are all a step (and
        the next, the kinetics being kept: see ``MsmprCrystallizer._kinetics``) asks
        for, while the antisolvent fraction still moves."""
        kept = self._at_last
        if temp == kept[0]:
            return kept
        other = self._at_other
        if temp == other[0]:
            self._at_last, self._at_other = other, kept
            return other
        arrhenius = math.nan
        if self._fixed_g is None:
            arg = self._ea * (1.0 / temp - self._inv_tref)
            arrhenius = 1.0 if arg == 0.0 else float(np.exp(arg))
        new = (temp, self._sol.unmixed(temp), arrhenius)
        self._at_last, self._at_other = new, kept
        return new

    def __call__(self, c: float, temp: float, mu3: float) -> tuple[float, float, float]:
        """(B, G, sigma) at solute ``c``, ``temp`` and third moment ``mu3``.

        The exponents 1 and 2 are written out (as :func:`_power` does, the same values):
        several evaluations per step, and a function call per power was a fifth of each."""
        kept = self._at_last
        _, cs, arrhenius = kept if temp == kept[0] else self._at(temp)
        cs = cs * self.factor
        d = c - cs
        sigma = (0.0 if d < 0.0 else d) / cs  # max(d, 0.0), NaN kept
        if self._fixed_g is not None:
            g = self._fixed_g
        else:
            e = self._g
            sg = sigma if e == 1.0 else sigma * sigma if e == 2.0 else _power(sigma, e)
            g = self._kg * sg * arrhenius
        if self._fixed_b is not None:
            b = self._fixed_b
        else:
            e = self._b1
            b = self._kb1 * (sigma if e == 1.0 else sigma * sigma if e == 2.0
                             else _power(sigma, e))
            if self._kb2 != 0.0:  # else the term adds +0.0: the same value
                mt = max(self._rk * mu3, 0.0)
                b = b + self._kb2 * _power(sigma, self._b2) * _power(mt, self._j)
        return b, g, sigma


class _Jacobian:
    """The crystallizer's Jacobian J = df/dy at one state, by its entries that are not zero.

    Why by entries: the system's structure fixes where J is not zero, and most of those
    entries are coefficients the rates are linear in (the growth terms k G mu_(k-1), the
    washout q). Only the dependence of B and G on the solute, the temperature and mu3 is
    non-linear; it is differenced (forward, the perturbations the full difference Jacobian
    used), the rest is written down. Differencing the whole right-hand side, as before, took
    seven evaluations of it and gave the linear coefficients with a difference noise of
    about 1e-9 of themselves; and what is left is what :class:`_Factored` eliminates by
    hand.

    Entries (k = 1..4; q washout rate, kappa the wall's):

    - d(mu0')/d(c, mu3, T) = ``bc``, ``bm3``, ``bt``; d(mu_k')/d(c, T) = k ``gc``, k ``gt``
      times mu_(k-1); d(mu_k')/d(mu_(k-1)) = k G; d(mu_k')/d(mu_k) = -q
    - the solute's row from the conservation law (solute + rho_c kv / M (mu3 + its outflow)
      + solute outflow: w.J = 0), as before, so ROS2 keeps that invariant to round-off:
      d(c')/dc = -(q + rk_m 3 gc mu2), d(c')/d(mu2) = -rk_m 3 G, d(c')/dT = -rk_m 3 gt mu2,
      d(c')/d(mu3) = 0
    - d(T')/dT = -(q + kappa), and nothing else in the heat balance
    - the outflow integrals: q on their own state's column; no column of their own (nothing
      depends on them)
    """

    __slots__ = ("bc", "bm3", "bt", "g", "gc", "gt", "kappa", "mu", "q", "rk_m")

    def __init__(self, q: float, kappa: float, rk_m: float, mu: list[float], g: float,
                 gc: float, gt: float, bc: float, bm3: float, bt: float) -> None:
        self.q, self.kappa, self.rk_m, self.mu = q, kappa, rk_m, mu
        """``mu``: mu0..mu3 of the state (the coefficients of the growth's derivatives)."""
        self.g, self.gc, self.gt, self.bc, self.bm3, self.bt = g, gc, gt, bc, bm3, bt

    def dense(self) -> FloatArray:
        """The 13 x 13 matrix, for checking the structured solve against a dense one."""
        j = np.zeros((_NSTATE, _NSTATE))
        q, g, mu = self.q, self.g, self.mu
        j[1, _C], j[1, 4], j[1, _T], j[1, 1] = self.bc, self.bm3, self.bt, -q
        for k in range(1, 5):
            j[1 + k, _C] = k * self.gc * mu[k - 1]
            j[1 + k, _T] = k * self.gt * mu[k - 1]
            j[1 + k, k] = k * g
            j[1 + k, 1 + k] = -q
        j[_C, _C] = -(q + self.rk_m * (3.0 * self.gc * mu[2]))
        j[_C, 3] = -self.rk_m * (3.0 * g)
        j[_C, _T] = -self.rk_m * (3.0 * self.gt * mu[2])
        j[_T, _T] = -(q + self.kappa)
        for k in range(6):
            j[7 + k, k] = q
        return j


class _Factored:
    """W = I - a J (a = gamma h, J a :class:`_Jacobian`) factored by its structure, and its
    solve: what ROS2 solves twice per step.

    Why not LAPACK: W is 13 x 13, and at one step per control interval numpy's solve cost
    more in call overhead (two solves and building W: about a third of the crystallizer's
    step) than the few dozen operations its structure leaves:

    - the temperature's row has only its diagonal (the heat balance reads nothing else):
      solved first, its column then moved to the right-hand side;
    - the moments form a chain: mu_k's row reads mu_(k-1), mu_k, c and T; mu0's row reads c,
      T and mu3 (secondary nucleation); the solute's row reads c, mu2 and T. With c and mu3
      as unknowns, substitution down the chain gives mu0, mu1, mu2 as affine functions of
      them, and the rows of mu3 and c leave a 2 x 2 system (pivoted on the solute's
      coefficient, which is at least 1: every term of it is positive);
    - the outflow integrals' rows read only their own state, and their columns are empty:
      substituted last.

    The divisors are 1 + a q (at least 1) and the 2 x 2 system's pivots; a zero one (a
    singular W) raises ZeroDivisionError, which :meth:`_Vessel.ros2_step` turns into a
    refused step.
    """

    __slots__ = ("_coef",)

    def __init__(self, jac: _Jacobian, a: float) -> None:
        mu0, mu1, mu2, mu3 = jac.mu
        gc, gt, g = a * jac.gc, a * jac.gt, a * jac.g
        aq = a * jac.q
        d = 1.0 + aq
        d_t = 1.0 + a * (jac.q + jac.kappa)
        s0, s1, s2, s3, s4 = a * jac.bc, gc * mu0, 2.0 * gc * mu1, 3.0 * gc * mu2, 4.0 * gc * mu3
        t0, t1, t2, t3, t4 = a * jac.bt, gt * mu0, 2.0 * gt * mu1, 3.0 * gt * mu2, 4.0 * gt * mu3
        e1, e2, e3, e4 = g, 2.0 * g, 3.0 * g, 4.0 * g
        v = a * jac.bm3
        w_cc = 1.0 + a * (jac.q + jac.rk_m * (3.0 * jac.gc * mu2))
        w_c2 = a * (jac.rk_m * (3.0 * jac.g))
        w_ct = a * (jac.rk_m * (3.0 * jac.gt * mu2))
        # mu_k = p_k + u_k c + v_k mu3 (k = 0..2); p_k depends on the right-hand side only
        u0, v0 = s0 / d, v / d
        u1, v1 = (s1 + e1 * u0) / d, e1 * v0 / d
        u2, v2 = (s2 + e2 * u1) / d, e2 * v1 / d
        # rows c and mu3 in (c, mu3): [a11 a12; a21 a22]
        a11, a12 = w_cc + w_c2 * u2, w_c2 * v2
        a21, a22 = -(s3 + e3 * u2), d - e3 * v2
        r21 = a21 / a11
        schur = a22 - r21 * a12
        self._coef = (d, d_t, aq, s0, s1, s2, s4, t0, t1, t2, t3, t4, e1, e2, e3, e4, v, w_c2,
                      w_ct, a11, a12, r21, schur)

    def solve(self, r: list[float]) -> list[float]:
        """x with W x = r."""
        (d, d_t, aq, s0, s1, s2, s4, t0, t1, t2, t3, t4, e1, e2, e3, e4, v, w_c2, w_ct, a11,
         a12, r21, schur) = self._coef
        x_t = r[6] / d_t
        r0, r1, r2 = r[1] + t0 * x_t, r[2] + t1 * x_t, r[3] + t2 * x_t
        p0 = r0 / d
        p1 = (r1 + e1 * p0) / d
        p2 = (r2 + e2 * p1) / d
        b1 = r[0] - w_ct * x_t - w_c2 * p2
        b2 = r[4] + t3 * x_t + e3 * p2
        x3 = (b2 - r21 * b1) / schur
        xc = (b1 - a12 * x3) / a11
        x0 = (r0 + s0 * xc + v * x3) / d
        x1 = (r1 + s1 * xc + e1 * x0) / d
        x2 = (r2 + s2 * xc + e2 * x1) / d
        x4 = (r[5] + t4 * x_t + s4 * xc + e4 * x3) / d
        return [xc, x0, x1, x2, x3, x4, x_t, r[7] + aq * xc, r[8] + aq * x0, r[9] + aq * x1,
                r[10] + aq * x2, r[11] + aq * x3, r[12] + aq * x4]


class _Vessel:
    """The crystallizer's ODE for one step's inlet, and its ROS2 step, on Python floats.

    Why not the batched numpy form (``ros2_step``): the system is one vessel of 13 states,
    so numpy's per-call overhead, not arithmetic, was the cost (some 100 operations on
    one-row arrays per step: about half of the lomustine line's CPU time in production).
    The right-hand side and the ROS2 formulas are :func:`ros2_step`'s; the Jacobian is
    written down where the rates are linear and differenced only through B and G
    (:class:`_Jacobian`), and the linear solves eliminate by the system's structure
    (:class:`_Factored`). Both differ from the former full difference Jacobian and LAPACK
    solves by round-off and difference noise (about 1e-9 of a Jacobian entry), which ROS2
    damps: the results agree with theirs to far below what the tolerances of the models'
    tests ask (see docs/simulators.md, "Speed of the lomustine line").
    """

    __slots__ = ("_c_in", "_kappa", "_mu_in", "_q", "_rk_m", "_rk_m3", "_t_in", "kin", "tj")

    def __init__(self, kin: _Kinetics, s: Stream, q_v: float, kappa: float, c_in: float,
                 rk_m: float) -> None:
        self.kin = kin
        self.tj = 0.0
        """Jacket temperature over the sub-step (set by the caller before each step)."""
        self._q, self._kappa, self._c_in, self._t_in = q_v, kappa, c_in, s.temperature
        self._mu_in: list[float] = (s.solids.moments.tolist() if s.solids is not None
                                    else [0.0] * 5)
        self._rk_m, self._rk_m3 = rk_m, rk_m * 3.0

    def rates(self, y: list[float], b: float, g: float) -> list[float]:
        """dy/dt at ``y`` for nucleation rate ``b`` and growth rate ``g`` (module docstring)."""
        c, m0, m1, m2, m3, m4, temp = y[:_DYNAMIC]
        q, mi = self._q, self._mu_in
        return [
            q * (self._c_in - c) - self._rk_m3 * g * m2,
            b + q * (mi[0] - m0),
            g * m0 + q * (mi[1] - m1),
            2.0 * g * m1 + q * (mi[2] - m2),
            3.0 * g * m2 + q * (mi[3] - m3),
            4.0 * g * m3 + q * (mi[4] - m4),
            q * (self._t_in - temp) + self._kappa * (self.tj - temp),
            q * c, q * m0, q * m1, q * m2, q * m3, q * m4,
        ]

    def f(self, y: list[float]) -> list[float]:
        b, g, _ = self.kin(y[_C], y[_T], y[4])
        return self.rates(y, b, g)

    def jacobian(self, y: list[float]) -> tuple[_Jacobian, list[float]]:
        """The Jacobian at ``y`` (:class:`_Jacobian`) and f(y), which ROS2 needs too.

        B and G are differenced forward in the solute, the temperature and (where B reads
        it: secondary nucleation) mu3, with the perturbations of a full difference
        Jacobian, 1e-7 of the value."""
        kin = self.kin
        c, temp, m3 = y[_C], y[_T], y[4]
        b0, g0, _ = kin(c, temp, m3)
        f0 = self.rates(y, b0, g0)
        eps = 1e-7 * (abs(c) + 1e-12) + 1e-30
        b, g, _ = kin(c + eps, temp, m3)
        bc, gc = (b - b0) / eps, (g - g0) / eps
        eps = 1e-7 * (abs(temp) + 1e-12) + 1e-30
        b, g, _ = kin(c, temp + eps, m3)
        bt, gt = (b - b0) / eps, (g - g0) / eps
        bm3 = 0.0
        if kin.reads_mu3:
            eps = 1e-7 * (abs(m3) + 1e-12) + 1e-30
            bm3 = (kin(c, temp, m3 + eps)[0] - b0) / eps
        return _Jacobian(self._q, self._kappa, self._rk_m, y[1:5], g0, gc, gt, bc, bm3,
                         bt), f0

    def ros2_step(self, y: list[float], h: float) -> list[float]:
        """One ROS2 step of ``h`` (:func:`ros2_step`'s formulas). A division by zero (a zero
        temperature, a singular W) gives NaN states, which the caller refuses like any
        other non-physical step."""
        try:
            return self._ros2(y, h)
        except (ZeroDivisionError, OverflowError):
            return [math.nan] * _NSTATE

    def _ros2(self, y: list[float], h: float) -> list[float]:
        jac, f0 = self.jacobian(y)
        w = _Factored(jac, _GAMMA * h)
        k1 = w.solve(f0)
        # the rates read the first _DYNAMIC states only
        f1 = self.f([y[i] + h * k1[i] for i in range(_DYNAMIC)])
        k2 = w.solve([fi - 2.0 * ki for fi, ki in zip(f1, k1, strict=True)])
        h1, h2 = 1.5 * h, 0.5 * h
        return [yi + h1 * a1 + h2 * a2 for yi, a1, a2 in zip(y, k1, k2, strict=True)]


@register_model
class MsmprCrystallizer(UnitModel):
    """Continuous cooling/antisolvent crystallizer; inlets ``feed`` and ``antisolvent``."""

    kind = "msmpr"
    state_units: ClassVar[dict[str, str]] = {
        "temperature": "K",
        "jacket_temperature": "K",
        "concentration": "mol/m**3",
        "solubility": "mol/m**3",
        "supersaturation": "",
        "nucleation_rate": "1/(m**3*s)",
        "growth_rate": "m/s",
        "mu0": "1/m**3",
        "mu1": "m/m**3",
        "mu2": "m**2/m**3",
        "mu3": "m**3/m**3",
        "mu4": "m**4/m**3",
        "L10": "m",
        "L43": "m",
        "suspension_density": "kg/m**3",
        "crystal_mass_flow": "kg/s",
        "yield": "",
        "residence_time": "s",
        "wall_heat_duty": "W",
    }
    Params = MsmprParams
    inputs: ClassVar[dict[str, str]] = {"jacket_temperature": "K"}
    temperature_states: ClassVar[dict[str, str]] = {
        "jacket_temperature": "jacket temperature", "T": "vessel temperature"}
    inlets = ("feed", "antisolvent")
    outlets = ("product",)

    def __init__(self, name: str, species: SpeciesTable, params: MsmprParams) -> None:
        super().__init__(name, species, params)
        self.p = params
        self._i = species.index(params.solute)
        self._candidates = [species.index(n) for n in dict.fromkeys([params.solute,
                                                                       *params.solutes])]
        self._ias = species.index(params.antisolvent) if params.antisolvent else None
        k = self._ias or 0
        self._ias_m_rho = (float(species.molar_mass[k]), float(species.density[k]))
        self._m = float(species.molar_mass[self._i])
        self._rk = params.crystal_density * params.shape_factor
        # the last inlets mixed, their mix and its rho*cp (see _mixed_inlets)
        self._mixed: tuple[Stream, Stream, Stream, float] | None = None
        self.c = np.zeros(len(species))
        self.mu = np.zeros(5)
        self.T = params.initial_temperature
        self.jacket_temperature = params.jacket_temperature
        self.flow = 0.0
        self.wall_heat_duty = 0.0
        self._rho_cp = 4.18e6
        self._c_in_solute = 0.0
        self._B = self._G = self._sigma = 0.0
        # the kinetics and the state (c, T, mu3) B, G and sigma are still to be evaluated at
        # (see _kinetic_values)
        self._pending: tuple[_Kinetics, float, float, float, float] | None = None
        # the kinetics of the last step and what they were built from (see _kinetics)
        self._kept_kinetics: tuple[tuple[Any, ...], _Kinetics] | None = None
        if params.cooling_profile:
            ts = [t for t, _ in params.cooling_profile]
            if any(b < a for a, b in itertools.pairwise(ts)):
                raise ValueError("cooling_profile times must increase")

    @property
    def solute(self) -> str:
        """The species crystallizing now."""
        return self.species.names[self._i]

    def _select_solute(self, feed: FloatArray) -> None:
        """Follow a product changeover: when another of the ``solutes`` arrives at a higher
        concentration than the current one, it becomes the crystallizing species. One crystal
        population is modelled, so crystals still suspended at that moment are taken as
        dissolved into the liquid (mass conserved exactly); flushing the line first, as a
        changeover does, leaves few of them."""
        if len(self._candidates) < 2:
            return
        # the first candidate of the highest concentration, if higher than the current's
        # (what max() over the candidates and a comparison gave, without a key function
        # and numpy scalars: this runs at every step)
        values = feed.tolist()
        best = self._i
        top = values[best]
        for k in self._candidates:
            if values[k] > top:
                best, top = k, values[k]
        if best == self._i:
            return
        self.c[self._i] += self._rk * float(self.mu[3]) / self._m
        self.mu = np.zeros(5)
        self._i = best
        self._m = float(self.species.molar_mass[best])

    # -- properties -----------------------------------------------------------------------
    def _phi(self, conc: FloatArray) -> float:
        """The antisolvent's volume fraction (its molar mass and density as floats: the
        same operations as on numpy's scalars, and this runs at every step)."""
        if self._ias is None:
            return 0.0
        m, rho = self._ias_m_rho
        return float(conc[self._ias]) * m / rho

    def solubility(self, temp: float | None = None, phi: float | None = None) -> float:
        """c* in mol/m3 at ``temp`` (default: current) and antisolvent fraction ``phi``."""
        return float(
            self.p.solubility(
                self.T if temp is None else temp, self._phi(self.c) if phi is None else phi
            )
        )

    def _jacket(self, t: float) -> float:
        prof = self.p.cooling_profile
        if prof:
            return float(np.interp(t, [a for a, _ in prof], [b for _, b in prof]))
        return self.jacket_temperature

    # -- dynamics ---------------------------------------------------------------------------
    def _vessel(self, s: Stream, phi: float) -> _Vessel:
        return _Vessel(self._kinetics(phi), s, self.flow / self.p.volume,
                       self.p.ua / (self._rho_cp * self.p.volume), self._c_in_solute,
                       self._rk / self._m)

    def _kinetics(self, phi: float) -> _Kinetics:
        """The kinetics at antisolvent fraction ``phi``, kept while every value they were
        built from is the same (the parameters' fields, the solubility's, its coefficients:
        an edit in place counts, as it did when they were built every step).

        Why: the kinetics keep c* (without the antisolvent's factor) and the Arrhenius
        factor of the last two temperatures (:meth:`_Kinetics._at`). Built anew each step,
        they evaluated c* three times per step; kept, a crystallizer at a steady
        temperature (production, while its moments and antisolvent fraction still settle)
        evaluates it no more."""
        p = self.p
        sol = p.solubility
        key = (tuple(vars(p).values()), tuple(vars(sol).values()), tuple(sol.coefficients))
        kept = self._kept_kinetics
        if kept is None or kept[0] != key:
            kept = self._kept_kinetics = (key, _Kinetics(p, self._rk, phi))
        kin = kept[1]
        kin.set_fraction(phi)
        return kin

    def _mixed_inlets(self, feed: Stream, antisolvent: Stream) -> tuple[Stream, float]:
        """The mixed inlet and its volumetric heat capacity, kept while the two inlets are
        the same stream objects (streams are frozen): in steady production they are, and
        mixing them again was a good part of a step that is integrated every time."""
        kept = self._mixed
        if kept is None or kept[0] is not feed or kept[1] is not antisolvent:
            s = mix([feed, antisolvent], self.species, AMBIENT_PRESSURE)
            rho_cp = s.volumetric_heat_capacity if s.flow > 0 else 0.0
            kept = self._mixed = (feed, antisolvent, s, rho_cp)
        return kept[2], kept[3]

    def _step(self, dt: float, inlets: dict[str, Stream]) -> dict[str, Stream]:
        s, rho_cp = self._mixed_inlets(inlets["feed"], inlets["antisolvent"])
        self.flow = s.flow
        if s.flow > 0:
            self._rho_cp = rho_cp
        self._select_solute(s.conc)
        self._c_in_solute = float(s.conc[self._i])
        phi = self._phi(self.c)
        n_sub = max(1, math.ceil(dt / self.p.max_substep - 1e-9))
        h = dt / n_sub
        vessel = self._vessel(s, phi)
        y = [float(self.c[self._i]), *self.mu.tolist(), self.T] + [0.0] * 6
        for i in range(n_sub):
            y = self._advance(s, vessel, y, self.time + i * h, h)
        self.jacket_temperature = self._jacket(self.time + dt)
        # other species: exact CSTR washout
        vol = self.p.volume
        q_v = self.flow / vol
        # 1 - exp(-x) by expm1: at a small flow, 1.0 - exp(-x) cancels to a few digits and
        # the outflow came out negative (a negative outlet concentration, a mass residual)
        washed = -math.expm1(-q_v * dt)
        c_in = s.conc
        excess = self.c - c_in
        self.c = c_in + excess * (1.0 - washed)
        self.c[self._i] = y[_C]
        self.mu = np.array(y[_MU])
        self.T = y[_T]
        self._pending = (vessel.kin, vessel.kin.factor, y[_C], y[_T], y[4])
        self.wall_heat_duty = self.p.ua * (self.T - self.jacket_temperature)
        if self.flow > 0.0:
            # step averages: what flowed in, plus what the holdup lost, per volume that left
            fdt = self.flow * dt
            conc = c_in + excess * (vol * washed / fdt)
            conc[self._i] = y[7] * vol / fdt
            mom = np.array([m * vol / fdt for m in y[8:]])
        else:
            conc, mom = self.c.copy(), self.mu.copy()
        solids = Solids(mom, self.p.crystal_density, self.p.shape_factor)
        return {"product": Stream(self.species, self.flow, self.T, AMBIENT_PRESSURE, conc, solids)}

    #: halvings of one sub-step before it is refused (h / 4096: about 7 ms at 30 s)
    _MAX_HALVINGS = 12

    def _advance(self, s: Stream, vessel: _Vessel, y: list[float], t0: float, h: float,
                 depth: int = 0) -> list[float]:
        """One ROS2 step of ``h`` from ``t0``, halved where it would leave the physical set.

        Why: ROS2 is linearly implicit and not positivity preserving. At the onset of
        nucleation the rates grow by orders of magnitude within one sub-step (B ~ sigma^b1
        from zero moments), the linearisation overshoots and the moments come out negative
        (a mean size of -24 um, a negative suspension density and crystal flow were
        recorded). The exact moments are never negative (B, G >= 0 make every mu_j >= 0) and
        the solute never drops below zero, so a step that gives a negative value is too long
        for the local dynamics: it is rejected and taken as two halves. Every accepted step
        conserves the solute + crystal + outflow invariant, so the mass balance still closes
        to round-off.

        After ``_MAX_HALVINGS`` halvings (``h`` / 4096) a step is accepted only if what it
        leaves below zero is negligible (:meth:`_negligible`): from exactly zero moments the
        higher moments' overshoot shrinks with the step as fast as their true values (mu_j ~
        h^(j+1) at the onset), so halving never makes it vanish, though it is some 1e-29 of
        a meaningful value (the lomustine line's start-up gives such steps). Anything larger
        raises :class:`ModelStateError`: it used to be accepted as it was, and the negative
        moments or solute went on to the outlet and the sensors as if measured. Kinetics
        that change by orders of magnitude within milliseconds are not something a smaller
        step repairs; the simulation stops where it happened and names what to change.
        """
        vessel.tj = self._jacket(t0 + 0.5 * h)
        out = vessel.ros2_step(y, h)
        if self._physical(y, out):
            return out
        if depth >= self._MAX_HALVINGS:
            before, after = np.array([y]), np.array([out])
            if self._negligible(s, before, after, h):
                return out
            raise ModelStateError(self.name, t0,
                                  self._unphysical(vessel, before, after, h, depth))
        half = 0.5 * h
        mid = self._advance(s, vessel, y, t0, half, depth + 1)
        return self._advance(s, vessel, mid, t0 + half, half, depth + 1)

    _STATE_NAMES = ("solute concentration", "mu0", "mu1", "mu2", "mu3", "mu4", "temperature",
                    "solute outflow", "mu0 outflow", "mu1 outflow", "mu2 outflow",
                    "mu3 outflow", "mu4 outflow")

    def _unphysical(self, vessel: _Vessel, before: FloatArray, after: FloatArray, h: float,
                    depth: int) -> str:
        """The message of a refused step: which value went negative or non-finite, from
        what, at which supersaturation, and what to change, so that whoever reads the error
        can act on it without reading the integrator."""
        bad = self._below_zero(before, after)
        if bad.any():
            k = _NON_NEGATIVE[int(np.argmax(bad))]
            what = (f"{self._STATE_NAMES[k]} {float(before[0, k]):.6g} -> "
                    f"{float(after[0, k]):.6g}, below zero or not finite")
        else:
            what = "refused by the admissibility check"
        _, _, sig = vessel.kin(float(before[0, _C]), float(before[0, _T]), float(before[0, 4]))
        return (
            f"the crystallization of '{self.solute}' admits no step of {h:.3g} s after "
            f"{depth} halvings of the sub-step ({what}; supersaturation {sig:.3g}); "
            "the nucleation or growth kinetics are too fast for this crystallizer's "
            "integration: check kb1/b1, kb2/b2/j and kg/g (their units and exponents) and "
            "the solubility, or lower max_substep")

    #: m: the crystal size below which a moment's value is taken as nothing (a micron; the
    #: sizes a crystallizer is run for are 1 to 1000 um)
    _SIZE_SCALE = 1e-6
    #: fraction of a reference value (:meth:`_negligible`) a negative value may reach
    _NEGLIGIBLE = 1e-9

    def _negligible(self, s: Stream, before: FloatArray, after: FloatArray, h: float) -> bool:
        """Whether every negative solute, moment or outflow value of ``after`` is at most
        ``_NEGLIGIBLE`` of its reference: the solute's of the larger of the feed's and the
        vessel's concentration, mu3's of all of that solute as crystals (or the feed's or
        vessel's mu3 if larger), mu_j's of mu3's at ``_SIZE_SCALE`` (mu3 / L^(3-j)), the
        outflow integrals' of their state's flowing out over ``h``. At 1e-9 of a micron
        population, mu0 may read -3 crystals per mL of a line with a few mol/m3 of solute:
        nothing a sensor or a balance can see. Not finite is never negligible."""
        if not np.all(np.isfinite(after)):
            return False
        mu_in = s.solids.moments if s.solids is not None else np.zeros(5)
        c_ref = max(float(s.conc[self._i]), abs(float(before[0, _C])))
        mu3_ref = max(self._m * c_ref / self._rk, abs(float(before[0, 4])), float(mu_in[3]))
        ref = np.empty(_NSTATE)
        ref[_C] = c_ref
        ref[_MU] = mu3_ref * self._SIZE_SCALE ** (np.arange(5.0) - 3.0)
        ref[_T] = 0.0
        ref[_CUM] = np.concatenate([[c_ref], ref[_MU]]) * self.flow / self.p.volume * h
        return bool(np.all(after[0] >= -self._NEGLIGIBLE * ref))

    @staticmethod
    def _physical(before: list[float], after: list[float]) -> bool:
        """Solute, moments and their outflow integrals non-negative, to round-off of their
        scale in this step (:meth:`_below_zero` on floats: it runs at every step)."""
        for k in _NON_NEGATIVE:
            a = after[k]
            # the scale only for a value below zero (or NaN, which fails both tests)
            if not a >= 0.0 and not a >= -1e-12 * max(abs(before[k]), abs(a)):
                return False
        return True

    @staticmethod
    def _below_zero(before: FloatArray, after: FloatArray) -> npt.NDArray[np.bool_]:
        """Per value of :data:`_NON_NEGATIVE`: below zero beyond round-off of its scale in
        this step, or not finite."""
        with np.errstate(invalid="ignore"):
            scale = np.maximum(np.abs(before[0, _NON_NEGATIVE]),
                               np.abs(after[0, _NON_NEGATIVE]))
            bad: npt.NDArray[np.bool_] = ~(after[0, _NON_NEGATIVE] >= -1e-12 * scale)
        return bad

    @property
    def wall_conductance(self) -> float:
        """W/K: how the wall duty falls per kelvin the jacket warms (UA)."""
        return self.p.ua

    def _dynamic_state(self) -> FloatArray | None:
        # a cooling profile follows the clock: never steady
        if self.p.cooling_profile:
            return None
        return np.concatenate((self.c, self.mu, (self.T,)))

    def _wake_key(self) -> tuple[Any, ...]:
        return (id(self.p), self._i)

    def upstream_pressure(self, outlet_pressures: object) -> float:
        """An open vessel: the feed line ends at atmospheric pressure."""
        return AMBIENT_PRESSURE

    def holdup_mass(self) -> float:
        return self.p.volume * (
            float(self.c @ self.species.molar_mass) + self._rk * float(self.mu[3])
        )

    # -- steady state ------------------------------------------------------------------------
    def _steady(self, inlets: dict[str, Stream]) -> dict[str, Stream]:
        # scipy with the solve, not the module: `validate` builds the models without it
        from scipy.optimize import brentq

        s = mix([inlets["feed"], inlets["antisolvent"]], self.species, AMBIENT_PRESSURE)
        if s.flow <= 0.0:
            raise ValueError(f"{self.name}: a steady state needs a positive feed flow")
        if s.solids is not None and np.any(s.solids.moments > 0):
            raise ValueError(f"{self.name}: steady state with seeded feed is not supported")
        self.flow, self._rho_cp = s.flow, s.volumetric_heat_capacity
        self.mu = np.zeros(5)
        self._select_solute(s.conc)
        tau = self.p.volume / s.flow
        tj = self._jacket(self.time)
        w = s.flow * self._rho_cp
        self.T = (w * s.temperature + self.p.ua * tj) / (w + self.p.ua)
        phi = self._phi(s.conc)
        c_in = float(s.conc[self._i])
        self._c_in_solute = c_in
        kinetics = _Kinetics(self.p, self._rk, phi)

        def moments(c: float) -> FloatArray:
            mt = self._m * (c_in - c)  # suspension density from the solute balance
            b, g, _ = kinetics(c, self.T, mt / self._rk)
            mu = np.empty(5)
            mu[0] = b * tau
            for k in range(1, 5):
                mu[k] = k * g * tau * mu[k - 1]
            return mu

        fixed = self.p.fixed_growth_rate is not None and self.p.fixed_nucleation_rate is not None
        cs = float(self.p.solubility(self.T, phi))
        if fixed:
            mu = moments(c_in)
            c = c_in - self._rk * mu[3] / self._m
        elif c_in > cs:
            c = brentq(
                lambda x: self._rk * moments(x)[3] - self._m * (c_in - x),
                cs,
                c_in,
                xtol=1e-12 * max(c_in, 1.0),
                rtol=1e-12,
            )
            mu = moments(c)
        else:
            c, mu = c_in, np.zeros(5)
        self.c = s.conc.copy()
        self.c[self._i] = c
        self.mu = mu
        self._B, self._G, self._sigma = kinetics(float(c), self.T, float(mu[3]))
        self._pending = None
        self.wall_heat_duty = self.p.ua * (self.T - tj)
        solids = Solids(mu.copy(), self.p.crystal_density, self.p.shape_factor)
        return {
            "product": Stream(
                self.species, self.flow, self.T, AMBIENT_PRESSURE, self.c.copy(), solids
            )
        }

    # -- state -----------------------------------------------------------------------------------
    def _kinetic_values(self) -> tuple[float, float, float]:
        """B, G and sigma of the state after the last step, evaluated when first read.

        Why not at the end of each step: nothing in the step reads them, only
        :meth:`state` does, and a line stepped faster than it is read (a what-if, a
        benchmark) paid the evaluation, a new solubility among it, at every step. The
        step's kinetics object and state are kept, so the values are those an evaluation
        at the end of the step gave."""
        pending = self._pending
        if pending is not None:
            kin, factor, c, temp, mu3 = pending
            kin.factor = factor  # the step's (the kinetics are kept, see _kinetics)
            self._B, self._G, self._sigma = kin(c, temp, mu3)
            self._pending = None
        return self._B, self._G, self._sigma

    def state(self) -> dict[str, float]:
        b, g, sigma = self._kinetic_values()
        mu = self.mu
        solid_molar = self._rk * float(mu[3]) / self._m
        fed = self._c_in_solute
        return {
            "temperature": self.T,
            "jacket_temperature": self.jacket_temperature,
            "concentration": float(self.c[self._i]),
            "solubility": self.solubility(),
            "supersaturation": sigma,
            "nucleation_rate": b,
            "growth_rate": g,
            "mu0": float(mu[0]),
            "mu1": float(mu[1]),
            "mu2": float(mu[2]),
            "mu3": float(mu[3]),
            "mu4": float(mu[4]),
            "L10": float(mu[1] / mu[0]) if mu[0] > 0 else 0.0,
            "L43": float(mu[4] / mu[3]) if mu[3] > 0 else 0.0,
            "suspension_density": self._rk * float(mu[3]),
            "crystal_mass_flow": self._rk * float(mu[3]) * self.flow,
            "yield": solid_molar / fed if fed > 0 else 0.0,
            "residence_time": self.p.volume / self.flow if self.flow > 0 else math.inf,
            "wall_heat_duty": self.wall_heat_duty,
        }


__all__ = ["MsmprCrystallizer", "MsmprParams", "Solubility"]

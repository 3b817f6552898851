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
Dynamic integration: ROS2 (batched Rosenbrock, finite-difference Jacobian) with sub-steps of at
most ``max_substep``; outflow integrals are carried as extra states so mass closes to
round-off. Other dissolved species wash out by the exact exponential of a CSTR.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from modulecontrol.units import UnitError

from ._base import ModelStateError, UnitModel, register_model
from ._integrate import FloatArray, ros2_step
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
        if self.kind == "polynomial":
            x = temp - self.reference_temperature
            base = 0.0 * x
            for a in reversed(self.coefficients):  # Horner
                base = base * x + a
        else:
            a, b, c = ([*list(self.coefficients), 0.0, 0.0, 0.0])[:3]
            base = np.exp(a + b / temp + c * np.log(temp))
        out: float | FloatArray = np.maximum(base, 1e-12) * math.exp(
            -self.antisolvent_exponent * phi
        )
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
_K = np.arange(1.0, 5.0)


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
        self._m = float(species.molar_mass[self._i])
        self._rk = params.crystal_density * params.shape_factor
        self.c = np.zeros(len(species))
        self.mu = np.zeros(5)
        self.T = params.initial_temperature
        self.jacket_temperature = params.jacket_temperature
        self.flow = 0.0
        self.wall_heat_duty = 0.0
        self._rho_cp = 4.18e6
        self._c_in_solute = 0.0
        self._B = self._G = self._sigma = 0.0
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
        best = max(self._candidates, key=lambda k: float(feed[k]))
        if best == self._i or float(feed[best]) <= float(feed[self._i]):
            return
        self.c[self._i] += self._rk * float(self.mu[3]) / self._m
        self.mu = np.zeros(5)
        self._i = best
        self._m = float(self.species.molar_mass[best])

    # -- properties -----------------------------------------------------------------------
    def _phi(self, conc: FloatArray) -> float:
        if self._ias is None:
            return 0.0
        k = self._ias
        return float(conc[k] * self.species.molar_mass[k] / self.species.density[k])

    def solubility(self, temp: float | None = None, phi: float | None = None) -> float:
        """c* in mol/m3 at ``temp`` (default: current) and antisolvent fraction ``phi``."""
        return float(
            self.p.solubility(
                self.T if temp is None else temp, self._phi(self.c) if phi is None else phi
            )
        )

    def _kinetics(
        self, c: FloatArray, temp: FloatArray, mu3: FloatArray, phi: float
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        p = self.p
        cs = p.solubility(temp, phi)
        sigma = np.maximum(c - cs, 0.0) / cs
        if p.fixed_growth_rate is not None:
            g = np.full_like(c, p.fixed_growth_rate)
        else:
            arr = np.exp(
                -p.growth_activation_energy / R_GAS * (1.0 / temp - 1.0 / p.reference_temperature)
            )
            g = p.kg * sigma**p.g * arr
        if p.fixed_nucleation_rate is not None:
            b = np.full_like(c, p.fixed_nucleation_rate)
        else:
            mt = np.maximum(self._rk * mu3, 0.0)
            b = p.kb1 * sigma**p.b1 + p.kb2 * sigma**p.b2 * mt**p.j
        return b, g, sigma

    def _jacket(self, t: float) -> float:
        prof = self.p.cooling_profile
        if prof:
            return float(np.interp(t, [a for a, _ in prof], [b for _, b in prof]))
        return self.jacket_temperature

    # -- dynamics ---------------------------------------------------------------------------
    def _rhs_factory(self, s: Stream, tj: float, phi: float):  # type: ignore[no-untyped-def]
        q_v = self.flow / self.p.volume
        kappa = self.p.ua / (self._rho_cp * self.p.volume)
        c_in = float(s.conc[self._i])
        mu_in = s.solids.moments if s.solids is not None else np.zeros(5)
        t_in, rk_m = s.temperature, self._rk / self._m

        def f(y: FloatArray) -> FloatArray:
            c, mu, temp = y[:, _C], y[:, _MU], y[:, _T]
            b, g, _ = self._kinetics(c, temp, mu[:, 3], phi)
            out = np.zeros_like(y)
            out[:, _C] = q_v * (c_in - c) - rk_m * 3.0 * g * mu[:, 2]
            out[:, 1] = b + q_v * (mu_in[0] - mu[:, 0])
            out[:, 2:6] = _K * g[:, None] * mu[:, 0:4] + q_v * (mu_in[1:] - mu[:, 1:])
            out[:, _T] = q_v * (t_in - temp) + kappa * (tj - temp)
            out[:, 7] = q_v * c
            out[:, 8:13] = q_v * mu
            return out

        def jac(y: FloatArray) -> tuple[FloatArray, FloatArray]:
            # forward differences over the 7 dynamic states in one batched call; the outflow
            # integrals (columns 7..12) never feed back, so their columns are zero. The
            # unperturbed point is f(y) itself: returned too, ROS2 needs it (one f call less)
            eps = 1e-7 * (np.abs(y[0, :7]) + 1e-12) + 1e-30
            pts = np.repeat(y, 8, axis=0)
            pts[1:, :7] += np.diag(eps)
            fp = f(pts)
            jm = np.zeros((1, _NSTATE, _NSTATE))
            jm[0, :, :7] = ((fp[1:] - fp[0][None, :]) / eps[:, None]).T
            # solute row from the conservation law (w.J = 0 exactly, so ROS2 keeps the
            # solute + crystal + outflow invariant to round-off despite difference noise)
            jm[0, 0] = -(rk_m * jm[0, 4] + jm[0, 7] + rk_m * jm[0, 11])
            return jm, fp[:1]

        return f, jac

    def _step(self, dt: float, inlets: dict[str, Stream]) -> dict[str, Stream]:
        s = mix([inlets["feed"], inlets["antisolvent"]], self.species, AMBIENT_PRESSURE)
        self.flow = s.flow
        if s.flow > 0:
            self._rho_cp = s.volumetric_heat_capacity
        self._select_solute(s.conc)
        self._c_in_solute = float(s.conc[self._i])
        phi = self._phi(self.c)
        n_sub = max(1, math.ceil(dt / self.p.max_substep - 1e-9))
        h = dt / n_sub
        y = np.zeros((1, _NSTATE))
        y[0, _C], y[0, _MU], y[0, _T] = self.c[self._i], self.mu, self.T
        for i in range(n_sub):
            y = self._advance(s, phi, y, self.time + i * h, h)
        self.jacket_temperature = self._jacket(self.time + dt)
        # other species: exact CSTR washout
        q_v = self.flow / self.p.volume
        # 1 - exp(-x) by expm1: at a small flow, 1.0 - exp(-x) cancels to a few digits and
        # the outflow came out negative (a negative outlet concentration, a mass residual)
        washed = -math.expm1(-q_v * dt)
        others = s.conc + (self.c - s.conc) * (1.0 - washed)
        moles_others = self.flow * dt * s.conc + (self.c - s.conc) * self.p.volume * washed
        self.c = others
        self.c[self._i] = y[0, _C]
        self.mu = y[0, _MU].copy()
        self.T = float(y[0, _T])
        b, g, sig = self._kinetics(y[:, _C], y[:, _T], y[:, 4], phi)
        self._B, self._G, self._sigma = float(b[0]), float(g[0]), float(sig[0])
        self.wall_heat_duty = self.p.ua * (self.T - self.jacket_temperature)
        if self.flow > 0.0:
            conc = moles_others / (self.flow * dt)
            conc[self._i] = y[0, 7] * self.p.volume / (self.flow * dt)
            mom = y[0, 8:13] * self.p.volume / (self.flow * dt)
        else:
            conc, mom = self.c.copy(), self.mu.copy()
        solids = Solids(mom, self.p.crystal_density, self.p.shape_factor)
        return {"product": Stream(self.species, self.flow, self.T, AMBIENT_PRESSURE, conc, solids)}

    #: halvings of one sub-step before it is refused (h / 4096: about 7 ms at 30 s)
    _MAX_HALVINGS = 12

    def _advance(self, s: Stream, phi: float, y: FloatArray, t0: float, h: float,
                 depth: int = 0) -> FloatArray:
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
        f, jac = self._rhs_factory(s, self._jacket(t0 + 0.5 * h), phi)
        jm, f0 = jac(y)
        out = ros2_step(f, lambda _y: jm, y, h, f0)
        if self._physical(y, out):
            return out
        if depth >= self._MAX_HALVINGS:
            if self._negligible(s, y, out, h):
                return out
            raise ModelStateError(self.name, t0, self._unphysical(y, out, h, depth, phi))
        half = 0.5 * h
        mid = self._advance(s, phi, y, t0, half, depth + 1)
        return self._advance(s, phi, mid, t0 + half, half, depth + 1)

    _STATE_NAMES = ("solute concentration", "mu0", "mu1", "mu2", "mu3", "mu4", "temperature",
                    "solute outflow", "mu0 outflow", "mu1 outflow", "mu2 outflow",
                    "mu3 outflow", "mu4 outflow")

    def _unphysical(self, before: FloatArray, after: FloatArray, h: float, depth: int,
                    phi: float) -> str:
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
        _, _, sig = self._kinetics(before[:, _C], before[:, _T], before[:, 4], phi)
        return (
            f"the crystallization of '{self.solute}' admits no step of {h:.3g} s after "
            f"{depth} halvings of the sub-step ({what}; supersaturation {float(sig[0]):.3g}); "
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
    def _physical(before: FloatArray, after: FloatArray) -> bool:
        """Solute, moments and their outflow integrals non-negative, to round-off of their
        scale in this step."""
        return not bool(MsmprCrystallizer._below_zero(before, after).any())

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
        return np.concatenate([self.c, self.mu, [self.T]])

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
        t_arr = np.array([self.T])

        def moments(c: float) -> FloatArray:
            mt = self._m * (c_in - c)  # suspension density from the solute balance
            b, g, _ = self._kinetics(np.array([c]), t_arr, np.array([mt / self._rk]), phi)
            mu = np.empty(5)
            mu[0] = b[0] * tau
            for k in range(1, 5):
                mu[k] = k * g[0] * tau * mu[k - 1]
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
        b, g, sig = self._kinetics(np.array([c]), t_arr, np.array([mu[3]]), phi)
        self._B, self._G, self._sigma = float(b[0]), float(g[0]), float(sig[0])
        self.wall_heat_duty = self.p.ua * (self.T - tj)
        solids = Solids(mu.copy(), self.p.crystal_density, self.p.shape_factor)
        return {
            "product": Stream(
                self.species, self.flow, self.T, AMBIENT_PRESSURE, self.c.copy(), solids
            )
        }

    # -- state -----------------------------------------------------------------------------------
    def state(self) -> dict[str, float]:
        mu = self.mu
        solid_molar = self._rk * float(mu[3]) / self._m
        fed = self._c_in_solute
        return {
            "temperature": self.T,
            "jacket_temperature": self.jacket_temperature,
            "concentration": float(self.c[self._i]),
            "solubility": self.solubility(),
            "supersaturation": self._sigma,
            "nucleation_rate": self._B,
            "growth_rate": self._G,
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

"""Coil (tubular) flow reactor as N stirred tanks in series, with kinetics and heat transfer.

Per tank k (volume V_t = V/N, tau_t = V_t/Q), species i, reactions j:

    dc_k/dt = (c_{k-1} - c_k)/tau_t + sum_j nu_ji r_j(c_k, T_k)
    dT_k/dt = (T_{k-1} - T_k)/tau_t + kappa (T_jacket - T_k)
              + sum_j (-dH_j) r_j / (rho cp),          kappa = UA / (rho cp V)
    r_j = kf_j(T) prod c^a_j - kr_j(T) prod c^b_j,
    k(T) = k_ref exp(-Ea/R (1/T - 1/T_ref))

Dynamic integration (``integrator="split"``, default): balanced Strang splitting
transport(h/2) - reaction(h) - transport(h/2). Transport (flow + wall exchange) is linear with
a lower-bidiagonal Toeplitz operator, so it is propagated exactly: the tank-to-tank weights
are Poisson probabilities and the inlet and outflow integrals regularised incomplete gamma
functions (Erlang distribution). The reaction part is local to each tank and is integrated by
ROS2, batched over tanks. A constant balancing rate (:meth:`CoilReactor._balance`) moved from
the reactions to the transport makes the exact steady state a fixed point of every sub-step.
The transient error is O(h^2) with h <= ``max_substep``; moles are conserved to round-off
because outflow is integrated exactly and balanced reactions conserve mass.
``integrator="bdf"`` integrates the full system with scipy's BDF instead (reference).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from modulecontrol.errors import did_you_mean
from modulecontrol.units import UnitError

from ._base import ModelStateError, ParameterError, UnitModel, register_model
from ._integrate import FloatArray
from ._kernels import (
    R_GAS,
    Tables,
    balance,
    kernels,
    reaction_rhs,
    reaction_rhs_jac,
    reaction_step,
    transport,
)
from ._quantities import (
    Conductance,
    Diffusivity,
    Flow,
    HeatTransferCoefficient,
    Length,
    MolarEnergy,
    Temperature,
    Time,
    Viscosity,
    Volume,
    VolumetricHeatCapacity,
    is_bare,
    needs_unit,
    si,
    units_required,
)
from ._species import SpeciesTable, Stream


class Reaction(BaseModel):
    """One reaction with power-law kinetics, its rate constant in exactly one of two forms:

    * ``k_ref`` at ``T_ref`` (with ``Ea``): k(T) = k_ref exp(-Ea/R (1/T - 1/T_ref));
    * ``A`` with ``Ea`` (Arrhenius): k(T) = A exp(-Ea/(R T)).

    Both are the same law (A = k_ref exp(Ea/(R T_ref))); the second is how most papers give
    kinetics. The unit of ``k_ref`` / ``A`` follows the overall order n:
    (volume/substance)^(n-1)/time, e.g. ``'0.05 L/(mol*s)'`` for n = 2. Default orders: the
    reactants' stoichiometric coefficients (forward) and the products' (reverse). The reverse
    rate constant is given the same way (``k_ref_reverse`` or ``A_reverse``, with
    ``Ea_reverse``)."""

    model_config = ConfigDict(extra="forbid")
    name: str = ""
    stoichiometry: dict[str, float] = Field(min_length=1)
    orders: dict[str, float] | None = None
    k_ref: float | str | None = None
    A: float | str | None = None
    Ea: MolarEnergy = 0.0
    T_ref: Temperature | None = None
    reversible: bool = False
    k_ref_reverse: float | str | None = None
    A_reverse: float | str | None = None
    Ea_reverse: MolarEnergy = 0.0
    reverse_orders: dict[str, float] | None = None
    dH: MolarEnergy = 0.0  # J per mol of extent; negative = exothermic

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Reaction:
        if (self.k_ref is None) == (self.A is None):
            raise ValueError(
                "give the rate constant in one form: 'k_ref' (at 'T_ref') or 'A' (with 'Ea'), "
                + ("not both" if self.k_ref is not None else "none is given"))
        if self.A is not None and self.T_ref is not None:
            raise ValueError("'T_ref' belongs to the 'k_ref' form; with 'A' the rate constant "
                             "is A exp(-Ea/(R T)) and needs no reference temperature")
        if not self.reversible and (self.k_ref_reverse is not None
                                    or self.A_reverse is not None):
            raise ValueError("a reverse rate constant is given but 'reversible' is not true")
        if self.reversible:
            if (self.k_ref_reverse is None) == (self.A_reverse is None):
                raise ValueError("a reversible reaction needs exactly one of 'k_ref_reverse' "
                                 "(at 'T_ref') or 'A_reverse' (with 'Ea_reverse')")
            if (self.k_ref_reverse is None) != (self.k_ref is None):
                raise ValueError("give the forward and reverse rate constants in the same form "
                                 "('k_ref' with 'k_ref_reverse', or 'A' with 'A_reverse')")
        strict = units_required(info)
        for key, order in (("k_ref" if self.k_ref is not None else "A",
                            sum(self.forward_orders().values())),
                           ("k_ref_reverse" if self.k_ref_reverse is not None else "A_reverse",
                            sum(self.backward_orders().values()))):
            value = getattr(self, key)
            if value is not None:
                rate_constant(value, order, key, strict)
        return self

    def forward_orders(self) -> dict[str, float]:
        return (
            self.orders
            if self.orders is not None
            else {s: -nu for s, nu in self.stoichiometry.items() if nu < 0}
        )

    def backward_orders(self) -> dict[str, float]:
        return (
            self.reverse_orders
            if self.reverse_orders is not None
            else {s: nu for s, nu in self.stoichiometry.items() if nu > 0}
        )

    def reference_temperature(self) -> float:
        """T_ref in K: ``inf`` for the Arrhenius form (1/T_ref = 0 turns the k_ref law into
        A exp(-Ea/(R T)) exactly), the default 298.15 K where ``k_ref`` names none."""
        if self.A is not None:
            return math.inf
        return 298.15 if self.T_ref is None else self.T_ref

    def forward_constant(self) -> float:
        """k_ref (or A) in SI units for the overall forward order."""
        value = self.k_ref if self.k_ref is not None else self.A
        assert value is not None
        return rate_constant(value, sum(self.forward_orders().values()))

    def reverse_constant(self) -> float:
        value = self.k_ref_reverse if self.k_ref_reverse is not None else self.A_reverse
        return 0.0 if value is None else rate_constant(value, sum(self.backward_orders().values()))


def _rate_unit(order: float) -> tuple[str, str, str]:
    """(SI unit, dimension in words, example unit) of a rate constant of overall ``order``."""
    n = order - 1.0
    if abs(n) < 1e-12:
        return "1/s", "1/[time]", "1/s"
    if n < 0:
        p = f"{-n:g}"
        return (f"(mol/m**3)**{p}/s", f"[substance]**{p}/([volume]**{p}[time])",
                f"(mol/L)**{p}/s")
    p = f"{n:g}"
    if p == "1":
        return "m**3/(mol*s)", "[volume]/([substance][time])", "L/(mol*s)"
    if float(p).is_integer():
        return (f"(m**3/mol)**{p}/s", f"[volume]**{p}/([substance]**{p}[time])",
                f"L**{p}/(mol**{p}*s)")
    return (f"(m**3/mol)**{p}/s", f"[volume]**{p}/([substance]**{p}[time])",
            f"(L/mol)**{p}/s")


def rate_constant(value: float | str, order: float, key: str = "k_ref",
                  strict: bool = False) -> float:
    """A rate constant of overall ``order`` in SI; ``strict`` (files) refuses bare numbers.
    The error names the dimension the order asks for, so a first-order unit on a second-order
    reaction is caught instead of being read 1000x off."""
    unit, dimension, example = _rate_unit(order)
    if strict and is_bare(value):
        raise ValueError(needs_unit(key, value, dimension, example))
    try:
        out = si(value, unit)
    except UnitError:
        raise ValueError(
            f"{key} '{value}' does not fit a reaction of overall order {order:g}: it needs a "
            f"unit of dimension {dimension}, e.g. '{_magnitude(value)} {example}'") from None
    if out < 0:
        raise ValueError(f"{key} must be >= 0, got '{value}'")
    return out


def _magnitude(value: float | str) -> str:
    return str(value).strip().split(" ", 1)[0]


class Kinetics:
    """Compiled reaction set: vectorised rates and analytic Jacobians over a batch of tanks."""

    def __init__(
        self, reactions: list[Reaction], species: SpeciesTable, allow_unbalanced: bool = False
    ) -> None:
        ns, nr = len(species), len(reactions)
        self.nr = nr
        self.S = np.zeros((nr, ns))
        self.A = np.zeros((nr, ns))
        self.B = np.zeros((nr, ns))
        self.kf = np.zeros(nr)
        self.kr = np.zeros(nr)
        self.Ef = np.zeros(nr)
        self.Er = np.zeros(nr)
        self.Tref = np.zeros(nr)
        self.mdH = np.zeros(nr)
        for j, rx in enumerate(reactions):
            label = rx.name or f"#{j + 1}"

            def index(name: str, key: str, j: int = j, label: str = label) -> int:
                if name not in species:
                    raise ParameterError(
                        ("reactions", j, key, name),
                        f"reaction {label}: unknown species '{name}'"
                        f"{did_you_mean(name, species.names)}; add it to the plant's species "
                        "table")
                return species.index(name)

            for s, nu in rx.stoichiometry.items():
                self.S[j, index(s, "stoichiometry")] = nu
            for s, a in rx.forward_orders().items():
                self.A[j, index(s, "orders")] = a
            self.kf[j] = rx.forward_constant()
            if rx.reversible:
                for s, b in rx.backward_orders().items():
                    self.B[j, index(s, "reverse_orders")] = b
                self.kr[j] = rx.reverse_constant()
            self.Ef[j], self.Er[j] = rx.Ea, rx.Ea_reverse
            self.Tref[j] = rx.reference_temperature()
            self.mdH[j] = -rx.dH
            imbalance = float(self.S[j] @ species.molar_mass)
            scale = float(np.abs(self.S[j]) @ species.molar_mass)
            if abs(imbalance) > 1e-6 * scale and not allow_unbalanced:
                raise ParameterError(
                    ("reactions", j, "stoichiometry"),
                    f"reaction {label} is not mass balanced (sum nu*M = {imbalance:.4g} kg/mol);"
                    " fix the stoichiometry or molar masses, or set allow_unbalanced: true"
                )
        self._compile()

    def _compile(self) -> None:
        """Precompute the tables of the hot path (:meth:`reduced_rhs_and_jac`).

        Why: a plant step integrates the kinetics of every tank; evaluating c**orders over all
        species and a Jacobian over species that no reaction changes is most of the work.
        ``active`` are the species some reaction changes (the ODE system of the reaction
        sub-step); every other species (solvent, a catalyst such as the base) is constant
        through it. Rate laws are kept as at most ``K`` (species, order) terms per reaction,
        padded with order 0, so c**a is (tanks, reactions, K) instead of (tanks, reactions,
        species)."""
        self.active = np.flatnonzero(np.abs(self.S).sum(axis=0) > 0.0)
        self.S_active = np.ascontiguousarray(self.S[:, self.active])
        self.reversible = bool(self.kr.any())
        self._terms = [self._term_table(self.A)]
        if self.reversible:
            self._terms.append(self._term_table(self.B))
        forward = self._kernel_terms(self._terms[0])
        reverse = (self._kernel_terms(self._terms[1]) if self.reversible
                   else (np.zeros((self.nr, 1), dtype=np.intp), np.zeros((self.nr, 1)),
                         np.full((self.nr, 1), -1, dtype=np.intp)))
        with np.errstate(divide="ignore"):
            inv_tref = 1.0 / self.Tref
        #: the reaction set as the compiled sub-step reads it (:mod:`._kernels`); ``kf`` and
        #: ``kr`` are these arrays themselves, which a deactivation fault scales in place
        s_pos, s_val, d_pos = self._sparsity(forward[2], reverse[2])
        self.tables = Tables(
            np.ascontiguousarray(self.active, dtype=np.intp), forward[0], forward[1],
            forward[2], reverse[0], reverse[1], reverse[2], self.kf, self.kr,
            np.ascontiguousarray(self.Ef), np.ascontiguousarray(self.Er), inv_tref,
            s_pos, s_val, d_pos, np.ascontiguousarray(self.mdH), self.reversible)

    def _sparsity(self, pos_f: Any, pos_r: Any) -> tuple[Any, FloatArray, Any]:
        """Per reaction: the active positions it changes and their coefficients, and the
        active positions its rate reads (each once), padded with -1 (:class:`Tables`)."""
        changes = [np.flatnonzero(row) for row in self.S_active]
        reads = [np.unique(np.concatenate([f[f >= 0], r[r >= 0]]))
                 for f, r in zip(pos_f, pos_r, strict=True)]
        width_s = max(1, max((len(c) for c in changes), default=0))
        width_d = max(1, max((len(d) for d in reads), default=0))
        s_pos = np.full((self.nr, width_s), -1, dtype=np.intp)
        s_val = np.zeros((self.nr, width_s))
        d_pos = np.full((self.nr, width_d), -1, dtype=np.intp)
        for j, (c, d) in enumerate(zip(changes, reads, strict=True)):
            s_pos[j, :len(c)] = c
            s_val[j, :len(c)] = self.S_active[j, c]
            d_pos[j, :len(d)] = d
        return s_pos, s_val, d_pos

    @staticmethod
    def _kernel_terms(table: tuple[Any, FloatArray, FloatArray]
                      ) -> tuple[Any, FloatArray, Any]:
        """(species index, order, position among the active species or -1) per term."""
        idx, order, onehot = table
        pos = np.full(idx.shape, -1, dtype=np.intp)
        if onehot.shape[2]:  # argmax of no active species is no position
            pos[onehot.any(axis=2)] = onehot.argmax(axis=2)[onehot.any(axis=2)]
        return (np.ascontiguousarray(idx, dtype=np.intp), np.ascontiguousarray(order),
                np.ascontiguousarray(pos))

    def _term_table(self, orders: FloatArray) -> tuple[Any, FloatArray, FloatArray]:
        """(species index, order, one-hot onto ``active``) per reaction and term."""
        nr = orders.shape[0]
        k = max(1, int((orders != 0.0).sum(axis=1).max(initial=0)))
        idx = np.zeros((nr, k), dtype=np.intp)
        order = np.zeros((nr, k))
        onehot = np.zeros((nr, k, self.active.size))
        position = {int(s): a for a, s in enumerate(self.active)}
        for j in range(nr):
            for t, s in enumerate(np.flatnonzero(orders[j])):
                idx[j, t], order[j, t] = s, orders[j, s]
                if int(s) in position:
                    onehot[j, t, position[int(s)]] = 1.0
        return idx, order, onehot

    def _k(
        self, k_ref: FloatArray, ea: FloatArray, temp: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        arr = np.exp(-ea / R_GAS * (1.0 / temp[:, None] - 1.0 / self.Tref))
        k = k_ref * arr
        return k, k * ea / (R_GAS * temp[:, None] ** 2)

    @staticmethod
    def _power(c: FloatArray, orders: FloatArray) -> tuple[FloatArray, FloatArray]:
        """prod c^a (N, nr) and its derivative wrt each c (N, nr, ns).

        The derivative a_i prod / c_i is evaluated with c floored at 1e-30 mol/m3, which
        gives the exact limit (the product of the other factors) for first-order species
        at zero concentration without a per-species loop.
        """
        cp = np.maximum(c, 0.0)
        prod = (cp[:, None, :] ** orders[None]).prod(axis=2)
        safe = np.maximum(cp, 1e-30)
        psafe = (safe[:, None, :] ** orders[None]).prod(axis=2)
        dprod = orders[None] * psafe[:, :, None] / safe[:, None, :]
        return prod, dprod

    def rates(self, c: FloatArray, temp: FloatArray) -> FloatArray:
        kf, _ = self._k(self.kf, self.Ef, temp)
        r = kf * (np.maximum(c, 0.0)[:, None, :] ** self.A[None]).prod(axis=2)
        if self.kr.any():
            kr, _ = self._k(self.kr, self.Er, temp)
            r = r - kr * (np.maximum(c, 0.0)[:, None, :] ** self.B[None]).prod(axis=2)
        out: FloatArray = r
        return out

    def rates_and_jac(
        self, c: FloatArray, temp: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        kf, dkf = self._k(self.kf, self.Ef, temp)
        pf, dpf = self._power(c, self.A)
        r = kf * pf
        drdc = kf[:, :, None] * dpf
        drdt = dkf * pf
        if self.kr.any():
            kr, dkr = self._k(self.kr, self.Er, temp)
            pr, dpr = self._power(c, self.B)
            r = r - kr * pr
            drdc = drdc - kr[:, :, None] * dpr
            drdt = drdt - dkr * pr
        return r, drdc, drdt

    def reduced_rhs(self, c: FloatArray, temp: FloatArray, rho_cp: float) -> FloatArray:
        """Reaction derivatives of [c[:, active], T] per tank, from all concentrations ``c``
        (compiled, :mod:`._kernels`)."""
        return reaction_rhs(np.ascontiguousarray(c, dtype=float),
                            np.ascontiguousarray(temp, dtype=float), self.tables, rho_cp)

    def reduced_rhs_and_jac(
        self, c: FloatArray, temp: FloatArray, rho_cp: float
    ) -> tuple[FloatArray, FloatArray]:
        """:meth:`reduced_rhs` and its Jacobian wrt [c[:, active], T], (tanks, m, m)."""
        return reaction_rhs_jac(np.ascontiguousarray(c, dtype=float),
                                np.ascontiguousarray(temp, dtype=float), self.tables, rho_cp)

    def rhs(self, y: FloatArray, rho_cp: float) -> FloatArray:
        """Reaction-only derivatives of y = [c..., T] per tank (N, ns+1)."""
        c, temp = y[:, :-1], y[:, -1]
        r = self.rates(c, temp)
        out = np.empty_like(y)
        out[:, :-1] = r @ self.S
        out[:, -1] = (r @ self.mdH) / rho_cp
        return out

    def jac(self, y: FloatArray, rho_cp: float) -> FloatArray:
        return self.rhs_and_jac(y, rho_cp)[1]

    def rhs_and_jac(self, y: FloatArray, rho_cp: float) -> tuple[FloatArray, FloatArray]:
        """Derivatives and Jacobians in one pass (the rates are shared)."""
        c, temp = y[:, :-1], y[:, -1]
        r, drdc, drdt = self.rates_and_jac(c, temp)
        n, m = y.shape
        f = np.empty_like(y)
        f[:, :-1] = r @ self.S
        f[:, -1] = (r @ self.mdH) / rho_cp
        j = np.empty((n, m, m))
        j[:, :-1, :-1] = np.einsum("rt,nrs->nts", self.S, drdc)
        j[:, :-1, -1] = drdt @ self.S
        j[:, -1, :-1] = np.einsum("r,nrs->ns", self.mdH, drdc) / rho_cp
        j[:, -1, -1] = (drdt @ self.mdH) / rho_cp
        return f, j


def tanks_from_dispersion(
    volume: float,
    inner_diameter: float,
    flow: float,
    diffusivity: float = 1e-9,
    max_tanks: int = 100,
) -> tuple[int, float]:
    """Number of tanks matching the residence-time variance of laminar coil flow.

    Taylor-Aris axial dispersion D = Dm + u^2 d^2 / (192 Dm); Bodenstein Bo = u L / D; closed
    vessel variance sigma_theta^2 = 2/Bo - 2/Bo^2 (1 - exp(-Bo)) (Levenspiel, Chemical Reaction
    Engineering, ch. 13); N = 1/sigma_theta^2, rounded, clipped to [1, max_tanks].
    Returns (N, Bo).
    """
    area = math.pi * inner_diameter**2 / 4.0
    length = volume / area
    u = flow / area
    disp = diffusivity + u**2 * inner_diameter**2 / (192.0 * diffusivity)
    bo = u * length / disp
    var = 2.0 / bo - 2.0 / bo**2 * (1.0 - math.exp(-bo))
    return int(min(max(round(1.0 / var), 1), max_tanks)), bo


def hagen_poiseuille(viscosity: float, length: float, flow: float, diameter: float) -> float:
    """Laminar pressure drop, Pa: 128 mu L Q / (pi d^4)."""
    return 128.0 * viscosity * length * flow / (math.pi * diameter**4)


class CoilReactorParams(BaseModel):
    """Give ``n_tanks`` or a ``design_flow`` from which N follows (Taylor-Aris dispersion).
    The wall conductance is ``ua`` or ``wall_htc`` times the inner wall area."""

    model_config = ConfigDict(extra="forbid")
    volume: Volume = Field(gt=0)
    inner_diameter: Length = Field(gt=0)
    n_tanks: int | None = Field(default=None, ge=1, le=1000)
    design_flow: Flow | None = Field(default=None, gt=0)
    diffusivity: Diffusivity = Field(default=1e-9, gt=0)
    max_tanks: int = Field(default=100, ge=1, le=1000)
    reactions: list[Reaction] = Field(default_factory=list)
    allow_unbalanced: bool = False
    ua: Conductance | None = Field(default=None, ge=0)
    wall_htc: HeatTransferCoefficient = Field(default=300.0, ge=0)
    viscosity: Viscosity | None = Field(default=None, gt=0)
    volumetric_heat_capacity: VolumetricHeatCapacity | None = Field(default=None, gt=0)
    initial_temperature: Temperature = 298.15
    jacket_temperature: Temperature = 298.15
    max_substep: Time = Field(default=10.0, gt=0)
    integrator: Literal["split", "bdf"] = "split"

    @model_validator(mode="after")
    def _check(self) -> CoilReactorParams:
        if self.n_tanks is None and self.design_flow is None:
            raise ValueError("give n_tanks, or design_flow to derive it from dispersion")
        return self


_WATER_VISCOSITY = 8.9e-4


@register_model
class CoilReactor(UnitModel):
    """Tanks-in-series coil reactor; see the module docstring for the equations."""

    kind = "coil_reactor"
    state_units: ClassVar[dict[str, str]] = {
        "flow": "m**3/s",
        "residence_time": "s",
        "temperature": "K",
        "max_temperature": "K",
        "jacket_temperature": "K",
        "wall_heat_duty": "W",
        "pressure_drop": "Pa",
        "inlet_pressure": "Pa",
        "fouling": "",
        "n_tanks": "",
    }
    Params = CoilReactorParams
    inputs: ClassVar[dict[str, str]] = {"jacket_temperature": "K"}
    temperature_states: ClassVar[dict[str, str]] = {
        "jacket_temperature": "jacket temperature", "T": "tank temperature"}
    fault_kinds = ("fouling", "deactivation")
    inlets = ("in",)
    outlets = ("out",)

    def __init__(self, name: str, species: SpeciesTable, params: CoilReactorParams) -> None:
        super().__init__(name, species, params)
        self.p = params
        self.length = params.volume / (math.pi * params.inner_diameter**2 / 4.0)
        if params.n_tanks is not None:
            self.n_tanks = params.n_tanks
            self.bodenstein = math.nan
        else:
            assert params.design_flow is not None
            self.n_tanks, self.bodenstein = tanks_from_dispersion(
                params.volume,
                params.inner_diameter,
                params.design_flow,
                params.diffusivity,
                params.max_tanks,
            )
        self.ua = (
            params.ua
            if params.ua is not None
            else params.wall_htc * math.pi * params.inner_diameter * self.length
        )
        self.kinetics = Kinetics(params.reactions, species, params.allow_unbalanced)
        self._rate_constants = (self.kinetics.kf.copy(), self.kinetics.kr.copy())
        self._max_activation = float(max(np.abs(self.kinetics.Ef).max(initial=0.0),
                                         np.abs(self.kinetics.Er).max(initial=0.0)))
        """The written rate constants, which a ``deactivation`` fault scales."""
        n, ns = self.n_tanks, len(species)
        self.c = np.zeros((n, ns))
        self.T = np.full(n, params.initial_temperature)
        self.jacket_temperature = params.jacket_temperature
        self.fouling = 0.0
        self.flow = 0.0
        self.wall_heat_duty = 0.0  # W into the jacket (positive: the process is cooled)
        self._mu = params.viscosity or _WATER_VISCOSITY
        self._rho_cp = params.volumetric_heat_capacity or 4.18e6
        self._cache: dict[tuple[float, float, float], tuple[FloatArray, ...]] = {}
        self._flow_cache: dict[tuple[float, float], tuple[FloatArray, ...]] = {}
        self._out = Stream.empty(species, params.initial_temperature)

    def prepare(self) -> None:
        """Compile (or load from the cache) the kernels this reactor's steps call, by
        calling each once on its own state with the argument types of a step.

        Why calls, not just :func:`._kernels.kernels`: numba compiles a function at its
        first call, for the types of that call. Making the dispatchers compiled nothing, and
        a served plant then stopped for seconds at its first step (the drivers' first reads
        timed out: a run on a fresh machine did not connect). Nothing here changes the
        reactor's state."""
        kin = self.kinetics
        if self.p.integrator != "split":
            return
        kernels()
        inlet = Stream.empty(self.species, self.p.initial_temperature)
        n, na = self.n_tanks, kin.active.size
        if kin.nr:  # a coil without reactions only transports (a heat-up coil, a delay)
            kin.reduced_rhs(self.c, self.T, self._rho_cp)
            kin.reduced_rhs_and_jac(self.c, self.T, self._rho_cp)
            self._ros2(self.c, self.T, 1.0, (np.zeros((n, na)), np.zeros(n)))
            self._balance(inlet, 0.0)
        for source in (None, (np.zeros((n, na)), np.zeros(n))):
            transport(np.ascontiguousarray(self.c), np.ascontiguousarray(self.T),
                      np.ascontiguousarray(inlet.conc), inlet.temperature,
                      self.jacket_temperature, 1.0, 1.0, self._weights(1.0, 1.0, 0.0),
                      kin.active, source)

    # -- geometry and fouling -------------------------------------------------------------
    @property
    def effective_volume(self) -> float:
        return self.p.volume * (1.0 - self.fouling)

    @property
    def residence_time(self) -> float:
        """Mean residence time at the current flow, s (inf at no flow)."""
        return self.effective_volume / self.flow if self.flow > 0 else math.inf

    def _on_fault(self, kind: str, params: dict[str, float] | None) -> None:
        """Fouling = a deposit taking ``volume_fraction`` of the volume; the fluid it displaces
        is booked as lost. Clearing the fault is a cleaning: the volume refills with fluid
        like the tank contents (negative loss)."""
        if kind == "deactivation":
            # A catalyst losing activity, an inhibitor in a reagent: every reaction runs at
            # ``activity`` times its written rate (forward and reverse, so an equilibrium
            # stays where it was and only the approach to it slows), until cleared.
            a = 1.0 if params is None else min(max(params.get("activity", 0.5), 0.0), 1.0)
            kf, kr = self._rate_constants
            self.kinetics.kf[:] = kf * a
            self.kinetics.kr[:] = kr * a
            return
        if kind != "fouling":
            return
        before = self.holdup_mass()
        self.fouling = (
            0.0 if params is None else min(max(params.get("volume_fraction", 0.1), 0.0), 0.95)
        )
        self._mass_lost += before - self.holdup_mass()
        self._cache.clear()
        self._flow_cache.clear()

    @property
    def wall_conductance(self) -> float:
        """W/K: how the wall duty falls per kelvin the jacket warms (the whole wall's UA)."""
        return self.ua

    def _dynamic_state(self) -> FloatArray:
        return np.concatenate([self.c.ravel(), self.T])

    def _wake_key(self) -> tuple[Any, ...]:
        return (id(self.p),)

    def pressure_drop(self) -> float:
        """Hagen-Poiseuille; a uniform deposit shrinks the bore to d*sqrt(1 - f)."""
        d = self.p.inner_diameter * math.sqrt(1.0 - self.fouling)
        return hagen_poiseuille(self._mu, self.length, self.flow, d)

    def holdup_mass(self) -> float:
        return (
            self.effective_volume / self.n_tanks * float((self.c @ self.species.molar_mass).sum())
        )

    # -- exact transport --------------------------------------------------------------------
    def _weights(self, h: float, tau_t: float, kappa: float) -> tuple[FloatArray, ...]:
        """The exact transport's weights for a step ``h`` at tank time ``tau_t`` and wall
        exchange rate ``kappa``, cached.

        Two levels: the flow's weights depend on (h, tau_t) only and the temperature's on
        kappa too. kappa = UA / (rho cp V) follows the stream's heat capacity, which changes
        at every step while the composition does (a start-up, a change of feed), and the flow
        stays; so a new kappa costs one incomplete-gamma call and a gather, not the whole
        table (about 100 µs of scipy calls per miss, twice per step, in a transient)."""
        key = (h, tau_t, kappa)
        w = self._cache.get(key)
        if w is not None:
            return w
        # scipy is imported where it is used (here, once per cached step size), not with the
        # module: `validate` builds the models and must not pay scipy's import (about 0.25 s)
        from scipy.special import gammainc

        flow = self._flow_weights(h, tau_t)
        e, g_c, cum_e, cum_g, g_q, cum_q, k1, lower = flow
        x = h / tau_t
        f = 1.0 + kappa * tau_t
        e_t = e * math.exp(-kappa * h)
        g_t = f ** (-k1) * gammainc(k1, x * f)
        g_qt = np.append(g_t, 0.0)[lower]
        w = (e, g_c, cum_e, cum_g, e_t, g_t, g_q, g_qt, cum_q)
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[key] = w
        return w

    def _flow_weights(self, h: float, tau_t: float) -> tuple[FloatArray, ...]:
        """The weights of :meth:`_weights` that depend on the flow alone, cached."""
        key = (h, tau_t)
        w = self._flow_cache.get(key)
        if w is not None:
            return w
        from scipy.special import gammainc, gammaln, xlogy

        n = self.n_tanks
        x = h / tau_t
        m = np.arange(n + 1, dtype=float)
        # lower-triangular Toeplitz matrices as a gather: T[i, j] = v[i - j] for i >= j, and
        # the appended zero above the diagonal
        i, j = np.indices((n, n))
        lower = np.where(i >= j, i - j, n)
        pois = np.exp(-x + xlogy(m, x) - gammaln(m + 1.0))
        e = pois[lower]
        e[lower == n] = 0.0
        k1 = m[:n] + 1.0
        g_c = gammainc(k1, x)
        cum_e = gammainc(n - m[:n], x)
        cum_g = x * gammainc(n, x) - n * gammainc(n + 1, x)
        # a constant source q_j in tank j: tank i holds tau * P(i-j+1, x) q_j after h (the
        # Erlang integral of the Poisson weights), tau * g_t[i-j] q_j for T with the wall
        # exchange; the outflow integral of that source, tau * cum_q[j] q_j per tank volume
        # (int_0^x P(m+1, u) du with m = n-1-j tanks still ahead)
        g_q = np.append(g_c, 0.0)[lower]
        ahead = n - m[:n]
        cum_q = x * gammainc(ahead, x) - ahead * gammainc(ahead + 1.0, x)
        w = (e, g_c, cum_e, np.array([cum_g]), g_q, cum_q, k1, lower)
        if len(self._flow_cache) > 16:
            self._flow_cache.clear()
        self._flow_cache[key] = w
        return w

    def _transport(self, h: float, s: Stream, kappa: float,
                   source: tuple[FloatArray, FloatArray] | None = None) -> FloatArray:
        """Advance flow and wall exchange by h exactly; returns moles that left, per species.

        ``source``: a constant rate added to each tank's active species and temperature
        over the step, ``(q_c (tanks, active), q_T (tanks,))`` (the balancing term of
        :meth:`_strang`), integrated exactly as well.
        """
        tj = self.jacket_temperature
        v_t = self.effective_volume / self.n_tanks
        x = h * self.flow / v_t
        act = self.kinetics.active
        if x < 1e-9:
            # (almost) no flow: one explicit flux step is exact to O(x^2) and conserves moles
            prev = np.vstack([s.conc[None], self.c[:-1]])
            moles_out: FloatArray = v_t * x * self.c[-1]
            self.c = self.c + x * (prev - self.c)
            t_prev = np.concatenate([[s.temperature], self.T[:-1]])
            self.T = tj + (self.T + x * (t_prev - self.T) - tj) * math.exp(-kappa * h)
            if source is not None:
                self.c[:, act] += h * source[0]
                self.T = self.T + h * source[1]
            return moles_out
        tau_t = v_t / self.flow
        # compiled (:func:`._kernels.transport`): the same products as matrix algebra,
        # without numpy's per-call cost, which was most of a transport of 20 tanks
        self.c, self.T, moles = transport(
            np.ascontiguousarray(self.c), np.ascontiguousarray(self.T),
            np.ascontiguousarray(s.conc), s.temperature, tj, v_t, tau_t,
            self._weights(h, tau_t, kappa), act,
            None if source is None else (np.ascontiguousarray(source[0]),
                                         np.ascontiguousarray(source[1])))
        return moles

    def _balance(self, s: Stream, kappa: float) -> tuple[FloatArray, FloatArray]:
        """The balancing term of :meth:`_strang`: half the reaction rate minus half the
        transport rate of each tank's active species and temperature, at the current state.

        Why: plain splitting settles where transport over h/2, reactions over h and
        transport over h/2 return the state to itself, which is not where the two rates
        cancel. With fast reactions and a tank time of a few sub-steps the difference is
        large: the lomustine line's DCU impurity at the plant file's 2 s sub-step settled
        2.5 % (40 degC) to 6 % (60 degC) above the exact steady state, so a fit against the
        exact steady solve could not cover the truth. Adding this constant rate to the
        transport and subtracting it from the reactions (balanced splitting, Speth, Green,
        MacNamara and Strang, SIAM J. Numer. Anal. 51 (2013) 3084) leaves the sum of the two
        unchanged and makes each part zero where the full right-hand side is zero: the
        exact steady state is a fixed point of every sub-step.
        """
        inv_tau = self.flow / (self.effective_volume / self.n_tanks)
        # compiled (:func:`._kernels.balance`): per tank, (rates - transport rate) / 2
        return balance(np.ascontiguousarray(self.c), np.ascontiguousarray(self.T),
                       np.ascontiguousarray(s.conc), s.temperature, self.jacket_temperature,
                       inv_tau, kappa, self.kinetics.tables, self._rho_cp)

    #: negatives the balanced step may leave, relative to the tank's active total
    _ROUND_OFF = 1e-12

    def _strang(self, dt: float, n_sub: int, s: Stream, kappa: float) -> FloatArray:
        """``n_sub`` balanced Strang sub-steps over ``dt``, transport(h/2) - reactions(h) -
        transport(h) - ... - reactions(h) - transport(h/2); returns the moles that left.

        The balancing rate is taken once, at the start of ``dt``, and frozen over it: the
        fixed point stays exact (at the steady state the rate is the same at every
        sub-step), the inner half transports merge as in plain splitting, and the cost over
        plain splitting is one evaluation of the rates per step. Far from steady state the
        frozen rate can drain a species below zero (a species the reactions use up faster
        than the tanks wash it, a wash-out). A step with a balanced reaction sub-step that
        leaves the admissible set (:meth:`_ros2`) or that ends with a concentration
        below zero beyond round-off (:attr:`_ROUND_OFF` of the tank's active total) is
        taken again from the same state by plain Strang splitting with its halvings
        (:meth:`_react`): the balance buys the steady state, never robustness."""
        h = dt / n_sub
        c0, t0 = self.c.copy(), self.T.copy()
        source = self._balance(s, kappa)
        moles = self._transport(0.5 * h, s, kappa, source)
        for i in range(n_sub):
            c1, t1, refused = self._ros2(self.c, self.T, h, source)
            if refused.any():
                break
            self.c, self.T = c1, t1
            moles = moles + self._transport(h if i < n_sub - 1 else 0.5 * h, s, kappa,
                                            source)
        else:
            act = self.kinetics.active
            ca = self.c[:, act]
            floor = -self._ROUND_OFF * np.abs(ca).sum(axis=1, keepdims=True)
            out = moles[act]
            if np.all(ca >= floor) and np.all(out >= -self._ROUND_OFF * np.abs(out).sum()):
                # round-off negatives at a depleted species (1e-12 of the tank's active
                # total at most) are zero: the rates read them as zero anyway, and an
                # outlet must not carry them (an analyzer read -7e-47 mol/m3 of a product
                # washed out at a changeover)
                self.c[:, act] = np.maximum(ca, 0.0)
                moles[act] = np.maximum(out, 0.0)
                return moles
        self.c, self.T = c0, t0
        moles = self._transport(0.5 * h, s, kappa)
        for i in range(n_sub):
            self._react(h)
            moles = moles + self._transport(h if i < n_sub - 1 else 0.5 * h, s, kappa)
        return moles

    #: halvings of one reaction sub-step before it is refused (h / 4096: about 1 ms at 5 s)
    #: (what a refused sub-step is: :func:`._kernels._reaction_step`)
    _MAX_HALVINGS = 12

    def _react(self, h: float, depth: int = 0) -> None:
        """ROS2 over the species the reactions change and T, halved where it would leave the
        physical set.

        Why: the reaction sub-step is adiabatic, so a hot exothermic tank has a growing
        (thermal-runaway) mode, eigenvalue lambda+ > 0 of the reaction Jacobian. ROS2's
        stability function has its pole at h lambda+ = 1/gamma = 0.586: near it the step
        amplifies without bound, past it the mode runs backwards (reactant made from
        product, the tank cooled by an exothermic reaction). A jacketed test line at ua 0.5
        W/K, dt 5 s, went from 68 to -179 degC in two steps and on to -1e42 K. The exact
        sub-step keeps every concentration >= 0 and changes T smoothly, so a step that gives
        a negative concentration (beyond round-off of the tank's scale), a non-finite value
        or a rate constant changed by more than a factor of 2 (the linearisation no longer
        holds) is rejected and taken as two halves, each from a fresh Jacobian. In normal
        operation no step is rejected (the lomustine line: rate constants change by 1 % per
        sub-step at most), so the results are those of the plain step. A step that is still
        refused after ``_MAX_HALVINGS`` halvings raises :class:`ModelStateError`."""
        c, temp = self.c, self.T
        c1, t1, refused = self._ros2(c, temp, h)
        if not refused.any():
            self.c, self.T = c1, t1
            return
        if depth >= self._MAX_HALVINGS:
            bad = int(np.argmax(refused))
            raise ModelStateError(
                self.name, self.time,
                f"the reactions of tank {bad + 1} of {self.n_tanks} admit no step of "
                f"{h:.3g} s (T {float(temp[bad]):.6g} -> {float(t1[bad]):.6g} K after "
                f"{depth} halvings of the sub-step); the kinetics are too fast or too "
                "exothermic for this reactor's integration: lower max_substep or check the "
                "reactions' k_ref/A, Ea and dH")
        self._react(0.5 * h, depth + 1)
        self._react(0.5 * h, depth + 1)

    def _ros2(self, c: FloatArray, temp: FloatArray, h: float,
              source: tuple[FloatArray, FloatArray] | None = None
              ) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
        """One ROS2 step of the reactions alone from (c, temp), less ``source`` (the
        balancing rate the transport added, :meth:`_balance`): the new concentrations and
        temperatures and, per tank, whether the step left the admissible set (finite, no
        concentration below zero beyond 1e-9 of the tank's total of the active species, as
        ROS2 leaves round-off negatives of 1e-32 of it at a depleted species, which the rates
        read as zero; T > 0; no rate constant changed by more than a factor of 2). The state
        is not changed. Compiled (:func:`._kernels.reaction_step`)."""
        kin = self.kinetics
        shift = np.zeros((c.shape[0], kin.active.size + 1))
        if source is not None:
            shift[:, :-1], shift[:, -1] = source
        return reaction_step(np.ascontiguousarray(c), np.ascontiguousarray(temp), float(h),
                             shift, kin.tables, float(self._rho_cp), self._max_activation)

    # -- stepping ------------------------------------------------------------------------------
    def _update_properties(self, s: Stream) -> None:
        self.flow = s.flow
        if s.flow > 0.0:
            if self.p.volumetric_heat_capacity is None:
                self._rho_cp = s.volumetric_heat_capacity
            if self.p.viscosity is None:
                self._mu = s.viscosity or _WATER_VISCOSITY

    def _step(self, dt: float, inlets: dict[str, Stream]) -> dict[str, Stream]:
        s = inlets["in"]
        self._update_properties(s)
        kappa = self.ua / (self._rho_cp * self.effective_volume)
        if self.p.integrator == "bdf":
            moles = self._step_bdf(dt, s, kappa)
        elif self.kinetics.nr == 0:
            moles = self._transport(dt, s, kappa)
        else:
            n_sub = max(1, math.ceil(dt / self.p.max_substep - 1e-9))
            moles = self._strang(dt, n_sub, s, kappa)
        self.wall_heat_duty = (
            self.ua / self.n_tanks * float((self.T - self.jacket_temperature).sum())
        )
        conc = moles / (self.flow * dt) if self.flow > 0.0 else self.c[-1].copy()
        self._out = Stream(
            self.species, self.flow, float(self.T[-1]), self.outlet_pressures["out"], conc
        )
        return {"out": self._out}

    def _full_rhs(self, s: Stream, kappa: float) -> Any:
        n, ns = self.n_tanks, len(self.species)
        tau_t = self.effective_volume / self.n_tanks / self.flow if self.flow > 0 else math.inf
        kin, rc, tj = self.kinetics, self._rho_cp, self.jacket_temperature

        def rhs(_t: float, z: FloatArray) -> FloatArray:
            c = z[: n * ns].reshape(n, ns)
            temp = z[n * ns : n * ns + n]
            c_prev = np.vstack([s.conc[None], c[:-1]])
            t_prev = np.concatenate([[s.temperature], temp[:-1]])
            dc = (c_prev - c) / tau_t
            dtemp = (t_prev - temp) / tau_t + kappa * (tj - temp)
            if kin.nr:
                r = kin.rates(c, temp)
                dc = dc + r @ kin.S
                dtemp = dtemp + (r @ kin.mdH) / rc
            return np.concatenate([dc.ravel(), dtemp, c[-1] / tau_t])

        return rhs

    def _step_bdf(self, dt: float, s: Stream, kappa: float) -> FloatArray:
        from scipy.integrate import solve_ivp

        n, ns = self.n_tanks, len(self.species)
        z0 = np.concatenate([self.c.ravel(), self.T, np.zeros(ns)])
        sol = solve_ivp(
            self._full_rhs(s, kappa), (0.0, dt), z0, method="BDF", rtol=1e-8, atol=1e-10
        )
        if not sol.success:
            raise RuntimeError(f"{self.name}: BDF integration failed: {sol.message}")
        z = sol.y[:, -1]
        self.c = z[: n * ns].reshape(n, ns).copy()
        self.T = z[n * ns : n * ns + n].copy()
        moles: FloatArray = z[n * ns + n :] * self.effective_volume / self.n_tanks
        return moles

    # -- steady state ------------------------------------------------------------------------
    def _steady(self, inlets: dict[str, Stream]) -> dict[str, Stream]:
        s = inlets["in"]
        self._update_properties(s)
        if self.flow <= 0.0:
            raise ValueError(f"{self.name}: a steady state needs a positive inlet flow")
        v_t = self.effective_volume / self.n_tanks
        tau_t = v_t / self.flow
        kappa = self.ua / (self._rho_cp * self.effective_volume)
        tj, rc, kin = self.jacket_temperature, self._rho_cp, self.kinetics
        prev = np.concatenate([s.conc, [s.temperature]])
        for k in range(self.n_tanks):
            y = self._solve_tank(prev, tau_t, kappa, tj, rc, kin)
            self.c[k], self.T[k] = y[:-1], y[-1]
            prev = y
        self.wall_heat_duty = self.ua / self.n_tanks * float((self.T - tj).sum())
        self._out = Stream(
            self.species,
            self.flow,
            float(self.T[-1]),
            self.outlet_pressures["out"],
            self.c[-1].copy(),
        )
        return {"out": self._out}

    @staticmethod
    def _solve_tank(
        prev: FloatArray, tau_t: float, kappa: float, tj: float, rc: float, kin: Kinetics
    ) -> FloatArray:
        from scipy.integrate import solve_ivp  # with the solve, not the module (see _weights)
        from scipy.optimize import root

        m = prev.size
        lin = np.full(m, 1.0 / tau_t)
        lin[-1] += kappa

        def fun(y: FloatArray) -> FloatArray:
            out = (prev - y) / tau_t
            out[-1] += kappa * (tj - y[-1])
            if kin.nr:
                out = out + kin.rhs(y[None], rc)[0]
            return out

        def jac(y: FloatArray) -> FloatArray:
            j = -np.diag(lin)
            if kin.nr:
                j = j + kin.jac(y[None], rc)[0]
            return j

        scale = float(np.abs(prev).max()) + 1.0

        def converged(x: FloatArray) -> bool:
            return bool(np.abs(fun(x)).max() * tau_t < 1e-10 * scale)

        sol = root(fun, prev.copy(), jac=jac, method="hybr", tol=1e-12)
        if converged(sol.x):
            return np.asarray(sol.x, dtype=float)
        # fall back: relax the tank ODE in pseudo-time (robust for stiff, fast kinetics)
        relax = solve_ivp(
            lambda _t, y: fun(y),
            (0.0, 200.0 * tau_t),
            prev.copy(),
            method="BDF",
            jac=lambda _t, y: jac(y),
            rtol=1e-10,
            atol=1e-12,
        )
        sol = root(fun, relax.y[:, -1], jac=jac, method="hybr", tol=1e-12)
        if not converged(sol.x):
            raise RuntimeError(f"steady-state tank solve failed: {sol.message}")
        return np.asarray(sol.x, dtype=float)

    # -- state -----------------------------------------------------------------------------------
    def conversion(self, species: str, inlet: Stream) -> float:
        """1 - c_out/c_in of one species against a given inlet."""
        i = self.species.index(species)
        return 1.0 - float(self._out.conc[i]) / float(inlet.conc[i])

    def state(self) -> dict[str, float]:
        out: dict[str, float] = {
            "flow": self.flow,
            "residence_time": self.residence_time,
            "temperature": float(self.T[-1]),
            "max_temperature": float(self.T.max()),
            "jacket_temperature": self.jacket_temperature,
            "wall_heat_duty": self.wall_heat_duty,
            "pressure_drop": self.pressure_drop(),
            "inlet_pressure": self.inlet_pressure,
            "fouling": self.fouling,
            "n_tanks": float(self.n_tanks),
        }
        for name, c in zip(self.species.names, self._out.conc, strict=True):
            out[f"c_{name}"] = float(c)
        return out


def reaction_from_mapping(data: Mapping[str, Any]) -> Reaction:
    """Validate one reaction from YAML-like data."""
    return Reaction.model_validate(dict(data))


__all__ = [
    "CoilReactor",
    "CoilReactorParams",
    "Kinetics",
    "Reaction",
    "hagen_poiseuille",
    "tanks_from_dispersion",
]

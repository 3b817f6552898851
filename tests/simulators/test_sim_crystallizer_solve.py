"""The crystallizer's ROS2 linear algebra by hand: the Jacobian written down by its entries
(B and G differenced) against the rates' derivatives worked out in the test, and the
structured elimination of W = I - gamma h J against LAPACK's dense solve, over states,
kinetics and step lengths hypothesis draws (secondary nucleation, an Arrhenius growth and
a seeded inlet included, so every entry of the structure is exercised)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.simulators.models import (
    MsmprCrystallizer,
    MsmprParams,
    Solids,
    Solubility,
    Stream,
)
from modulecontrol.simulators.models._crystallizer import (
    _GAMMA,
    _Factored,
    _Jacobian,
    _Kinetics,
    _Vessel,
)
from modulecontrol.simulators.models._integrate import FloatArray
from tests.simulators.conftest import crystal_species


def _log(lo: float, hi: float) -> st.SearchStrategy[float]:
    """A float between 10**lo and 10**hi, uniform in its exponent."""
    return st.floats(lo, hi).map(lambda e: 10.0 ** e)


def _vessel(kb2: float, ea: float, c_in: float, mu_in: float) -> tuple[_Vessel, float]:
    """CR's vessel for one step: primary nucleation, or secondary only (``kb2`` > 0: beside
    a primary part far larger, B's forward difference in mu3 is round-off noise), growth
    with an activation energy ``ea``, an inlet of ``c_in`` seeded with ``mu_in``
    crystals/m3 of 1 um."""
    cr = MsmprCrystallizer("CR", crystal_species(), MsmprParams.model_validate({
        "volume": 1e-3, "solute": "API", "crystal_density": 1300,
        "solubility": Solubility(coefficients=[10.0, 0.5], reference_temperature=273.15),
        "kb1": 0.0 if kb2 else 1e8, "b1": 2.0, "kb2": kb2, "b2": 1.5, "j": 1.0, "kg": 1e-7,
        "g": 1.3, "growth_activation_energy": ea}))
    seeds = (Solids(np.array([mu_in * 1e-6 ** k for k in range(5)]), cr.p.crystal_density,
                    cr.p.shape_factor) if mu_in > 0.0 else None)
    inlet = Stream(cr.species, 1e-3 / 1800, 290.0, 1e5, np.array([50000.0, c_in]), seeds)
    rk = cr.p.crystal_density * cr.p.shape_factor
    m = float(cr.species.molar_mass[1])
    vessel = _Vessel(_Kinetics(cr.p, rk, 0.0), inlet, inlet.flow / cr.p.volume, 2e-3, c_in,
                     rk / m)
    vessel.tj = 280.0
    return vessel, rk / m


states = st.fixed_dictionaries({
    "sigma": st.floats(0.01, 5.0),  # supersaturation: away from its kink at zero
    "temp": st.floats(275.0, 320.0),
    "mu0": _log(6.0, 14.0),
    "size": _log(-6.0, -3.5),  # m: a mean size, mu_k = mu0 size**k
    "kb2": st.sampled_from([0.0, 1e6, 1e9]),
    "ea": st.sampled_from([0.0, 40e3]),
    "c_in": st.floats(0.0, 300.0),
    "mu_in": st.sampled_from([0.0, 1e9]),
})


def _state(d: dict[str, float]) -> list[float]:
    mu = [d["mu0"] * d["size"] ** k for k in range(5)]
    c = (10.0 + 0.5 * (d["temp"] - 273.15)) * (1.0 + d["sigma"])  # c* of _vessel's crystallizer
    return [c, *mu, d["temp"]] + [0.0] * 6


def _by_hand(d: dict[str, float], y: list[float]) -> dict[str, tuple[float, float]]:
    """_vessel's G and the derivatives of B and G in c, T and mu3, worked out by hand (c* =
    10 + 0.5 (T - 273.15) mol/m3, B = 1e8 sigma^2 or kb2 sigma^1.5 M_T, G = 1e-7 sigma^1.3
    exp(-Ea/R (1/T - 1/298.15))), each with the sum of its terms' magnitudes (what a
    forward difference's error scales with where they cancel)."""
    c, m3, temp = y[0], y[4], y[6]
    cs = 10.0 + 0.5 * (temp - 273.15)
    sigma = (c - cs) / cs
    ds_dc, ds_dt = 1.0 / cs, -c * 0.5 / cs ** 2
    ea = d["ea"] / 8.314462618
    g = 1e-7 * sigma ** 1.3 * math.exp(-ea * (1.0 / temp - 1.0 / 298.15))
    dg_ds = 1.3 * g / sigma
    rk = 1300.0 * math.pi / 6.0
    if d["kb2"]:
        b = d["kb2"] * sigma ** 1.5 * rk * m3
        db_ds, db_dm3 = 1.5 * b / sigma, d["kb2"] * sigma ** 1.5 * rk
    else:
        db_ds, db_dm3 = 1e8 * 2.0 * sigma, 0.0
    return {"g": (g, g), "gc": (dg_ds * ds_dc, dg_ds * ds_dc),
            "gt": (dg_ds * ds_dt + g * ea / temp ** 2, abs(dg_ds * ds_dt) + g * ea / temp ** 2),
            "bc": (db_ds * ds_dc, db_ds * ds_dc), "bt": (db_ds * ds_dt, abs(db_ds * ds_dt)),
            "bm3": (db_dm3, db_dm3)}


def _expected(jac: _Jacobian, y: list[float]) -> FloatArray:
    """The Jacobian of the ODE of the module docstring, row by row, for ``jac``'s
    derivatives of B and G."""
    m0, m1, m2, m3 = y[1:5]
    q, rk_m, g = jac.q, jac.rk_m, jac.g
    j = np.zeros((13, 13))
    j[1, 0], j[1, 4], j[1, 6], j[1, 1] = jac.bc, jac.bm3, jac.bt, -q
    for k, prev in enumerate((m0, m1, m2, m3), start=1):
        j[1 + k, 0], j[1 + k, 6] = k * jac.gc * prev, k * jac.gt * prev
        j[1 + k, k], j[1 + k, 1 + k] = k * g, -q
    j[0, 0] = -q - 3.0 * rk_m * jac.gc * m2
    j[0, 3] = -3.0 * rk_m * g
    j[0, 6] = -3.0 * rk_m * jac.gt * m2
    j[6, 6] = -q - jac.kappa
    for k in range(6):
        j[7 + k, k] = q
    return j


@settings(max_examples=60, deadline=None)
@given(d=states)
def test_jacobian_by_entries_matches_the_derivatives_worked_out_by_hand(
        d: dict[str, float]) -> None:
    """B and G's differenced derivatives against those worked out by hand, to 1e-4 of
    their terms (the forward difference's truncation error, as the full forward
    difference had); every entry of the matrix where the rates put it; and the solute's
    row the conservation law's: w.J = 0 for w = solute + rk/M (mu3 + its outflow) +
    solute outflow, to round-off."""
    vessel, rk_m = _vessel(d["kb2"], d["ea"], d["c_in"], d["mu_in"])
    y = _state(d)
    jac, f0 = vessel.jacobian(y)
    assert f0 == vessel.f(y)
    for name, (value, terms) in _by_hand(d, y).items():
        assert abs(getattr(jac, name) - value) <= 1e-4 * terms, name
    dense, expected = jac.dense(), _expected(jac, y)
    assert np.array_equal(dense != 0.0, expected != 0.0)
    np.testing.assert_allclose(dense, expected, rtol=1e-14, atol=0.0)
    w = np.zeros(13)
    w[0], w[4], w[7], w[11] = 1.0, rk_m, 1.0, rk_m
    assert np.all(np.abs(w @ dense) <= 1e-15 * (np.abs(w) @ np.abs(dense)))


@settings(max_examples=100, deadline=None)
@given(
    q=_log(-6.0, -1.0),
    kappa=_log(-6.0, 0.0),
    g=_log(-12.0, -6.0),
    gc=_log(-14.0, -6.0),
    gt=st.floats(-1e-8, 1e-8),
    bc=_log(0.0, 12.0),
    bm3=st.sampled_from([0.0, 1e3, 1e9]),
    bt=st.floats(-1e9, 1e9),
    mu0=_log(6.0, 14.0),
    size=_log(-6.0, -3.5),
    h=_log(-3.0, 2.0),
    r=st.lists(st.floats(-1.0, 1.0, allow_subnormal=False), min_size=13, max_size=13),
)
def test_structured_solve_matches_lapack(
        q: float, kappa: float, g: float, gc: float, gt: float, bc: float, bm3: float,
        bt: float, mu0: float, size: float, h: float, r: list[float]) -> None:
    """The elimination by the structure solves W x = r: per row to round-off of the terms
    of that row (a backward error, whatever W's conditioning), and to 1e-10 of LAPACK's
    solution of the same system in the states' own scales where that is well
    conditioned."""
    mu = [mu0 * size ** k for k in range(4)]
    jac = _Jacobian(q, kappa, 3.6e3, mu, g, gc, gt, bc, bm3, bt)
    a = _GAMMA * h
    w = np.eye(13) - a * jac.dense()
    # right-hand sides of the moments' scales, as the rates have
    scale = np.array([1.0, mu0, *mu[1:], mu0 * size ** 4, 1.0, 1.0, mu0, *mu[1:],
                      mu0 * size ** 4])
    rhs = np.array(r) * scale
    x = np.array(_Factored(jac, a).solve(rhs.tolist()))
    terms = np.abs(w) @ np.abs(x) + np.abs(rhs)
    assert np.all(np.abs(w @ x - rhs) <= 1e-12 * terms + 1e-300)  # 1e-300: underflow
    # LAPACK on W as it is loses digits to the moments' scales (1e-3 of the solute's
    # increment in one case hypothesis found, which the old code took); on W in the states'
    # own scales it does not, and that system is well conditioned unless the step is
    # absurdly long
    scaled = w * scale[None, :] / scale[:, None]
    if np.linalg.cond(scaled) < 1e6:
        ref = np.linalg.solve(scaled, rhs / scale) * scale
        np.testing.assert_allclose(x / scale, ref / scale, rtol=0,
                                   atol=1e-10 * float(np.abs(ref / scale).max()))


def test_a_singular_step_is_refused_not_raised() -> None:
    """A W the elimination cannot solve (1 + gamma h q = 0) raises ZeroDivisionError, and
    ROS2 turns that, like a zero temperature, into NaN states, which the step's caller
    refuses and halves, as it did LAPACK's inf and NaN; nothing raises out of the step."""
    jac = _Jacobian(1.0, 0.5, 3.6e3, [1e9, 1e4, 1e-1, 1e-6], 1e-8, 1e-9, 1e-11, 1e7, 0.0, 1e5)
    with pytest.raises(ZeroDivisionError):
        _Factored(jac, -1.0)
    vessel, _ = _vessel(0.0, 0.0, 50.0, 0.0)
    y = _state({"sigma": 0.5, "temp": 290.0, "mu0": 1e9, "size": 1e-5})
    y[6] = 0.0
    out = vessel.ros2_step(y, 1.0)
    assert len(out) == 13 and all(math.isnan(v) for v in out)

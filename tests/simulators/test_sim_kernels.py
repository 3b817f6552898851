"""The coil reactor's compiled reaction sub-step (``models._kernels``) against independent
references: the full-species numpy rates and Jacobian of ``Kinetics`` (what the steady-state
solve and the BDF reference integrate), the generic batched ROS2 step, and the same source run
as Python (``NUMBA_DISABLE_JIT``) and compiled without the on-disk cache."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.simulators.models import Kinetics, Reaction, ros2_step
from tests.simulators.conftest import abc_species

NAMES = ("solvent", "A", "B", "C")
REPO = Path(__file__).resolve().parents[2]


@st.composite
def reaction_sets(draw: st.DrawFn) -> list[Reaction]:
    """1-4 reactions of power-law kinetics over A, B, C (and the solvent as a catalyst):
    fractional and zero orders, reversible ones whose forward and reverse laws have different
    numbers of terms, both rate-constant forms."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        involved = draw(st.lists(st.sampled_from(NAMES[1:]), min_size=1, max_size=3,
                                 unique=True))
        stoich = {s: float(draw(st.sampled_from([-2, -1, 1, 2]))) for s in involved}
        orders = None
        if draw(st.booleans()):
            orders = {s: draw(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0]))
                      for s in draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4,
                                             unique=True))}
        order = sum((orders or {s: -nu for s, nu in stoich.items() if nu < 0}).values())
        unit = f"(m**3/mol)**{order - 1:g}/s"
        reversible = draw(st.booleans()) and any(nu > 0 for nu in stoich.values())
        ea = draw(st.floats(0.0, 9e4))
        arrhenius = draw(st.booleans())
        k = draw(st.floats(1e-4, 1.0))
        kw: dict[str, object] = {"stoichiometry": stoich, "orders": orders, "Ea": ea,
                                 "dH": draw(st.floats(-1.5e5, 5e4))}
        if arrhenius:
            kw["A"] = f"{k * np.exp(ea / (8.314462618 * 320.0)):.17g} {unit}"
        else:
            kw["k_ref"], kw["T_ref"] = f"{k:.17g} {unit}", 320.0
        if reversible:
            rorder = sum(nu for nu in stoich.values() if nu > 0)
            runit = f"(m**3/mol)**{rorder - 1:g}/s"
            kr = draw(st.floats(1e-4, 1.0))
            ea_r = draw(st.floats(0.0, 9e4))
            kw["reversible"] = True
            kw["Ea_reverse"] = ea_r
            if arrhenius:
                kw["A_reverse"] = f"{kr * np.exp(ea_r / (8.314462618 * 320.0)):.17g} {runit}"
            else:
                kw["k_ref_reverse"] = f"{kr:.17g} {runit}"
        out.append(Reaction.model_validate(kw))
    return out


def _state(seed: int, n: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.0, 800.0, size=(n, len(NAMES)))
    c[rng.random(c.shape) < 0.15] = 0.0  # species at zero: the Jacobian's exact limit
    return c, rng.uniform(285.0, 370.0, size=n)


@settings(max_examples=60, deadline=None)
@given(reactions=reaction_sets(), seed=st.integers(0, 2**32 - 1))
def test_the_compiled_rates_and_jacobian_are_the_full_systems_restricted(
        reactions: list[Reaction], seed: int) -> None:
    kin = Kinetics(reactions, abc_species(), allow_unbalanced=True)
    c, temp = _state(seed)
    rho_cp = 3.9e6
    y = np.concatenate([c, temp[:, None]], axis=1)
    f_full, j_full = kin.rhs_and_jac(y, rho_cp)
    keep = np.concatenate([kin.active, [len(NAMES)]])
    f, j = kin.reduced_rhs_and_jac(c, temp, rho_cp)
    scale_f = np.abs(f_full[:, keep]).max() + 1e-300
    np.testing.assert_allclose(f, f_full[:, keep], rtol=1e-11, atol=1e-13 * scale_f)
    scale_j = np.abs(j_full[:, keep][:, :, keep]).max() + 1e-300
    np.testing.assert_allclose(j, j_full[:, keep][:, :, keep], rtol=1e-11,
                               atol=1e-13 * scale_j)
    np.testing.assert_allclose(kin.reduced_rhs(c, temp, rho_cp), f, rtol=1e-14, atol=0)


@settings(max_examples=30, deadline=None)
@given(reactions=reaction_sets(), seed=st.integers(0, 2**32 - 1),
       h=st.sampled_from([1e-3, 0.1, 2.0]))
def test_the_compiled_step_is_the_generic_ros2_step(
        reactions: list[Reaction], seed: int, h: float) -> None:
    """The sub-step's ROS2 (its own LU solves) against ``ros2_step`` (numpy's) on the same
    rates, with and without a balancing shift."""
    from modulecontrol.simulators.models._kernels import reaction_step

    kin = Kinetics(reactions, abc_species(), allow_unbalanced=True)
    c, temp = _state(seed)
    act = kin.active
    rho_cp = 3.9e6
    rng = np.random.default_rng(seed ^ 0x5EED)
    jac = kin.reduced_rhs_and_jac(c, temp, rho_cp)[1]
    y0 = np.concatenate([c[:, act], temp[:, None]], axis=1)
    for shift in (np.zeros((len(temp), act.size + 1)),
                  rng.normal(0.0, 1e-3, size=(len(temp), act.size + 1))):
        want = np.full_like(y0, np.nan)
        for i in range(len(temp)):  # tank by tank: numpy refuses a singular W outright
            def f(z: np.ndarray, i: int = i, shift: np.ndarray = shift) -> np.ndarray:
                cz = c[i:i + 1].copy()
                cz[:, act] = z[:, :-1]
                out: np.ndarray = kin.reduced_rhs(cz, z[:, -1], rho_cp) - shift[i:i + 1]
                return out

            def j(_z: np.ndarray, i: int = i) -> np.ndarray:
                out: np.ndarray = jac[i:i + 1]
                return out

            with np.errstate(all="ignore"), contextlib.suppress(np.linalg.LinAlgError):
                want[i] = ros2_step(f, j, y0[i:i + 1], h)[0]
        c1, t1, refused = reaction_step(c, temp, h, shift, kin.tables, rho_cp, 9e4)
        ok = ~refused & np.all(np.isfinite(want), axis=1)
        got = np.concatenate([c1[:, act], t1[:, None]], axis=1)
        # two LU solves of W = I - gamma h J agree to round-off times W's condition number
        # (a sixth-order law at 600 mol/m3 makes W nearly singular at any h)
        w = np.eye(act.size + 1) - (1.0 + 1.0 / np.sqrt(2.0)) * h * jac
        with np.errstate(all="ignore"):
            cond = np.linalg.cond(w)[:, None]
        scale = np.abs(y0).max(axis=1, keepdims=True) + np.abs(want)
        err = np.abs(got - want)
        assert np.all(err[ok] <= 1e-14 * np.maximum(cond[ok], 1.0) * scale[ok]), (
            err[ok] / scale[ok]).max()
        # the species no reaction changes are passed through untouched
        inactive = np.setdiff1d(np.arange(len(NAMES)), act)
        np.testing.assert_array_equal(c1[:, inactive], c[:, inactive])


_PROBE = """
import json, sys
import numpy as np
from modulecontrol.bootstrap import configure
configure()
from modulecontrol.simulators.lomustine import build_line
fs = build_line(dt=5.0).flowsheet
for _ in range(60):
    fs.step(5.0)
r2 = fs.units["R2"]
print(json.dumps({"c": r2.c.tolist(), "T": r2.T.tolist()}))
"""


def _python(code: str, **env: str) -> str:
    """The last line ``code`` prints, run in a fresh interpreter (a process of its own:
    what it compiled, and whether, is not this test process's)."""
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=240, env={**os.environ, **env})
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.strip().splitlines()[-1]


def _probe(**env: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = json.loads(_python(_PROBE, **env))
    return out


def test_the_compiled_source_runs_as_python_and_without_the_cache(tmp_path: Path) -> None:
    """Five minutes of the lomustine line's start-up (R2 integrated at every step): the
    compiled kernels (as cached), the same source run as Python (an index out of range
    raises there instead of reading other memory) and a compile with the cache off agree."""
    cached = _probe()
    python = _probe(NUMBA_DISABLE_JIT="1")
    uncached = _probe(MODULECONTROL_NUMBA_CACHE="off")
    for other in (python, uncached):
        for key in ("c", "T"):
            np.testing.assert_allclose(np.array(other[key]), np.array(cached[key]),
                                       rtol=1e-12, atol=1e-30)
    assert max(cached["T"]) > min(cached["T"]) + 1.0  # a transient, not a resting line


def test_a_served_plant_prepares_the_kernels_before_it_steps() -> None:
    """``Flowsheet.prepare`` (what ``PlantServer.start`` runs before it listens) compiles
    every kernel for the argument types the steps use, so that no step compiles (numba
    compiles at a function's first call: a served plant's first step stopped for seconds
    and the drivers' first reads timed out); building the models compiles nothing
    (``validate`` builds them)."""
    probe = (
        "from modulecontrol.bootstrap import configure\n"
        "configure()\n"
        "from modulecontrol.simulators.lomustine import build_line\n"
        "from modulecontrol.simulators.models import _kernels\n"
        "fs = build_line(dt=5.0).flowsheet\n"
        "built = _kernels._compiled is None\n"
        "fs.prepare()\n"
        "k = _kernels.kernels()\n"
        "ready = [len(getattr(k, n).signatures) for n in k._fields]\n"
        "for _ in range(240):\n"
        "    fs.step(5.0)\n"
        "after = [len(getattr(k, n).signatures) for n in k._fields]\n"
        "print(built, ready == after, min(ready))\n"
    )
    assert _python(probe).split() == ["True", "True", "1"]
    # a coil without reactions only transports: prepared too (a served load plant's coil
    # compiled the transport at its first step, and its drivers' first reads timed out)
    coil = (
        "from modulecontrol.bootstrap import configure\n"
        "configure()\n"
        "from modulecontrol.simulators.models import CoilReactor, CoilReactorParams, Stream\n"
        "from modulecontrol.simulators.models import _kernels\n"
        "from tests.simulators.conftest import abc_species\n"
        "sp = abc_species()\n"
        "r = CoilReactor('R', sp, CoilReactorParams(volume=1e-5, inner_diameter=1e-3,\n"
        "                n_tanks=10, ua=0.3))\n"
        "r.prepare()\n"
        "k = _kernels.kernels()\n"
        "ready = len(k.transport.signatures)\n"
        "feed = Stream.of(sp, 1e-5 / 600, 330.0, {'solvent': 15000, 'A': 500})\n"
        "for _ in range(20):\n"
        "    r.step(5.0, {'in': feed})\n"
        "print(ready, len(k.transport.signatures))\n"
    )
    assert _python(coil).split() == ["1", "1"]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_tanks=st.integers(1, 40),
       h=st.floats(0.01, 30.0), with_source=st.booleans())
def test_the_compiled_transport_is_the_weights_matrix_algebra(
        seed: int, n_tanks: int, h: float, with_source: bool) -> None:
    """The coil's exact transport, compiled, against its formulas in numpy matrix algebra
    on the same weights (``CoilReactor._weights``)."""
    from modulecontrol.simulators.models import CoilReactor, CoilReactorParams, Stream
    from modulecontrol.simulators.models._kernels import transport

    species = abc_species()
    r = Reaction(stoichiometry={"A": -1, "B": 1}, k_ref=0.05)
    coil = CoilReactor("R", species, CoilReactorParams(
        volume=1e-5, inner_diameter=1e-3, n_tanks=n_tanks, ua=0.3, reactions=[r]))
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.0, 900.0, size=(n_tanks, len(NAMES)))
    temp = rng.uniform(290.0, 360.0, size=n_tanks)
    feed = Stream.of(species, 1e-5 / 600, 330.0, {"solvent": 15000, "A": 500, "C": 20})
    v_t, tau_t, kappa, tj = 1e-5 / n_tanks, 1e-5 / n_tanks / (1e-5 / 600), 2e-3, 300.0
    w = coil._weights(h, tau_t, kappa)
    act = coil.kinetics.active
    q = (rng.normal(0.0, 0.1, size=(n_tanks, act.size)), rng.normal(0.0, 0.01, size=n_tanks))
    c1, t1, moles = transport(c, temp, feed.conc, feed.temperature, tj, v_t, tau_t, w, act,
                              q if with_source else None)
    e, g_c, cum_e, cum_g, e_t, g_t, g_q, g_qt, cum_q = w
    want_m = v_t * (cum_e @ c + cum_g[0] * feed.conc)
    want_c = e @ c + np.outer(g_c, feed.conc)
    want_t = tj + e_t @ (temp - tj) + g_t * (feed.temperature - tj)
    if with_source:
        want_m[act] += v_t * tau_t * (cum_q @ q[0])
        want_c[:, act] += tau_t * (g_q @ q[0])
        want_t = want_t + tau_t * (g_qt @ q[1])
    np.testing.assert_allclose(c1, want_c, rtol=1e-12, atol=1e-12 * np.abs(want_c).max())
    np.testing.assert_allclose(t1, want_t, rtol=1e-13)
    np.testing.assert_allclose(moles, want_m, rtol=1e-12, atol=1e-12 * np.abs(want_m).max())


def test_a_division_by_zero_in_a_kernel_is_refused_not_raised() -> None:
    """numpy's error model: 1/T at T = 0 in a kernel gives inf (or nan further on), the
    step is refused (then halved by the caller) as the numpy version refused it; numba's
    default error model raises ZeroDivisionError out of the plant's step (checked: this
    test fails with it)."""
    from modulecontrol.simulators.models._kernels import reaction_rhs, reaction_step

    kin = Kinetics([Reaction(stoichiometry={"A": -1, "B": 1}, k_ref=0.05, Ea=5e4,
                             dH=-1e5)], abc_species())
    c = np.array([[15000.0, 500.0, 0.0, 0.0]])
    zero = np.array([0.0])
    # 1/T at T = 0 is inf, and k = k_ref exp(-Ea/R (inf - 1/T_ref)) = 0: no rate, no error
    np.testing.assert_array_equal(reaction_rhs(c, zero, kin.tables, 3.9e6), 0.0)
    # the Jacobian's dk/dT = k Ea/(R T^2) is 0 * inf = nan there: W cannot be factored
    _, _, refused = reaction_step(c, zero, 1.0, np.zeros((1, 3)), kin.tables, 3.9e6, 5e4)
    assert refused.tolist() == [True]

"""Behaviour of the individual models, faults, integrators and the species table."""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from modulecontrol.simulators.models import (
    MODELS,
    BackPressureRegulator,
    BprParams,
    CoilReactor,
    CoilReactorParams,
    DivertValve,
    DivertValveParams,
    FaultError,
    Flowsheet,
    HplcPump,
    HplcPumpParams,
    Kinetics,
    MsmprCrystallizer,
    MsmprParams,
    PatAnalyzer,
    PatAnalyzerParams,
    Reaction,
    Solubility,
    SpeciesTable,
    Stream,
    SyringePump,
    SyringePumpParams,
    Thermostat,
    ThermostatParams,
    TMixer,
    TMixerParams,
    create_model,
    mix,
    ros2_step,
    tanks_from_dispersion,
)
from modulecontrol.units import to_si as q
from tests.simulators.conftest import crystal_species

ML_MIN = 1e-6 / 60


# ------------------------------------------------------------------------- species, registry
def test_species_table_from_yaml_with_units() -> None:
    table = SpeciesTable.from_yaml(
        "species:\n"
        "  - {name: water, molar_mass: 18.015 g/mol, density: 997 kg/m**3, "
        "viscosity: 0.89 mPa*s}\n"
        "  - {name: API, molar_mass: 0.3, density: 1300}\n"
    )
    assert table.names == ("water", "API")
    assert table.molar_mass[0] == pytest.approx(0.018015)
    assert table.viscosity(np.array([1.0, 0.0])) == pytest.approx(8.9e-4)


def test_species_table_rejects_unknown_keys_and_duplicates() -> None:
    with pytest.raises(ValueError, match="colour"):
        SpeciesTable.from_yaml("species:\n  - {name: x, molar_mass: 1, density: 1, colour: red}\n")
    with pytest.raises(ValueError, match="duplicate"):
        SpeciesTable.from_yaml(
            "species:\n  - {name: x, molar_mass: 1, density: 1}\n"
            "  - {name: x, molar_mass: 1, density: 1}\n"
        )
    with pytest.raises(KeyError, match="known: solvent"):
        SpeciesTable.from_yaml("species:\n  - {name: solvent, molar_mass: 1, density: 1}\n").index(
            "nope"
        )


def test_registry_builds_every_named_model(species: SpeciesTable) -> None:
    assert {
        "hplc_pump",
        "syringe_pump",
        "tmixer",
        "coil_reactor",
        "thermostat",
        "msmpr",
        "divert_valve",
        "bpr",
        "pat_analyzer",
    } <= set(MODELS)
    pump = create_model(
        "hplc_pump", "P", species, {"flow_setpoint": "2 mL/min", "feed": {"A": "1 mol/L"}}
    )
    assert isinstance(pump, HplcPump)
    assert pump.flow_setpoint == pytest.approx(2 * ML_MIN)
    with pytest.raises(KeyError, match="known:"):
        create_model("teleporter", "X", species)
    with pytest.raises(ValueError, match="n_tanks"):
        create_model("coil_reactor", "R", species, {"volume": "1 mL", "inner_diameter": "1 mm"})


def test_stream_helpers(species: SpeciesTable) -> None:
    s = Stream.of(species, "1 mL/min", "25 degC", {"A": q("1 mol/L"), "solvent": 17000})
    assert s.molar_flow("A") == pytest.approx(1000 * ML_MIN)
    assert s.mass_flow == pytest.approx(ML_MIN * (1000 * 0.1 + 17000 * 0.046))
    assert s.as_dict()["A"] == pytest.approx(1000)


# ----------------------------------------------------------------------------------- mixing
@settings(max_examples=40, deadline=None)
@given(
    q1=st.floats(1e-9, 1e-6),
    q2=st.floats(1e-9, 1e-6),
    t1=st.floats(270, 370),
    t2=st.floats(270, 370),
    a=st.floats(0, 2000),
)
def test_mixer_conserves_moles_and_bounds_temperature(
    q1: float, q2: float, t1: float, t2: float, a: float
) -> None:
    from modulecontrol.simulators.models import Species

    table = SpeciesTable(
        [
            Species(name="s", molar_mass=0.046, density=790),
            Species(name="A", molar_mass=0.1, density=1000),
        ]
    )
    s1 = Stream(table, q1, t1, 1e5, np.array([17000.0, a]))
    s2 = Stream(table, q2, t2, 1e5, np.array([17000.0, 0.0]))
    out = TMixer("M", table, TMixerParams()).step(1.0, {"in1": s1, "in2": s2})["out"]
    assert out.flow == pytest.approx(q1 + q2)
    assert out.molar_flows == pytest.approx(s1.molar_flows + s2.molar_flows)
    assert out.mass_flow == pytest.approx(s1.mass_flow + s2.mass_flow)
    assert min(t1, t2) - 1e-9 <= out.temperature <= max(t1, t2) + 1e-9


def test_mixing_temperature_is_heat_capacity_weighted(species: SpeciesTable) -> None:
    cold = Stream.of(species, "1 mL/min", "20 degC", {"solvent": 17000})
    hot = Stream.of(species, "3 mL/min", "60 degC", {"solvent": 17000})
    assert mix([cold, hot], species, 1e5).temperature == pytest.approx(273.15 + 50)


# ------------------------------------------------------------------------------------ pumps
def test_hplc_pump_ramps_and_counts_volume(species: SpeciesTable) -> None:
    p = HplcPump(
        "P",
        species,
        HplcPumpParams(
            feed={"A": 100}, flow_setpoint=q("6 mL/min"), running=True, ramp_rate=q("1 mL/min/s")
        ),
    )
    out = p.step(3.0)["out"]
    assert out.flow == pytest.approx(1.5 * ML_MIN)  # mean of the 0 -> 3 mL/min ramp
    assert p.state()["flow"] == pytest.approx(3 * ML_MIN)
    p.step(10.0)
    total = 0.5 * 6 * 6 + 6 * 7  # ramp 6 s to 6 mL/min, then 7 s plateau (mL/min*s)
    assert p.delivered_volume == pytest.approx(total * ML_MIN)


def test_hplc_pulsation_averages_out(species: SpeciesTable) -> None:
    p = HplcPump(
        "P",
        species,
        HplcPumpParams(
            feed={"A": 1},
            flow_setpoint=q("1 mL/min"),
            running=True,
            pulsation=0.3,
            stroke_volume=q("10 uL"),
        ),
    )
    flows = [p.step(0.05)["out"].flow for _ in range(2400)]
    assert max(flows) > 1.2 * ML_MIN and min(flows) < 0.8 * ML_MIN
    assert p.delivered_volume == pytest.approx(2.0 * ML_MIN * 60, rel=2e-3)


def test_hplc_overpressure_trips_until_reset(species: SpeciesTable) -> None:
    pump = HplcPump(
        "P",
        species,
        HplcPumpParams(
            feed={"solvent": 17000},
            running=True,
            flow_setpoint=q("1 mL/min"),
            max_pressure=q("10 bar"),
        ),
    )
    bpr = BackPressureRegulator("BPR", species, BprParams(setpoint=q("5 bar")))
    fs = Flowsheet(species, [pump, bpr], [((pump, "out"), (bpr, "in"))])
    fs.step(1.0)
    fs.step(1.0)
    assert pump.state()["pressure"] == pytest.approx(6.01325e5)
    assert not pump.tripped
    bpr.set_input("setpoint", "20 bar")
    fs.step(1.0)
    fs.step(1.0)
    assert pump.state()["tripped"] == 1.0 and fs.stream(pump, "out").flow == 0.0
    bpr.set_input("setpoint", "5 bar")
    fs.step(1.0)
    assert pump.state()["tripped"] == 1.0  # latched
    pump.reset()
    fs.step(1.0)
    assert fs.stream(pump, "out").flow == pytest.approx(ML_MIN)


def test_leak_fault_loses_volume_and_balance_closes(species: SpeciesTable) -> None:
    p = HplcPump(
        "P",
        species,
        HplcPumpParams(feed={"solvent": 17000}, running=True, flow_setpoint=q("1 mL/min")),
    )
    p.inject_fault("leak", fraction=0.25)
    for _ in range(60):
        p.step(1.0)
    assert p.delivered_volume == pytest.approx(0.75 * ML_MIN * 60)
    assert p.leaked_volume == pytest.approx(0.25 * ML_MIN * 60)
    assert abs(p.balance().residual) < 1e-15
    p.inject_fault("stall")
    assert p.step(1.0)["out"].flow == 0.0
    with pytest.raises(FaultError, match="known"):
        p.inject_fault("explode")


def test_syringe_pump_empties_refills_and_stalls(species: SpeciesTable) -> None:
    sp = SyringePump(
        "S",
        species,
        SyringePumpParams(
            feed={"solvent": 17000},
            diameter=q("14.5 mm"),
            syringe_volume=q("10 mL"),
            initial_volume=q("1 mL"),
            flow_setpoint=q("1 mL/min"),
            running=True,
            max_force=q("100 N"),
            refill_flow=q("10 mL/min"),
        ),
    )
    for _ in range(70):
        sp.step(1.0)
    assert sp.state()["empty"] == 1.0
    assert sp.delivered_volume == pytest.approx(1e-6)
    sp.refill()
    for _ in range(60):
        sp.step(1.0)
    assert sp.volume_left == pytest.approx(1e-5) and not sp.refilling
    # 100 N over a 14.5 mm plunger (165 mm2) is about 6 bar absolute
    sp.outlet_pressures["out"] = 7e5
    sp.step(1.0)
    assert sp.tripped
    assert abs(sp.balance().residual) < 1e-12


# ------------------------------------------------------------------------------- thermostat
def test_thermostat_power_limit_gives_a_ramp(species: SpeciesTable) -> None:
    th = Thermostat(
        "T",
        species,
        ThermostatParams(
            tau=60,
            heat_capacity=1.2e4,
            max_heating_power=500,
            initial_temperature=q("25 degC"),
            setpoint=q("50 degC"),
        ),
    )
    th.step(60.0)
    assert th.temperature - 273.15 == pytest.approx(25 + 500 * 60 / 1.2e4)
    assert th.power == pytest.approx(500)
    th.step(600.0)  # 480 s more at full power to 47.5 degC, then 120 s of free response
    assert th.temperature - 273.15 == pytest.approx(50 - 2.5 * math.exp(-2.0), abs=1e-9)


@pytest.mark.parametrize("dt", [0.5, 9.0, 45.0])
@pytest.mark.parametrize("start", [290.0, 345.0])  # saturated throughout / free -> saturated
def test_thermostat_update_is_exact_for_any_step(
    species: SpeciesTable, dt: float, start: float
) -> None:
    kw = dict(
        tau=60,
        heat_capacity=1.2e4,
        max_heating_power=800,
        max_cooling_power=300,
        ua_ambient=20,
        initial_temperature=start,
        setpoint=340.0,
    )
    fine = Thermostat("F", species, ThermostatParams(**kw))
    coarse = Thermostat("C", species, ThermostatParams(**kw))
    for _ in range(int(900 / 0.1)):
        fine.step(0.1)
    for _ in range(int(900 / dt)):
        coarse.step(dt)
    assert coarse.temperature == pytest.approx(fine.temperature, abs=1e-6)


@pytest.mark.parametrize("load", [-0.4040178629026855, -0.4040178629205968])
def test_a_bath_leaving_its_power_limit_within_a_step_integrates_the_whole_step(
    species: SpeciesTable, load: float
) -> None:
    """The lomustine R1 jacket 60 s into a start-up (heating at its 2 kW limit to 40 degC,
    the coil's wall on it): two loads 2e-11 W apart once ended 0.8 K apart after this 5 s
    step. Leaving the limit, the free response's switch ratio for that limit is 1 up to
    round-off; a ratio of 1 - 1e-16 switched back to the limit at once, chattered through
    the step's four passes and dropped the rest of the step. Both loads now give the exact
    solution: the limit until the demand falls to it, then the first-order response."""
    th = Thermostat("J", species, ThermostatParams(tau=60, heat_capacity=1.2e4,
                                                   max_heating_power=2000,
                                                   max_cooling_power=1000))
    th.temperature, th.setpoint = 303.14797391146175, 313.15
    th.heat_load, th.load_conductance = load, 2.0
    th.step(5.0)
    # by hand: C dT/dt = 2000 + load - 2 (T - T0) until the demand 200 (Tsp - T) + d_ss
    # reaches 2000 W, then T follows Tsp - (Tsp - T) exp(-t / 60)
    t0, c, g, tau, sp = 303.14797391146175, 1.2e4, 2.0, 60.0, 313.15
    a = c / tau - g
    d_ss = -(load + g * (t0 - sp))
    target = sp - (2000.0 - d_ss) / a
    t_sat = -c / g * math.log1p(-g * (target - t0) / (2000.0 + load))
    expected = sp - (sp - target) * math.exp(-(5.0 - t_sat) / tau)
    assert 0.0 < t_sat < 5.0
    assert th.temperature == pytest.approx(expected, abs=1e-9)


def test_thermostat_failure_drifts_to_ambient(species: SpeciesTable) -> None:
    th = Thermostat(
        "T",
        species,
        ThermostatParams(
            tau=60,
            ua_ambient=10,
            heat_capacity=1.2e4,
            ambient_temperature=293.15,
            initial_temperature=333.15,
            setpoint=333.15,
        ),
    )
    th.step(100.0)
    assert th.temperature == pytest.approx(333.15)
    th.inject_fault("failure")
    th.step(1.2e4 / 10)  # one time constant of the bath
    assert th.temperature == pytest.approx(293.15 + 40 * math.exp(-1))
    assert th.state()["failed"] == 1.0


# --------------------------------------------------------------------------------- reactor
def test_tanks_from_dispersion_matches_bodenstein() -> None:
    n, bo = tanks_from_dispersion(1e-5, 1e-3, ML_MIN)
    assert bo == pytest.approx(115.2, rel=0.01)
    assert 50 <= n <= 60


def test_reversible_reaction_reaches_equilibrium(species: SpeciesTable) -> None:
    r = Reaction(stoichiometry={"A": -1, "B": 1}, k_ref=0.05, reversible=True, k_ref_reverse=0.0125)
    reactor = CoilReactor(
        "R",
        species,
        CoilReactorParams(volume=1e-5, inner_diameter=1e-3, n_tanks=10, ua=0, reactions=[r]),
    )
    feed = Stream.of(species, 1e-5 / 6000, 298.15, {"solvent": 15000, "A": 500})
    out = reactor.steady_state({"in": feed})["out"]
    assert out.concentration("B") / out.concentration("A") == pytest.approx(4.0, rel=1e-3)


def test_reduced_kinetics_agree_with_the_full_system(species: SpeciesTable) -> None:
    """The plant's hot path integrates only the species reactions change (plus T); its
    derivatives and Jacobian must be the full system's restricted to them, with catalysts
    (an order but no stoichiometry), reversible and fractional-order reactions, and zeros."""
    reactions = [
        Reaction(stoichiometry={"A": -1, "B": 1}, orders={"A": 1, "C": 1}, k_ref=0.05,
                 reversible=True, k_ref_reverse=0.0125, Ea=5e4, T_ref=320.0, dH=-8e4),
        Reaction(stoichiometry={"A": -2, "C": 1}, orders={"A": 1.5}, k_ref=0.002, Ea=3e4,
                 T_ref=310.0),
    ]
    kin = Kinetics(reactions, species)
    rng = np.random.default_rng(1)
    c = rng.uniform(0.0, 800.0, size=(6, len(species)))
    c[0, 1] = 0.0  # a first-order species at zero: the Jacobian takes the exact limit
    c[1, 3] = 0.0
    temp = rng.uniform(290.0, 350.0, size=6)
    rho_cp = 3.9e6
    y = np.concatenate([c, temp[:, None]], axis=1)
    f_full, j_full = kin.rhs_and_jac(y, rho_cp)
    keep = np.concatenate([kin.active, [len(species)]])
    f_red, j_red = kin.reduced_rhs_and_jac(c, temp, rho_cp)
    np.testing.assert_allclose(f_red, f_full[:, keep], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(j_red, j_full[:, keep][:, :, keep], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(kin.reduced_rhs(c, temp, rho_cp), f_red, rtol=1e-14)
    assert list(kin.active) == [species.index("A"), species.index("B"), species.index("C")]
    # the catalyst-only dependence on C still enters the rates
    c2 = c.copy()
    c2[:, species.index("solvent")] += 1.0
    np.testing.assert_array_equal(kin.reduced_rhs(c2, temp, rho_cp), f_red)


def test_unbalanced_reaction_is_rejected(species: SpeciesTable) -> None:
    with pytest.raises(ValueError, match="not mass balanced"):
        CoilReactor(
            "R",
            species,
            CoilReactorParams(
                volume=1e-5,
                inner_diameter=1e-3,
                n_tanks=2,
                reactions=[Reaction(stoichiometry={"A": -1, "C": 1}, k_ref=0.1)],
            ),
        )


def _hot_reactor(species: SpeciesTable, integrator: Literal["split", "bdf"]) -> CoilReactor:
    rx = Reaction(
        stoichiometry={"A": -2, "C": 1},
        k_ref=q("0.02 L/(mol*s)"),
        Ea=q("60 kJ/mol"),
        T_ref=q("60 degC"),
        dH=q("-120 kJ/mol"),
    )
    return CoilReactor(
        "R",
        species,
        CoilReactorParams(
            volume=q("5 mL"),
            inner_diameter=q("1 mm"),
            n_tanks=8,
            reactions=[rx],
            ua=0.05,
            jacket_temperature=q("60 degC"),
            initial_temperature=q("60 degC"),
            max_substep=2.0,
            integrator=integrator,
        ),
    )


def test_split_integrator_agrees_with_scipy_bdf(species: SpeciesTable) -> None:
    feed = Stream.of(species, "1 mL/min", "25 degC", {"solvent": 15000, "A": 1500})
    split, bdf = _hot_reactor(species, "split"), _hot_reactor(species, "bdf")
    for _ in range(60):
        o1 = split.step(10.0, {"in": feed})["out"]
        o2 = bdf.step(10.0, {"in": feed})["out"]
    assert o1.conc == pytest.approx(o2.conc, rel=2e-3, abs=1e-3)
    assert pytest.approx(bdf.T, abs=0.05) == split.T
    assert split.T.max() > 333.15  # exothermic hot spot above the jacket
    for _ in range(300):  # 10 residence times more: settles on the steady state
        o1 = split.step(10.0, {"in": feed})["out"]
    ss = _hot_reactor(species, "split").steady_state({"in": feed})["out"]
    assert ss.conc == pytest.approx(o1.conc, rel=2e-3, abs=1e-3)


def test_a_trace_of_a_feed_has_the_heat_capacity_of_the_liquid_around_it(
    species: SpeciesTable,
) -> None:
    """The first front out of an empty reactor is a trace of the feed in the unlisted liquid
    the reactor started with (water): its heat capacity is the liquid's, not a trace of one.
    A twin's replay took 7e-15 J/(m3 K) from such a stream into a coil, whose jacket term
    then became 4e19 1/s and its tanks' temperature -6e19 K within a step."""
    feed = Stream.of(species, "1 mL/min", "25 degC", {"solvent": 15000, "A": 1500})
    rho_cp = float(feed.conc @ (species.molar_mass * species.heat_capacity))
    filled = float(feed.conc @ species.molar_volume)
    assert filled > 1.0  # the feed's species fill its volume: nothing is added
    assert feed.volumetric_heat_capacity == rho_cp
    for x in (1e-20, 1e-6, 0.3):
        trace = feed.with_(conc=feed.conc * x)
        assert trace.volumetric_heat_capacity == pytest.approx(
            x * rho_cp + (1.0 - x * filled) * 4.18e6, rel=1e-12)
    # A coil full of reacting feed that is then fed a trace and stopped: with a trace of a
    # heat capacity its reaction heat had no step (ModelStateError after 12 halvings, the
    # tank from 333 to 317 K)
    reactor = _hot_reactor(species, "split")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by a vanishing heat capacity either
        for inflow in (feed, feed.with_(conc=feed.conc * 1e-17), feed.with_(flow=0.0), feed):
            reactor.step(10.0, {"in": inflow})
    assert np.all((reactor.T > 298.0) & (reactor.T < 373.15)), reactor.T


def test_fouling_raises_pressure_drop_and_shortens_residence(species: SpeciesTable) -> None:
    reactor = CoilReactor(
        "R", species, CoilReactorParams(volume=q("10 mL"), inner_diameter=q("1 mm"), n_tanks=5)
    )
    feed = Stream.of(species, "1 mL/min", 298.15, {"solvent": 17000})
    reactor.step(1.0, {"in": feed})
    clean_dp, clean_tau = reactor.pressure_drop(), reactor.residence_time
    reactor.inject_fault("fouling", volume_fraction=0.2)
    assert reactor.pressure_drop() == pytest.approx(clean_dp / 0.8**2)
    assert reactor.residence_time == pytest.approx(0.8 * clean_tau)
    reactor.step(1.0, {"in": feed})
    assert abs(reactor.balance().residual) < 1e-12 * reactor.balance().mass_in + 1e-18
    reactor.clear_fault("fouling")
    assert reactor.residence_time == pytest.approx(clean_tau)


def test_ros2_is_second_order_against_solve_ivp() -> None:
    def f(y: np.ndarray) -> np.ndarray:  # Robertson-like stiff but smooth kinetics
        a, b = y[:, 0], y[:, 1]
        return np.stack([-0.5 * a * a + 2.0 * b, 0.25 * a * a - 2.0 * b - 30.0 * b], axis=1)

    def jac(y: np.ndarray) -> np.ndarray:
        a = y[:, 0]
        j = np.zeros((y.shape[0], 2, 2))
        j[:, 0, 0], j[:, 0, 1] = -a, 2.0
        j[:, 1, 0], j[:, 1, 1] = 0.5 * a, -32.0
        return j

    ref = solve_ivp(
        lambda _t, y: f(y[None])[0], (0, 2.0), [1.0, 0.0], method="Radau", rtol=1e-12, atol=1e-14
    ).y[:, -1]
    errors = []
    for n in (20, 40, 80):
        y = np.array([[1.0, 0.0]])
        for _ in range(n):
            y = ros2_step(f, jac, y, 2.0 / n)
        errors.append(float(np.abs(y[0] - ref).max()))
    assert errors[0] / errors[1] == pytest.approx(4.0, rel=0.25)
    assert errors[1] / errors[2] == pytest.approx(4.0, rel=0.25)


# ------------------------------------------------------------------------------ crystallizer
def test_msmpr_kinetic_steady_state_matches_dynamics_and_antisolvent_lowers_solubility() -> None:
    table = crystal_species(antisolvent=True)
    params = MsmprParams(
        volume=q("0.5 L"),
        solute="API",
        antisolvent="water",
        crystal_density=1300,
        solubility=Solubility(coefficients=[20.0, 1.0], antisolvent_exponent=3.0),
        kb1=1e6,
        b1=2,
        kb2=1e5,
        b2=1,
        j=1,
        kg=1e-7,
        g=1.5,
        ua=30,
        jacket_temperature=q("5 degC"),
        max_substep=60,
    )
    feed = Stream.of(table, "10 mL/min", "50 degC", {"EtOH": 15000, "API": 200})
    water = Stream.of(table, "5 mL/min", "20 degC", {"water": 55000})
    ss = MsmprCrystallizer("A", table, params)
    ss.steady_state({"feed": feed, "antisolvent": water})
    dyn = MsmprCrystallizer("B", table, params)
    for _ in range(int(12 * 2000 / 30)):
        dyn.step(30.0, {"feed": feed, "antisolvent": water})
    for key in ("concentration", "L43", "L10", "suspension_density", "yield", "temperature"):
        assert dyn.state()[key] == pytest.approx(ss.state()[key], rel=5e-3), key
    assert ss.solubility(phi=0.3) < ss.solubility(phi=0.0)
    assert 0 < ss.state()["yield"] < 1
    assert abs(dyn.balance().residual) < 1e-9 * dyn.balance().mass_in


def test_msmpr_cooling_profile_drives_jacket() -> None:
    table = crystal_species()
    cr = MsmprCrystallizer(
        "C",
        table,
        MsmprParams(
            volume=q("0.1 L"),
            solute="API",
            crystal_density=1300,
            solubility=Solubility(kind="apelblat", coefficients=[-20.0, 0.0, 4.0]),
            cooling_profile=[(0, q("60 degC")), (3600, q("10 degC"))],
            initial_temperature=q("60 degC"),
            ua=50,
            kg=1e-7,
            kb1=1e6,
        ),
    )
    for _ in range(180):
        cr.step(10.0)
    assert cr.jacket_temperature == pytest.approx(273.15 + 10 + 50 * 0.5)
    assert cr.T < 273.15 + 60


# --------------------------------------------------------------------- valve, bpr, analyzer
def test_divert_valve_counts_volumes(species: SpeciesTable) -> None:
    v = DivertValve("V", species, DivertValveParams())
    s = Stream.of(species, "2 mL/min", 298.15, {"solvent": 17000})
    v.step(30.0, {"in": s})
    v.set_input("to_waste", True)
    out = v.step(15.0, {"in": s})
    assert out["product"].flow == 0.0 and out["waste"].flow == s.flow
    assert v.state()["product_volume"] == pytest.approx(1e-6)
    assert v.state()["diverted_volume"] == pytest.approx(0.5e-6)
    assert v.state()["switch_count"] == 1.0


def test_pressure_propagates_back_from_bpr_through_coil(species: SpeciesTable) -> None:
    pump = HplcPump(
        "P",
        species,
        HplcPumpParams(feed={"solvent": 17000}, running=True, flow_setpoint=q("1 mL/min")),
    )
    reactor = CoilReactor(
        "R", species, CoilReactorParams(volume=q("10 mL"), inner_diameter=q("1 mm"), n_tanks=5)
    )
    bpr = BackPressureRegulator("B", species, BprParams(setpoint=q("7 bar")))
    fs = Flowsheet(
        species,
        [pump, reactor, bpr],
        [((pump, "out"), (reactor, "in")), ((reactor, "out"), (bpr, "in"))],
    )
    fs.step(1.0)
    assert bpr.inlet_pressure == pytest.approx(101325 + 7e5)
    assert pump.discharge_pressure == pytest.approx(101325 + 7e5 + reactor.pressure_drop())
    assert reactor.pressure_drop() > 3000


def test_analyzer_dead_time_noise_and_drift(species: SpeciesTable) -> None:
    def run(seed: int, noise: float, drift: float) -> list[float]:
        pat = PatAnalyzer(
            "PAT",
            species,
            PatAnalyzerParams(
                species=["A", "B"], product="B", dead_time=20, noise=noise, drift=drift, seed=seed
            ),
        )
        vals = []
        for k in range(60):
            conc = {"A": 100, "B": 300} if k >= 10 else {"A": 400, "B": 0}
            pat.step(1.0, {"in": Stream.of(species, "1 mL/min", 298.15, conc)})
            vals.append(pat.state()["c_B"])
        return vals

    clean = run(0, 0.0, 0.0)
    # the step ending at t = 11 s carries the change; it is reported 20 s later
    assert clean[29] == 0.0 and clean[30] == pytest.approx(300.0)
    assert run(3, 2.0, 0.0) == run(3, 2.0, 0.0)
    assert run(3, 2.0, 0.0) != run(4, 2.0, 0.0)
    assert run(0, 0.0, 0.1)[-1] == pytest.approx(300.0 + 0.1 * 60)


def test_sensor_faults_on_any_model(species: SpeciesTable) -> None:
    th = Thermostat("T", species, ThermostatParams(initial_temperature=300, setpoint=320))
    th.inject_fault("stuck", variable="temperature")
    th.step(600.0)
    assert th.measurements()["temperature"] == 300.0
    assert th.state()["temperature"] > 315
    th.clear_fault("stuck", "temperature")
    th.inject_fault("drift", variable="temperature", rate=0.01)
    th.step(100.0)
    assert th.measurements()["temperature"] == pytest.approx(th.temperature + 1.0)
    with pytest.raises(FaultError, match="variable"):
        th.inject_fault("noise", variable="nope", std=1.0)


@pytest.mark.parametrize("activity", [0.1, 0.5, 1.0])
def test_deactivation_is_the_same_reactor_with_its_rate_constants_scaled(
        species: SpeciesTable, activity: float) -> None:
    """The fault a calibrated twin does not know: every rate constant times ``activity``,
    the same outlet as a reactor written with k_ref x activity; clearing restores it."""
    def reactor(k: float) -> CoilReactor:
        rx = Reaction(stoichiometry={"A": -1, "B": 1}, k_ref=k)
        return CoilReactor("R", species, CoilReactorParams(
            volume=q("5 mL"), inner_diameter=q("1 mm"), n_tanks=4, reactions=[rx]))

    feed = Stream.of(species, "1 mL/min", 298.15, {"solvent": 15000, "A": 1500})
    faulty, scaled, clean = reactor(0.01), reactor(0.01 * activity), reactor(0.01)
    faulty.inject_fault("deactivation", activity=activity)
    out = faulty.steady_state({"in": feed})["out"]
    assert out.conc == pytest.approx(scaled.steady_state({"in": feed})["out"].conc, rel=1e-9)
    for _ in range(5):
        faulty.step(10.0, {"in": feed})
    assert abs(faulty.balance().residual) < 1e-12 * faulty.balance().mass_in + 1e-18
    faulty.clear_fault("deactivation")
    assert faulty.steady_state({"in": feed})["out"].conc == pytest.approx(
        clean.steady_state({"in": feed})["out"].conc, rel=1e-9)

"""Acceptance tests of the process models, with the tolerances of the specification."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modulecontrol.simulators.models import (
    CoilReactor,
    CoilReactorParams,
    DivertValve,
    DivertValveParams,
    Flowsheet,
    HplcPump,
    HplcPumpParams,
    MsmprCrystallizer,
    MsmprParams,
    Reaction,
    Solubility,
    Species,
    SpeciesTable,
    Stream,
    Thermostat,
    ThermostatParams,
    TMixer,
    TMixerParams,
)
from modulecontrol.units import to_si as q
from tests.simulators.conftest import crystal_species

TAU = 600.0
VOLUME = 1e-5


def _first_order_reactor(species: SpeciesTable, n: int) -> CoilReactor:
    return CoilReactor(
        "R",
        species,
        CoilReactorParams(
            volume=VOLUME,
            inner_diameter=1e-3,
            n_tanks=n,
            ua=0.0,
            reactions=[Reaction(stoichiometry={"A": -1, "B": 1}, k_ref=2.0 / TAU)],
        ),
    )


@pytest.mark.parametrize(("n", "expected"), [(1, 0.6667), (5, 0.8141), (50, 0.8593)])
def test_tanks_in_series_first_order_conversion(
    species: SpeciesTable, n: int, expected: float
) -> None:
    feed = Stream.of(species, VOLUME / TAU, 298.15, {"solvent": 15000, "A": 1000})
    reactor = _first_order_reactor(species, n)
    reactor.steady_state({"in": feed})
    assert reactor.conversion("A", feed) == pytest.approx(expected, abs=1e-4)
    # the analytic value 1 - (1 + k tau/N)^-N, independently
    assert reactor.conversion("A", feed) == pytest.approx(1 - (1 + 2.0 / n) ** -n, abs=1e-9)


@pytest.mark.parametrize("n", [1, 5, 50])
def test_dynamic_reactor_settles_on_the_steady_state(species: SpeciesTable, n: int) -> None:
    feed = Stream.of(species, VOLUME / TAU, 298.15, {"solvent": 15000, "A": 1000})
    reactor = _first_order_reactor(species, n)
    for _ in range(int(25 * TAU / 5.0)):
        out = reactor.step(5.0, {"in": feed})["out"]
    assert 1 - out.concentration("A") / 1000 == pytest.approx(1 - (1 + 2.0 / n) ** -n, abs=3e-4)


def test_thermostat_first_order_step(species: SpeciesTable) -> None:
    th = Thermostat(
        "TH",
        species,
        ThermostatParams(
            tau=60, initial_temperature=q("25 degC"), setpoint=q("50 degC"), max_heating_power=1e5
        ),
    )
    temps = {}
    for k in range(1, 181):
        th.step(1.0)
        temps[k] = th.temperature - 273.15
    assert temps[60] == pytest.approx(40.80, abs=0.05)
    assert temps[180] == pytest.approx(48.76, abs=0.05)


def test_pressure_drop_hagen_poiseuille(species: SpeciesTable) -> None:
    table = SpeciesTable(
        [Species(name="solvent", molar_mass=q("46 g/mol"), density=790, viscosity=q("0.46 mPa*s"))]
    )
    reactor = CoilReactor(
        "R", table, CoilReactorParams(volume=q("10 mL"), inner_diameter=q("1.0 mm"), n_tanks=10)
    )
    reactor.step(1.0, {"in": Stream.of(table, "1 mL/min", concentrations={"solvent": 17000})})
    assert reactor.pressure_drop() == pytest.approx(3.98e3, rel=0.01)


def _msmpr(table: SpeciesTable) -> MsmprCrystallizer:
    return MsmprCrystallizer(
        "CR",
        table,
        MsmprParams(
            volume=q("1 L"),
            solute="API",
            crystal_density=1300,
            shape_factor=math.pi / 6,
            solubility=Solubility(coefficients=[10.0]),
            fixed_nucleation_rate=1e8,
            fixed_growth_rate=1e-8,
            max_substep=60,
        ),
    )  # 0.01 um/s


def test_msmpr_fixed_kinetics_moments() -> None:
    table = crystal_species()
    feed = Stream(table, 1e-3 / 1800, 298.15, 1e5, np.array([50000.0, 100.0]))
    steady = _msmpr(table)
    steady.steady_state({"feed": feed})
    dynamic = _msmpr(table)
    for _ in range(int(15 * 1800 / 30)):
        dynamic.step(30.0, {"feed": feed})
    for cr in (steady, dynamic):
        s = cr.state()
        assert s["L10"] == pytest.approx(18e-6, rel=0.02)
        assert s["L43"] == pytest.approx(72e-6, rel=0.02)
        assert s["suspension_density"] == pytest.approx(4.29, rel=0.02)


def _plant(species: SpeciesTable) -> Flowsheet:
    r = Reaction(
        stoichiometry={"A": -1, "B": 1},
        k_ref=q("0.004 1/s"),
        reversible=True,
        k_ref_reverse=q("0.001 1/s"),
        Ea=q("40 kJ/mol"),
        dH=q("-30 kJ/mol"),
    )
    pump = HplcPump(
        "P1",
        species,
        HplcPumpParams(
            feed={"solvent": 15000, "A": 800},
            flow_setpoint=q("1 mL/min"),
            running=True,
            ramp_rate=q("0.5 mL/min/s"),
            pulsation=0.05,
        ),
    )
    reactor = CoilReactor(
        "R1",
        species,
        CoilReactorParams(
            volume=q("10 mL"),
            inner_diameter=q("1 mm"),
            design_flow=q("1 mL/min"),
            reactions=[r],
            jacket_temperature=q("60 degC"),
            max_tanks=40,
        ),
    )
    valve = DivertValve("V1", species, DivertValveParams())
    return Flowsheet(
        species,
        [pump, reactor, valve],
        [((pump, "out"), (reactor, "in")), ((reactor, "out"), (valve, "in"))],
    )


def test_mass_balance_closes_over_24h(species: SpeciesTable) -> None:
    fs = _plant(species)
    pump = fs.units["P1"]
    valve = fs.units["V1"]
    dt = 10.0
    for k in range(int(86400 / dt)):
        if k == 2000:
            pump.set_input("flow_setpoint", "2.5 mL/min")
        if k == 4000:
            valve.set_input("to_waste", True)
        if k == 6000:
            pump.set_input("flow_setpoint", "0.3 mL/min")
            valve.set_input("to_waste", False)
        fs.step(dt)
    for name, b in fs.balances().items():
        assert b.mass_in > 0, name
        assert abs(b.residual) <= 1e-6 * b.mass_in, (name, b)
    # and between elements: what one unit sent is what the next received
    bal = fs.balances()
    assert bal["P1"].mass_out == pytest.approx(bal["R1"].mass_in, rel=1e-12)
    assert bal["R1"].mass_out == pytest.approx(bal["V1"].mass_in, rel=1e-12)
    assert bal["R1"].holdup > 0


def test_step_in_pump_flow_reaches_outlet_after_residence_time(species: SpeciesTable) -> None:
    solvent = HplcPump(
        "P0",
        species,
        HplcPumpParams(feed={"solvent": 17000}, flow_setpoint=q("1 mL/min"), running=True),
    )
    reagent = HplcPump(
        "P1",
        species,
        HplcPumpParams(
            feed={"solvent": 15000, "A": 800}, flow_setpoint=q("0.5 mL/min"), running=True
        ),
    )
    mixer = TMixer("M", species, TMixerParams())
    reactor = CoilReactor(
        "R", species, CoilReactorParams(volume=q("10 mL"), inner_diameter=q("1 mm"), n_tanks=50)
    )
    fs = Flowsheet(
        species,
        [solvent, reagent, mixer, reactor],
        [
            ((solvent, "out"), (mixer, "in1")),
            ((reagent, "out"), (mixer, "in2")),
            ((mixer, "out"), (reactor, "in")),
        ],
    )
    fs.steady_state()
    c_before = fs.stream(reactor, "out").concentration("A")
    reagent.set_input("flow_setpoint", "1 mL/min")
    fs.step(1.0)
    c_after = fs.stream(mixer, "out").concentration("A")  # the new feed, at once
    tau = reactor.residence_time  # at the new total flow of 2 mL/min: 300 s
    assert tau == pytest.approx(300.0, rel=1e-6)
    t, trace = 1.0, []
    while t < 3 * tau:
        fs.step(1.0)
        t += 1.0
        frac = (fs.stream(reactor, "out").concentration("A") - c_before) / (c_after - c_before)
        trace.append((t, frac))
    half = next(t for t, f in trace if f >= 0.5)
    assert half == pytest.approx(tau, rel=0.05)
    assert all(f < 0.05 for t, f in trace if t < 0.6 * tau)
    assert all(f > 0.95 for t, f in trace if t > 1.5 * tau)

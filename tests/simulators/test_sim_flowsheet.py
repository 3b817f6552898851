"""Flowsheet wiring, thermostat coupling, steady state and a clock-paced run."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.clock import Clock
from modulecontrol.simulators.models import (
    CoilReactor,
    CoilReactorParams,
    Flowsheet,
    HplcPump,
    HplcPumpParams,
    Reaction,
    SpeciesTable,
    Thermostat,
    ThermostatParams,
    TMixer,
    TMixerParams,
)
from modulecontrol.units import to_si as q


def _jacketed(species: SpeciesTable, max_substep: float = 10.0) -> Flowsheet:
    rx = Reaction(
        stoichiometry={"A": -1, "B": 1},
        k_ref=0.01,
        Ea=q("50 kJ/mol"),
        T_ref=q("50 degC"),
        dH=q("-100 kJ/mol"),
    )
    pump = HplcPump(
        "P",
        species,
        HplcPumpParams(
            feed={"solvent": 15000, "A": 2000}, flow_setpoint=q("2 mL/min"), running=True
        ),
    )
    reactor = CoilReactor(
        "R",
        species,
        CoilReactorParams(
            volume=q("10 mL"),
            inner_diameter=q("1 mm"),
            n_tanks=10,
            reactions=[rx],
            ua=0.5,
            max_substep=max_substep,
        ),
    )
    th = Thermostat(
        "TH", species, ThermostatParams(setpoint=q("50 degC"), initial_temperature=q("20 degC"))
    )
    fs = Flowsheet(species, [pump, reactor, th], [((pump, "out"), (reactor, "in"))])
    fs.link_jacket(th, reactor)
    return fs


def test_thermostat_drives_jacket_and_carries_the_heat_load(species: SpeciesTable) -> None:
    fs = _jacketed(species)
    for _ in range(400):
        fs.step(5.0)
    with pytest.raises(ValueError, match="already has a thermostat"):
        fs.link_jacket("TH", "R")
    with pytest.raises(TypeError, match="not a thermostat"):
        fs.link_jacket("P", "R")
    th, reactor = fs.units["TH"], fs.units["R"]
    assert isinstance(th, Thermostat) and isinstance(reactor, CoilReactor)
    assert reactor.jacket_temperature == pytest.approx(th.temperature)
    assert th.temperature == pytest.approx(q("50 degC"), abs=0.01)
    # exothermic: heat flows into the jacket, the bath controller cools accordingly
    assert th.heat_load == pytest.approx(reactor.wall_heat_duty) and th.heat_load > 0
    assert th.power == pytest.approx(-th.heat_load, rel=1e-3)


def test_flowsheet_steady_state_matches_long_dynamic_run(species: SpeciesTable) -> None:
    ss = _jacketed(species)
    ss.steady_state()
    b = ss.stream("R", "out")
    for h in (5.0, 1.0):
        # balanced splitting: the exact steady state is the split step's fixed point, at
        # any internal step (plain Strang splitting settled 2e-3 off at 1 s, 25 times that
        # at 5 s)
        dyn = _jacketed(species, max_substep=h)
        for _ in range(1000):
            dyn.step(5.0)
        a = dyn.stream("R", "out")
        assert a.temperature == pytest.approx(b.temperature, rel=1e-9)
        assert a.concentration("A") == pytest.approx(b.concentration("A"), rel=1e-8)
        assert a.concentration("C") == pytest.approx(b.concentration("C"), rel=1e-8)


def test_wiring_errors_name_the_place(species: SpeciesTable) -> None:
    m1, m2 = TMixer("M1", species, TMixerParams()), TMixer("M2", species, TMixerParams())
    fs = Flowsheet(species, [m1, m2])
    with pytest.raises(KeyError, match="no outlet 'product'"):
        fs.connect((m1, "product"), (m2, "in1"))
    fs.connect((m1, "out"), (m2, "in1"))
    with pytest.raises(ValueError, match="already connected"):
        fs.connect((m1, "out"), (m2, "in2"))
    fs.connect((m2, "out"), (m1, "in1"))
    with pytest.raises(ValueError, match="recycle"):
        fs.step(1.0)


async def test_run_paced_by_a_fast_clock(species: SpeciesTable) -> None:
    fs = _jacketed(species)
    clock = Clock.fast()
    ticks: list[float] = []
    t0 = time.monotonic()
    await fs.run(clock, dt=10.0, duration=3600.0, on_step=lambda f: ticks.append(clock.now()))
    assert time.monotonic() - t0 < 5.0
    assert clock.now() == pytest.approx(3600.0)
    assert fs.time == pytest.approx(3600.0) and len(ticks) == 360


def test_every_state_variable_has_a_unit_and_a_finite_value() -> None:
    from modulecontrol.simulators.models import demo_plant
    from modulecontrol.units import parse_unit

    fs = demo_plant()
    for _ in range(50):
        fs.step(10.0)
    for unit in fs.units.values():
        assert unit.params is not None
        for name, value in unit.state().items():
            parse_unit(unit.state_unit(name))  # raises for a missing or bad unit
            assert math.isfinite(value) or name == "residence_time", (unit.name, name)
    with pytest.raises(KeyError, match="known"):
        fs.units["R1"].state_unit("colour")


@settings(max_examples=15, deadline=None)
@given(
    flows=st.lists(st.floats(0.0, 5.0), min_size=3, max_size=12),
    dts=st.lists(st.sampled_from([0.5, 3.0, 17.0, 60.0]), min_size=3, max_size=12),
)
def test_reactor_conserves_mass_for_any_flow_history(flows: list[float], dts: list[float]) -> None:
    from modulecontrol.simulators.models import Species

    table = SpeciesTable(
        [
            Species(name="s", molar_mass=0.046, density=790),
            Species(name="A", molar_mass=0.1, density=1000),
            Species(name="B", molar_mass=0.1, density=1000),
        ]
    )
    rx = Reaction(
        stoichiometry={"A": -1, "B": 1}, k_ref=0.05, reversible=True, k_ref_reverse=0.01, dH=-5e4
    )
    reactor = CoilReactor(
        "R",
        table,
        CoilReactorParams(
            volume=q("5 mL"),
            inner_diameter=q("1 mm"),
            n_tanks=7,
            reactions=[rx],
            ua=0.1,
            max_substep=5.0,
        ),
    )
    from modulecontrol.simulators.models import Stream

    for f, dt in zip(flows, dts, strict=False):
        feed = Stream.of(table, f * 1e-6 / 60, 300.0, {"s": 15000, "A": 900})
        reactor.step(dt, {"in": feed})
    b = reactor.balance()
    assert abs(b.residual) <= 1e-9 * max(b.mass_in, b.holdup, 1e-12)
    assert reactor.c.min() > -1e-6 * 900

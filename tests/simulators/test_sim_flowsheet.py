"""Flowsheet wiring, thermostat coupling, steady state and a clock-paced run."""

from __future__ import annotations

import time

import pytest

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
    rx = Reaction(stoichiometry={"A": -1, "B": 1}, k_ref=0.01, Ea=q("50 kJ/mol"),
                  T_ref=q("50 degC"), dH=q("-100 kJ/mol"))
    pump = HplcPump("P", species, HplcPumpParams(feed={"solvent": 15000, "A": 2000},
                                                 flow_setpoint=q("2 mL/min"), running=True))
    reactor = CoilReactor("R", species, CoilReactorParams(
        volume=q("10 mL"), inner_diameter=q("1 mm"), n_tanks=10, reactions=[rx], ua=0.5,
        max_substep=max_substep))
    th = Thermostat("TH", species, ThermostatParams(setpoint=q("50 degC"),
                                                    initial_temperature=q("20 degC")))
    fs = Flowsheet(species, [pump, reactor, th], [((pump, "out"), (reactor, "in"))])
    fs.link_jacket(th, reactor)
    return fs


def test_thermostat_drives_jacket_and_carries_the_heat_load(species: SpeciesTable) -> None:
    fs = _jacketed(species)
    for _ in range(400):
        fs.step(5.0)
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
    errors = []
    for h in (5.0, 1.0):  # splitting error is second order in the internal step
        dyn = _jacketed(species, max_substep=h)
        for _ in range(1000):
            dyn.step(5.0)
        a = dyn.stream("R", "out")
        assert a.temperature == pytest.approx(b.temperature, abs=0.1)
        errors.append(abs(a.concentration("A") - b.concentration("A")))
    assert errors[1] < 2e-3 * b.concentration("A")
    assert errors[0] / errors[1] > 15


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

"""Shared fixtures and builders of the simulator tests.

The builders are plain functions (imported as ``from tests.simulators.conftest import
...``), parameterised by what the tests vary: several test files drive the same line or
species table, and one definition keeps them testing the same thing.
"""

from __future__ import annotations

from typing import Literal

import pytest

from modulecontrol.simulators.models import (
    BackPressureRegulator,
    BprParams,
    CoilReactor,
    CoilReactorParams,
    DivertValve,
    DivertValveParams,
    Flowsheet,
    HplcPump,
    HplcPumpParams,
    Reaction,
    Species,
    SpeciesTable,
    Thermostat,
    ThermostatParams,
    TMixer,
    TMixerParams,
)
from modulecontrol.units import to_si as q

#: mol/m3 of A in the jacketed line's P1 bottle (:func:`jacketed_line`)
LINE_FEED_A = 2000.0
#: J/mol, the reaction enthalpy of the jacketed line's exothermic A -> B
LINE_DH = q("-100 kJ/mol")


@pytest.fixture
def species() -> SpeciesTable:
    """Solvent plus A <=> B (equal molar masses, so A -> B is mass balanced) and C."""
    return abc_species()


def abc_species() -> SpeciesTable:
    """The table of the :func:`species` fixture, for property tests (which must not take
    a function-scoped fixture)."""
    return SpeciesTable(
        [
            Species(
                name="solvent",
                molar_mass=q("46 g/mol"),
                density=q("790 kg/m**3"),
                viscosity=q("0.46 mPa*s"),
                heat_capacity=q("2440 J/(kg*K)"),
            ),
            Species(name="A", molar_mass=q("100 g/mol"), density=q("1100 kg/m**3")),
            Species(name="B", molar_mass=q("100 g/mol"), density=q("1100 kg/m**3")),
            Species(name="C", molar_mass=q("200 g/mol"), density=q("1200 kg/m**3")),
        ]
    )


def crystal_species(*, antisolvent: bool = False) -> SpeciesTable:
    """Water and an API (0.3 kg/mol, 1300 kg/m**3): the table of the crystallizer tests,
    with ethanol between them when ``antisolvent`` (water is then the antisolvent)."""
    ethanol = [Species(name="EtOH", molar_mass=0.046, density=790)] if antisolvent else []
    return SpeciesTable(
        [
            Species(name="water", molar_mass=0.018, density=1000),
            *ethanol,
            Species(name="API", molar_mass=0.3, density=1300),
        ]
    )


def jacketed_line(
    species: SpeciesTable, *, ua: float = 0.5, tau: float = 20.0, volume: float = 1e-6,
    skip: bool = True, integrator: Literal["split", "bdf"] = "split", bath: float = 1.2e4,
    heating: float = 2000.0, cooling: float = 1000.0, max_substep: float = 5.0,
    t_init: float = q("50 degC"), coil_t_init: float | None = None,
) -> Flowsheet:
    """Two pumps (P1: A at :data:`LINE_FEED_A`, P2: C, 1 mL/min each), a mixer M, a
    jacketed 5-tank coil R with the exothermic A -> B linked to a thermostat TH, a divert
    valve V and a BPR: every kind of unit that skips steady steps (reactor, thermostat,
    mixer, BPR), two that never do (pump, valve), and a stiff wall/bath coupling.

    The wall, bath and volume are as given; the bath starts at and is set to ``t_init``,
    the coil starts at ``coil_t_init`` (default: ``t_init``). ``skip`` sets every unit's
    ``skip_steady``."""
    rx = Reaction(stoichiometry={"A": -1, "B": 1}, k_ref=0.02, Ea=q("50 kJ/mol"),
                  T_ref=q("50 degC"), dH=LINE_DH)
    p1 = HplcPump("P1", species, HplcPumpParams(
        feed={"solvent": 15000, "A": LINE_FEED_A}, flow_setpoint=q("1 mL/min"), running=True))
    p2 = HplcPump("P2", species, HplcPumpParams(
        feed={"solvent": 16000, "C": 50}, flow_setpoint=q("1 mL/min"), running=True))
    mixer = TMixer("M", species, TMixerParams())
    reactor = CoilReactor("R", species, CoilReactorParams(
        volume=volume, inner_diameter=q("1 mm"), n_tanks=5, reactions=[rx], ua=ua,
        max_substep=max_substep, integrator=integrator,
        initial_temperature=t_init if coil_t_init is None else coil_t_init))
    th = Thermostat("TH", species, ThermostatParams(
        setpoint=t_init, initial_temperature=t_init, tau=tau, heat_capacity=bath,
        max_heating_power=heating, max_cooling_power=cooling))
    valve = DivertValve("V", species, DivertValveParams())
    bpr = BackPressureRegulator("BPR", species, BprParams(setpoint=q("5 bar")))
    fs = Flowsheet(species, [p1, p2, mixer, reactor, th, valve, bpr], [
        ((p1, "out"), (mixer, "in1")), ((p2, "out"), (mixer, "in2")),
        ((mixer, "out"), (reactor, "in")), ((reactor, "out"), (valve, "in")),
        ((valve, "product"), (bpr, "in")),
    ])
    fs.link_jacket(th, reactor)
    for u in fs.units.values():
        u.skip_steady = skip
    return fs


def worst_residual(fs: Flowsheet) -> float:
    """The largest mass-balance residual of the line's units, relative to the unit's
    largest of mass in, mass out and holdup."""
    return max(abs(b.residual) / max(b.mass_in, b.mass_out, b.holdup, 1e-12)
               for b in fs.balances().values())

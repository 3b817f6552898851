"""Shared fixtures of the simulator tests."""

from __future__ import annotations

import pytest

from modulecontrol.simulators.models import Species, SpeciesTable
from modulecontrol.units import to_si as q


@pytest.fixture
def species() -> SpeciesTable:
    """Solvent plus A <=> B (equal molar masses, so A -> B is mass balanced) and C."""
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

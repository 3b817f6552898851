"""Shared fixtures of the simulator tests."""

from __future__ import annotations

import pytest

from modulecontrol.simulators.models import Species, SpeciesTable


@pytest.fixture
def species() -> SpeciesTable:
    """Solvent plus A <=> B (equal molar masses, so A -> B is mass balanced) and C."""
    return SpeciesTable([
        Species(name="solvent", molar_mass="46 g/mol", density="790 kg/m**3",
                viscosity="0.46 mPa*s", heat_capacity="2440 J/(kg*K)"),
        Species(name="A", molar_mass="100 g/mol", density="1100 kg/m**3"),
        Species(name="B", molar_mass="100 g/mol", density="1100 kg/m**3"),
        Species(name="C", molar_mass="200 g/mol", density="1200 kg/m**3"),
    ])

"""Species table and process streams (SI units throughout).

Why arrays: every model works on a concentration vector aligned with one shared species table,
so balances are single numpy expressions instead of dictionary loops in the hot path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modulecontrol.errors import ConfigError
from modulecontrol.yamlio import load_yaml_text

from ._quantities import (
    Density,
    HeatCapacity,
    MolarMass,
    Viscosity,
    si,
)

FloatArray = npt.NDArray[np.float64]

#: Heat capacity used for species that do not give one (liquid water, J/(kg K)).
DEFAULT_HEAT_CAPACITY = 4180.0
#: Volumetric heat capacity of liquid the species table does not list (water, J/(m3 K)).
DEFAULT_VOLUMETRIC_HEAT_CAPACITY = 4.18e6
#: Atmospheric pressure, Pa.
AMBIENT_PRESSURE = 101325.0


class Species(BaseModel):
    """One chemical species; unknown keys are rejected so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    molar_mass: MolarMass = Field(gt=0)
    density: Density = Field(gt=0)
    viscosity: Viscosity | None = Field(default=None, gt=0)
    heat_capacity: HeatCapacity | None = Field(default=None, gt=0)


class _SpeciesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    species: list[Species]


class SpeciesTable:
    """An ordered, immutable set of species with their properties as numpy vectors."""

    def __init__(self, species: Iterable[Species]) -> None:
        self.species: tuple[Species, ...] = tuple(species)
        if not self.species:
            raise ValueError("a species table needs at least one species")
        names = [s.name for s in self.species]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate species names: {', '.join(dupes)}")
        self.names: tuple[str, ...] = tuple(names)
        self._index = {n: i for i, n in enumerate(names)}
        self.molar_mass: FloatArray = np.array([s.molar_mass for s in self.species])
        self.density: FloatArray = np.array([s.density for s in self.species])
        self.heat_capacity: FloatArray = np.array(
            [s.heat_capacity or DEFAULT_HEAT_CAPACITY for s in self.species]
        )
        #: m3/mol of each pure species (molar mass over density): ideal volumes
        self.molar_volume: FloatArray = self.molar_mass / self.density
        self._has_mu = np.array([s.viscosity is not None for s in self.species])
        self._ln_mu = np.array(
            [math.log(s.viscosity) if s.viscosity else 0.0 for s in self.species]
        )

    @classmethod
    def from_yaml(cls, source: str | Path) -> SpeciesTable:
        """Load ``species: [{name, molar_mass, density, viscosity?, heat_capacity?}, ...]``.

        ``source`` is a path or YAML text; values may carry units (``18.015 g/mol``).
        """
        text = source.read_text() if isinstance(source, Path) else source
        name = str(source) if isinstance(source, Path) else "<species>"
        if isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml")):
            text = Path(source).read_text()
            name = source
        try:  # the loader of every other document: bounded, duplicate keys refused, cached
            data = load_yaml_text(text, name).data
        except ConfigError as exc:
            raise ValueError(f"invalid species table: {exc}") from None
        try:
            return cls(_SpeciesFile.model_validate(data).species)
        except ValidationError as exc:
            raise ValueError(f"invalid species table: {exc}") from exc

    def __len__(self) -> int:
        return len(self.species)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        """Position of ``name``; the error lists the known names."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"unknown species '{name}' (known: {', '.join(self.names)})") from None

    def vector(self, values: Mapping[str, Any], unit: str = "mol/m**3") -> FloatArray:
        """A vector aligned with the table from a ``{name: value}`` mapping (unit-aware)."""
        out = np.zeros(len(self))
        for name, value in values.items():
            out[self.index(name)] = si(value, unit)
        return out

    def viscosity(self, conc: FloatArray) -> float | None:
        """Mixture viscosity by the log-mole-fraction rule (Arrhenius / Grunberg-Nissan, no
        interaction term) over the species that give one; None when none does."""
        w = np.where(self._has_mu, np.maximum(conc, 0.0), 0.0)
        total = float(w.sum())
        if total <= 0.0:
            return None
        return math.exp(float(w @ self._ln_mu) / total)


@dataclass(frozen=True, slots=True)
class Solids:
    """A particle population carried by a stream, as moments of the number density (per m3)."""

    moments: FloatArray  # mu0..mu4: #/m3, m/m3, m2/m3, m3/m3, m4/m3
    crystal_density: float  # kg/m3
    shape_factor: float  # volume shape factor kv

    @property
    def mass_concentration(self) -> float:
        """Solids mass per volume of suspension, kg/m3."""
        return self.crystal_density * self.shape_factor * float(self.moments[3])


@dataclass(frozen=True, slots=True)
class Stream:
    """A liquid stream: volumetric flow (m3/s), temperature (K), pressure (Pa, absolute) and
    species concentrations (mol/m3) aligned with ``table``; optional suspended solids."""

    table: SpeciesTable
    flow: float
    temperature: float
    pressure: float
    conc: FloatArray
    solids: Solids | None = field(default=None)
    # mass per volume, worked out on first use (see mass_concentration); not a value of
    # the stream: left out of the constructor, comparisons and repr
    _mass: float | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def empty(
        cls, table: SpeciesTable, temperature: float = 298.15, pressure: float = AMBIENT_PRESSURE
    ) -> Stream:
        """No flow; used for unconnected inlets."""
        return cls(table, 0.0, temperature, pressure, np.zeros(len(table)))

    @classmethod
    def of(
        cls,
        table: SpeciesTable,
        flow: Any,
        temperature: Any = 298.15,
        concentrations: Mapping[str, Any] | None = None,
        pressure: Any = AMBIENT_PRESSURE,
    ) -> Stream:
        """Build a stream from values that may carry units (``'1 mL/min'``, ``'60 degC'``)."""
        return cls(
            table,
            si(flow, "m**3/s"),
            si(temperature, "K"),
            si(pressure, "Pa"),
            table.vector(concentrations or {}),
        )

    def with_(self, **changes: Any) -> Stream:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def at_pressure(self, pressure: float) -> Stream:
        """This stream at ``pressure``: itself when it is at that pressure already.

        Why: the units that only pass a stream on (a regulator, an analyzer, a valve) did
        so with a new stream at every step, so the units after them never saw their inlet
        unchanged (``UnitModel.step`` compares the same object at no cost) and recomputed
        its mass flow; built directly, without ``dataclasses.replace``, for the same step."""
        if self.pressure == pressure:
            return self
        return Stream(self.table, self.flow, self.temperature, pressure, self.conc, self.solids)

    def concentration(self, name: str) -> float:
        """Concentration of one species, mol/m3."""
        return float(self.conc[self.table.index(name)])

    def as_dict(self) -> dict[str, float]:
        """Concentrations by species name, mol/m3."""
        return {n: float(c) for n, c in zip(self.table.names, self.conc, strict=True)}

    @property
    def mass_concentration(self) -> float:
        """Mass per volume (dissolved species plus solids), kg/m3.

        Kept once worked out: a stream is frozen (its arrays are never written in place by
        the models, which make new ones) and one outlet's mass flow was computed at every
        step by the unit that sent it and by the unit that took it, for a steady pump's or
        a passed-on stream again at every step."""
        m = self._mass
        if m is None:
            m = float(self.conc @ self.table.molar_mass)
            if self.solids is not None:
                m += self.solids.mass_concentration
            object.__setattr__(self, "_mass", m)
        return m

    @property
    def mass_flow(self) -> float:
        """kg/s (the kept mass concentration read directly: every unit's step asks for each
        inlet's and outlet's)."""
        m = self._mass
        return self.flow * (self.mass_concentration if m is None else m)

    @property
    def molar_flows(self) -> FloatArray:
        """mol/s per species."""
        return self.flow * self.conc

    def molar_flow(self, name: str) -> float:
        """mol/s of one species."""
        return self.flow * self.concentration(name)

    @property
    def volumetric_heat_capacity(self) -> float:
        """rho*cp of the liquid, J/(m3 K): the listed species' own, plus water's for the
        volume they leave unfilled.

        Why the remainder: the listed species fill the volume fraction sum(c M / rho) (ideal
        volumes, as :func:`mix` adds them), and the rest is liquid the table does not list,
        taken as water like a reactor's initial filling. Without it a trace of a feed (the
        first front out of an empty reactor) had a trace of a heat capacity: a coil in a
        twin's replay took 7e-15 J/(m3 K) from it, its jacket term became 4e19 1/s and its
        tanks' temperature -6e19 K within a step. A stream whose species fill its volume is
        unchanged; the lomustine isocyanate feed, 3e-4 short of its litre in ideal volumes,
        gains 0.09 % in heat capacity (``make run``: 62.05 % isolated yield against 62.03 %)."""
        t = self.table
        listed = float(self.conc @ (t.molar_mass * t.heat_capacity))
        unfilled = 1.0 - float(self.conc @ t.molar_volume)
        return listed + max(unfilled, 0.0) * DEFAULT_VOLUMETRIC_HEAT_CAPACITY

    @property
    def viscosity(self) -> float | None:
        """Mixture viscosity, Pa s (None when no species gives one)."""
        return self.table.viscosity(self.conc)


def mix(streams: Sequence[Stream], table: SpeciesTable, pressure: float) -> Stream:
    """Adiabatic mixing of liquid streams: moles and volumes add (ideal volumes), the outlet
    temperature is the heat-capacity-weighted mean of the inlet temperatures (no heat of
    mixing). Solids, if any, are carried over with their moments diluted."""
    live = [s for s in streams if s.flow > 0.0]
    if not live:
        t = streams[0].temperature if streams else 298.15
        return Stream(table, 0.0, t, pressure, np.zeros(len(table)))
    if len(live) == 1:
        s = live[0]
        return Stream(table, s.flow, s.temperature, pressure, s.conc, s.solids)
    q = sum(s.flow for s in live)
    conc = sum((s.flow * s.conc for s in live), np.zeros(len(table))) / q
    heat = [s.flow * s.volumetric_heat_capacity for s in live]
    temp = sum(h * s.temperature for h, s in zip(heat, live, strict=True)) / sum(heat)
    solids = None
    carriers = [s for s in live if s.solids is not None]
    if carriers:
        ref = carriers[0].solids
        assert ref is not None
        mom = (
            sum((s.flow * s.solids.moments for s in carriers if s.solids is not None), np.zeros(5))
            / q
        )
        solids = Solids(mom, ref.crystal_density, ref.shape_factor)
    return Stream(table, q, temp, pressure, conc, solids)

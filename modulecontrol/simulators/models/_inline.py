"""Units without holdup: T-mixer, divert valve, back-pressure regulator, PAT analyzer.

Their internal volumes are microlitres against millilitres of reactor, so they are modelled
as instantaneous; their only dynamics are the analyzer's dead time and drift.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._base import UnitModel, register_model
from ._quantities import Concentration, Pressure, Time
from ._species import FloatArray, SpeciesTable, Stream, mix

_NO_STATE: FloatArray = np.zeros(0)

# --------------------------------------------------------------------------------- T-mixer


class TMixerParams(BaseModel):
    """``n_inlets`` ports named ``in1`` .. ``inN``; ``pressure_drop`` is a constant loss."""

    model_config = ConfigDict(extra="forbid")
    n_inlets: int = Field(default=2, ge=2, le=16)
    pressure_drop: Pressure = Field(default=0.0, ge=0)


@register_model
class TMixer(UnitModel):
    """Ideal mixing: moles and volumes add, temperature by heat-capacity weighting."""

    kind = "tmixer"
    state_units: ClassVar[dict[str, str]] = {"flow": "m**3/s", "temperature": "K", "pressure": "Pa"}
    Params = TMixerParams

    def __init__(self, name: str, species: SpeciesTable, params: TMixerParams) -> None:
        self.inlets = tuple(f"in{i + 1}" for i in range(params.n_inlets))
        self.outlets = ("out",)
        super().__init__(name, species, params)
        self.p = params
        self._last: Stream | None = None

    def _step(self, dt: float, inlets: dict[str, Stream]) -> dict[str, Stream]:
        self._last = mix(list(inlets.values()), self.species, self.outlet_pressures["out"])
        return {"out": self._last}

    def _dynamic_state(self) -> FloatArray:
        return _NO_STATE  # ideal mixing keeps nothing from step to step

    def _wake_key(self) -> tuple[Any, ...]:
        return (id(self.p),)

    def pressure_drop(self) -> float:
        return self.p.pressure_drop

    def state(self) -> dict[str, float]:
        s = self._last
        return {
            "flow": s.flow if s else 0.0,
            "temperature": s.temperature if s else 0.0,
            "pressure": self.inlet_pressure,
        }


# ----------------------------------------------------------------------------- divert valve


class DivertValveParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to_waste: bool = False
    pressure_drop: Pressure = Field(default=0.0, ge=0)


@register_model
class DivertValve(UnitModel):
    """Three-way valve sending the stream to ``product`` or ``waste``; volumes are counted."""

    kind = "divert_valve"
    state_units: ClassVar[dict[str, str]] = {
        "to_waste": "",
        "product_volume": "m**3",
        "diverted_volume": "m**3",
        "switch_count": "",
    }
    Params = DivertValveParams
    inputs: ClassVar[dict[str, str]] = {"to_waste": "bool"}
    inlets = ("in",)
    outlets = ("product", "waste")

    def __init__(self, name: str, species: SpeciesTable, params: DivertValveParams) -> None:
        super().__init__(name, species, params)
        self.p = params
        self.to_waste = params.to_waste
        self.product_volume = 0.0
        self.diverted_volume = 0.0
        self.switch_count = 0
        self._last_position = params.to_waste
        self._shut: Stream | None = None  # the closed outlet's last stream

    def _step(self, dt: float, inlets: dict[str, Stream]) -> dict[str, Stream]:
        s = inlets["in"]
        if self.to_waste != self._last_position:
            self.switch_count += 1
            self._last_position = self.to_waste
        active, idle = ("waste", "product") if self.to_waste else ("product", "waste")
        if self.to_waste:
            self.diverted_volume += s.flow * dt
        else:
            self.product_volume += s.flow * dt
        # the closed outlet's empty stream is kept while its temperature and pressure hold,
        # so that the unit it feeds sees the same stream (as the open one passes its inlet)
        shut = self._shut
        if (shut is None or shut.temperature != s.temperature
                or shut.pressure != self.outlet_pressures[idle]):
            shut = self._shut = Stream(
                self.species,
                0.0,
                s.temperature,
                self.outlet_pressures[idle],
                np.zeros(len(self.species)),
            )
        return {active: s.at_pressure(self.outlet_pressures[active]), idle: shut}

    def upstream_pressure(self, outlet_pressures: Mapping[str, float]) -> float:
        active = "waste" if self.to_waste else "product"
        return outlet_pressures[active] + self.p.pressure_drop

    def state(self) -> dict[str, float]:
        return {
            "to_waste": float(self.to_waste),
            "product_volume": self.product_volume,
            "diverted_volume": self.diverted_volume,
            "switch_count": float(self.switch_count),
        }


# ------------------------------------------------------------------- back-pressure regulator


class BprParams(BaseModel):
    """``setpoint`` is the pressure held above the outlet pressure (spring-loaded BPR)."""

    model_config = ConfigDict(extra="forbid")
    setpoint: Pressure = Field(default=5.0e5, ge=0)


@register_model
class BackPressureRegulator(UnitModel):
    """Ideal BPR: upstream pressure = outlet pressure + setpoint, whatever the flow."""

    kind = "bpr"
    state_units: ClassVar[dict[str, str]] = {
        "setpoint": "Pa",
        "inlet_pressure": "Pa",
        "outlet_pressure": "Pa",
    }
    Params = BprParams
    inputs: ClassVar[dict[str, str]] = {"setpoint": "Pa"}
    inlets = ("in",)
    outlets = ("out",)

    def __init__(self, name: str, species: SpeciesTable, params: BprParams) -> None:
        super().__init__(name, species, params)
        self.setpoint = params.setpoint

    def _step(self, dt: float, inlets: dict[str, Stream]) -> dict[str, Stream]:
        return {"out": inlets["in"].at_pressure(self.outlet_pressures["out"])}

    def _dynamic_state(self) -> FloatArray:
        return _NO_STATE  # an ideal regulator holds nothing


    def pressure_drop(self) -> float:
        return self.setpoint

    def state(self) -> dict[str, float]:
        return {
            "setpoint": self.setpoint,
            "inlet_pressure": self.inlet_pressure,
            "outlet_pressure": self.outlet_pressures["out"],
        }


# ----------------------------------------------------------------------------- PAT analyzer


class PatMethod(BaseModel):
    """One chemometric method of the analyzer: which species it quantifies, which of them is
    the product its purity refers to, and which species its other signals report
    (``roles``: ``{impurity: dicyclohexylurea}``)."""

    model_config = ConfigDict(extra="forbid")
    species: list[str] = Field(min_length=1)
    product: str | None = None
    roles: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _product_measured(self) -> PatMethod:
        if self.product is not None and self.product not in self.species:
            raise ValueError(
                f"product '{self.product}' must be one of the measured species {self.species}"
            )
        return self


class PatAnalyzerParams(BaseModel):
    """Inline analyzer (e.g. flow-cell IR/UV): measures ``species`` concentrations and the
    purity of ``product`` among them, after ``dead_time``, with Gaussian ``noise`` (mol/m3,
    seeded) and linear ``drift`` (mol/m3 per s).

    ``species``/``product`` are method 1; ``methods`` adds further chemometric models
    (``{2: {species: [...], product: semustine}}``) selectable at run time with the ``method``
    input, as a product changeover needs; ``method`` is the one selected at start.
    """

    model_config = ConfigDict(extra="forbid")
    species: list[str] = Field(min_length=1)
    product: str | None = None
    methods: dict[int, PatMethod] = Field(default_factory=dict)
    method: int = Field(default=1, ge=1)
    dead_time: Time = Field(default=0.0, ge=0)
    noise: Concentration = Field(default=0.0, ge=0)
    drift: float = 0.0
    seed: int = 0

    @model_validator(mode="after")
    def _methods(self) -> PatAnalyzerParams:
        if 1 in self.methods:
            raise ValueError("method 1 is 'species'/'product'; number further methods from 2")
        if self.product is not None and self.product not in self.species:
            raise ValueError(
                f"product '{self.product}' must be one of the measured species {self.species}"
            )
        return self

    def all_methods(self) -> dict[int, PatMethod]:
        return {1: PatMethod(species=self.species, product=self.product), **self.methods}


@register_model
class PatAnalyzer(UnitModel):
    """Pass-through unit that reports delayed, noisy, drifting concentrations and purity.

    The dead time delays the whole composition, so a method switched while a plug of the
    old product is still in the cell measures that plug with the new method, as in a real
    flow cell.
    """

    kind = "pat_analyzer"
    state_units: ClassVar[dict[str, str]] = {
        "valid": "",
        "purity": "",
        "true_purity": "",
        "method": "",
    }
    Params = PatAnalyzerParams
    inputs: ClassVar[dict[str, str]] = {"method": ""}
    inlets = ("in",)
    outlets = ("out",)

    def __init__(self, name: str, species: SpeciesTable, params: PatAnalyzerParams) -> None:
        super().__init__(name, species, params)
        self.p = params
        self.methods = params.all_methods()
        for m in self.methods.values():
            for n in m.species:
                species.index(n)  # unknown species fail at build, not at the first sample
        self._rng: np.random.Generator | None = None  # made on the first noisy sample
        self._history: deque[tuple[float, np.ndarray]] = deque()
        self._true_all = np.zeros(len(species))
        self._seen_all = np.zeros(len(species))
        self.valid = False
        self._method = 1
        self.method = params.method

    def _noise(self) -> np.random.Generator:
        """The measurement noise's generator (seeded by ``seed``), made on first use: a
        model is also built where it never samples (``validate``), which must not import
        numpy.random for it."""
        if self._rng is None:
            self._rng = np.random.default_rng(self.p.seed)
        return self._rng

    @property
    def method(self) -> int:
        return self._method

    @method.setter
    def method(self, value: float) -> None:
        number = round(float(value))
        if number not in self.methods:
            raise ValueError(
                f"{self.name}: no method {number} (known: "
                f"{', '.join(map(str, sorted(self.methods)))}); add it under 'methods'"
            )
        self._method = number
        m = self.methods[number]
        self.measured_species = list(m.species)
        self._idx = np.array([self.species.index(n) for n in m.species])
        self._prod = m.species.index(m.product) if m.product is not None else None
        self._update_measured()

    @property
    def product(self) -> str | None:
        """The product of the selected method."""
        return self.methods[self._method].product

    def role(self, name: str) -> str | None:
        """The species behind signal ``name`` under the selected method (None: not set)."""
        if name == "product":
            return self.product
        return self.methods[self._method].roles.get(name)

    def _update_measured(self) -> None:
        if self.valid:
            noise = (
                self._noise().normal(0.0, self.p.noise, len(self._idx)) if self.p.noise > 0 else 0.0
            )
            self.measured = self._seen_all[self._idx] + noise + self.p.drift * self.time
        else:
            self.measured = np.full(len(self._idx), np.nan)

    def _step(self, dt: float, inlets: dict[str, Stream]) -> dict[str, Stream]:
        s = inlets["in"]
        now = self.time + dt
        self._true_all = s.conc.copy()
        self._history.append((now, self._true_all))
        horizon = now - self.p.dead_time
        seen: np.ndarray | None = None
        while self._history and self._history[0][0] <= horizon + 1e-9:
            seen = self._history.popleft()[1]
        if seen is not None:
            self._seen_all = seen
            self.valid = True
        if self.valid:
            noise = (
                self._noise().normal(0.0, self.p.noise, len(self._idx)) if self.p.noise > 0 else 0.0
            )
            self.measured = self._seen_all[self._idx] + noise + self.p.drift * now
        return {"out": s.at_pressure(self.outlet_pressures["out"])}

    def _steady(self, inlets: dict[str, Stream]) -> dict[str, Stream]:
        s = inlets["in"]
        self._true_all = s.conc.copy()
        self._seen_all = self._true_all
        self.measured = self._true_all[self._idx].copy()
        self.valid = True
        self._history.clear()
        return {"out": s.at_pressure(self.outlet_pressures["out"])}

    @staticmethod
    def _purity(values: np.ndarray, prod: int) -> float:
        total = float(np.clip(values, 0.0, None).sum())
        return max(float(values[prod]), 0.0) / total if total > 0 else 0.0

    def state(self) -> dict[str, float]:
        # every method's species, so the set of variables does not change with the method;
        # what the selected method does not quantify reads 0
        out = {f"c_{n}": 0.0 for m in self.methods.values() for n in m.species}
        if self.valid:
            out.update(
                (f"c_{n}", float(v))
                for n, v in zip(self.measured_species, self.measured, strict=True)
            )
        out["valid"] = float(self.valid)
        out["method"] = float(self._method)
        if self._prod is not None:
            out["purity"] = self._purity(self.measured, self._prod) if self.valid else 0.0
            out["true_purity"] = self._purity(self._true_all[self._idx], self._prod)
        return out


__all__ = [
    "BackPressureRegulator",
    "BprParams",
    "DivertValve",
    "DivertValveParams",
    "PatAnalyzer",
    "PatAnalyzerParams",
    "PatMethod",
    "TMixer",
    "TMixerParams",
]

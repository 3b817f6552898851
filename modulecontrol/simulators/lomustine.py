"""The continuous lomustine line as a process model: operating point, steady state and KPIs.

Why a separate module: the chemistry (species, kinetics, feeds, crystallizer) is plant data in
``recipes/lomustine/``; the line is built by :class:`SimulatedPlant` like any simulated plant,
and this module only puts it at its operating point (services started, divert to product)
and defines the key performance indicators once, so the simulator, the tests and the batch
report compute yield, throughput and purity the same way.
See ``docs/lomustine.md`` for the chemistry and the published numbers behind it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modulecontrol.clock import Clock
from modulecontrol.descriptors import ModuleType, PlantConfig, load_plant
from modulecontrol.records import extraction_recovery

from ._plant import SimulatedPlant
from .models import Flowsheet, Stream

__all__ = [
    "FLUSH_PARAMETERS",
    "LOMUSTINE",
    "PRODUCTS",
    "PURITY_SPEC",
    "SEMUSTINE",
    "Kpis",
    "LineStreams",
    "LineTags",
    "Product",
    "Route",
    "Workup",
    "build_flowsheet",
    "build_line",
    "crystal_molar_flow",
    "cyclohexyl_balance",
    "kpis",
    "line_streams",
    "product_overrides",
    "steady_state_kpis",
    "time_to_steady_state",
]

#: The plant shipped with the project.
DEFAULT_PLANT = Path(__file__).resolve().parents[2] / "recipes" / "lomustine" / "plant.yaml"

#: Analyzer purity below which the stream is off-spec (model assumption, used by the divert
#: logic of the campaign): the operating point gives about 0.92.
PURITY_SPEC = 0.90

@dataclass(frozen=True)
class Route:
    """Species names of one product route (lomustine or semustine)."""

    product: str
    amine: str
    isocyanate: str
    urea: str
    adduct: str
    impurity: str
    impurity_coproduct: str = "chloroethylamine"

    @property
    def purity_species(self) -> tuple[str, ...]:
        """What the analyzer purity counts: product, intermediates, impurity, reagents. Base,
        tert-butyl nitrite (excess by design), tert-butanol and the solvents are left out:
        they are volatile or water-soluble and leave in the work-up."""
        return (
            self.product,
            self.urea,
            self.adduct,
            self.impurity,
            self.impurity_coproduct,
            self.amine,
            self.isocyanate,
        )


LOMUSTINE = Route(
    product="lomustine",
    amine="cyclohexylamine",
    isocyanate="chloroethyl_isocyanate",
    urea="chloroethyl_cyclohexylurea",
    adduct="nitroso_adduct",
    impurity="dicyclohexylurea",
)
SEMUSTINE = Route(
    product="semustine",
    amine="methylcyclohexylamine",
    isocyanate="chloroethyl_isocyanate",
    urea="chloroethyl_methylcyclohexylurea",
    adduct="semustine_nitroso_adduct",
    impurity="bis_methylcyclohexylurea",
)


@dataclass(frozen=True)
class Workup:
    """Offline extractive work-up after filtration (Jaman et al. extracted and filtered offline).

    Model: ``washes`` aqueous washes of the product-bearing organic phase at phase ratio
    ``phase_ratio`` = V_org/V_aq; each keeps the fraction K r / (1 + K r) of the product in the
    organic phase (ideal single-stage equilibrium, Nernst partition coefficient K = c_org/c_aq).
    K is an *effective* value for a THF-rich organic phase, which is partly water-miscible, so
    far below lomustine's octanol/water partition; 10 is a model assumption to be calibrated.
    """

    partition_coefficient: float = 10.0
    phase_ratio: float = 1.0
    washes: int = 2

    @property
    def recovery(self) -> float:
        return extraction_recovery(self.partition_coefficient, self.phase_ratio, self.washes)


@dataclass(frozen=True)
class LineTags:
    """Which modules of the plant play which role in the KPIs."""

    amine_pump: str = "P1"
    mixer1: str = "M1"  # feeds R1
    reactor1: str = "R1"
    mixer2: str = "M2"  # feeds R2
    reactor2: str = "R2"
    analyzer: str = "PAT1"
    valve: str = "V1"
    crystallizer: str = "CR1"


@dataclass(frozen=True)
class LineStreams:
    """The streams the KPIs need (step-average or steady-state values)."""

    amine_feed: Stream  # the amine pump's outlet
    reactor1_in: Stream
    reactor1_out: Stream
    reactor2_in: Stream
    reactor2_out: Stream
    analyzer: Stream  # what the PAT sees (before the divert valve)
    crystallizer_feed: Stream  # the valve's product outlet (without antisolvent)
    crystallizer_out: Stream  # slurry: dissolved species plus solids moments


@dataclass(frozen=True)
class Kpis:
    """Key performance indicators of the line; fractions are 0..1, SI otherwise."""

    conversion_r1: float  # of the amine
    conversion_r2: float  # of the urea intermediate
    solution_yield: float  # product at the analyzer / amine fed
    crystallization_yield: float  # crystals / product fed to the crystallizer
    workup_recovery: float
    isolated_yield: float  # isolated product / amine fed
    throughput_mg_h: float  # isolated product, mg/h
    purity: float  # analyzer purity over Route.purity_species
    impurity_ratio: float  # DCU / product at the analyzer, mol/mol
    on_spec: bool

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0.0 else 0.0


def crystal_molar_flow(stream: Stream, product: str) -> float:
    """mol/s of crystallized product carried by a slurry stream (from its third moment)."""
    if stream.solids is None:
        return 0.0
    m = float(stream.table.molar_mass[stream.table.index(product)])
    return stream.flow * stream.solids.mass_concentration / m


def kpis(
    s: LineStreams,
    route: Route = LOMUSTINE,
    workup: Workup | None = None,
    purity_spec: float = PURITY_SPEC,
) -> Kpis:
    """KPIs from the line's streams; the batch report uses the same definitions.

    Isolated product = crystals leaving the crystallizer (MSMPR moments) times the work-up
    recovery; yields are on the amine, the limiting reagent fed by the amine pump.
    """
    w = workup or Workup()
    amine_fed = s.amine_feed.molar_flow(route.amine)
    crystals = crystal_molar_flow(s.crystallizer_out, route.product)
    isolated = crystals * w.recovery
    m_product = float(s.analyzer.table.molar_mass[s.analyzer.table.index(route.product)])
    measured = sum(max(s.analyzer.concentration(n), 0.0) for n in route.purity_species)
    product_c = max(s.analyzer.concentration(route.product), 0.0)
    purity = _ratio(product_c, measured)
    return Kpis(
        conversion_r1=1.0
        - _ratio(s.reactor1_out.molar_flow(route.amine), s.reactor1_in.molar_flow(route.amine)),
        conversion_r2=1.0
        - _ratio(s.reactor2_out.molar_flow(route.urea), s.reactor2_in.molar_flow(route.urea)),
        solution_yield=_ratio(s.analyzer.molar_flow(route.product), amine_fed),
        crystallization_yield=_ratio(crystals, s.crystallizer_feed.molar_flow(route.product)),
        workup_recovery=w.recovery,
        isolated_yield=_ratio(isolated, amine_fed),
        throughput_mg_h=isolated * m_product * 1e6 * 3600.0,
        purity=purity,
        impurity_ratio=_ratio(s.analyzer.concentration(route.impurity), product_c),
        on_spec=purity >= purity_spec,
    )


def cyclohexyl_balance(s: LineStreams, route: Route = LOMUSTINE) -> tuple[float, float]:
    """(in, out) mol/s of the amine's ring, which every route species carries once (DCU
    twice): a species-level mass balance over the whole line."""
    out = s.crystallizer_out
    carried = (
        out.molar_flow(route.amine)
        + out.molar_flow(route.urea)
        + out.molar_flow(route.adduct)
        + out.molar_flow(route.product)
        + crystal_molar_flow(out, route.product)
        + 2.0 * out.molar_flow(route.impurity)
    )
    return s.amine_feed.molar_flow(route.amine), carried


# ----------------------------------------------------------------------------- building


def _with_model_overrides(
    config: PlantConfig, overrides: Mapping[str, Mapping[str, Any]]
) -> PlantConfig:
    """``config`` with per-tag model parameters replaced, as ``overrides.simulator`` in the
    plant file would (top-level keys replace, nested mappings such as a ``feed`` as a whole)."""
    unknown = set(overrides) - {m.tag for m in config.plant.modules}
    if unknown:
        raise KeyError(f"overrides for unknown modules: {sorted(unknown)}")
    types = dict(config.instance_types)
    for tag, changes in overrides.items():
        data = types[tag].model_dump(by_alias=True, exclude_none=True)
        if data.get("simulator") is None:
            raise ValueError(f"{tag}: module type {types[tag].name} has no simulator")
        data["simulator"].setdefault("parameters", {}).update(changes)
        types[tag] = ModuleType.model_validate(data)
    return replace(config, instance_types=types)


def build_line(
    plant: str | Path | PlantConfig = DEFAULT_PLANT,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
    running: bool = True,
    tags: LineTags | None = None,
    clock: Clock | None = None,
    dt: float = 10.0,
) -> SimulatedPlant:
    """The line as a :class:`SimulatedPlant` (the one plant builder), at its operating point.

    ``overrides`` change model parameters per tag on top of the plant (``{"R1": {"n_tanks":
    40}}``); ``parameters`` change service parameters in engineering units (``{"R2":
    {"TempSP": 15}, "P1": {"FlowSP": 0.2}}``). ``running`` starts every service with its
    parameters (the plant's defaults are the operating point) and puts the divert valve to
    product, as the campaign does once the line is on spec.
    """
    config = plant if isinstance(plant, PlantConfig) else load_plant(plant)
    if config.plant.species is None:
        raise ValueError(f"{config.file}: the plant needs 'species: <file>' for the simulators")
    if overrides:
        config = _with_model_overrides(config, overrides)
    sim = SimulatedPlant.from_config(config, clock or Clock.fast(), dt=dt)
    if running:
        sim.start_services(parameters)
        sim.view((tags or LineTags()).valve).write("Valve", None, True)
    elif parameters:
        raise ValueError("service parameters need running=True (they act on started services)")
    return sim


def build_flowsheet(
    plant: str | Path | PlantConfig = DEFAULT_PLANT,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    running: bool = True,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
) -> Flowsheet:
    """The flowsheet of :func:`build_line`, for code that steps the models directly."""
    return build_line(plant, overrides, parameters, running).flowsheet


def line_streams(fs: Flowsheet, tags: LineTags | None = None) -> LineStreams:
    """Pick the KPI streams out of a stepped (or steady-state) flowsheet."""
    t = tags or LineTags()
    r1_in = fs.stream(t.mixer1, "out")
    r2_in = fs.stream(t.mixer2, "out")
    return LineStreams(
        amine_feed=fs.stream(t.amine_pump, "out"),
        reactor1_in=r1_in,
        reactor1_out=fs.stream(t.reactor1, "out"),
        reactor2_in=r2_in,
        reactor2_out=fs.stream(t.reactor2, "out"),
        analyzer=fs.stream(t.analyzer, "out"),
        crystallizer_feed=fs.stream(t.valve, "product"),
        crystallizer_out=fs.stream(t.crystallizer, "product"),
    )


def steady_state_kpis(
    plant: str | Path | PlantConfig = DEFAULT_PLANT,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    route: Route | None = None,
    workup: Workup | None = None,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
    product: str = "lomustine",
) -> tuple[Kpis, Flowsheet]:
    """Steady state of the line at the plant's operating point for ``product`` (plus
    ``overrides`` / ``parameters``, see :func:`build_line`)."""
    sim = build_line(plant, overrides, _for_product(product, parameters))
    sim.steady_state()
    return kpis(line_streams(sim.flowsheet), route or PRODUCTS[product].route, workup), (
        sim.flowsheet
    )


def time_to_steady_state(
    plant: str | Path | PlantConfig = DEFAULT_PLANT,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    route: Route | None = None,
    dt: float = 10.0,
    horizon: float = 3.0 * 3600.0,
    tolerance: float = 0.02,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
    product: str = "lomustine",
) -> tuple[float, list[tuple[float, float]]]:
    """Start-up from an empty line with all services started at t = 0: the time after which
    the isolated throughput stays within ``tolerance`` (relative) of its steady-state value.

    Returns (time in s, trajectory [(t, mg/h)]); ``math.inf`` if not reached in ``horizon``.
    """
    r = route or PRODUCTS[product].route
    target, _ = steady_state_kpis(plant, overrides, r, None, parameters, product)
    sim = build_line(plant, overrides, _for_product(product, parameters), dt=dt)
    traj: list[tuple[float, float]] = []
    last_out = 0.0
    for k in range(1, round(horizon / dt) + 1):
        sim.step()
        v = kpis(line_streams(sim.flowsheet), r).throughput_mg_h
        traj.append((k * dt, v))
        if abs(v - target.throughput_mg_h) > tolerance * target.throughput_mg_h:
            last_out = k * dt
    reached = last_out < horizon - dt
    return (last_out if reached else math.inf), traj


# ----------------------------------------------------------------------------- products


@dataclass(frozen=True)
class Product:
    """What selects a product on the line: its route (for the KPIs) and the service
    parameters that switch the plant to it (inlet channels of the feed pumps, analyzer
    method). The crystallizer follows the feed by itself (``solutes`` in the plant)."""

    route: Route
    parameters: dict[str, dict[str, Any]]


#: Channel and method numbers as wired in recipes/lomustine/plant.yaml.
PRODUCTS: dict[str, Product] = {
    "lomustine": Product(
        LOMUSTINE, {"P1": {"InletSP": 1}, "P2": {"InletSP": 1}, "PAT1": {"Method": 1}}
    ),
    # trans-4-methylcyclohexylamine at the same concentration, base and flows (channel 3)
    "semustine": Product(
        SEMUSTINE, {"P1": {"InletSP": 3}, "P2": {"InletSP": 1}, "PAT1": {"Method": 2}}
    ),
}

#: The flush: both HPLC feed pumps on THF (channel 2); the nitrite syringe stops.
FLUSH_PARAMETERS: dict[str, dict[str, Any]] = {"P1": {"InletSP": 2}, "P2": {"InletSP": 2}}


def _product(product: str) -> Product:
    try:
        return PRODUCTS[product]
    except KeyError:
        raise ValueError(
            f"unknown product '{product}' (known: {', '.join(PRODUCTS)})"
        ) from None


def _for_product(
    product: str, parameters: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    merged = {tag: dict(v) for tag, v in _product(product).parameters.items()}
    for tag, values in (parameters or {}).items():
        merged.setdefault(tag, {}).update(values)
    return merged


def product_overrides(product: str) -> tuple[Route, dict[str, dict[str, Any]]]:
    """Route and service parameters that switch the line to ``product`` (changeover): pass
    the parameters to :func:`build_line` / :func:`steady_state_kpis` as ``parameters``, or
    write them through the module views of a running plant."""
    p = _product(product)
    return p.route, {tag: dict(v) for tag, v in p.parameters.items()}

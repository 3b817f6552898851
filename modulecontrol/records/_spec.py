"""The figures metadata of a batch report (``FigureSpec`` and its parts): plain models.

Why a module of their own: ``validate`` checks a recipe's ``report:`` section against
:class:`FigureSpec`, and importing it with the report builder (numpy, the plots, SQLite
queries, the signatures) cost every ``validate`` tens of milliseconds it never used.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modulecontrol.records._db import RecordsError
from modulecontrol.records._workup import WorkupSpec
from modulecontrol.units import UnitError, convert


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_quantity(text: str | None, unit: str, what: str) -> str | None:
    if text is None:
        return None
    try:
        float(text)
    except ValueError:
        pass
    else:  # a bare number would be read in the target unit: say which one is meant instead
        raise ValueError(f"{what} must be a quantity in {unit} or a compatible unit, with its"
                         f" unit (e.g. '{text} {unit}'), not the bare number {text}")
    try:
        convert(text, unit)
    except UnitError as exc:
        raise ValueError(f"{what} must be a quantity in {unit} or a compatible unit"
                         f" (e.g. '1.0 {unit}'): {exc}") from exc
    return text


class StreamSpec(_Strict):
    """One material stream: a flow tag (mass, volume or molar flow per time), a totaliser tag
    (cumulative mass, volume or amount), or both.

    Amounts come from the totaliser when there is one (it counts what really passed, whatever
    the sampling of the flow), from the integrated flow otherwise; whether the stream is
    running comes from the flow tag when there is one. ``density`` converts between volume and
    mass; ``concentration`` (amount per volume) of the compound of interest, or
    ``molar_mass`` for a neat stream, gives moles for yield.
    """

    tag: str | None = None
    totaliser: str | None = None
    name: str = ""
    density: str | None = None
    concentration: str | None = None
    molar_mass: str | None = None

    @field_validator("density")
    @classmethod
    def _density(cls, v: str | None) -> str | None:
        return _check_quantity(v, "g/mL", "density")

    @field_validator("concentration")
    @classmethod
    def _conc(cls, v: str | None) -> str | None:
        return _check_quantity(v, "mol/L", "concentration")

    @field_validator("molar_mass")
    @classmethod
    def _mm(cls, v: str | None) -> str | None:
        return _check_quantity(v, "g/mol", "molar_mass")

    @model_validator(mode="after")
    def _one_tag(self) -> StreamSpec:
        if self.tag is None and self.totaliser is None:
            raise ValueError("a stream needs a flow 'tag', a 'totaliser' tag, or both")
        return self

    @property
    def key(self) -> str:
        """How the report names the stream: its name, else its tag."""
        return self.name or self.tag or self.totaliser or ""

    def matches(self, key: str) -> bool:
        return key in (self.name, self.tag, self.totaliser)


class SteadyStateSpec(_Strict):
    """When the line reached steady state.

    The orchestrator's first ``steady_state`` event with ``steady: true`` (from the recipe's
    steady-state detector named ``event``, or any when ``event`` is not given) counts. Only
    when the run has no such event, the signal ``tag`` is used: it must stay within
    ``tolerance`` (relative) of ``target``, or of the mean of the last ``window`` seconds.
    """

    event: str | None = None
    tag: str | None = None
    tolerance: float = Field(0.02, gt=0)
    window: float = Field(60.0, gt=0)
    target: float | None = None


class BalanceSpec(_Strict):
    """The material-balance boundary: streams (by name or tag) that cross it in and out.

    ``tolerance``: percentage points the balance may be off 100 %; a balance outside (or
    one that cannot be computed) is a deviation of the run, listed with the others, so a
    record whose streams do not add up says so instead of only showing a number (the
    two-product campaign once showed 4.5e9 % with nothing flagged)."""

    inputs: list[str] = Field(min_length=1)
    outputs: list[str] = Field(min_length=1)
    tolerance: float | None = Field(None, gt=0, le=100)


class IntervalValue(_Strict):
    """The value a tag held at one moment of an interval: when step ``at`` started (default:
    the interval's ``end``), e.g. the carry-over of the first product at the analyzer when the
    line switches to the second. In the tag's unit; name the figure with its unit suffix
    (``carryover_mol_per_l``) so the summary shows the unit."""

    tag: str = Field(min_length=1)
    at: str | None = None


class IntervalSpec(_Strict):
    """Figures between two named recipe steps, e.g. a product changeover: from the moment
    step ``start`` started to the moment step ``end`` started.

    ``counters`` names totalizer tags (a pump's delivered volume, a valve's waste volume)
    whose increase over the interval is summed per figure: ``{solvent_ml: [P1.DeliveredVolume,
    P2.DeliveredVolume]}``; a counter reset inside the interval is bridged (only increases
    count). Values are in the unit of the first tag of each figure.
    """

    name: str = Field(min_length=1)
    start: str = Field(min_length=1)
    end: str = Field(min_length=1)
    counters: dict[str, list[str]] = {}
    values: dict[str, IntervalValue] = {}


class LotSpec(_Strict):
    """One product of a multi-product campaign, made from when step ``start`` started until
    step ``end`` started (or the run's end): its own window, throughput, yield, purity,
    on-spec and diverted volume.

    Why declared, not derived: which step begins a product is a fact of the recipe (a set of
    an inlet channel or an analyzer method looks like any other set); a lot named by its steps
    is checked by ``validate`` against the recipe's step names. ``product_molar_mass`` and
    ``purity_spec`` default to the figures' own; ``limiting_concentration`` replaces the
    limiting feed's concentration for this lot (another reagent on the same pump).
    """

    name: str = Field(min_length=1)
    start: str = Field(min_length=1)
    end: str | None = None
    product_molar_mass: str | None = None
    limiting_concentration: str | None = None
    purity_spec: float | None = None

    @field_validator("product_molar_mass")
    @classmethod
    def _pmm(cls, v: str | None) -> str | None:
        return _check_quantity(v, "g/mol", "product_molar_mass")

    @field_validator("limiting_concentration")
    @classmethod
    def _lc(cls, v: str | None) -> str | None:
        return _check_quantity(v, "mol/L", "limiting_concentration")


class FigureSpec(_Strict):
    """Which tags mean what, for the figures of a batch report (``metadata["figures"]``).

    Example for a two-feed flow synthesis::

        figures:
          feeds:
            - {tag: P1.flow, totaliser: P1.volume, name: amine, density: 0.95 g/mL,
               concentration: 0.5 mol/L}
            - {tag: P2.flow, name: reagent, density: 1.05 g/mL}
          limiting_feed: amine
          start_step: feeds_on
          product: {tag: OUT.flow, density: 1.0 g/mL}
          product_basis: purity
          outlets: [{totaliser: V3.waste_volume, name: waste, density: 1.0 g/mL}]
          waste: waste
          product_molar_mass: 233.7 g/mol
          purity_tag: AT1.purity
          purity_spec: 98.0
          divert_tag: V3.to_product
          steady_state: {event: purity, tag: AT1.purity, tolerance: 0.01, window: 120}
          workup: {partition_coefficient: 10, phase_ratio: 1, washes: 2}
    """

    feeds: list[StreamSpec] = []
    product: StreamSpec | None = None
    outlets: list[StreamSpec] = []
    limiting_feed: str | None = None
    product_molar_mass: str | None = None
    product_basis: Literal["auto", "stream", "concentration", "purity"] = "auto"
    stoichiometry: float = Field(1.0, gt=0)
    purity_tag: str | None = None
    purity_spec: float | None = None
    divert_tag: str | None = None
    divert_product_state: Literal["high", "low"] = "high"
    waste: str | None = None
    on_spec: str | None = None
    diverted_feeds: list[str] | None = None
    start_step: str | None = None
    steady_state: SteadyStateSpec | None = None
    workup: WorkupSpec | None = None
    balance: BalanceSpec | None = None
    intervals: list[IntervalSpec] = []
    lots: list[LotSpec] = []

    @field_validator("product_molar_mass")
    @classmethod
    def _pmm(cls, v: str | None) -> str | None:
        return _check_quantity(v, "g/mol", "product_molar_mass")

    @model_validator(mode="after")
    def _names(self) -> FigureSpec:
        streams = self.streams()
        known = ", ".join(s.key for s in streams) or "none"
        if self.waste is not None and not any(o.matches(self.waste) for o in self.outlets):
            outs = ", ".join(o.key for o in self.outlets) or "none"
            raise ValueError(f"waste '{self.waste}' is not one of the outlets (known: {outs})")
        if self.on_spec is not None and not any(o.matches(self.on_spec) for o in self.outlets):
            outs = ", ".join(o.key for o in self.outlets) or "none"
            raise ValueError(f"on_spec '{self.on_spec}' is not one of the outlets (known:"
                             f" {outs})")
        names = [x.name for x in self.intervals] + [x.name for x in self.lots]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"interval and lot names must differ: {', '.join(twice)} used"
                             " twice")
        if self.lots and self.divert_tag is None:
            raise ValueError("lots need divert_tag: a lot's production, on-spec and diverted"
                             " figures are taken from the divert valve")
        for key in self.diverted_feeds or []:
            if not any(f.matches(key) for f in self.feeds):
                raise ValueError(f"diverted_feeds: '{key}' is not one of the feeds")
        if self.balance is not None:
            for key in [*self.balance.inputs, *self.balance.outputs]:
                if not any(s.matches(key) for s in streams):
                    raise ValueError(f"balance: '{key}' is not a feed, the product or an"
                                     f" outlet (known: {known})")
        return self

    def streams(self) -> list[StreamSpec]:
        """Feeds, product and outlets, in that order."""
        return [*self.feeds, *([self.product] if self.product else []), *self.outlets]

    def stream(self, key: str) -> StreamSpec:
        for s in self.streams():
            if s.matches(key):
                return s
        raise RecordsError(f"no stream '{key}' in the figures metadata")

    def feed(self, key: str) -> StreamSpec:
        for f in self.feeds:
            if f.matches(key):
                return f
        known = ", ".join(f.key for f in self.feeds) or "none"
        raise RecordsError(f"limiting_feed '{key}' is not one of the feeds (known: {known})")

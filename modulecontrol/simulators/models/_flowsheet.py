"""Flowsheet: units plus stream connections, stepped together in topological order.

Per step: thermostats first (utilities), then every unit in topological order with the
streams its upstream units produced in this same step (a jacketed unit reads its
thermostat's new temperature; the thermostat takes the wall exchange as a conductance, see
``_load_thermostats``); then pressures are propagated
backwards from the outlets (ambient) through back-pressure regulators and pressure drops.
Liquids are treated as incompressible, so pressure is quasi-static; pumps see the discharge
pressure of the previous step (a one-step lag).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from graphlib import CycleError, TopologicalSorter
from typing import NamedTuple, Protocol

from modulecontrol.clock import Clock

from ._base import Balance, UnitModel
from ._species import AMBIENT_PRESSURE, SpeciesTable, Stream
from ._thermostat import Thermostat

Port = tuple[UnitModel | str, str]


class _Jacketed(Protocol):
    jacket_temperature: float
    wall_heat_duty: float

    @property
    def wall_conductance(self) -> float: ...


class _Planned(NamedTuple):
    """One unit's place in a step (see ``Flowsheet._make_plan``)."""

    unit: UnitModel
    thermostat: Thermostat | None  # on its jacket
    feeds: list[tuple[str, tuple[str, str]]]  # (inlet port, (source unit, its outlet port))
    dests: list[tuple[str, UnitModel | None]]  # (outlet port, unit it feeds; None: open end)


class Flowsheet:
    """A plant of unit models. Connections map ``(unit, outlet port)`` to
    ``(unit, inlet port)``; units may be given as instances or names."""

    def __init__(
        self,
        species: SpeciesTable,
        units: Iterable[UnitModel] = (),
        connections: Iterable[tuple[Port, Port]] = (),
        ambient_pressure: float = AMBIENT_PRESSURE,
    ) -> None:
        self.species = species
        self.ambient_pressure = ambient_pressure
        self.units: dict[str, UnitModel] = {}
        self._links: dict[tuple[str, str], tuple[str, str]] = {}  # (src, out) -> (dst, in)
        self._jackets: list[tuple[str, str]] = []  # (thermostat, unit)
        self._order: list[UnitModel] | None = None
        self._feeds: dict[str, list[tuple[tuple[str, str], str]]] = {}
        self._plan: list[_Planned] = []
        self._loads: list[tuple[Thermostat, list[_Jacketed]]] = []
        self.streams: dict[tuple[str, str], Stream] = {}
        self.time = 0.0
        for u in units:
            self.add(u)
        for src, dst in connections:
            self.connect(src, dst)

    # -- building -------------------------------------------------------------------------
    def add(self, unit: UnitModel) -> UnitModel:
        if unit.name in self.units:
            raise ValueError(f"duplicate unit name '{unit.name}'")
        if unit.species is not self.species:
            raise ValueError(f"unit '{unit.name}' uses another species table than the flowsheet")
        self.units[unit.name] = unit
        self._order = None
        return unit

    def _unit(self, ref: UnitModel | str) -> UnitModel:
        name = ref if isinstance(ref, str) else ref.name
        try:
            return self.units[name]
        except KeyError:
            raise KeyError(f"unknown unit '{name}' (units: {', '.join(self.units)})") from None

    def connect(self, src: Port, dst: Port) -> None:
        """Route outlet ``src`` into inlet ``dst``; each port takes one connection."""
        su, sp = self._unit(src[0]), src[1]
        du, dp = self._unit(dst[0]), dst[1]
        if sp not in su.outlets:
            raise KeyError(f"'{su.name}' has no outlet '{sp}' (outlets: {list(su.outlets)})")
        if dp not in du.inlets:
            raise KeyError(f"'{du.name}' has no inlet '{dp}' (inlets: {list(du.inlets)})")
        if (su.name, sp) in self._links:
            raise ValueError(f"outlet {su.name}.{sp} is already connected")
        if (du.name, dp) in self._links.values():
            raise ValueError(f"inlet {du.name}.{dp} is already connected (use a tmixer)")
        self._links[(su.name, sp)] = (du.name, dp)
        self._order = None

    def link_jacket(self, thermostat: Thermostat | str, unit: UnitModel | str) -> None:
        """The unit's jacket follows the thermostat; its wall duty loads the thermostat."""
        t, u = self._unit(thermostat), self._unit(unit)
        if not isinstance(t, Thermostat):
            raise TypeError(f"'{t.name}' is not a thermostat")
        if not all(hasattr(u, a) for a in ("jacket_temperature", "wall_heat_duty",
                                           "wall_conductance")):
            raise TypeError(f"'{u.name}' has no jacket")
        if any(uu == u.name for _, uu in self._jackets):
            raise ValueError(f"'{u.name}' already has a thermostat on its jacket")
        self._jackets.append((t.name, u.name))
        self._order = None

    def order(self) -> list[UnitModel]:
        """Units in stepping order (thermostats before what they serve)."""
        if self._order is None:
            ts: TopologicalSorter[str] = TopologicalSorter()
            for name in self.units:
                ts.add(name)
            for (src_unit, _), (dst_unit, _) in self._links.items():
                ts.add(dst_unit, src_unit)
            for t, u in self._jackets:
                ts.add(u, t)
            self._feeds = {}
            for link, (du, dp) in self._links.items():
                self._feeds.setdefault(du, []).append((link, dp))
            try:
                order = [self.units[n] for n in ts.static_order()]
            except CycleError as exc:
                raise ValueError(
                    f"recycle loops are not supported (cycle: {exc.args[1]}); "
                    "break the loop with a tank or a fixed feed"
                ) from None
            self._plan = self._make_plan(order)
            self._order = order
        return self._order

    def _make_plan(self, order: list[UnitModel]) -> list[_Planned]:
        """What every step needs of the topology, worked out once per change of it (``add``,
        ``connect`` and ``link_jacket`` reset :meth:`order`, which remakes it): per unit, its
        jacket's thermostat, its inlets' sources and its outlets' keys and destinations.

        Why: looking these up by name for each unit at every step was a good part of a
        steady line's step (15 units, most of them repeating a steady step), and none of it
        changes while the line runs."""
        serving = {u: self.units[t] for t, u in self._jackets}
        plan = []
        for unit in order:
            therm = serving.get(unit.name)
            assert therm is None or isinstance(therm, Thermostat)
            feeds = [(dp, src) for src, dp in self._feeds.get(unit.name, ())]
            dests: list[tuple[str, UnitModel | None]] = []
            for port in unit.outlets:
                dst = self._links.get((unit.name, port))
                dests.append((port, None if dst is None else self.units[dst[0]]))
            plan.append(_Planned(unit, therm, feeds, dests))
        loads: dict[str, list[_Jacketed]] = {t: [] for t, _ in self._jackets}
        for t, u in self._jackets:
            loads[t].append(self.units[u])  # type: ignore[arg-type]
        self._loads = []
        for t, served in loads.items():
            therm = self.units[t]
            assert isinstance(therm, Thermostat)
            self._loads.append((therm, served))
        return plan

    # -- stepping -------------------------------------------------------------------------
    def _load_thermostats(self) -> None:
        """Each thermostat carries the summed wall duty of the units it serves, at its
        present temperature, and how that duty falls as it warms (their summed UA).

        Why the conductance too: the thermostat then takes the exchange as a function of its
        own temperature over the next step (exactly, as it takes the ambient exchange)
        instead of a constant frozen at the last step's value, which diverged for a small
        bath on a large reactor (``Thermostat``). The units step after their thermostat and
        read its new temperature, so the difference of a bath and a vessel decays by
        exp(-(G/C_bath + G/C_vessel) dt) per step: stable at any UA, heat capacity and dt."""
        self.order()
        for therm, served in self._loads:
            load = conductance = 0.0
            for unit in served:
                load += unit.wall_heat_duty
                conductance += unit.wall_conductance
            therm.heat_load = load
            therm.load_conductance = conductance

    def _run(self, step: Callable[[UnitModel, dict[str, Stream]], dict[str, Stream]]) -> None:
        self.order()
        produced: dict[tuple[str, str], Stream] = {}
        for unit, therm, feeds, _ in self._plan:
            if therm is not None:
                jacketed: _Jacketed = unit  # type: ignore[assignment]
                jacketed.jacket_temperature = therm.temperature
            ins = {dp: produced[src] for dp, src in feeds if src in produced}
            name = unit.name
            for port, s in step(unit, ins).items():
                produced[(name, port)] = s
        self._load_thermostats()
        self.streams = produced
        self.propagate_pressures()

    def prepare(self) -> None:
        """:meth:`UnitModel.prepare` of every unit (before stepping with a clock)."""
        for unit in self.units.values():
            unit.prepare()

    def step(self, dt: float) -> None:
        """Advance the whole plant by ``dt`` seconds."""
        self._run(lambda u, ins: u.step(dt, ins))
        self.time += dt

    def steady_state(self, sweeps: int = 3) -> None:
        """Solve every unit's steady state in topological order. A few sweeps settle the
        couplings that point backwards (thermostat heat load, pump discharge pressure)."""
        for _ in range(sweeps):
            self._run(lambda u, ins: u.steady_state(ins))

    def propagate_pressures(self) -> None:
        """Set every unit's inlet/outlet pressures, walking upstream from open ends."""
        self.order()
        ambient = self.ambient_pressure
        for unit, _, _, dests in reversed(self._plan):
            outs = {port: ambient if dst is None else dst.inlet_pressure for port, dst in dests}
            unit.outlet_pressures = outs
            unit.inlet_pressure = unit.upstream_pressure(outs)

    async def run(
        self,
        clock: Clock,
        dt: float,
        duration: float,
        on_step: Callable[[Flowsheet], None] | None = None,
    ) -> None:
        """Step every ``dt`` simulated seconds for ``duration``, paced by ``clock``."""
        t0 = clock.now()
        n = round(duration / dt)
        for k in range(1, n + 1):
            self.step(dt)
            if on_step is not None:
                on_step(self)
            await clock.sleep_until(t0 + k * dt)
            await asyncio.sleep(0)

    # -- reading ----------------------------------------------------------------------------
    def balances(self) -> dict[str, Balance]:
        """Mass bookkeeping of every unit."""
        return {name: u.balance() for name, u in self.units.items()}

    def stream(self, unit: UnitModel | str, port: str) -> Stream:
        """The stream an outlet produced in the last step."""
        u = self._unit(unit)
        try:
            return self.streams[(u.name, port)]
        except KeyError:
            raise KeyError(f"no stream at {u.name}.{port} yet (step the flowsheet first)") from None

    def state(self) -> dict[str, dict[str, float]]:
        return {name: u.state() for name, u in self.units.items()}

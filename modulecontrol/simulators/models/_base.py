"""The uniform interface every process model offers, plus the model registry.

Why uniform: protocol servers and the descriptor mapper (a later layer) must drive any model
the same way: build it from a parameter mapping, write inputs by name, call ``step``, read a
flat dict of named SI values, inject faults. Model-specific physics lives in ``_step``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar
from zlib import crc32

import numpy as np
from pydantic import BaseModel

from ._quantities import UNITS_REQUIRED, si
from ._species import AMBIENT_PRESSURE, FloatArray, SpeciesTable, Stream

__all__ = [
    "MODELS",
    "STEADY_TOLERANCE",
    "TEMPERATURE_RANGE",
    "Balance",
    "FaultError",
    "ModelStateError",
    "ParameterError",
    "UnitModel",
    "check_temperatures",
    "create_model",
    "register_model",
]


class ParameterError(ValueError):
    """A parameter that fails a check needing more than its own value (the species table,
    other parameters). ``path`` is its place inside the parameter mapping (``("reactions", 0,
    "stoichiometry", "X")``), so a loader can point at the line of the file that gave it."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


class FaultError(ValueError):
    """A fault name or its arguments do not fit the model."""


#: Temperatures (K) a liquid-phase flow process can have, -173 to 727 degC: wide enough for
#: any cryogenic or superheated flow chemistry, narrow enough that a diverging model (a coil
#: at -1e42 K was once shown to a test rig) is stopped at its first absurd step.
TEMPERATURE_RANGE = (100.0, 1000.0)


class ModelStateError(RuntimeError):
    """A model's state left the physical set: a value that is not finite, a temperature
    outside :data:`TEMPERATURE_RANGE`, or an integration that found no admissible step.

    Raised from ``step`` and never swallowed by the models: a simulator that went on from
    such a state would serve nonsense that looks like a measurement. The message names the
    unit, its time and the variable; ``unit`` and ``time`` are kept for a caller that
    reports it."""

    def __init__(self, unit: str, time: float, message: str) -> None:
        super().__init__(f"{unit} at t = {time:g} s: {message}")
        self.unit = unit
        self.time = time


def check_temperatures(unit: str, time: float, what: str, values: Any) -> None:
    """Raise :class:`ModelStateError` unless every value of ``values`` (K) is finite and in
    :data:`TEMPERATURE_RANGE`; ``what`` names the variable in the message, and of an array
    of several values the message also says which one (``element 3 of 5``: a tank of a coil)
    so that the place of a divergence can be read off the error."""
    arr = np.asarray(values, dtype=float)
    lo, hi = TEMPERATURE_RANGE
    inside = (arr >= lo) & (arr <= hi)  # NaN fails both tests
    if arr.size and not bool(np.all(inside)):
        k = int(np.argmin(inside.ravel()))
        where = f" (element {k + 1} of {arr.size})" if arr.size > 1 else ""
        raise ModelStateError(
            unit, time,
            f"{what} = {float(arr.flat[k]):.6g} K{where} is outside the physical range "
            f"{lo:g}-{hi:g} K (the model diverged or was given an impossible input); "
            "the simulation stops here instead of continuing on it")


@dataclass
class Balance:
    """Cumulative mass bookkeeping of one unit, kg. Closes as
    ``mass_in = mass_out + mass_lost + (holdup - holdup_initial)``."""

    mass_in: float
    mass_out: float
    mass_lost: float
    holdup: float
    holdup_initial: float

    @property
    def residual(self) -> float:
        """What the identity leaves over (kg); zero for a conservative model."""
        return self.mass_in - self.mass_out - self.mass_lost - (self.holdup - self.holdup_initial)


@dataclass
class _SensorFault:
    kind: str  # stuck | noise | drift
    value: float  # stuck value, noise std, or drift rate per second
    since: float


P = TypeVar("P", bound=BaseModel)

STEADY_TOLERANCE = 1e-12
"""Relative change (per value) of a unit's state over one step, and of its inlets against
the step it repeats, below which the unit counts as steady and is not integrated again."""

MASS_SCALE_TOLERANCE = 1e-6
"""How far from 1 the factor that makes a repeated step's mass out equal its mass in may be
(:meth:`UnitModel.step`); beyond it the step is integrated instead. In steady production the
factor is 1 to about 1e-10. Why a bound: in a line that has not filled (its streams carry
concentrations of 1e-43 mol/m3, which :data:`STEADY_FLOOR` counts as equal whatever their
ratio), the factor was the ratio of two such masses, 1e5 to 1e10, and the divert valve
downstream counted 750 m3/s into its waste volume: the two-product campaign's record showed
1.5e10 mL diverted and a material balance of 4.5e9 %."""

STEADY_FLOOR = 1e-30
"""Absolute change (SI: mol/m3, K, moments) below which a state value counts as unchanged
whatever its size: far below anything physical (1e-30 mol/m3 is one molecule in 1.7e6 m3).
Why: a species the reactions barely reach (a by-product at 1e-49 mol/m3 in the first
tanks, a round-off negative of 1e-96) changes by a large fraction of itself at round-off
of the rates around it, so without a floor a steady unit was never seen as steady."""


def _close(a: FloatArray, b: FloatArray) -> bool:
    """Every value of ``a`` within STEADY_TOLERANCE of ``b``, relative to itself (a value
    near zero must not change either: an impurity at 1e-6 of the product counts)."""
    return _apart(a, b) < 0


def _apart(a: FloatArray, b: FloatArray) -> int:
    """The index of the first value of ``a`` not within STEADY_TOLERANCE of ``b`` (as
    :func:`_close` compares them), 0 if the shapes differ, -1 if every value is."""
    if a.shape != b.shape:
        return 0
    near = np.abs(a - b) <= STEADY_TOLERANCE * np.maximum(np.abs(a), np.abs(b)) + STEADY_FLOOR
    return -1 if near.all() else int(np.argmin(near))


def _finite(a: FloatArray) -> bool:
    """Every value of ``a`` finite. Its sum first: a NaN or an infinity makes the sum not
    finite, so a finite sum answers with one numpy call instead of two (this runs after
    every integrated step); a sum that overflowed is checked value by value."""
    return math.isfinite(a.sum()) or bool(np.isfinite(a).all())


def _moved(a: FloatArray, b: FloatArray, k: int) -> bool:
    """Whether value ``k`` of ``a`` is not within STEADY_TOLERANCE of ``b``'s: :func:`_close`'s
    test of one value, on Python floats (the same operations, so the same answer)."""
    if not 0 <= k < a.size or a.shape != b.shape:
        return False
    x, y = a.item(k), b.item(k)
    return not abs(x - y) <= STEADY_TOLERANCE * max(abs(x), abs(y)) + STEADY_FLOOR


def _same_stream(a: Stream, b: Stream) -> bool:
    if a is b:
        return True
    tol = STEADY_TOLERANCE
    if not (abs(a.flow - b.flow) <= tol * abs(b.flow)
            and abs(a.temperature - b.temperature) <= tol * abs(b.temperature)
            and abs(a.pressure - b.pressure) <= tol * abs(b.pressure)
            and _close(a.conc, b.conc)):
        return False
    sa, sb = a.solids, b.solids
    if sa is None or sb is None:
        return sa is sb
    return (sa.crystal_density == sb.crystal_density and sa.shape_factor == sb.shape_factor
            and _close(sa.moments, sb.moments))


@dataclass(slots=True)
class _Steady:
    """A step a steady unit repeats instead of integrating (see ``UnitModel.step``)."""

    dt: float
    key: tuple[Any, ...]
    inlets: dict[str, Stream]  # of the step repeated: the tolerance is kept against these
    inflow: float  # kg in over dt
    outlets: dict[str, Stream]  # the step's outlets, scaled so that their mass is the inflow
    # the inlets last accepted (the same objects again need no comparison), their outlets
    seen: dict[str, Stream]
    seen_inflow: float
    seen_outlets: dict[str, Stream]


class UnitModel(ABC):
    """Base of all process models.

    Subclasses set ``kind`` (registry name), ``Params`` (a pydantic model), the port names,
    ``inputs`` (writable input name -> SI unit) and implement ``_step`` and ``state``.
    """

    kind: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    inputs: ClassVar[dict[str, str]] = {}
    #: model-specific faults this model accepts (sensor faults are always accepted)
    fault_kinds: ClassVar[tuple[str, ...]] = ()
    inlets: tuple[str, ...] = ()
    outlets: tuple[str, ...] = ()

    #: SI unit of every variable in :meth:`state` (``c_<species>`` is always mol/m**3)
    state_units: ClassVar[dict[str, str]] = {}

    #: the model's own temperatures (K, a float or an array), as attribute name -> what the
    #: error calls it; :meth:`step` and :meth:`steady_state` check them and every outlet's
    #: against :data:`TEMPERATURE_RANGE` after each integration, in this order (a cause such as
    #: an impossible jacket temperature before the tank it heated). Declared, not checked by
    #: each model in its ``_step``: one check, the same message everywhere, none forgotten
    temperature_states: ClassVar[dict[str, str]] = {}

    def __init__(self, name: str, species: SpeciesTable, params: BaseModel) -> None:
        self.name = name
        self.species = species
        #: the validated parameters the model was built from (SI values)
        self.params = params
        self.time = 0.0
        self.faults: dict[str, dict[str, float]] = {}
        self._sensor_faults: dict[str, _SensorFault] = {}
        # sensor noise, stable per name; made on the first noisy reading, as building a
        # model (what `validate` does) must not import numpy.random
        self._noise_rng: np.random.Generator | None = None
        self.outlet_pressures: dict[str, float] = {p: AMBIENT_PRESSURE for p in self.outlets}
        self.inlet_pressure = AMBIENT_PRESSURE
        self._mass_in = 0.0
        self._mass_out = 0.0
        self._mass_lost = 0.0
        self._holdup0: float | None = None
        # steady-step skipping: bumped by whatever changes the unit besides its inlets
        self._revision = 0
        self._idle: _Steady | None = None
        # the state value that moved most recently beyond the tolerance (see step)
        self._moving = -1
        #: steps taken as a repeat of a steady step (not integrated); for benchmarks, tests
        self.skipped_steps = 0

    #: skip the integration while steady (see :meth:`step`); off for one unit or class to
    #: compare against the integrated result
    skip_steady: bool = True

    # -- stepping ---------------------------------------------------------------------------
    def step(self, dt: float, inlets: Mapping[str, Stream] | None = None) -> dict[str, Stream]:
        """Advance ``dt`` seconds with inlet streams held constant; returns outlet streams.

        Outlet streams carry the step-average composition, so downstream units receive exactly
        the moles that left (mass balances close to round-off).

        A unit that opts in (``_dynamic_state``) is not integrated while it is steady: when
        its last step changed no state value by more than ``STEADY_TOLERANCE`` (relative),
        lost and drew no mass, and this step has the same ``dt``, inlets (to that tolerance),
        inputs, faults, parameters and outlet pressures (:meth:`_wake_key`), it sends that
        step's outlets again and keeps its state. Their flow is scaled (by about 1e-10) so
        the mass out equals the mass in: the holdup is unchanged, so the balance closes to
        round-off over any number of skipped steps. Any change wakes the unit, and its
        changed outlet then wakes the units downstream.
        """
        if dt <= 0.0:
            raise ValueError(f"{self.name}: dt must be > 0, got {dt!r}")
        if self._holdup0 is None:
            self._holdup0 = self.holdup_mass()
        ins = self._complete(inlets)
        steady = self._idle
        if steady is not None:
            out = self._repeat(steady, dt, ins)
            if out is not None:
                self.time += dt
                self.skipped_steps += 1
                return out
            self._idle = None
        before = self._dynamic_state() if self.skip_steady else None
        key = self._key() if before is not None else ()
        lost = self._mass_lost
        out = self._step(dt, ins)
        self._check_temperatures(self.time + dt, out)
        source = self._source_mass(dt)
        inflow = outflow = 0.0  # loops, not sum() over generators: every step of every unit
        for s in ins.values():
            inflow += s.mass_flow
        for s in out.values():
            outflow += s.mass_flow
        inflow, outflow = dt * inflow, dt * outflow
        self._mass_in += inflow + source
        self._mass_out += outflow
        self.time += dt
        if before is not None and source == 0.0 and self._mass_lost == lost:
            after = self._dynamic_state()
            if after is not None and not _finite(after):
                raise ModelStateError(self.name, self.time,
                                      "the state is not finite after this step")
            if after is not None and self._settled(after, before):
                self._idle = self._settle(dt, key, ins, inflow, outflow, out)
        return out

    def _settled(self, after: FloatArray, before: FloatArray) -> bool:
        """:func:`_close` of the state after and before a step, first on the one value that
        kept it from settling at the last step (kept in ``_moving``).

        Why: a unit that approaches its steady state slowly (the crystallizer's moments
        move by 1e-6 per step for hours) is integrated at every step and compared at every
        step; the value that moved last time has nearly always moved again, and one float
        comparison saves the array comparison's half dozen numpy calls. The answer is
        :func:`_close`'s: one value apart makes the arrays apart."""
        if _moved(after, before, self._moving):
            return False
        self._moving = _apart(after, before)
        return self._moving < 0

    def _check_temperatures(self, time: float, out: Mapping[str, Stream]) -> None:
        """Raise :class:`ModelStateError` if a declared temperature
        (:attr:`temperature_states`) or an outlet's is not finite or outside
        :data:`TEMPERATURE_RANGE`: the one check of every model's temperatures, made where
        every step and steady state passes (a model that checked in its own ``_step`` and
        the base class's outlet check were two checks of one thing, one of them easy to
        leave out of a new model)."""
        lo, hi = TEMPERATURE_RANGE
        for attr, what in self.temperature_states.items():
            value = getattr(self, attr)
            if not (isinstance(value, float) and lo <= value <= hi):  # floats: no numpy
                check_temperatures(self.name, time, what, value)
        for port, s in out.items():
            if not lo <= s.temperature <= hi:
                check_temperatures(self.name, time, f"outlet '{port}' temperature",
                                   s.temperature)

    def _settle(self, dt: float, key: tuple[Any, ...], ins: dict[str, Stream], inflow: float,
                outflow: float, out: dict[str, Stream]) -> _Steady | None:
        """The step to repeat, its outlets carrying exactly the inflow; None if there is
        none (mass going in and none out is an accumulation, not a steady state)."""
        if outflow > 0.0 and inflow > 0.0:
            f = inflow / outflow
            if not abs(f - 1.0) <= MASS_SCALE_TOLERANCE:  # filling or draining: not steady
                return None
            out = {p: s if s.flow == 0.0 else replace(s, flow=s.flow * f)
                   for p, s in out.items()}
        elif outflow != 0.0 or inflow != 0.0:
            return None
        return _Steady(dt, key, dict(ins), inflow, out, dict(ins), inflow, out)

    def _repeat(
        self, steady: _Steady, dt: float, ins: dict[str, Stream]
    ) -> dict[str, Stream] | None:
        """The outlets of a skipped step, or None when something changed."""
        if dt != steady.dt or not self.skip_steady:
            return None
        seen = steady.seen
        identical = True
        for port, s in ins.items():
            if s is not seen[port]:
                identical = False
                break
        if self._key() != steady.key:
            return None
        if not identical:
            ref = steady.inlets
            for port, s in ins.items():
                if not _same_stream(s, ref[port]):
                    return None
            # inlets equal to the tolerance: the outlets carry this step's inflow exactly
            inflow = dt * sum(s.mass_flow for s in ins.values())
            f = inflow / steady.inflow if steady.inflow > 0.0 else 1.0
            if not abs(f - 1.0) <= MASS_SCALE_TOLERANCE:  # equal by the floor alone
                return None
            steady.seen, steady.seen_inflow = dict(ins), inflow
            steady.seen_outlets = {p: s if s.flow == 0.0 or f == 1.0
                                   else replace(s, flow=s.flow * f)
                                   for p, s in steady.outlets.items()}
        self._mass_in += steady.seen_inflow
        self._mass_out += steady.seen_inflow
        return dict(steady.seen_outlets)

    def _key(self) -> tuple[Any, ...]:
        return (
            self._revision,
            tuple(vars(self.params).values()),
            tuple([getattr(self, n) for n in self.inputs]),  # a list: faster than a generator
            tuple(self.outlet_pressures.values()),
            self._wake_key(),
        )

    def _dynamic_state(self) -> FloatArray | None:
        """Opt-in to skipping steady steps: a new flat array of every value ``_step`` changes
        that a later step depends on. None (the default): never skipped, as a unit that
        counts (delivered volume), follows the clock (sampling, profiles) or draws from a
        reservoir is not steady even when its outlet is."""
        return None

    def _wake_key(self) -> tuple[Any, ...]:
        """What else ``_step`` reads that may change between steps, beyond the inlets, the
        ``inputs``, the parameters' fields, the outlet pressures and the faults (which the
        base class compares already); compared by ``==``."""
        return ()

    def prepare(self) -> None:
        """Load or compile now what the first step would otherwise load or compile (the
        coil reactor's compiled kernels). Why: a served plant steps with the clock, and a
        first step that stops for seconds makes the drivers' reads time out; the server
        prepares its models before it listens. Default: nothing to prepare."""
        return None

    def wake(self) -> None:
        """Integrate the next step even if steady (after a change :meth:`_key` cannot see,
        e.g. an edit inside a nested parameter object)."""
        self._revision += 1
        self._idle = None

    def steady_state(self, inlets: Mapping[str, Stream] | None = None) -> dict[str, Stream]:
        """Put the model in its steady state for these inlets and return the outlets."""
        self.wake()
        out = self._steady(self._complete(inlets))
        self._check_temperatures(self.time, out)
        self._holdup0 = None  # bookkeeping restarts from the new state
        self._mass_in = self._mass_out = self._mass_lost = 0.0
        return out

    def _complete(self, inlets: Mapping[str, Stream] | None) -> dict[str, Stream]:
        """A copy of ``inlets`` with an empty stream on every port not given.

        Counted, not compared as sets: this runs for every unit at every step, and a
        flowsheet gives every connected port, so the sets were built only to find nothing."""
        given = dict(inlets) if inlets else {}
        known = 0
        for port in self.inlets:
            if port in given:
                known += 1
        if known != len(given):
            unknown = set(given) - set(self.inlets)
            raise KeyError(
                f"{self.name}: unknown inlet port(s) {sorted(unknown)} (ports: {list(self.inlets)})"
            )
        if known != len(self.inlets):
            for port in self.inlets:
                if port not in given:
                    given[port] = Stream.empty(self.species, pressure=self.inlet_pressure)
        return given

    @abstractmethod
    def _step(self, dt: float, inlets: dict[str, Stream]) -> dict[str, Stream]: ...

    def _steady(self, inlets: dict[str, Stream]) -> dict[str, Stream]:
        """Default for units without holdup: one step is the steady state."""
        return self._step(1.0, inlets)

    def _source_mass(self, dt: float) -> float:
        """Mass drawn from outside the flowsheet during the last step (sources override)."""
        return 0.0

    # -- pressure ---------------------------------------------------------------------------
    def pressure_drop(self) -> float:
        """Pa across the unit at its last throughput; override for resistive units."""
        return 0.0

    def upstream_pressure(self, outlet_pressures: Mapping[str, float]) -> float:
        """Inlet pressure given the pressures at the outlets (back-propagation)."""
        base = max(outlet_pressures.values()) if outlet_pressures else AMBIENT_PRESSURE
        return base + self.pressure_drop()

    # -- inputs, state, faults ----------------------------------------------------------------
    def set_input(self, name: str, value: Any) -> None:
        """Write an input/setpoint by name; quantity strings are converted to SI."""
        if name not in self.inputs:
            raise KeyError(
                f"{self.name}: unknown input '{name}' "
                f"(inputs: {', '.join(sorted(self.inputs)) or 'none'})"
            )
        unit = self.inputs[name]
        self.wake()
        if unit == "bool":
            setattr(self, name, bool(value))
        elif unit == "str":
            setattr(self, name, str(value))
        else:
            setattr(self, name, si(value, unit or "dimensionless"))

    @abstractmethod
    def state(self) -> dict[str, float]:
        """True values of the named state variables, SI units."""

    def state_unit(self, variable: str) -> str:
        """SI unit of a state variable (``""`` for dimensionless and flags)."""
        if variable in self.state_units:
            return self.state_units[variable]
        if variable.startswith("c_"):
            return "mol/m**3"
        raise KeyError(
            f"{self.name}: unknown state variable '{variable}' "
            f"(known: {', '.join(sorted(self.state()))})"
        )

    def measurements(self) -> dict[str, float]:
        """What sensors report: :meth:`state` with sensor faults (stuck, noise, drift) applied."""
        values = self.state()
        for var, f in self._sensor_faults.items():
            if var not in values:
                continue
            if f.kind == "stuck":
                values[var] = f.value
            elif f.kind == "noise":
                if self._noise_rng is None:
                    self._noise_rng = np.random.default_rng(crc32(self.name.encode()))
                values[var] += float(self._noise_rng.normal(0.0, f.value))
            elif f.kind == "drift":
                values[var] += f.value * (self.time - f.since)
        return values

    def inject_fault(self, kind: str, **params: float | str) -> None:
        """Inject a fault. Sensor faults: ``stuck`` (variable, value?), ``noise`` (variable,
        std), ``drift`` (variable, rate per s). Model faults: see ``fault_kinds``."""
        self.wake()
        if kind in ("stuck", "noise", "drift"):
            var = str(params.get("variable", ""))
            current = self.state()
            if var not in current:
                raise FaultError(
                    f"{self.name}: sensor fault needs variable=<one of "
                    f"{', '.join(sorted(current))}>"
                )
            if kind == "stuck":
                value = float(params.get("value", current[var]))
            else:
                key = "std" if kind == "noise" else "rate"
                if key not in params:
                    raise FaultError(f"{self.name}: {kind} fault needs {key}=<number>")
                value = float(params[key])
            self._sensor_faults[var] = _SensorFault(kind, value, self.time)
            return
        if kind not in self.fault_kinds:
            raise FaultError(
                f"{self.name}: unknown fault '{kind}' (known: stuck, noise, drift"
                f"{''.join(', ' + k for k in self.fault_kinds)})"
            )
        self.faults[kind] = {k: float(v) for k, v in params.items()}
        self._on_fault(kind, self.faults[kind])

    def clear_fault(self, kind: str, variable: str | None = None) -> None:
        """Remove a fault (a sensor fault by its variable)."""
        self.wake()
        if kind in ("stuck", "noise", "drift"):
            if variable is not None:
                self._sensor_faults.pop(variable, None)
            else:
                self._sensor_faults = {
                    v: f for v, f in self._sensor_faults.items() if f.kind != kind
                }
            return
        if self.faults.pop(kind, None) is not None:
            self._on_fault(kind, None)

    def _on_fault(self, kind: str, params: dict[str, float] | None) -> None:
        """Hook: react to a model fault being set (params) or cleared (None)."""
        return None

    # -- balances -----------------------------------------------------------------------------
    def holdup_mass(self) -> float:
        """Mass inside the unit, kg (zero for units without holdup)."""
        return 0.0

    def balance(self) -> Balance:
        """Cumulative mass bookkeeping since construction or the last steady-state solve."""
        h = self.holdup_mass()
        return Balance(
            self._mass_in,
            self._mass_out,
            self._mass_lost,
            h,
            h if self._holdup0 is None else self._holdup0,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} t={self.time:g}s>"


MODELS: dict[str, type[UnitModel]] = {}

M = TypeVar("M", bound=type[UnitModel])


def register_model(cls: M) -> M:
    """Class decorator: make the model constructible by its ``kind`` name."""
    if cls.kind in MODELS and MODELS[cls.kind] is not cls:
        raise ValueError(f"model kind '{cls.kind}' is already registered")
    MODELS[cls.kind] = cls
    return cls


def create_model(
    kind: str,
    name: str,
    species: SpeciesTable,
    params: Mapping[str, Any] | BaseModel | None = None,
    *,
    units_required: bool = False,
) -> UnitModel:
    """Build a registered model from a parameter mapping (values may carry units).

    ``units_required`` is for mappings read from files: a bare number where a dimension is
    expected is then an error, not a value in SI (see ``_quantities``)."""
    try:
        cls = MODELS[kind]
    except KeyError:
        raise KeyError(
            f"unknown model kind '{kind}' (known: {', '.join(sorted(MODELS))})"
        ) from None
    context = UNITS_REQUIRED if units_required else None
    p = (params if isinstance(params, BaseModel)
         else cls.Params.model_validate(params or {}, context=context))
    factory: Callable[..., UnitModel] = cls
    return factory(name, species, p)

"""Pumps: an HPLC (piston) pump and a syringe pump, both sources of a feed stream.

Both read the discharge pressure that the flowsheet back-propagated in the previous step (the
liquid is incompressible, so pressure follows flow instantly; the one-step lag only delays a
trip by one control interval). Over-pressure stops the pump until :meth:`reset`, like real
pump controllers do; this latching also avoids on/off chatter at the limit.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modulecontrol.errors import did_you_mean

from ._base import ParameterError, UnitModel, register_model
from ._integrate import FloatArray
from ._quantities import (
    Concentration,
    Flow,
    FlowRamp,
    Force,
    Length,
    Pressure,
    Temperature,
    Volume,
    si,
)
from ._species import SpeciesTable, Stream


class _Feed(BaseModel):
    """What the pump draws: ``feed`` is inlet channel 1; ``feeds`` names further channels of
    the inlet selection valve (``{2: {THF: 12.3 mol/L}}``, e.g. the flush solvent), and
    ``inlet`` is the channel selected at start."""

    model_config = ConfigDict(extra="forbid")
    feed: dict[str, Concentration] = Field(default_factory=dict)
    feeds: dict[int, dict[str, Concentration]] = Field(default_factory=dict)
    feed_temperature: Temperature = 298.15
    inlet: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _channels(self) -> _Feed:
        if self.feed and 1 in self.feeds:
            raise ValueError("give channel 1 either as 'feed' or as 'feeds: {1: ...}', not both")
        if any(k < 1 for k in self.feeds):
            raise ValueError("inlet channels are numbered from 1")
        return self

    def channels(self) -> dict[int, dict[str, float]]:
        return {1: dict(self.feed), **{k: dict(v) for k, v in self.feeds.items()}}


class HplcPumpParams(_Feed):
    """HPLC pump: ``max_pressure`` trips it; ``pulsation`` is the relative flow amplitude of
    the piston stroke (0 = ideal), ``stroke_volume`` sets its frequency (Q / V_stroke).

    ``flow_calibration`` is the true delivered flow per unit of commanded flow. A piston
    pump's controller turns its flow set point into a motor speed at the nominal stroke
    volume; worn seals, leaky check valves and the solvent's compressibility at the
    discharge pressure make the real delivery a few percent off that (typically 0.95-1.02),
    and the controller cannot see it: its flow reading and its totaliser count the commanded
    flow. It is the pump's parameter a twin fits from the analyzer (docs/digital-twin.md).
    At most 2: a larger factor is a wrong pump head or a percentage written as a factor
    (95 for 0.95), not wear.
    """

    max_flow: Flow = Field(default=1.6667e-6, gt=0)  # 100 mL/min
    ramp_rate: FlowRamp = Field(default=math.inf, gt=0)
    max_pressure: Pressure = Field(default=4.0e7, gt=0)  # 400 bar
    pulsation: float = Field(default=0.0, ge=0, lt=1)
    stroke_volume: Volume = Field(default=1.0e-7, gt=0)  # 100 uL
    flow_setpoint: Flow = Field(default=0.0, ge=0)
    running: bool = False
    flow_calibration: float = Field(default=1.0, gt=0, le=2)


class _PumpBase(UnitModel):
    outlets = ("out",)
    fault_kinds = ("stall", "leak")

    def __init__(self, name: str, species: SpeciesTable, params: _Feed) -> None:
        super().__init__(name, species, params)
        self._channels: dict[int, FloatArray] = {}
        for k, v in params.channels().items():
            unknown = [n for n in v if n not in species]
            if unknown:
                path: tuple[str | int, ...] = ("feed",) if k == 1 and params.feed else ("feeds", k)
                raise ParameterError(
                    (*path, unknown[0]),
                    f"unknown species '{unknown[0]}' in the feed of inlet channel {k}"
                    f"{did_you_mean(unknown[0], species.names)}; add it to the plant's species "
                    "table")
            self._channels[k] = species.vector(v)
        self.feed_temperature = params.feed_temperature
        self._inlet = 1
        self.feed_conc = self._channels[1]
        self.inlet = params.inlet
        self.tripped = False
        self.delivered_volume = 0.0
        self.leaked_volume = 0.0
        self._drawn = 0.0  # mass drawn from the reservoir in the last step
        self._last_out: Stream | None = None
        self._density: tuple[FloatArray, SpeciesTable, float] | None = None

    @property
    def _feed_density(self) -> float:
        """kg/m3 of the selected feed, kept while the feed's vector and the species table are
        the same objects: a bottle swap or a channel switch puts a new vector in
        ``feed_conc`` (none is written in place), so the dot product is not redone at each
        step of a running pump."""
        key = (self.feed_conc, self.species)
        cached = self._density
        if cached is None or cached[0] is not key[0] or cached[1] is not key[1]:
            cached = self._density = (*key, float(self.feed_conc @ self.species.molar_mass))
        return cached[2]

    @property
    def inlet(self) -> int:
        """The selected inlet channel; switching it changes what the pump draws at once (the
        selection valve's own hold-up is neglected)."""
        return self._inlet

    @inlet.setter
    def inlet(self, value: float) -> None:
        channel = round(float(value))
        if channel not in self._channels:
            raise ValueError(
                f"{self.name}: inlet channel {channel} has no feed (configured: "
                f"{', '.join(map(str, sorted(self._channels)))}); add it under 'feeds'"
            )
        self._inlet = channel
        self.feed_conc = self._channels[channel]

    def set_feed(
        self,
        concentrations: dict[str, Any],
        temperature: Any | None = None,
        channel: int | None = None,
    ) -> None:
        """Change the bottle on ``channel`` (default: the selected one), e.g. a reagent bottle
        swap."""
        ch = self._inlet if channel is None else channel
        self._channels[ch] = self.species.vector(concentrations)
        if ch == self._inlet:
            self.feed_conc = self._channels[ch]
        if temperature is not None:
            self.feed_temperature = si(temperature, "K")

    def reset(self) -> None:
        """Acknowledge an over-pressure trip or stall so the pump may run again."""
        self.tripped = False

    def reset_totaliser(self) -> None:
        """Zero the volume counters (the ``TotalReset`` command of a pump controller)."""
        self.delivered_volume = 0.0

    @property
    def discharge_pressure(self) -> float:
        return self.outlet_pressures["out"]

    def _pushing(self) -> bool:
        """True when the pump tries to deliver (so over-pressure acts on it)."""
        return bool(getattr(self, "running", False)) and getattr(self, "flow_setpoint", 0.0) > 0

    def _leak(self, q: float) -> float:
        """Delivered flow after a leak fault (``fraction`` of the pumped flow is lost)."""
        f = self.faults.get("leak")
        return q * (1.0 - min(max(f.get("fraction", 0.1), 0.0), 1.0)) if f else q

    def _source_mass(self, dt: float) -> float:
        return self._drawn

    def _out(self, q: float) -> dict[str, Stream]:
        # the same stream object while nothing changes lets the units downstream see at
        # once that their inlet is unchanged (UnitModel.step skips steady units)
        s = self._last_out
        if (s is None or s.flow != q or s.temperature != self.feed_temperature
                or s.pressure != self.discharge_pressure or s.conc is not self.feed_conc):
            s = self._last_out = Stream(
                self.species, q, self.feed_temperature, self.discharge_pressure, self.feed_conc
            )
        return {"out": s}


@register_model
class HplcPump(_PumpBase):
    """Piston pump with flow ramp, optional pulsation, over-pressure trip, leak fault and a
    flow calibration.

    What the pump's controller knows and what reaches the line are two sets of variables:
    ``flow`` (the commanded flow after the ramp, with the pulsation) and ``counted_volume``
    (its totaliser, the commanded volume) are what a real pump reports, blind to the
    calibration and to a leak; ``delivered_flow`` (the last step's mean) and
    ``delivered_volume`` are what really went into the line, ``flow_calibration`` x the
    commanded flow less a leak. The built-in type links its ``Flow`` and ``DeliveredVolume``
    assemblies to the first two, so a miscalibrated pump shows its error where a real line
    does: in the analyzer's concentrations and in the material balance, not on the pump.
    """

    kind = "hplc_pump"
    state_units: ClassVar[dict[str, str]] = {
        "flow": "m**3/s",
        "flow_setpoint": "m**3/s",
        "delivered_flow": "m**3/s",
        "running": "",
        "tripped": "",
        "pressure": "Pa",
        "counted_volume": "m**3",
        "delivered_volume": "m**3",
        "leaked_volume": "m**3",
        "inlet": "",
    }
    Params = HplcPumpParams
    inputs: ClassVar[dict[str, str]] = {
        "flow_setpoint": "m**3/s",
        "running": "bool",
        "inlet": "",
    }

    def __init__(self, name: str, species: SpeciesTable, params: HplcPumpParams) -> None:
        super().__init__(name, species, params)
        self.p = params
        self.flow_setpoint = params.flow_setpoint
        self.running = params.running
        self.flow = 0.0  # commanded flow after the ramp (the pump's own reading), m3/s
        self.delivered_flow = 0.0  # true flow into the line over the last step, m3/s
        self.counted_volume = 0.0  # the controller's totaliser (commanded volume), m3
        self._phase = 0.0

    def reset_totaliser(self) -> None:
        super().reset_totaliser()
        self.counted_volume = 0.0

    def _target(self) -> float:
        """The commanded flow: the set point within ``max_flow``. The limit is the
        controller's range and acts on what it commands (as the ``FlowSetpoint`` assembly's
        ``max`` does); a pump calibrated above 1 delivers up to that factor more."""
        if not self.running or self.tripped or "stall" in self.faults:
            return 0.0
        return min(max(self.flow_setpoint, 0.0), self.p.max_flow)

    def _delivery(self, commanded: float) -> tuple[float, float]:
        """(true flow through the heads, flow into the line after a leak) for a commanded
        flow: the calibration acts on what the pistons move, the leak on what they moved."""
        pumped = self.p.flow_calibration * commanded
        return pumped, self._leak(pumped)

    def _step(self, dt: float, inlets: dict[str, Stream]) -> dict[str, Stream]:
        if self.discharge_pressure > self.p.max_pressure and self._pushing():
            self.tripped = True
        if "stall" in self.faults:
            self.flow = 0.0
        target = self._target()
        q0 = self.flow
        # ramp at a constant rate: the exact mean flow over the step is a trapezoid + plateau
        t_ramp = abs(target - q0) / self.p.ramp_rate if math.isfinite(self.p.ramp_rate) else 0.0
        if t_ramp >= dt:
            q1 = q0 + math.copysign(self.p.ramp_rate * dt, target - q0)
            mean = 0.5 * (q0 + q1)
        else:
            q1 = target
            mean = (0.5 * (q0 + q1) * t_ramp + target * (dt - t_ramp)) / dt
        self.flow = q1
        if self.p.pulsation > 0.0 and mean > 0.0:
            # q(t) = mean*(1 + a sin(phi)), phi advancing at 2*pi*mean/V_stroke: exact average
            dphi = 2.0 * math.pi * mean * dt / self.p.stroke_volume
            avg = mean * (
                1.0
                + self.p.pulsation * (math.cos(self._phase) - math.cos(self._phase + dphi)) / dphi
            )
            self._phase = (self._phase + dphi) % (2.0 * math.pi)
            mean = avg
        # the piston frequency above follows the motor (the commanded flow); what the
        # pistons really move per stroke is the calibration's part
        self.counted_volume += mean * dt
        pumped, delivered = self._delivery(mean)
        self.delivered_flow = delivered
        self.leaked_volume += (pumped - delivered) * dt
        self.delivered_volume += delivered * dt
        self._drawn = pumped * dt * self._feed_density
        self._mass_lost += (pumped - delivered) * dt * self._feed_density
        return self._out(delivered)

    def _steady(self, inlets: dict[str, Stream]) -> dict[str, Stream]:
        self.flow = self._target()
        self.delivered_flow = self._delivery(self.flow)[1]
        return self._out(self.delivered_flow)

    def state(self) -> dict[str, float]:
        inst = self.flow * (1.0 + self.p.pulsation * math.sin(self._phase))
        return {
            "flow": inst,
            "flow_setpoint": self.flow_setpoint,
            "delivered_flow": self.delivered_flow,
            "running": float(self.running),
            "tripped": float(self.tripped),
            "pressure": self.discharge_pressure,
            "counted_volume": self.counted_volume,
            "delivered_volume": self.delivered_volume,
            "leaked_volume": self.leaked_volume,
            "inlet": float(self._inlet),
        }


class SyringePumpParams(_Feed):
    """Syringe pump: stalls when pressure x plunger area exceeds ``max_force``."""

    diameter: Length = Field(gt=0)
    syringe_volume: Volume = Field(gt=0)
    initial_volume: Volume | None = Field(default=None, ge=0)  # default: full
    max_force: Force = Field(default=500.0, gt=0)
    refill_flow: Flow = Field(default=1.6667e-7, gt=0)  # 10 mL/min
    flow_setpoint: Flow = Field(default=0.0, ge=0)
    running: bool = False


@register_model
class SyringePump(_PumpBase):
    """Syringe pump with finite volume, refill cycle and force-limited stall."""

    kind = "syringe_pump"
    state_units: ClassVar[dict[str, str]] = {
        "flow": "m**3/s",
        "flow_setpoint": "m**3/s",
        "running": "",
        "tripped": "",
        "pressure": "Pa",
        "force": "N",
        "volume_left": "m**3",
        "refilling": "",
        "empty": "",
        "delivered_volume": "m**3",
        "leaked_volume": "m**3",
    }
    Params = SyringePumpParams
    inputs: ClassVar[dict[str, str]] = {"flow_setpoint": "m**3/s", "running": "bool"}

    def __init__(self, name: str, species: SpeciesTable, params: SyringePumpParams) -> None:
        super().__init__(name, species, params)
        self.p = params
        self.flow_setpoint = params.flow_setpoint
        self.running = params.running
        self.volume_left = (
            params.syringe_volume
            if params.initial_volume is None
            else min(params.initial_volume, params.syringe_volume)
        )
        self.refilling = False
        self.flow = 0.0
        self.area = math.pi * params.diameter**2 / 4.0

    def refill(self) -> None:
        """Start a refill: the pump draws from its reservoir and delivers nothing meanwhile."""
        self.refilling = True

    def holdup_mass(self) -> float:
        return self.volume_left * self._feed_density

    def _step(self, dt: float, inlets: dict[str, Stream]) -> dict[str, Stream]:
        self._drawn = 0.0
        if self.discharge_pressure * self.area > self.p.max_force and self._pushing():
            self.tripped = True  # stall: the motor cannot push the plunger
        if self.refilling:
            add = min(self.p.refill_flow * dt, self.p.syringe_volume - self.volume_left)
            self.volume_left += add
            self._drawn = add * self._feed_density
            if self.volume_left >= self.p.syringe_volume * (1 - 1e-12):
                self.refilling = False
            self.flow = 0.0
            return self._out(0.0)
        ok = self.running and not self.tripped and "stall" not in self.faults
        q = min(self.flow_setpoint, self.volume_left / dt) if ok else 0.0
        self.volume_left = max(self.volume_left - q * dt, 0.0)
        self.flow = q
        delivered = self._leak(q)
        self.leaked_volume += (q - delivered) * dt
        self._mass_lost += (q - delivered) * dt * self._feed_density
        self.delivered_volume += delivered * dt
        return self._out(delivered)

    def _steady(self, inlets: dict[str, Stream]) -> dict[str, Stream]:
        ok = self.running and not self.tripped and "stall" not in self.faults
        self.flow = self.flow_setpoint if ok else 0.0
        return self._out(self._leak(self.flow))

    def state(self) -> dict[str, float]:
        return {
            "flow": self.flow,
            "flow_setpoint": self.flow_setpoint,
            "running": float(self.running),
            "tripped": float(self.tripped),
            "pressure": self.discharge_pressure,
            "force": self.discharge_pressure * self.area,
            "volume_left": self.volume_left,
            "refilling": float(self.refilling),
            "empty": float(self.volume_left <= 0.0),
            "delivered_volume": self.delivered_volume,
            "leaked_volume": self.leaked_volume,
        }


__all__ = ["HplcPump", "HplcPumpParams", "SyringePump", "SyringePumpParams"]

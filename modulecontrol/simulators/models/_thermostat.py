"""Thermostat / chiller: bath temperature with a first-order response and power limits.

Model: the bath (heat capacity C) receives controller power P, the process heat load Q_p
(heat released into the jacket by linked units, W) and ambient exchange UA_a (T_a - T):

    C dT/dt = P + Q_p + UA_a (T_a - T)

The controller asks for the power that makes the bath follow dT/dt = (T_sp - T)/tau, i.e.
P_dem = C (T_sp - T)/tau - Q_p - UA_a (T_a - T), clipped to [-P_cool, P_heat]. Every regime is
a linear ODE, so a step is solved exactly: piecewise exponentials (or ramps), switching at
the analytically computed time where the demand crosses a limit. No step-size error.
Failure fault: P = 0 (the bath drifts towards T_a + Q_p/UA_a).

Linked units (``Flowsheet.link_jacket``) load the bath through their walls,
Q_p(T) = Q_0 - G (T - T_0): ``heat_load`` Q_0 is their wall duty at the bath's temperature T_0
at the start of the step and ``load_conductance`` G the sum of their UA. The load is taken as
this linear function of the bath temperature, not as a constant: it is one more conductance
like the ambient one, so the step stays exact. Why: with the load frozen over a step, a
saturated or failed bath integrated the exchange explicitly and diverged once G dt > 2 C (a
100 J/K bath on a 1 L reactor at 100 W/K, dt 5 s: +-1e21 K within 40 steps); as a
conductance it relaxes towards the process exponentially whatever G dt / C.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._base import ModelStateError, UnitModel, register_model
from ._quantities import Conductance, HeatCapacityTotal, Power, Temperature, Time
from ._species import FloatArray, SpeciesTable, Stream


class ThermostatParams(BaseModel):
    """Defaults resemble a small lab circulator (2 kW heating, 1 kW cooling, 3 L bath)."""

    model_config = ConfigDict(extra="forbid")
    tau: Time = Field(default=120.0, gt=0)
    heat_capacity: HeatCapacityTotal = Field(default=1.2e4, gt=0)
    max_heating_power: Power = Field(default=2000.0, ge=0)
    max_cooling_power: Power = Field(default=1000.0, ge=0)
    ua_ambient: Conductance = Field(default=0.0, ge=0)
    ambient_temperature: Temperature = 293.15
    initial_temperature: Temperature = 293.15
    setpoint: Temperature = 293.15

    @model_validator(mode="after")
    def _check(self) -> ThermostatParams:
        if not 0.0 < self.heat_capacity < math.inf or not 0.0 < self.tau < math.inf:
            raise ValueError("heat_capacity and tau must be finite and > 0")
        if self.ua_ambient >= self.heat_capacity / self.tau:
            raise ValueError(
                "ua_ambient must be below heat_capacity/tau (the bath would "
                "follow ambient faster than its own controller)"
            )
        return self


@register_model
class Thermostat(UnitModel):
    """A utility: no process streams; linked units read ``temperature`` and report their
    heat duty into ``heat_load``."""

    kind = "thermostat"
    state_units: ClassVar[dict[str, str]] = {
        "temperature": "K",
        "setpoint": "K",
        "power": "W",
        "heating_power": "W",
        "cooling_power": "W",
        "heat_load": "W",
        "failed": "",
    }
    Params = ThermostatParams
    inputs: ClassVar[dict[str, str]] = {"setpoint": "K", "heat_load": "W"}
    temperature_states: ClassVar[dict[str, str]] = {"temperature": "bath temperature"}
    #: W/K: how the load of linked units falls as the bath warms (the sum of their wall UA),
    #: set by the flowsheet with ``heat_load``; 0 for a bath loaded by hand
    load_conductance: float
    fault_kinds = ("failure",)

    def __init__(self, name: str, species: SpeciesTable, params: ThermostatParams) -> None:
        super().__init__(name, species, params)
        self.p = params
        self.temperature = params.initial_temperature
        self.setpoint = params.setpoint
        self.heat_load = 0.0
        self.load_conductance = 0.0
        self.power = 0.0
        self._load_temperature = self.temperature  # T_0 of heat_load within a step

    # demand(T) = a*(T_sp - T) + d_ss; the losses Q_p(T) + UA_a (T_a - T) are linear in T
    def _coeffs(self) -> tuple[float, float]:
        p = self.p
        a = p.heat_capacity / p.tau - p.ua_ambient - self.load_conductance
        load_at_sp = self.heat_load + self.load_conductance * (
            self._load_temperature - self.setpoint)
        d_ss = -load_at_sp - p.ua_ambient * (p.ambient_temperature - self.setpoint)
        return a, d_ss

    def _regime(self, temp: float) -> float | None:
        """Clipped power, or None when the controller is within its limits."""
        if "failure" in self.faults:
            return 0.0
        a, d_ss = self._coeffs()
        d = a * (self.setpoint - temp) + d_ss
        if d > self.p.max_heating_power:
            return self.p.max_heating_power
        if d < -self.p.max_cooling_power:
            return -self.p.max_cooling_power
        return None

    def _advance(self, dt: float) -> None:
        p = self.p
        self._load_temperature = self.temperature
        a, d_ss = self._coeffs()
        g = p.ua_ambient + self.load_conductance  # total conductance of the losses, W/K
        # ... and the temperature they pull towards, times g (no division when g = 0)
        g_env = (p.ua_ambient * p.ambient_temperature + self.heat_load
                 + self.load_conductance * self._load_temperature)
        remaining = dt
        regime = self._regime(self.temperature)
        left: float | None = None  # the limit the bath just came off, within this step
        for _ in range(4):  # at most: saturated -> free -> saturated; bounded for safety
            if remaining <= 0.0:
                break
            t0 = self.temperature
            if regime is None:  # free: exact first-order response
                amp = a * (self.setpoint - t0)
                t_switch, nxt = math.inf, None
                for lim in (p.max_heating_power, -p.max_cooling_power):
                    if lim == left:
                        # the demand starts at this limit and moves away from it (towards
                        # d_ss, monotonically): its ratio is 1 up to round-off, and a ratio
                        # of 1 - 1e-16 switched back to it at once, which chattered through
                        # the four passes and dropped the rest of the step (the jacket 0.8 K
                        # off a minute into a start-up, and a run not smooth in its
                        # parameters)
                        continue
                    ratio = (lim - d_ss) / amp if amp != 0.0 else -1.0
                    if 0.0 < ratio < 1.0 and (lim - d_ss) * amp > 0:
                        t_switch, nxt = -p.tau * math.log(ratio), lim
                h = min(remaining, t_switch)
                self.temperature = self.setpoint + (t0 - self.setpoint) * math.exp(-h / p.tau)
                self.power = a * (self.setpoint - self.temperature) + d_ss
                remaining -= h
                regime = nxt
                if t_switch > h:
                    break
                continue
            power = regime
            t_switch = math.inf
            target = (  # where the demand = limit (none if the demand does not depend on T)
                None if "failure" in self.faults or a == 0.0
                else self.setpoint - (power - d_ss) / a
            )
            # T(h) = t0 + drive/g (1 - exp(-k h)), k = g/C, written with expm1/log1p so a
            # vanishing conductance (g -> 0: the linear ramp) keeps its precision: the form
            # through the equilibrium temperature (power + g_env)/g cancels catastrophically
            # there (a wall of 1e-186 W/K once sent the bath to 107 K)
            cap = p.heat_capacity
            k = g / cap
            drive = power + g_env - g * t0  # W flowing into the bath at t0
            # the limit is left only while the demand heads back within the limits
            # (d demand/dt = -a dT/dt = -a drive/C): decided by the direction, not by the
            # sign of (target - t0), which at the boundary is round-off (a bath that just
            # reached a limit at the target left it again at once, and the free response
            # then ran the rest of the step without the limit)
            if target is not None and a * drive * power > 0.0:
                x = g * (target - t0) / drive  # the fraction of the way to equilibrium
                if (target - t0) / drive <= 0.0:
                    t_switch = 0.0  # at (or a round-off past) the target already
                elif x < 1.0:
                    t_switch = (-math.log1p(-x) / k if k > 0.0
                                else cap * (target - t0) / drive)
            h = min(remaining, t_switch)
            self.temperature = t0 + drive / cap * (-math.expm1(-k * h) / k if k > 0.0 else h)
            self.power = power
            remaining -= h
            if t_switch > h:
                break
            regime, left = None, power
        if remaining > 1e-9 * dt:
            raise ModelStateError(
                self.name, self.time,
                f"the bath's regime changed more than three times within one step of {dt:g} s "
                f"({remaining:.3g} s left unintegrated); its controller is inconsistent")

    def _step(self, dt: float, inlets: dict[str, Stream]) -> dict[str, Stream]:
        self._advance(dt)
        return {}

    def _dynamic_state(self) -> FloatArray:
        return np.array([self.temperature, self.power])

    def _wake_key(self) -> tuple[Any, ...]:
        return (id(self.p), self.load_conductance)

    def _steady(self, inlets: dict[str, Stream]) -> dict[str, Stream]:
        self._advance(1e6 * self.p.tau)
        return {}



    def state(self) -> dict[str, float]:
        return {
            "temperature": self.temperature,
            "setpoint": self.setpoint,
            "power": self.power,
            "heating_power": max(self.power, 0.0),
            "cooling_power": max(-self.power, 0.0),
            "heat_load": self.heat_load,
            "failed": float("failure" in self.faults),
        }


__all__ = ["Thermostat", "ThermostatParams"]

"""Plant-wide supervision: interlocks, alarms, steady-state detectors and divert control.

All of them are evaluated on one tick against the same snapshot of values (SI), so their
decisions are consistent with each other and deterministic under the virtual clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from modulecontrol.expr import Condition, SignalHistory
from modulecontrol.recipe import Alarm, Interlock, SteadyState, ValidatedRecipe
from modulecontrol.units import to_si


def si_number(recipe: ValidatedRecipe, raw: Any) -> float:
    """A recipe number (``3``, ``'0.5 mL/min'``, ``${param}``) in SI."""
    v = recipe.resolve(raw)
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    return to_si(str(v))


@dataclass(frozen=True)
class Bypass:
    """A person's time-limited exception to automatic supervision: an interlock not acted
    on, or the divert valve held where they put it. It ends by itself at ``until`` (line
    clock), when withdrawn, or with the run."""

    user: str
    reason: str
    since: float
    until: float
    to_product: bool = False
    """A divert override's position (unused for an interlock bypass)."""

    def data(self) -> dict[str, Any]:
        return {"user": self.user, "reason": self.reason, "since": self.since,
                "until": self.until}


@dataclass
class InterlockState:
    spec: Interlock
    condition: Condition
    active: bool = False
    trips: int = 0
    awaiting_ack: bool = False
    bypass: Bypass | None = None
    """The signed bypass in force (docs/signatures.md), None when the interlock acts."""
    bypassed_hit: bool = False
    """The condition is true (or unknown) while bypassed: the action was skipped once."""


@dataclass
class AlarmState:
    spec: Alarm
    unit: str
    high: float | None
    low: float | None
    hysteresis: float
    delay: float
    active: bool = False
    acknowledged: bool = False
    pending_since: float | None = None
    raised: int = 0
    enabled: bool = True
    unknown: bool = False
    """Raised because the signal cannot be evaluated, not because it is out of limits."""

    @classmethod
    def build(cls, spec: Alarm, unit: str, resolve: Any) -> AlarmState:
        def q(v: Any) -> float | None:
            if v is None:
                return None
            return to_si(resolve(v), unit)

        hyst_raw = resolve(spec.deadband)
        if isinstance(hyst_raw, int | float):
            hyst = float(hyst_raw) * delta_scale(unit)
        else:
            hyst = delta_si(str(hyst_raw))
        delay_raw = resolve(spec.on_delay)
        delay = float(delay_raw) if isinstance(delay_raw, int | float) else to_si(delay_raw, "s")
        state = cls(spec, unit, q(spec.high), q(spec.low), hyst, delay)
        state.enabled = spec.enabled_from is None
        return state

    def step(self, now: float, value: Any) -> str | None:
        """Returns ``'raise'``, ``'unknown'`` or ``'clear'`` when the alarm changes, else None.

        A value that cannot be evaluated (missing, bad quality, stale, NaN) raises the alarm
        as ``'unknown'`` after the same delay as a limit violation, never clears it: an alarm
        that goes quiet because its sensor died would tell the operator all is well. When a
        good value returns the unknown alarm clears, and the limits are judged afresh.
        """
        readable = (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
        if self.active and self.unknown:
            if not readable:
                return None
            self.active = self.unknown = False
            self.pending_since = None
            return "clear"
        if not readable:
            if self.active:
                return None  # raised out of limits; unreadable now: it stays raised
            return self._pending(now, unknown=True)
        v = float(value)
        if not self.active:
            out = (self.high is not None and v > self.high) or (
                self.low is not None and v < self.low
            )
            if not out:
                self.pending_since = None
                return None
            return self._pending(now, unknown=False)
        back = (self.high is None or v < self.high - self.hysteresis) and (
            self.low is None or v > self.low + self.hysteresis
        )
        if back:
            self.active = False
            self.pending_since = None
            return "clear"
        return None

    def _pending(self, now: float, *, unknown: bool) -> str | None:
        """Abnormal (out of limits or unreadable) since ``pending_since``: raise after delay."""
        if self.pending_since is None:
            self.pending_since = now
        if now - self.pending_since >= self.delay:
            self.active = True
            self.unknown = unknown
            self.acknowledged = False
            self.raised += 1
            return "unknown" if unknown else "raise"
        return None


def delta_scale(unit: str) -> float:
    """SI size of one unit step (so hysteresis in degC is a difference in K)."""
    if not unit:
        return 1.0
    return to_si(1.0, unit) - to_si(0.0, unit)


def delta_si(text: str) -> float:
    number, _, unit = text.strip().partition(" ")
    return float(number) * delta_scale(unit.strip())


OPERATING_POINT_CHANGE = 0.10
"""Relative change of a path's residence time (its flows) that starts a new operating point
for the steady-state detectors on it; well above a piston pump's flow pulsation (2 % in the
simulated pumps), well below a feed started, stopped or moved by a set point."""


@dataclass
class SteadyStateDetector:
    """``signal`` within ``band`` over a window of N residence times (window follows flow),
    all of them at the current operating point.

    The operating point is the path's residence time: when it moves by more than
    :data:`OPERATING_POINT_CHANGE` of what it was (a feed started or stopped, a flow set
    point changed), the line is in transition and the window starts again from then. Without
    this a signal that had been flat before the change (the lomustine line's purity before
    the nitrite reaches the analyzer) kept its "steady" verdict for up to N residence times
    of a line that was changing, and a recipe waiting for it went on to production."""

    spec: SteadyState
    band: float
    residence_times: float
    history: SignalHistory = field(default_factory=lambda: SignalHistory(retention=86400.0))
    steady: bool = False
    since: float | None = None
    first_steady_at: float | None = None
    point_since: float = -math.inf
    """When the current operating point began (-inf: before anything this detector saw)."""
    point_tau: float | None = None
    """The path's residence time at the current operating point (None: not seen yet)."""
    _moved_at: float | None = None
    """The tick a change was first seen at, until a second tick confirms it."""

    def _operating_point(self, now: float, tau: float) -> None:
        """A change counts once seen on two ticks running (from the first): one reading
        off (a glitch, a late sample) would otherwise restart the window, and divert a
        steady product to waste for N residence times."""
        ref = self.point_tau
        if ref is None:
            self.point_tau = tau  # the first tick: what came before is not known to differ
            return
        same = (tau == ref if not (math.isfinite(tau) and math.isfinite(ref))
                else abs(tau - ref) <= OPERATING_POINT_CHANGE * ref)
        if same:
            self._moved_at = None
        elif self._moved_at is None:
            self._moved_at = now
        else:
            self.point_tau, self.point_since, self._moved_at = tau, self._moved_at, None

    def step(self, now: float, value: Any, residence_time: float) -> bool | None:
        """Returns the new steady flag when it changes, else None."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.history.record(now, {"x": float(value)})
        self._operating_point(now, residence_time)
        window = self.residence_times * residence_time
        result = False
        if math.isfinite(window) and window > 0 and now - self.point_since >= window - 1e-9:
            samples = self.history.window("x", now - window, now)
            if samples and samples[0][0] <= now - window + 1e-9:
                vals = [float(s[1]) for s in samples if isinstance(s[1], int | float)]
                if vals and max(vals) - min(vals) <= self.band:
                    result = True
        if result != self.steady:
            self.steady = result
            if result and self.first_steady_at is None:
                self.first_steady_at = now
            return result
        return None


@dataclass
class DivertControl:
    valve: str
    condition: Condition
    to_product: bool = False
    switches: int = 0
    active: bool = True
    override: Bypass | None = None
    """The signed manual override in force: the valve held at ``override.to_product``."""


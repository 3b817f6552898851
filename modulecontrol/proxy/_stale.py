"""The stale-value watchdog: a measured value that stops moving while its module answers.

A transmitter can freeze at a plausible reading (a hung converter, a PLC that stopped
copying its input image, a simulator task that died). The link is fine and the value is in
range, so neither the communication check nor the bad-value check sees it. What gives it
away is time: a real measurement always moves a little, so a value that has not moved by
more than its ``deadband`` for ``stale_after`` seconds is treated as no longer following the
process.

:class:`StaleWatch` is the pure rule, one per watched assembly, fed with observations (the
time on the project's clock, the value, the source timestamp where the transport has one).
It has no I/O and no clock of its own, so it is tested exhaustively with made-up times; the
proxy decides when it is asked (only on fresh answers of the module, see ``ModuleProxy``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class StaleWatch:
    """Stale-value rule for one measured value.

    Stale when, at an observation, either

    * the value has stayed within ``deadband`` of the *reference* (the value when it last
      moved) for ``stale_after`` seconds or longer, or
    * the source timestamp (when the transport reports one) has not advanced for
      ``stale_after`` seconds or longer: the source stopped updating, whatever the value.

    The reference only moves when the value leaves the band around it, so a slow drift of
    less than the deadband per sample still counts as movement once it adds up. Times are
    seconds on the caller's clock (simulated time in a simulated run); source timestamps are
    only compared with each other, never with that clock.
    """

    stale_after: float
    deadband: float = 0.0
    _ref: float | None = None
    _ref_t: float = 0.0
    _src: float | None = None
    _src_t: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.stale_after) and self.stale_after > 0):
            raise ValueError(f"stale_after must be > 0 s, got {self.stale_after!r}")
        if not (math.isfinite(self.deadband) and self.deadband >= 0):
            raise ValueError(f"deadband must be >= 0, got {self.deadband!r}")

    def reset(self) -> None:
        """Forget the history (the link was lost, or the value was bad): timing restarts at
        the next observation, so an outage never counts as time without movement."""
        self._ref = None
        self._src = None

    def observe(self, t: float, value: float, source_time: float | None = None) -> str | None:
        """Take one answer of the module at time ``t``; returns why the value is stale, or
        None when it is live. ``value`` must be finite (bad values are checked before)."""
        if self._ref is None or abs(value - self._ref) > self.deadband or t < self._ref_t:
            self._ref, self._ref_t = value, t
        if source_time is not None and (
            self._src is None or source_time > self._src or t < self._src_t
        ):
            self._src, self._src_t = source_time, t
        if t - self._ref_t >= self.stale_after:
            return f"unchanged for {self.stale_after:g} s"
        if self._src is not None and t - self._src_t >= self.stale_after:
            return f"source timestamp unchanged for {self.stale_after:g} s"
        return None

    @property
    def since(self) -> float | None:
        """Clock time at which the value last moved (None before the first observation)."""
        return None if self._ref is None else self._ref_t

"""Scan timing of a subscription: how many scans ran, how many slots were missed, how late.

Why it lives in the product and not in a benchmark: whether a module is scanned on time is
an operating figure (an operator screen or a load test asks the running proxies), and only
the poll loop knows when a scan was *scheduled*. The cost must stay flat however long a run
lasts, so lateness and duration go into fixed-size histograms (1 ms bins up to 2 s, one
overflow bin) instead of a growing list; percentiles are read from the histograms to 1 ms.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

BIN = 0.001
"""Histogram bin width in seconds."""
BINS = 2000
"""Bins below the overflow bin (2 s of range at 1 ms)."""


def _histogram() -> array[int]:
    return array("q", bytes(8 * (BINS + 1)))


@dataclass
class ScanStats:
    """Counters and histograms of one scanned module (or a merge of several).

    A *slot* is a scheduled scan time (start + k x interval). A scan serves the latest slot
    that has passed when it starts; its *lateness* is how long after that slot it started
    (always < one interval). Slots that passed while an earlier scan was still running, with
    no scan of their own, are *missed*: the poll loop skips them rather than firing a burst
    of back-to-back reads to catch up. ``late`` counts scans that started more than
    ``late_after`` seconds after their slot.
    """

    interval: float
    late_after: float = 0.05
    scans: int = 0
    missed: int = 0
    late: int = 0
    failed: int = 0
    """Scans whose read failed (the module was reported with BAD quality)."""
    max_lateness: float = 0.0
    max_duration: float = 0.0
    total_duration: float = 0.0
    started: float | None = None
    """Monotonic time of the first slot."""
    last: float | None = None
    """Monotonic time the last scan ended."""
    last_slot: float | None = None
    """Monotonic time of the slot the last scan served: every slot from ``started`` up to
    this one was scanned or missed, so ``slots`` is their number whatever the scans took."""
    lateness_hist: array[int] = field(default_factory=_histogram, repr=False)
    duration_hist: array[int] = field(default_factory=_histogram, repr=False)

    @property
    def slots(self) -> int:
        """Slots accounted for: every one was either scanned or missed."""
        return self.scans + self.missed

    def record(self, lateness: float, duration: float, *, ok: bool = True) -> None:
        """One scan: started ``lateness`` s after its slot, took ``duration`` s."""
        self.scans += 1
        if not ok:
            self.failed += 1
        if lateness > self.late_after:
            self.late += 1
        self.max_lateness = max(self.max_lateness, lateness)
        self.max_duration = max(self.max_duration, duration)
        self.total_duration += duration
        self.lateness_hist[_bin(lateness)] += 1
        self.duration_hist[_bin(duration)] += 1

    def lateness(self, q: float) -> float:
        """The ``q`` quantile (0..1) of scan lateness, in seconds (upper edge of its bin)."""
        return _quantile(self.lateness_hist, q, self.max_lateness)

    def duration(self, q: float) -> float:
        """The ``q`` quantile (0..1) of scan duration, in seconds (upper edge of its bin)."""
        return _quantile(self.duration_hist, q, self.max_duration)

    @classmethod
    def merged(cls, stats: Iterable[ScanStats]) -> ScanStats:
        """One set of figures over several modules (same ``late_after``; first interval)."""
        items = list(stats)
        out = cls(items[0].interval if items else 0.0,
                  items[0].late_after if items else 0.05)
        for s in items:
            out.scans += s.scans
            out.missed += s.missed
            out.late += s.late
            out.failed += s.failed
            out.max_lateness = max(out.max_lateness, s.max_lateness)
            out.max_duration = max(out.max_duration, s.max_duration)
            out.total_duration += s.total_duration
            for i in range(BINS + 1):
                out.lateness_hist[i] += s.lateness_hist[i]
                out.duration_hist[i] += s.duration_hist[i]
        return out


def _bin(seconds: float) -> int:
    if not seconds > 0.0:  # also NaN
        return 0
    return min(BINS, int(seconds / BIN))


def _quantile(hist: array[int], q: float, maximum: float) -> float:
    total = sum(hist)
    if total == 0:
        return math.nan
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return maximum if i == BINS else min((i + 1) * BIN, maximum)
    return maximum

"""Alarm KPIs (ISA-18.2 section 16, EEMUA 191) from the recorded alarm changes.

Computed from the records, never kept as counters: the KPIs of a run or a day are a reading
of what was recorded, so a report made years later says what one made at the end said.

* alarms per 10 minutes per operator: annunciations (into *unacknowledged* from the process)
  per ``flood_window`` (10 min) per operator position, the average and the busiest window;
* flood periods: fixed 10-minute intervals from the start with more than ``flood_alarms``
  annunciations, consecutive ones joined, and the share of time in flood;
* standing alarms: in alarm (process) longer than ``standing_after``; stale: longer than
  ``stale_after`` (both measured up to the end of the period for one still in alarm);
* the ten most frequent alarms and their share of all annunciations;
* chattering alarms: ``chattering.activations`` or more activations within its ``window``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from modulecontrol.alarms._philosophy import AlarmPhilosophy

__all__ = ["AlarmKpis", "alarm_kpis"]


@dataclass
class AlarmKpis:
    start: float
    end: float
    annunciations: int = 0
    per_10min_per_operator: float = 0.0
    max_per_10min: int = 0
    floods: list[dict[str, float]] = field(default_factory=list)
    flood_time_percent: float = 0.0
    standing: list[dict[str, Any]] = field(default_factory=list)
    stale: list[dict[str, Any]] = field(default_factory=list)
    top_ten: list[dict[str, Any]] = field(default_factory=list)
    chattering: list[dict[str, Any]] = field(default_factory=list)
    by_priority: dict[str, int] = field(default_factory=dict)
    shelved: int = 0
    out_of_service: int = 0
    realarms: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def alarm_kpis(changes: Iterable[Mapping[str, Any]], start: float, end: float,
               philosophy: AlarmPhilosophy | None = None) -> AlarmKpis:
    """The KPIs of the period ``start``..``end`` (same clock as the changes' ``t``) from
    alarm changes (``t``, ``name``, ``trigger``, ``state``, ``active``, ``priority``), in
    any order; changes outside the period are ignored, except that an alarm in alarm at the
    start counts as standing from the start."""
    p = philosophy or AlarmPhilosophy()
    rows = sorted((c for c in changes if float(c["t"]) <= end), key=lambda c: float(c["t"]))
    k = AlarmKpis(start, end)
    span = max(end - start, 0.0)
    window = p.flood_window
    announced: list[tuple[float, str]] = []
    activations: dict[str, list[float]] = defaultdict(list)
    active_from: dict[str, float] = {}
    longest: dict[str, float] = {}
    prio: dict[str, str] = {}
    for c in rows:
        t, name = float(c["t"]), str(c["name"])
        prio[name] = str(c.get("priority") or "")
        active = bool(c.get("active"))
        if active and name not in active_from:
            active_from[name] = max(t, start)
            if t >= start:
                activations[name].append(t)
        elif not active and name in active_from:
            began = active_from.pop(name)
            if t >= start:
                longest[name] = max(longest.get(name, 0.0), t - began)
        if t < start:
            continue
        trigger, state = c.get("trigger"), c.get("state")
        if trigger == "alarm" and state == "unacknowledged":
            announced.append((t, name))
        elif trigger == "realarm":
            k.realarms += 1
        elif trigger == "shelve":
            k.shelved += 1
        elif trigger == "remove":
            k.out_of_service += 1
    for name, began in active_from.items():
        longest[name] = max(longest.get(name, 0.0), end - began)
    k.annunciations = len(announced)
    if span > 0:
        k.per_10min_per_operator = k.annunciations * window / span / p.operators
    times = [t for t, _ in announced]
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        k.max_per_10min = max(k.max_per_10min, i - j + 1)
    buckets = Counter(int((t - start) // window) for t in times) if window > 0 else Counter()
    flood: dict[str, float] | None = None
    for b in sorted(buckets):
        if buckets[b] <= p.flood_alarms:
            continue
        b0, b1 = start + b * window, min(start + (b + 1) * window, end)
        if flood is not None and flood["end"] >= b0:
            flood["end"], flood["alarms"] = b1, flood["alarms"] + buckets[b]
        else:
            flood = {"start": b0, "end": b1, "alarms": float(buckets[b])}
            k.floods.append(flood)
    if span > 0:
        k.flood_time_percent = 100.0 * sum(f["end"] - f["start"] for f in k.floods) / span
    for name, longest_s in sorted(longest.items()):
        item = {"name": name, "priority": prio.get(name, ""), "longest_s": longest_s}
        if longest_s >= p.standing_after:
            k.standing.append(item)
        if longest_s >= p.stale_after:
            k.stale.append(item)
    counts = Counter(name for _, name in announced)
    k.top_ten = [{"name": n, "count": c, "percent": 100.0 * c / k.annunciations}
                 for n, c in sorted(counts.items(), key=lambda x: (-x[1], x[0]))[:10]]
    k.by_priority = dict(Counter(prio.get(n, "") for _, n in announced))
    rule = p.chattering
    for name, ts in sorted(activations.items()):
        most, lo = 0, 0
        for hi, t in enumerate(ts):
            while ts[lo] < t - rule.window:
                lo += 1
            most = max(most, hi - lo + 1)
        if most >= rule.activations:
            k.chattering.append({"name": name, "activations": len(ts),
                                 "most_in_window": most})
    return k

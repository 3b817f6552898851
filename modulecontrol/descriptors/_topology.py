"""Flow paths through a plant: which modules lie between two, their volumes, upstream feeds,
and the order in which the plant is stopped safely.

Residence times in recipes ("wait 3 residence times of P1 -> V1") need the volume of each
segment of a path and the flow through it; the flow through a module is the sum of the
feeds (modules with a ``flow_signal`` property) upstream of it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from modulecontrol.errors import did_you_mean
from modulecontrol.units import UnitError, to_si

if TYPE_CHECKING:  # the loader validates the shutdown order with the functions below
    from modulecontrol.descriptors._loader import PlantConfig
    from modulecontrol.descriptors._plant import PathKey


class PathError(ValueError):
    pass


def _graph(config: PlantConfig) -> tuple[dict[str, list[str]], dict[tuple[str, str], float]]:
    down: dict[str, list[str]] = defaultdict(list)
    tubing: dict[tuple[str, str], float] = {}
    for c in config.plant.connections:
        a, b = c.source[0], c.target[0]
        down[a].append(b)
        tubing[(a, b)] = tubing.get((a, b), 0.0) + float(c.volume)
    return down, tubing


def find_path(config: PlantConfig, waypoints: Sequence[str]) -> list[str]:
    """Modules from the first to the last waypoint, through every waypoint in order."""
    if len(waypoints) < 2:
        raise PathError("a flow path needs at least two modules")
    down, _ = _graph(config)
    full: list[str] = [waypoints[0]]
    for a, b in itertools.pairwise(waypoints):
        seg = _bfs(down, a, b)
        if seg is None:
            raise PathError(f"no flow path from {a} to {b} along the plant's connections")
        full.extend(seg[1:])
    return full


def _bfs(down: Mapping[str, list[str]], a: str, b: str) -> list[str] | None:
    prev: dict[str, str | None] = {a: None}
    queue = deque([a])
    while queue:
        n = queue.popleft()
        if n == b:
            out = [b]
            while prev[out[-1]] is not None:
                p = prev[out[-1]]
                assert p is not None
                out.append(p)
            return out[::-1]
        for m in down.get(n, []):
            if m not in prev:
                prev[m] = n
                queue.append(m)
    return None


def module_volume(config: PlantConfig, tag: str) -> float:
    """Internal volume in m3 from the type's ``volume`` property (0 if it has none)."""
    raw = config.type_of(tag).properties.get("volume")
    if raw is None:
        return 0.0
    try:
        return to_si(raw, "mL")
    except UnitError as exc:
        raise PathError(f"module {tag}: volume {raw!r}: {exc}") from None


def feeds(config: PlantConfig) -> dict[str, str]:
    """Feed modules (tag -> flow assembly name): those with a ``flow_signal`` property."""
    out: dict[str, str] = {}
    for m in config.plant.modules:
        sig = config.type_of(m.tag).properties.get("flow_signal")
        if isinstance(sig, str):
            out[m.tag] = sig
    return out


def upstream(config: PlantConfig, tag: str) -> set[str]:
    """Every module that can send material to ``tag`` (including ``tag``)."""
    up: dict[str, list[str]] = defaultdict(list)
    for c in config.plant.connections:
        up[c.target[0]].append(c.source[0])
    seen = {tag}
    queue = deque([tag])
    while queue:
        for m in up.get(queue.popleft(), []):
            if m not in seen:
                seen.add(m)
                queue.append(m)
    return seen


def residence_time(config: PlantConfig, path: Sequence[str], flows: Mapping[str, float]) -> float:
    """Seconds for material to pass ``path`` at the feeds' current flows (m3/s by feed tag).

    Each module and each tube is divided by the flow through it; a segment with no flow makes
    the residence time infinite.
    """
    modules = find_path(config, path)
    _, tubing = _graph(config)
    feed_tags = feeds(config)
    total = 0.0

    def flow_at(tag: str) -> float:
        return sum(flows.get(f, 0.0) for f in upstream(config, tag) if f in feed_tags)

    # The first module's own volume lies before the path and the last one's after it.
    for i, tag in enumerate(modules):
        vol = module_volume(config, tag) if 0 < i < len(modules) - 1 else 0.0
        if i + 1 < len(modules):
            vol += tubing.get((tag, modules[i + 1]), 0.0)
        if vol > 0:
            q = flow_at(tag)
            total += vol / q if q > 0 else float("inf")
    return total


_LAST_CATEGORIES = frozenset({"valve"})
"""Module categories a derived shutdown order stops last: valves hold the line's pressure
(a back-pressure regulator) and route its material (a divert valve)."""


def shutdown_stages(config: PlantConfig) -> list[list[str]]:
    """The plant's safe stop order: stages of module tags, first stage first.

    The plant's ``shutdown:`` if it declares one, with every module it leaves out in a last
    stage of its own. Otherwise derived from the plant: the feeds (:func:`feeds`) first, so
    no reagent flows into a line whose temperature or pressure is no longer held; then
    every other module (reactors, thermostats, crystallizers, analyzers); valves last, so
    the line stays under pressure and routed while it cools. Empty stages are left out.
    """
    tags = [m.tag for m in config.plant.modules]
    declared = config.plant.shutdown
    if declared:
        listed = {t for stage in declared for t in stage}
        stages = [list(stage) for stage in declared]
        stages.append([t for t in tags if t not in listed])
    else:
        fed = feeds(config)
        last = [t for t in tags if t not in fed
                and config.type_of(t).category in _LAST_CATEGORIES]
        stages = [[t for t in tags if t in fed],
                  [t for t in tags if t not in fed and t not in last], last]
    return [s for s in stages if s]


def shutdown_problems(config: PlantConfig) -> list[tuple[PathKey, str]]:
    """What is wrong with a declared ``shutdown:`` order, each at its place in the plant.

    Unknown tags, a module listed twice, and feeds not first: a feed must be listed (an
    unlisted module stops in the last stage, after heating and pressure) and may not stop in
    a stage after one that stops anything else, because reagent pumped into a line whose
    heating, cooling or back pressure is gone is exactly what the order exists to prevent.
    Feeds may stop in several stages among themselves (one reagent before another).
    """
    out: list[tuple[PathKey, str]] = []
    tags = [m.tag for m in config.plant.modules]
    fed = feeds(config)
    seen: dict[str, int] = {}
    first_other: tuple[int, str] | None = None  # the first stage that stops a non-feed
    for i, stage in enumerate(config.plant.shutdown):
        for j, tag in enumerate(stage):
            where: PathKey = ("shutdown", i, j)
            if tag not in tags:
                out.append((where, f"shutdown stage {i + 1}: unknown module '{tag}'"
                                   f"{did_you_mean(tag, tags)}"))
                continue
            if tag in seen:
                out.append((where, f"shutdown stage {i + 1}: module {tag} already stops in "
                                   f"stage {seen[tag] + 1}; a module stops once"))
                continue
            seen[tag] = i
            if tag not in fed:
                if first_other is None:
                    first_other = (i, tag)
            elif first_other is not None and first_other[0] < i:
                out.append((where, f"shutdown stage {i + 1}: feed {tag} stops after "
                                   f"{first_other[1]} (stage {first_other[0] + 1}); feeds stop "
                                   "first, so no reagent flows into a line whose heating, "
                                   f"cooling or pressure has stopped: move {tag} to an "
                                   "earlier stage"))
    if config.plant.shutdown:
        for tag in fed:
            if tag not in seen and tag in tags:
                out.append((("shutdown",), f"feed {tag} is not in the shutdown order; "
                                           "unlisted modules stop last, after heating and "
                                           f"pressure: list {tag} in a first stage"))
    return out

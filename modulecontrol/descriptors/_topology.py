"""Flow paths through a plant: which modules lie between two, their volumes, upstream feeds.

Residence times in recipes ("wait 3 residence times of P1 -> V1") need the volume of each
segment of a path and the flow through it; the flow through a module is the sum of the
feeds (modules with a ``flow_signal`` property) upstream of it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence

from modulecontrol.descriptors._loader import PlantConfig
from modulecontrol.units import UnitError, to_si


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

"""Edge nodes for bench/fleet.py, in a process of their own: the real :class:`EdgeNode`
(buffer file, births, seq, STATE, replay), fed with synthetic module values at 1 Hz.

Each module publishes ``metrics`` values per tick; the value of tick ``k`` is ``float(k)``
and its timestamp the tick's wall time, so the bench can check in PostgreSQL that every
sample arrived, once, in order, with its original time. Prints one JSON line at the end.

    python -m bench._fleet_edges URL SITE FIRST_LINE LINES MODULES METRICS SECONDS FOLDER
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from modulecontrol.fleet import Broker, DataType, EdgeNode, MetricSpec

NAMES = ("T", "Flow", "P", "Level", "pH", "Conc", "Speed", "Power")


def main(argv: list[str]) -> int:
    url, site, first, lines, modules, metrics, seconds, folder = argv
    n_lines, n_modules, n_metrics = int(lines), int(modules), int(metrics)
    names = NAMES[:n_metrics]
    edges = []
    for i in range(int(first), int(first) + n_lines):
        edge = EdgeNode(Broker.parse(url), site, f"L{i:02d}", Path(folder) / f"L{i:02d}.db",
                        primary_host="modulecontrol-fleet")
        for m in range(n_modules):
            edge.add_device(f"M{m:02d}", [MetricSpec(n, DataType.DOUBLE) for n in names])
        edges.append(edge)
    offline_seen = [0] * len(edges)
    max_buffered = [0] * len(edges)
    stop = threading.Event()

    def watch() -> None:  # when did each edge go offline (STATE or broker), how far behind
        was = [True] * len(edges)
        while not stop.is_set():
            for j, e in enumerate(edges):
                if was[j] and not e.online:
                    offline_seen[j] += 1
                was[j] = e.online
                max_buffered[j] = max(max_buffered[j], len(e.buffer))
            time.sleep(0.2)

    for e in edges:
        e.start()
    end = time.monotonic() + 30
    while not all(e.online for e in edges) and time.monotonic() < end:
        time.sleep(0.1)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    print(json.dumps({"ready": True}), flush=True)
    t0 = time.time()
    ticks = 0
    next_tick = time.monotonic()
    stop_at = next_tick + float(seconds)
    while time.monotonic() < stop_at:
        ts = time.time()
        for e in edges:
            for m in range(n_modules):
                for name in names:
                    e.update(f"M{m:02d}", name, float(ticks), ts)
        ticks += 1
        next_tick += 1.0
        time.sleep(max(0.0, next_tick - time.monotonic()))
    drained = [e.wait_drained(600) for e in edges]
    stop.set()
    left = [e.stop(drain=5) for e in edges]
    print(json.dumps({"ticks": ticks, "t0": t0, "lines": [e.node for e in edges],
                      "drained": all(drained), "left": sum(left),
                      "offline_periods": offline_seen, "max_buffered": max_buffered}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

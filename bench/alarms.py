"""Benchmark of the alarm board: declaring alarms (a ``transitions`` machine each), process
changes, a supervision tick over many alarms, and KPIs of a day of changes."""

from __future__ import annotations

import time
from typing import Any

from modulecontrol.alarms import AlarmBoard, AlarmSpec, alarm_kpis


def run() -> dict[str, Any]:
    n = 500
    board = AlarmBoard()
    rows: list[dict[str, Any]] = []
    board.route(lambda c: rows.append({"t": c.t, "name": c.name, **c.data()}))
    t0 = time.perf_counter()
    for i in range(n):
        board.declare(AlarmSpec(f"a{i}", "high" if i % 5 == 0 else "medium",
                                group=f"g{i % 10}"))
    declare_ms = (time.perf_counter() - t0) * 1000 / n
    t0 = time.perf_counter()
    changes = 0
    now = 0.0
    for k in range(20):
        for i in range(n):
            now += 0.1
            board.process(f"a{i}", k % 2 == 0, now)
            changes += 1
    process_per_s = changes / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(100):
        now += 1.0
        board.tick(now)
    tick_ms = (time.perf_counter() - t0) * 1000 / 100
    t0 = time.perf_counter()
    kpis = alarm_kpis(rows, 0.0, now)
    kpi_ms = (time.perf_counter() - t0) * 1000
    return {"alarms": n, "declare_ms_per_alarm": round(declare_ms, 3),
            "process_changes_per_s": round(process_per_s), "tick_ms_500_alarms": round(tick_ms, 3),
            "kpis_ms": round(kpi_ms, 1), "kpi_changes": len(rows),
            "annunciations": kpis.annunciations}

"""Benchmark: sustained sample ingest of the historian and the control loop's timing meanwhile.

Three phases on one asyncio loop with a 10 ms periodic "control" task whose lateness is
measured: idle (no historian work, the baseline), paced ingest at ``paced_rate`` samples/s
(what a plant would do), and flat-out ingest (the ceiling). Ingest rates count samples
committed to disk, not just queued.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from modulecontrol.records import Historian

PERIOD = 0.010


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


async def _control_task(stop: asyncio.Event, late: list[float]) -> None:
    loop = asyncio.get_running_loop()
    nxt = loop.time() + PERIOD
    while not stop.is_set():
        await asyncio.sleep(max(0.0, nxt - loop.time()))
        late.append(loop.time() - nxt)
        nxt += PERIOD
        if loop.time() > nxt:  # fell behind more than a period: skip, as a controller would
            nxt = loop.time() + PERIOD


def _lateness(late: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in late]
    return {"p50_ms": round(_pct(ms, 50), 3), "p99_ms": round(_pct(ms, 99), 3),
            "max_ms": round(max(ms) if ms else float("nan"), 3),
            "mean_ms": round(statistics.fmean(ms) if ms else float("nan"), 3)}


async def _phase(h: Historian | None, seconds: float, rate: float | None,
                 tags: list[str]) -> dict[str, Any]:
    stop = asyncio.Event()
    late: list[float] = []
    ctl = asyncio.create_task(_control_task(stop, late))
    loop = asyncio.get_running_loop()
    before = h.stats.samples_written if h else 0
    over0 = h.stats.samples_overflowed if h else 0
    t0 = time.perf_counter()
    n = 0
    ntags = len(tags)
    end = loop.time() + seconds
    if h is None:
        await asyncio.sleep(seconds)
    elif rate is None:
        chunk = 2000
        while loop.time() < end:
            now = time.time()
            rec = h.record_sample
            for i in range(chunk):
                rec(tags[i % ntags], float(i), t=now)
            n += chunk
            await asyncio.sleep(0)
    else:
        per_tick = max(1, int(rate * PERIOD))
        nxt = loop.time()
        while loop.time() < end:
            now = time.time()
            rec = h.record_sample
            for i in range(per_tick):
                rec(tags[i % ntags], float(i), t=now)
            n += per_tick
            nxt += PERIOD
            await asyncio.sleep(max(0.0, nxt - loop.time()))
    produce_s = time.perf_counter() - t0
    if h is not None:
        await h.flush()
    total_s = time.perf_counter() - t0
    stop.set()
    await ctl
    out: dict[str, Any] = {"control_lateness": _lateness(late)}
    if h is not None:
        written = h.stats.samples_written - before
        out.update(samples_offered=n, samples_written=written,
                   samples_overflowed=h.stats.samples_overflowed - over0,
                   offered_per_s=round(n / produce_s),
                   committed_per_s=round(written / total_s))
    return out


async def _main(seconds: float, paced_rate: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        h = Historian(Path(d) / "bench.db")  # shipped defaults: 0.5 s, 100k queue, FULL sync
        tags = [f"U{u}.T{i}" for u in range(10) for i in range(20)]
        await h.start_run("bench")
        res: dict[str, Any] = {"idle": await _phase(None, seconds, None, tags)}
        res["paced"] = await _phase(h, seconds, paced_rate, tags)
        res["paced"]["target_per_s"] = paced_rate
        res["flat_out"] = await _phase(h, seconds, None, tags)
        res["max_flush_s"] = round(h.stats.max_flush_s, 4)
        res["flushes"] = h.stats.flushes
        await h.end_run()
        await h.close()
        res["db_mb"] = round((Path(d) / "bench.db").stat().st_size / 1e6, 1)
    return res


def run(seconds: float = 3.0, paced_rate: float = 50_000.0) -> dict[str, Any]:
    """Figures: committed samples/s (paced and flat-out) and 10 ms task lateness per phase."""
    return asyncio.run(_main(seconds, paced_rate))


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))

"""The control service under load, and its restart (issue #17; measured, never asserted).

* **Event latency**: ``modulecontrol serve --simulate`` on the 50-module plant of
  ``bench/load.py`` (its simulated plant in a process of its own, as by default), the load
  recipe running, 20 WebSocket clients following the event stream. Events are made by the
  recipe (hold and resume every few seconds fan out to every module service: one event per
  state change). A stream event carries the service clock's time of publication; the
  bench reads that clock's anchor from the plant's control channel (the plant is slaved to
  it), so latency is "now" on the same clock at reception minus the event's time. Every
  client checks it got every sequence number once, in order (lost, duplicated).
* **Status read**: ``GET /api/v1/plant`` (every module's values and states) every 0.25 s
  by one more client under that load.
* **Service CPU**: the serve process's CPU time over the window (the plant's process apart).
* **Restart**: the lomustine plant in production; ``kill -9`` of serve; wall seconds from
  starting serve again to its ready line, to the ``plant_reattached`` event and to the
  ``run_resumed`` event on the stream ("reattached, run resumed": the run going on at its
  step), and the run's state and step then.

What is not measured yet: value changes on the stream (the operator station's work).
``SERVICE_DURATION`` (default 30 s) is the length of the measured window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.load import FULL, plant_yaml, recipe_yaml
from modulecontrol.client import Client, Resync
from modulecontrol.descriptors import load_plant
from modulecontrol.simulators import attach_plant
from modulecontrol.testing.service import ServeProcess, production_recipe, serve_folder

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 20
PASSWORD = "a long enough bench password"
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _p(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 4)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 4)


def _setup(folder: Path, recipe_text: str, plant_text: str | None = None) -> None:
    if plant_text is not None:
        (folder / "recipes").mkdir(parents=True, exist_ok=True)
        (folder / "recipes" / "plant.yaml").write_text(plant_text, encoding="utf-8")
    serve_folder(folder, {"bench": recipe_text}, "bench", PASSWORD)


async def _login(url: str) -> Client:
    c = Client(url, timeout=30.0)
    await c.login("bench", PASSWORD)
    return c


async def _until_step(c: Client, rid: int, step: str, within: float) -> None:
    deadline = time.monotonic() + within
    while (await c.run(rid)).get("step") != step:
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {rid} never reached {step}: {await c.run(rid)}")
        await asyncio.sleep(0.2)


async def _load(duration: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-service-") as d:
        folder = Path(d)
        plant = folder / "recipes" / "plant.yaml"
        _setup(folder, recipe_yaml(FULL, 3600.0).replace("plant: plant.yaml",
                                                         f"plant: {plant}"),
               # served secure, as the service serves every simulated PEA
               plant_yaml(FULL).replace(', security_policy: "None", security_mode: "None"',
                                        ""))
        serve = ServeProcess(folder, plant, speed=1.0)
        try:
            return await _measure(folder, plant, serve, duration)
        finally:
            serve.end(signal.SIGTERM)


async def _measure(folder: Path, plant: Path, serve: ServeProcess, duration: float
                   ) -> dict[str, Any]:
    proc = await attach_plant(load_plant(plant), folder / "line.db.plant")
    assert proc is not None
    anchor = (await proc.call("clock"))["clock"]
    await proc.detach()
    t0, scale = float(anchor["t0"]), float(anchor["scale"])

    def now() -> float:  # the service's clock, read here
        return (time.monotonic() - t0) * scale

    admin = await _login(serve.url)
    head = int((await admin.events_since(0, limit=1))["head"])
    clients = [await _login(serve.url) for _ in range(CLIENTS)]
    latencies: list[float] = []
    seqs: list[list[int]] = [[] for _ in clients]
    resyncs = [0]
    stop = asyncio.Event()

    async def follow(i: int, c: Client) -> None:
        async for ev in c.events(since=head):
            if stop.is_set():
                return
            if isinstance(ev, Resync):
                resyncs[0] += 1
                continue
            latencies.append(now() - float(ev["t"]))
            seqs[i].append(int(ev["seq"]))

    followers = [asyncio.create_task(follow(i, c)) for i, c in enumerate(clients)]
    plant_view = await admin.plant()
    tags = sum(len(m["values"]) for m in plant_view["modules"])
    rid = int((await admin.start_run("bench"))["id"])
    await _until_step(admin, rid, "run.steps[0]", 120.0)  # every module started
    status: list[float] = []

    async def read_status() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await admin.plant()
            status.append(time.perf_counter() - t)
            await asyncio.sleep(0.25)

    reader = asyncio.create_task(read_status())
    cpu0, wall0 = _cpu(serve.proc.pid), time.perf_counter()
    n_before = len(latencies)
    while time.perf_counter() - wall0 < duration:
        await admin.command(rid, "hold")
        await asyncio.sleep(2.0)
        await admin.command(rid, "resume")
        await asyncio.sleep(2.0)
    cpu = (_cpu(serve.proc.pid) - cpu0) / (time.perf_counter() - wall0)
    await asyncio.sleep(2.0)  # the last events arrive
    stop.set()
    await admin.command(rid, "stop")
    reader.cancel()
    for f in followers:
        f.cancel()
    for f in [reader, *followers]:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await f
    window = latencies[n_before:]
    lost = dup = 0
    for got in seqs:
        if got:
            dup += len(got) - len(set(got))
            lost += (max(got) - min(got) + 1) - len(set(got))
    for c in [admin, *clients]:
        with contextlib.suppress(Exception):
            await c.aclose()
    return {
        "modules": len(plant_view["modules"]), "tags": tags, "clients": CLIENTS,
        "window_s": round(duration, 1), "events_delivered": len(window),
        "event_latency_p50_s": _p(window, 50), "event_latency_p95_s": _p(window, 95),
        "event_latency_max_s": round(max(window), 4) if window else None,
        "events_lost": lost, "events_duplicated": dup, "resyncs": resyncs[0],
        "status_read_p50_s": _p(status, 50), "status_read_p95_s": _p(status, 95),
        "service_cpu_of_one_core": round(cpu, 3),
    }


async def _restart() -> dict[str, Any]:
    lomustine = ROOT / "recipes" / "lomustine" / "plant.yaml"
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as d:
        folder = Path(d)
        _setup(folder, production_recipe(lomustine))
        first = ServeProcess(folder, lomustine, speed=60.0)
        try:
            async with await _login(first.url) as c:
                rid = int((await c.start_run("bench"))["id"])
                await _until_step(c, rid, "feeding", 120.0)
        finally:
            first.end(signal.SIGKILL)
        second = ServeProcess(folder, lomustine, speed=60.0)
        seen: dict[str, float] = {}
        try:
            async with await _login(second.url) as c:
                deadline = time.monotonic() + 60.0
                while len(seen) < 2 and time.monotonic() < deadline:
                    for e in (await c.events_since(0))["events"]:
                        if e["kind"] in ("plant_reattached", "run_resumed"):
                            seen.setdefault(e["kind"], time.perf_counter())
                    await asyncio.sleep(0.05)
                run = await c.run(rid)
        finally:
            second.end(signal.SIGTERM)

        def since(kind: str) -> float | None:
            return round(seen[kind] - second.t_start, 2) if kind in seen else None

        return {"first_start_to_ready_s": round(first.t_ready - first.t_start, 2),
                "restart_to_ready_s": round(second.t_ready - second.t_start, 2),
                "restart_to_reattached_event_s": since("plant_reattached"),
                "restart_to_run_resumed_s": since("run_resumed"),
                "run_after_restart": f"{run['state']} at {run.get('step')}"}


def run() -> dict[str, Any]:
    duration = float(os.environ.get("SERVICE_DURATION", "30"))
    return {"load": asyncio.run(_load(duration)), "restart": asyncio.run(_restart())}


if __name__ == "__main__":
    from modulecontrol.bootstrap import configure

    configure()  # the composition root of this script
    print(json.dumps(run(), indent=2))

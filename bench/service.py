"""The control service under load, and its restart (issue #17; measured, never asserted).

* **Event latency**: ``modulecontrol serve --simulate`` on the 50-module plant of
  ``bench/load.py`` (its simulated plant in a process of its own, as by default, polled or
  subscribed at 10 Hz), the load recipe running, 20 WebSocket clients following the event
  stream. Two kinds of events, reported apart:

  - **value changes** (``value_changed``): every measured value of every module but the
    volume counters carries measurement noise (the simulators' ``simulator_noise``, as a
    plant file sets it), so each reading differs from the last: those values change at the
    rate they are sampled (the service's 10 Hz poll; the simulated OPC UA PEAs publish
    every 0.1 s), the counters (delivered, dispensed, to waste) at every model step (1 s)
    while product flows. The plant has 342 tags on 50 modules, about 2.7 moving measured
    values a module, not the issue's 20: the offered load is some 800 changes a second
    (the issue's 50 x 20 at 1 Hz is 1000), from fewer values changing faster. The figures
    say how many values changed, how often and how many changes a second reached each
    client. Latency is measured twice: from the reading's ``source_time`` (the OPC UA
    PEA's SourceTimestamp, stamped when it set the value, so it includes the
    subscription's sampling and publishing; for Modbus and serial the time the service
    read it, where the noisy value is made, so the poll's wait for its slot, up to 0.1 s,
    is not in it), against this machine's wall clock, which the plant's process shares;
    and from the event's ``t`` (the service's publication).
  - **the other events**, made by the recipe: hold and resume every few seconds fan out to
    every module service (one event per state change), latency from publication.

  A stream event's ``t`` is the service clock's time of publication; the bench reads that
  clock's anchor from the plant's control channel (the plant is slaved to it), so latency
  from publication is "now" on the same clock at reception minus ``t``. Events count when
  published inside the window. Every client checks it got every sequence number once, in
  order (lost, duplicated; per client, summed).
* **Status read**: ``GET /api/v1/plant`` (every module's values and states) every 0.25 s
  by one more client under that load.
* **Service CPU**: the serve process's CPU time over the window (the plant's process
  apart); the bench's own (the 20 clients in this process) beside it, and the load
  average before and after: on a shared machine the figures are as much the machine's.
* **Restart**: the lomustine plant in production; ``kill -9`` of serve; wall seconds from
  starting serve again to its ready line, to the ``plant_reattached`` event and to the
  ``run_resumed`` event on the stream ("reattached, run resumed": the run going on at its
  step), and the run's state and step then.

``SERVICE_DURATION`` (default 30 s) is the length of the measured window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import FULL, plant_yaml, recipe_yaml
from modulecontrol.client import Client, Resync
from modulecontrol.descriptors import NOISY_CLASSES, load_plant
from modulecontrol.simulators import attach_plant
from modulecontrol.statemachine import State
from modulecontrol.testing.service import ServeProcess, production_recipe, serve_folder
from modulecontrol.units import compatible
from modulecontrol.yamlio import dump_yaml, load_yaml_text

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 20
PASSWORD = "a long enough bench password"
_TICK = os.sysconf("SC_CLK_TCK")
NOISE = 0.01
"""Measurement noise on every measured value of the bench plant: standard deviation in
each assembly's own unit (0.01 bar, 0.01 degC, 0.01 mL/min, ...)."""


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


def _hold_causes(db: Path) -> list[str]:
    """What the records say a held run failed on: its failed steps and the aborts of its
    module services (with their reasons), oldest first."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        rows = con.execute("SELECT kind, source, payload FROM events WHERE kind IN "
                           "('step_failed', 'step_timeout', 'state_change') ORDER BY id"
                           ).fetchall()
    out = []
    for kind, source, payload in rows:
        message = str(json.loads(payload).get("message", ""))
        if kind != "state_change" or f"-> {State.ABORTING.label}" in message:
            out.append(f"{source}: {message}")
    return out


async def _until(c: Client, rid: int, key: str, value: str, within: float,
                 records: Path | None = None) -> None:
    """Until the run's ``key`` (``step``, ``recipe_state``) is ``value``. With ``records``
    (the line's database) a recipe Held for an operator decision (no automatic cause left:
    a step failed, e.g. a module service aborted) ends the wait at once, naming what the
    records say failed, instead of waiting out ``within`` for a resume that never comes."""
    deadline = time.monotonic() + within
    while (run := await c.run(rid)).get(key) != value:
        if (records is not None and run.get("recipe_state") == State.HELD.label
                and run.get("awaits_operator")):
            raise RuntimeError(f"run {rid} is held at {run.get('step')!r} for an operator "
                               f"decision ({'; '.join(run.get('held_by') or [])}): "
                               f"{'; '.join(_hold_causes(records)[-6:])}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {rid}: {key} never {value}: {await c.run(rid)}")
        await asyncio.sleep(0.2)


@dataclass(frozen=True)
class _BenchPlant:
    file: Path
    transports: dict[str, str]
    """Each module's protocol (``opcua``, ``modbus-tcp``, ...)."""
    noisy: frozenset[str]
    """The values (``TAG.Assembly``) that carry measurement noise."""


def _bench_plant(folder: Path) -> _BenchPlant:
    """The 50-module plant of ``bench/load.py``, served secure (as the service serves every
    simulated PEA), with measurement noise (:data:`NOISE`) on every measured value of every
    module but the volume counters (``overrides.simulator_noise``: the simulators' own
    feature, as a plant file would set it).

    Why not the counters (delivered, dispensed, left, to product, to waste): a totaliser
    does not flicker, the syringe pump's protocol cannot even say a negative count (noise
    on a count of 0 made its reply unreadable), and they move by themselves, every model
    step, while product flows."""
    text = plant_yaml(FULL).replace(', security_policy: "None", security_mode: "None"', "")
    plant = folder / "recipes" / "plant.yaml"
    plant.parent.mkdir(parents=True, exist_ok=True)
    plant.write_text(text, encoding="utf-8")
    cfg = load_plant(plant)
    doc = load_yaml_text(text, str(plant)).data
    noisy: set[str] = set()
    for m in doc["modules"]:
        mt = cfg.type_of(m["tag"])
        links = mt.simulator.links if mt.simulator is not None else {}
        measured = {da.name: NOISE for da in mt.data_assemblies
                    if da.class_ in NOISY_CLASSES and da.name in links
                    and not compatible(da.unit, "mL")}
        if measured:
            m.setdefault("overrides", {})["simulator_noise"] = measured
            noisy.update(f"{m['tag']}.{name}" for name in measured)
    plant.write_text(dump_yaml(doc), encoding="utf-8")
    cfg = load_plant(plant)
    return _BenchPlant(plant, {i.tag: (i.endpoint.protocol if i.endpoint is not None
                                       else "?") for i in cfg.plant.modules},
                       frozenset(noisy))


def _figures(values: list[float]) -> dict[str, Any]:
    return {"count": len(values), "p50": _p(values, 50), "p95": _p(values, 95),
            "max": round(max(values), 4) if values else None}


async def _load(duration: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-service-") as d:
        folder = Path(d)
        plant = _bench_plant(folder)
        _setup(folder, recipe_yaml(FULL, 3600.0).replace("plant: plant.yaml",
                                                         f"plant: {plant.file}"))
        serve = ServeProcess(folder, plant.file, speed=1.0)
        try:
            return await _measure(folder, plant, serve, duration)
        finally:
            serve.end(signal.SIGTERM)


async def _measure(folder: Path, plant: _BenchPlant, serve: ServeProcess, duration: float
                   ) -> dict[str, Any]:
    proc = await attach_plant(load_plant(plant.file), folder / "line.db.plant")
    assert proc is not None
    anchor = (await proc.call("clock"))["clock"]
    await proc.detach()
    t0, scale = float(anchor["t0"]), float(anchor["scale"])

    def now() -> float:  # the service's clock, read here
        return (time.monotonic() - t0) * scale

    admin = await _login(serve.url)
    head = int((await admin.events_since(0, limit=1))["head"])
    clients = [await _login(serve.url) for _ in range(CLIENTS)]
    window = [math.inf, math.inf]  # on the service's clock: events published in it count
    other: list[float] = []  # every event but value changes, from publication (t)
    published: list[float] = []  # value changes, from publication (t)
    sourced: dict[str, list[float]] = {"opcua": [], "polled": []}  # from source_time
    changes: dict[str, int] = {}  # value changes per TAG.Assembly, all clients
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
            seqs[i].append(int(ev["seq"]))
            t = float(ev["t"])
            if not window[0] <= t <= window[1]:
                continue
            if ev["kind"] != "value_changed":
                other.append(now() - t)
                continue
            published.append(now() - t)
            data = ev["data"]
            polled = plant.transports.get(data["module"]) != "opcua"
            sourced["polled" if polled else "opcua"].append(
                time.time() - float(data["source_time"]))
            changes[ev["source"]] = changes.get(ev["source"], 0) + 1

    followers = [asyncio.create_task(follow(i, c)) for i, c in enumerate(clients)]
    plant_view = await admin.plant()
    n_tags = sum(len(m["values"]) for m in plant_view["modules"])
    rid = int((await admin.start_run("bench"))["id"])
    await _until(admin, rid, "step", "run.steps[0]", 300.0,  # every module started
                 records=folder / "line.db")
    status: list[float] = []

    async def read_status() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await admin.plant()
            status.append(time.perf_counter() - t)
            await asyncio.sleep(0.25)

    reader = asyncio.create_task(read_status())
    load_before = os.getloadavg()
    cpu0, wall0, own0 = _cpu(serve.proc.pid), time.perf_counter(), time.process_time()
    window[0] = now()
    while time.perf_counter() - wall0 < duration:  # a resume only once held, and back
        await admin.command(rid, "hold")
        await asyncio.sleep(2.0)
        await _until(admin, rid, "recipe_state", State.HELD.label, 60.0)
        await admin.command(rid, "resume")
        await asyncio.sleep(2.0)
        await _until(admin, rid, "recipe_state", "Execute", 60.0)
    window[1] = now()
    wall = time.perf_counter() - wall0
    cpu = (_cpu(serve.proc.pid) - cpu0) / wall
    own = (time.process_time() - own0) / wall
    load_after = os.getloadavg()
    await asyncio.sleep(2.0)  # the window's last events arrive
    stop.set()
    await admin.command(rid, "stop")
    reader.cancel()
    for f in followers:
        f.cancel()
    for f in [reader, *followers]:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await f
    lost = [(max(got) - min(got) + 1) - len(set(got)) if got else 0 for got in seqs]
    dup = [len(got) - len(set(got)) for got in seqs]
    for c in [admin, *clients]:
        with contextlib.suppress(Exception):
            await c.aclose()
    span = (window[1] - window[0]) / scale  # wall seconds of the window

    def hz(keys: list[str]) -> float | None:  # mean changes per second of one value
        n = sum(changes[k] for k in keys)
        return round(n / CLIENTS / len(keys) / span, 2) if keys else None

    noisy = [k for k in changes if k in plant.noisy]
    return {
        "modules": len(plant_view["modules"]), "tags": n_tags, "clients": CLIENTS,
        "window_s": round(span, 1),
        "values_with_noise": len(plant.noisy), "noise": f"{NOISE:g} in each assembly's unit",
        "value_changed": {
            "per_client_per_s": round(len(published) / CLIENTS / span, 1),
            "values_changing": len(changes),
            "per_value_hz": {"noisy": hz(noisy),
                             "counters": hz([k for k in changes if k not in plant.noisy])},
            "latency_from_source_s": {"opcua": _figures(sourced["opcua"]),
                                      "polled": _figures(sourced["polled"])},
            "latency_from_publication_s": _figures(published),
        },
        "other_events": {"per_client_per_s": round(len(other) / CLIENTS / span, 1),
                         "latency_s": _figures(other)},
        "events_lost": sum(lost), "events_duplicated": sum(dup),
        "clients_losing_or_duplicating": sum(1 for a, b in zip(lost, dup, strict=True)
                                             if a or b),
        "resyncs": resyncs[0],
        "status_read_p50_s": _p(status, 50), "status_read_p95_s": _p(status, 95),
        "service_cpu_of_one_core": round(cpu, 3),
        "bench_clients_cpu_of_one_core": round(own, 3),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
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
                await _until(c, rid, "step", "feeding", 120.0)
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

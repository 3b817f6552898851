"""Load: 50 simulated modules over mixed protocols scanned at 10 Hz by one orchestrator.

Target (issue #9): missed or late scans (> 50 ms after their slot) under 1 %, memory flat
after warm-up, over 10 minutes.

What runs, and why this way:

* **The plant** (generated: Modbus TCP pumps, back-pressure regulators, valves and
  thermostats; OPC UA coil reactors and analysers; serial syringe pumps and Modbus RTU pumps
  on pseudo-terminals) is served in a *separate process* by ``simulators.spawn_plant`` (``sim
  serve --control``, as every simulated run serves it), so the process measured is only the
  control side, as in a real plant.
* **The control side** is the product path unchanged: a :class:`Session` running a recipe
  (start every pump, wait for the duration, stop them), with a proxy per module polling
  through its real driver at ``poll_interval`` 0.1 s, the historian recording every value
  and the orchestrator supervising. Nothing here reads a module itself.
* **Scan timing** comes from the proxies' own subscriptions (:class:`ScanStats`, kept by the
  drivers' poll loop): scans done, slots missed (skipped after an overrun), lateness of each
  scan's start against its slot, scan duration. OPC UA modules are not polled: the server
  publishes data changes every 0.1 s; for them the figure is the age of each update when the
  proxy gets it, reported apart (it includes the server's sampling and publishing delays).
* **Memory**: resident set size (``/proc/self/statm``) and Python's allocated blocks,
  sampled every few seconds; growth is the least-squares slope over the last 80 % of the
  run (the first 20 % is warm-up: connections, caches, the historian's first pages).
* **CPU**: process CPU time over wall time, for the orchestrator and the server process.

Duration: 10 minutes by default (the issue's figure); ``python -m bench.load --duration 60``
or ``LOAD_DURATION=60`` shortens it (``make bench`` passes ``LOAD_DURATION``, default 60 s:
see docs/reliability.md, "Load", for the 10-minute figures).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modulecontrol.clock import Clock
from modulecontrol.descriptors import PlantConfig
from modulecontrol.drivers import ScanStats
from modulecontrol.recipe import load_recipe
from modulecontrol.session import RunOptions, Session
from modulecontrol.simulators import PlantProcess, RemoteFaults, spawn_plant

DEFAULT_DURATION = 600.0
POLL_INTERVAL = 0.1
LATE_AFTER = 0.05
SAMPLE_EVERY = 2.0
WARMUP_FRACTION = 0.2

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")


# -- the plant ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Mix:
    """How many of each line the generated plant has.

    * ``fed_lines``: pump -> OPC UA module (coil reactor or PAT analyser, alternating) ->
      Modbus TCP divert valve; the pump is a serial syringe pump for the first
      ``serial_share`` of the lines, a Modbus RTU HPLC pump (own pty) for the rest.
    * ``tcp_lines``: Modbus TCP HPLC pump -> back-pressure regulator -> divert valve.
    * ``thermostats``: stand-alone Modbus TCP thermostats.
    """

    fed_lines: int = 10
    tcp_lines: int = 5
    thermostats: int = 5
    serial_share: float = 0.6

    @property
    def modules(self) -> int:
        return 3 * self.fed_lines + 3 * self.tcp_lines + self.thermostats


FULL = Mix()
"""50 modules: 30 Modbus TCP, 10 OPC UA, 6 serial, 4 Modbus RTU."""

_FEED = "overrides: {simulator: {feed: {THF: 12.33 mol/L}}}"
_TCP = "{protocol: modbus-tcp, host: 127.0.0.1, port: %d, unit_id: 1}"


def plant_yaml(mix: Mix) -> str:
    """The plant file (fixed ports are placeholders: the server takes free ones)."""
    mods: list[str] = []
    conns: list[str] = []
    port = 20000
    n_serial = round(mix.fed_lines * mix.serial_share)
    for i in range(mix.fed_lines):
        if i < n_serial:
            mods.append(f"  - {{tag: SP{i}, type: SyringePump, simulated: true, "
                        f"endpoint: {{protocol: serial, port: /dev/ttyLOAD{i}}}, {_FEED}}}")
            pump = f"SP{i}"
        else:
            mods.append(f"  - {{tag: RP{i}, type: HPLCPump, simulated: true, endpoint: "
                        f"{{protocol: modbus-rtu, port: /dev/ttyRTU{i}, unit_id: 1, "
                        f"baudrate: 115200, parity: N}}, "
                        f"{_FEED}}}")
            pump = f"RP{i}"
        kind, tag = ("CoilReactor", f"R{i}") if i % 2 == 0 else ("PATAnalyzer", f"A{i}")
        url = f"opc.tcp://127.0.0.1:{port}/load/{tag}"
        port += 1
        # a noisy analyser publishes a change every model step, as a real one does
        noisy = ", overrides: {simulator: {noise: 0.1 mol/m**3}}" if kind == "PATAnalyzer" else ""
        mods.append(f"  - {{tag: {tag}, type: {kind}, simulated: true, endpoint: "
                    f'{{protocol: opcua, url: "{url}", security_policy: "None", '
                    f'security_mode: "None"}}{noisy}}}')
        mods.append(f"  - {{tag: V{i}, type: DivertValve, simulated: true, "
                    f"endpoint: {_TCP % port}}}")
        port += 1
        conns.append(f"  - {{from: {pump}.outlet, to: {tag}.inlet, volume: 0.5 mL}}")
        conns.append(f"  - {{from: {tag}.outlet, to: V{i}.inlet, volume: 0.5 mL}}")
    for i in range(mix.tcp_lines):
        for tag, kind in ((f"P{i}", "HPLCPump"), (f"B{i}", "BackPressureRegulator"),
                          (f"W{i}", "DivertValve")):
            extra = f", {_FEED}" if kind == "HPLCPump" else ""
            mods.append(f"  - {{tag: {tag}, type: {kind}, simulated: true, "
                        f"endpoint: {_TCP % port}{extra}}}")
            port += 1
        conns.append(f"  - {{from: P{i}.outlet, to: B{i}.inlet, volume: 0.5 mL}}")
        conns.append(f"  - {{from: B{i}.outlet, to: W{i}.inlet, volume: 0.5 mL}}")
    for i in range(mix.thermostats):
        mods.append(f"  - {{tag: T{i}, type: Thermostat, simulated: true, "
                    f"endpoint: {_TCP % port}}}")
        port += 1
    return ("kind: Plant\nname: load-plant\nmodules:\n" + "\n".join(mods)
            + "\nconnections:\n" + "\n".join(conns) + "\n")


def pumps(mix: Mix) -> list[str]:
    n_serial = round(mix.fed_lines * mix.serial_share)
    return ([f"SP{i}" if i < n_serial else f"RP{i}" for i in range(mix.fed_lines)]
            + [f"P{i}" for i in range(mix.tcp_lines)])


def opcua_modules(mix: Mix) -> list[str]:
    return [f"R{i}" if i % 2 == 0 else f"A{i}" for i in range(mix.fed_lines)]


def recipe_yaml(mix: Mix, duration: float) -> str:
    """Start every pump, heat every reactor, start every analyser (a measurement a second);
    wait for the duration; stop them all. The OPC UA starts go through the MTP handshake."""
    starts = [f"{{module: {p}, service: Dosing, procedure: Continuous, "
              f"parameters: {{FlowSP: 0.5}}}}" for p in pumps(mix)]
    stops = [f"{{module: {p}, service: Dosing, command: stop}}" for p in pumps(mix)]
    for tag in opcua_modules(mix):
        svc, params = (("Tempering", "{TempSP: 40}") if tag.startswith("R")
                       else ("Measure", "{Interval: 1}"))
        starts.append(f"{{module: {tag}, service: {svc}, parameters: {params}}}")
        stops.append(f"{{module: {tag}, service: {svc}, command: stop}}")
    start = "\n".join(f"      - service: {s}" for s in starts)
    stop = "\n".join(f"      - service: {s}" for s in stops)
    return f"""\
kind: Recipe
name: load
version: 1.0.0
plant: plant.yaml
procedure:
  - name: start
    steps:
{start}
  - name: run
    steps:
      - wait: {{duration: {duration:g} s}}
  - name: stop
    steps:
{stop}
"""


# -- the server process ---------------------------------------------------------------------
class RemotePlant:
    """The plant served in its own process by ``simulators.spawn_plant`` (``modulecontrol sim
    serve --control``, as every simulated run serves it), with the process's CPU time read
    when it is told to stop."""

    def __init__(self, process: PlantProcess) -> None:
        self.process = process
        self.config = process.config
        self.cpu_seconds = math.nan

    @property
    def faults(self) -> RemoteFaults:
        """The plant process's fault injection (the load run injects none)."""
        return self.process.faults

    async def stop(self) -> None:
        self.cpu_seconds = _cpu_of(self.process.pid)
        await self.process.stop()


async def start_server(cfg: PlantConfig, clock: Clock, workdir: Path) -> RemotePlant:
    # served without OPC UA security, as the load plant says (security_policy None)
    return RemotePlant(await spawn_plant(cfg, clock, dt=1.0, pki=workdir / "pki",
                                         insecure=True, log_file=workdir / "plant.log"))


# -- measuring ------------------------------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * _PAGE


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of another process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / _TICK


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points (nan if fewer than two distinct x)."""
    n = len(points)
    if n < 2:
        return math.nan
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return math.nan
    return sum((x - mx) * (y - my) for x, y in points) / sxx


@dataclasses.dataclass
class Samples:
    t: list[float] = dataclasses.field(default_factory=list)
    rss: list[int] = dataclasses.field(default_factory=list)
    blocks: list[int] = dataclasses.field(default_factory=list)
    loop_lag: ScanStats = dataclasses.field(default_factory=lambda: ScanStats(0.1))


async def _sample(samples: Samples, t0: float, stop: asyncio.Event) -> None:
    """RSS and allocated blocks every SAMPLE_EVERY s; event-loop lag every 0.1 s."""
    next_sample = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_sample:
            samples.t.append(now - t0)
            samples.rss.append(_rss())
            samples.blocks.append(sys.getallocatedblocks())
            next_sample += SAMPLE_EVERY
        before = time.monotonic()
        await asyncio.sleep(0.1)
        samples.loop_lag.record(time.monotonic() - before - 0.1, 0.0)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1) if math.isfinite(seconds) else math.nan


def _scan_figures(stats: list[ScanStats], interval: float) -> dict[str, Any]:
    m = ScanStats.merged(stats)
    by_clock = sum(int((s.last - s.started) / interval) + 1 for s in stats
                   if s.started is not None and s.last is not None)
    return {
        "modules": len(stats),
        "slots_by_clock": by_clock,
        "scans": m.scans,
        "missed": m.missed,
        "late": m.late,
        "failed": m.failed,
        "missed_or_late_pct": round(100 * (m.missed + m.late) / max(1, m.slots), 3),
        "lateness_ms": {"p50": _ms(m.lateness(0.5)), "p99": _ms(m.lateness(0.99)),
                        "max": _ms(m.max_lateness)},
        "duration_ms": {"p50": _ms(m.duration(0.5)), "p99": _ms(m.duration(0.99)),
                        "max": _ms(m.max_duration)},
    }


async def measure(mix: Mix, duration: float, workdir: Path) -> dict[str, Any]:
    """Serve the plant in a child process, run the session, return the figures."""
    plant_file = workdir / "plant.yaml"
    plant_file.write_text(plant_yaml(mix), encoding="utf-8")
    recipe_file = workdir / "recipe.yaml"
    recipe_file.write_text(recipe_yaml(mix, duration), encoding="utf-8")
    recipe = load_recipe(recipe_file, plant_file)
    remote: list[RemotePlant] = []

    async def factory(cfg: PlantConfig, clock: Clock) -> RemotePlant:
        remote.append(await start_server(cfg, clock, workdir))
        return remote[0]

    options = RunOptions(simulate=True, db=workdir / "load.db", report_dir=None,
                         poll_interval=POLL_INTERVAL)
    session = Session(recipe, options, simulation_factory=factory)
    samples = Samples()
    stop = asyncio.Event()
    load_before = os.getloadavg()
    t0 = time.monotonic()
    cpu0 = time.process_time()
    sampler = asyncio.get_running_loop().create_task(_sample(samples, t0, stop))
    try:
        outcome = await session.run()
    finally:
        stop.set()
        await sampler
    server_cpu = remote[0].cpu_seconds if remote else math.nan
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    load_after = os.getloadavg()
    if outcome.result is None:
        raise RuntimeError(f"the load run did not start: {outcome.message}")

    polled: dict[str, list[ScanStats]] = {}
    opcua: list[ScanStats] = []
    for proxy in session.proxies.values():
        s = proxy.scan_stats
        if s is None:
            continue
        protocol = proxy.instance.endpoint.protocol if proxy.instance.endpoint else "?"
        (opcua if protocol == "opcua" else polled.setdefault(protocol, [])).append(s)
    all_polled = [s for group in polled.values() for s in group]

    warm = [(t, r) for t, r in zip(samples.t, samples.rss, strict=True)
            if t >= WARMUP_FRACTION * wall]
    warm_blocks = [(t, float(b)) for t, b in zip(samples.t, samples.blocks, strict=True)
                   if t >= WARMUP_FRACTION * wall]
    rss_slope = slope([(t / 60, r / 2**20) for t, r in warm])
    mib = [r / 2**20 for _, r in warm] or [math.nan]
    opcua_fig = _scan_figures(opcua, POLL_INTERVAL) if opcua else {}
    if opcua_fig:  # not scheduled client side: slots/missed do not apply
        for k in ("slots_by_clock", "missed", "missed_or_late_pct", "late"):
            opcua_fig.pop(k)
        opcua_fig["updates"] = opcua_fig.pop("scans")
        opcua_fig["age_ms"] = opcua_fig.pop("lateness_ms")
        opcua_fig["callback_ms"] = opcua_fig.pop("duration_ms")
    scans = _scan_figures(all_polled, POLL_INTERVAL)
    return {
        "modules": mix.modules,
        "polled_modules": len(all_polled),
        "opcua_modules": len(opcua),
        "poll_interval_s": POLL_INTERVAL,
        "late_after_ms": LATE_AFTER * 1000,
        "duration_s": duration,
        "run_wall_s": round(wall, 1),
        "result": outcome.result.value,
        "scans": scans,
        "scans_by_protocol": {p: _scan_figures(g, POLL_INTERVAL) for p, g in polled.items()},
        "opcua_updates": opcua_fig,
        "loop_lag_ms": {"p50": _ms(samples.loop_lag.lateness(0.5)),
                        "p99": _ms(samples.loop_lag.lateness(0.99)),
                        "max": _ms(samples.loop_lag.max_lateness)},
        "memory": {
            "samples": len(samples.t),
            "warmup_s": round(WARMUP_FRACTION * wall, 1),
            "rss_mib_start": round(samples.rss[0] / 2**20, 1) if samples.rss else math.nan,
            "rss_mib_after_warmup": round(mib[0], 1),
            "rss_mib_end": round(mib[-1], 1),
            "rss_mib_max": round(max(mib), 1),
            "rss_slope_mib_per_min": round(rss_slope, 3),
            "rss_mib_every_30s": [round(r / 2**20, 1) for t, r in
                                  zip(samples.t, samples.rss, strict=True)
                                  if int(t / SAMPLE_EVERY) % 15 == 0],
            "blocks_slope_per_min": round(slope([(t / 60, b) for t, b in warm_blocks]), 1),
            "blocks_after_warmup": int(warm_blocks[0][1]) if warm_blocks else 0,
            "blocks_end": int(warm_blocks[-1][1]) if warm_blocks else 0,
        },
        "cpu": {"orchestrator_pct_of_core": round(100 * cpu / wall, 1),
                "server_pct_of_core": round(100 * server_cpu / wall, 1),
                "cores": os.cpu_count()},
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "targets": {
            "missed_or_late_under_1pct": scans["missed_or_late_pct"] < 1.0,
            "memory_flat": bool(math.isfinite(rss_slope) and abs(rss_slope) < 0.5),
        },
    }


def table(fig: Mapping[str, Any]) -> str:
    """The figures as a plain-text table."""
    lines = [f"{fig['modules']} modules ({fig['polled_modules']} polled, "
             f"{fig['opcua_modules']} OPC UA), {fig['run_wall_s']} s, "
             f"poll {fig['poll_interval_s']} s, late > {fig['late_after_ms']:g} ms",
             f"{'protocol':<12}{'mods':>5}{'slots':>9}{'scans':>9}{'missed':>8}{'late':>7}"
             f"{'%':>7}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'dur p99':>9}"]
    rows = [*fig["scans_by_protocol"].items(), ("all polled", fig["scans"])]
    for name, s in rows:
        lines.append(
            f"{name:<12}{s['modules']:>5}{s['slots_by_clock']:>9}{s['scans']:>9}"
            f"{s['missed']:>8}{s['late']:>7}{s['missed_or_late_pct']:>7.2f}"
            f"{s['lateness_ms']['p50']:>8}{s['lateness_ms']['p99']:>8}"
            f"{s['lateness_ms']['max']:>8}{s['duration_ms']['p99']:>9}")
    o = fig["opcua_updates"]
    if o:
        lines.append(f"opcua updates: {o['updates']} from {o['modules']} modules, age p50 "
                     f"{o['age_ms']['p50']} ms, p99 {o['age_ms']['p99']} ms, max "
                     f"{o['age_ms']['max']} ms")
    m, c = fig["memory"], fig["cpu"]
    lines.append(f"event-loop lag p50/p99/max: {fig['loop_lag_ms']['p50']}/"
                 f"{fig['loop_lag_ms']['p99']}/{fig['loop_lag_ms']['max']} ms")
    lines.append(f"RSS {m['rss_mib_start']} -> {m['rss_mib_after_warmup']} (warm) -> "
                 f"{m['rss_mib_end']} MiB; slope after warm-up {m['rss_slope_mib_per_min']} "
                 f"MiB/min; allocated blocks {m['blocks_after_warmup']} -> {m['blocks_end']} "
                 f"({m['blocks_slope_per_min']}/min)")
    lines.append(f"CPU: orchestrator {c['orchestrator_pct_of_core']} %, server "
                 f"{c['server_pct_of_core']} % of one core ({c['cores']} cores); load average "
                 f"{fig['loadavg_before']} -> {fig['loadavg_after']}")
    lines.append(f"targets: {fig['targets']}")
    return "\n".join(lines)


def _duration() -> float:
    text = os.environ.get("LOAD_DURATION")
    return float(text) if text else DEFAULT_DURATION


def run(duration: float | None = None, mix: Mix = FULL) -> dict[str, Any]:
    """The ``bench`` entry point: the load figures (duration: ``LOAD_DURATION`` or 600 s)."""
    seconds = _duration() if duration is None else duration
    with tempfile.TemporaryDirectory(prefix="load-") as tmp:
        fig = asyncio.run(measure(mix, seconds, Path(tmp)))
    print(table(fig), flush=True)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds of scanning (default: $LOAD_DURATION or 600)")
    parser.add_argument("--modules", choices=["full", "small"], default="full",
                        help="full: the 50-module plant; small: 7 modules")
    parser.add_argument("-o", "--output", default=None,
                        help="also merge the figures into this results file under "
                             "benchmarks.load (e.g. bench/results.json)")
    args = parser.parse_args(argv)
    mix = FULL if args.modules == "full" else SMALL
    fig = run(args.duration, mix)
    if args.output:
        out = Path(args.output)
        data: dict[str, Any] = (json.loads(out.read_text(encoding="utf-8"))
                                if out.exists() else {"benchmarks": {}})
        data.setdefault("benchmarks", {})["load"] = fig
        out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0 if all(fig["targets"].values()) else 1


SMALL = Mix(fed_lines=2, tcp_lines=0, thermostats=1, serial_share=0.5)
"""7 modules, every protocol at least once: for the smoke test."""


if __name__ == "__main__":
    from modulecontrol.bootstrap import configure

    configure()  # the composition root of this script
    sys.exit(main())

"""Tags per second reading a 40-tag module: driver (coalesced) vs raw pymodbus vs naive.

- ``driver``: ModbusDriver.read of all 40 tags (coalesced into a few requests, decoded, scaled).
- ``raw``: the same requests issued directly on pymodbus' client, without decoding: the floor.
- ``naive``: one pymodbus request per tag, what a driver without coalescing costs.

Targets: driver overhead <= 20 % over raw for the same requests; coalesced >= 10x naive.

Method: the Modbus server runs in its own process (``_modbus_server.py``) on 127.0.0.1, so its
CPU is not billed to the client's event loop. After a warm-up, each round of ``seconds`` runs
the clients call by call in turn (naive every tenth turn, rotating who goes first), timing
each call's wall clock and the client process's CPU. Figures are the median over rounds with
the min..max spread; overhead and speed-up are computed per round (paired) and their median
reported. The CPU figures (client microseconds per 40-tag read) are the cross-check on a
loaded machine: other processes stretch wall time, not this process's CPU time.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from modulecontrol.descriptors import ModbusBinding, ModuleInstance, module_type_from_text
from modulecontrol.drivers.modbus import ModbusDriver, plan_reads
from modulecontrol.testing.modbus import free_port

N_TAGS = 40
NAIVE_EVERY = 10
"""The naive client (40 requests a call) takes a turn every this many cycles, so the two
coalesced clients, whose ratio is the finer figure, get most of the samples."""
HERE = Path(__file__).resolve().parent


def _module_yaml() -> str:
    lines = ["kind: ModuleType", "name: Bench40", "data_assemblies:"]
    for i in range(30):
        lines += [f"  - {{name: A{i}, class: AnaView, bindings: "
                  f"{{V: {{modbus: {{table: input, address: {i * 2}, type: float32, "
                  f"scale: 0.5}}}}}}}}"]
    for i in range(10):
        lines += [f"  - {{name: B{i}, class: BinView, bindings: "
                  f"{{V: {{modbus: {{table: discrete_input, address: {i}}}}}}}}}"]
    return "\n".join(lines) + "\n"


async def _round(fns: list[tuple[str, Callable[[], Awaitable[None]]]], seconds: float
                 ) -> dict[str, tuple[float, float]]:
    """Per client: (tag reads per second, client CPU microseconds per call) over one round.

    The clients take turns call by call, so a burst of load on the machine hits all of them
    alike instead of whichever happened to be measured at that moment.
    """
    wall = {name: 0.0 for name, _ in fns}
    cpu = {name: 0.0 for name, _ in fns}
    calls = {name: 0 for name, _ in fns}
    end = time.perf_counter() + seconds
    cycle = 0
    while time.perf_counter() < end:
        cycle += 1
        for name, fn in fns:
            if name == "naive" and cycle % NAIVE_EVERY:
                continue
            c0, t0 = time.process_time(), time.perf_counter()
            await fn()
            wall[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
            calls[name] += 1
    return {name: (calls[name] * N_TAGS / wall[name], cpu[name] / calls[name] * 1e6)
            for name, _ in fns}


def _start_server() -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE.parent), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.Popen([sys.executable, str(HERE / "_modbus_server.py"), str(port)],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the server listens (or dies)
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"benchmark server did not start (said {line!r})")
    return proc, port


BEFORE: dict[str, Any] = {
    "note": "recorded with this method on the driver of commit 5d91870, before the overhead "
            "work (two runs on a 2-core machine shared with other jobs)",
    "driver_overhead_vs_raw_median": [0.475, 0.389],
    "driver_extra_cpu_us_per_read_median": [158.9, 166.1],
    "coalesced_vs_naive_median": [11.6, 13.0],
}
"""Reference figures of the driver before precompiled decoders, for the before/after report."""


def _summary(values: list[float], digits: int = 0) -> dict[str, float]:
    return {"median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits)}


async def _run(seconds: float, rounds: int, port: int) -> dict[str, Any]:
    mt = module_type_from_text(_module_yaml(), "bench40.yaml")
    inst = ModuleInstance.model_validate(
        {"tag": "B1", "type": "Bench40",
         "endpoint": {"protocol": "modbus-tcp", "port": port, "timeout": 2}})
    driver = ModbusDriver(mt, inst)
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0,
                                  reconnect_delay=0)
    try:
        await driver.connect()
        await client.connect()
        names = list(driver.tags)
        bindings: dict[str, ModbusBinding] = {}
        for n in names:
            b = driver.tags[n].binding
            assert isinstance(b, ModbusBinding)
            bindings[n] = b
        blocks = plan_reads(bindings, inst.endpoint.max_gap)  # type: ignore[union-attr]
        calls = {"coil": client.read_coils, "discrete_input": client.read_discrete_inputs,
                 "holding": client.read_holding_registers, "input": client.read_input_registers}

        async def via_driver() -> None:
            await driver.read(names)

        async def raw() -> None:
            for blk in blocks:
                await calls[blk.table](blk.address, count=blk.count, device_id=1)

        async def naive() -> None:
            for b in bindings.values():
                await calls[b.table](b.address, count=b.count, device_id=1)

        fns: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("driver", via_driver), ("raw", raw), ("naive", naive)]
        await _round(fns, min(0.5, seconds))  # warm-up: connections, plan cache, allocator
        rates: dict[str, list[float]] = {name: [] for name, _ in fns}
        cpu: dict[str, list[float]] = {name: [] for name, _ in fns}
        for r in range(rounds):
            order = fns[r % 3:] + fns[:r % 3]  # rotate so no client always goes first
            for name, (rate, us) in (await _round(order, seconds)).items():
                rates[name].append(rate)
                cpu[name].append(us)
    finally:
        client.close()
        await driver.close()
    overheads = [rw / d - 1.0 for rw, d in zip(rates["raw"], rates["driver"], strict=True)]
    speedups = [d / nv for d, nv in zip(rates["driver"], rates["naive"], strict=True)]
    overhead = statistics.median(overheads)
    speedup = statistics.median(speedups)
    return {
        "tags": N_TAGS,
        "rounds": rounds,
        "seconds_per_measurement": seconds,
        "server": "separate process",
        "requests_coalesced": len(blocks),
        "requests_naive": len(bindings),
        "driver_tags_per_s": _summary(rates["driver"]),
        "raw_tags_per_s": _summary(rates["raw"]),
        "naive_tags_per_s": _summary(rates["naive"]),
        "driver_overhead_vs_raw": _summary(overheads, 3),
        "driver_cpu_us_per_read": _summary(cpu["driver"], 1),
        "raw_cpu_us_per_read": _summary(cpu["raw"], 1),
        "naive_cpu_us_per_read": _summary(cpu["naive"], 1),
        "driver_extra_cpu_us_per_read": _summary(
            [d - rw for d, rw in zip(cpu["driver"], cpu["raw"], strict=True)], 1),
        "coalesced_vs_naive": _summary(speedups, 1),
        "target_overhead_met": overhead <= 0.20,
        "target_speedup_met": speedup >= 10,
        "before": BEFORE,
    }


def run(seconds: float = 1.0, rounds: int = 7) -> dict[str, Any]:
    """Figures over ``rounds`` rounds of ``seconds`` each (plus a warm-up round)."""
    proc, port = _start_server()
    try:
        return asyncio.run(_run(seconds, rounds, port))
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    from modulecontrol.bootstrap import configure

    configure()  # the composition root of this script
    for k, v in run().items():
        print(f"{k}: {v}")

"""Tags per second reading a 40-tag module: driver (coalesced) vs raw pymodbus vs naive.

- ``driver``: ModbusDriver.read of all 40 tags (coalesced into a few requests, decoded, scaled).
- ``raw``: the same requests issued directly on pymodbus' client, without decoding: the floor.
- ``naive``: one pymodbus request per tag, what a driver without coalescing costs.

Targets: driver overhead <= 20 % over raw for the same requests; coalesced >= 10x naive.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from modulecontrol.descriptors import ModbusBinding, ModuleInstance, module_type_from_text
from modulecontrol.drivers.modbus import ModbusDriver, plan_reads
from modulecontrol.testing.modbus import RecordingStore, TcpDevice

N_TAGS = 40


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


async def _rate(fn: Any, seconds: float) -> float:
    """Tag reads per second of ``fn`` (one call = N_TAGS tags) over about ``seconds``."""
    await fn()
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        await fn()
        n += 1
    return n * N_TAGS / (time.perf_counter() - t0)


async def _run(seconds: float) -> dict[str, Any]:
    mt = module_type_from_text(_module_yaml(), "bench40.yaml")
    dev = TcpDevice(RecordingStore())
    await dev.start()
    inst = ModuleInstance.model_validate(
        {"tag": "B1", "type": "Bench40",
         "endpoint": {"protocol": "modbus-tcp", "port": dev.port, "timeout": 2}})
    driver = ModbusDriver(mt, inst)
    client = AsyncModbusTcpClient("127.0.0.1", port=dev.port, timeout=2, retries=0,
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

        rates: dict[str, float] = {}
        for _ in range(2):  # interleave to spread machine noise over all three
            for name, fn in (("driver", via_driver), ("raw", raw), ("naive", naive)):
                rates[name] = max(rates.get(name, 0.0), await _rate(fn, seconds))
    finally:
        client.close()
        await driver.close()
        await dev.stop()
    overhead = rates["raw"] / rates["driver"] - 1.0
    return {
        "tags": N_TAGS,
        "requests_coalesced": len(blocks),
        "requests_naive": len(bindings),
        "driver_tags_per_s": round(rates["driver"]),
        "raw_tags_per_s": round(rates["raw"]),
        "naive_tags_per_s": round(rates["naive"]),
        "driver_overhead_vs_raw": round(overhead, 3),
        "coalesced_vs_naive": round(rates["driver"] / rates["naive"], 1),
        "target_overhead_met": overhead <= 0.20,
        "target_speedup_met": rates["driver"] / rates["naive"] >= 10,
    }


def run(seconds: float = 1.0) -> dict[str, Any]:
    """Figures for one run; ``seconds`` per measurement (six measurements)."""
    return asyncio.run(_run(seconds))


if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k}: {v}")

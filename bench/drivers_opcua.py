"""OPC UA driver throughput: one batched Read of 40 nodes vs 40 single-node Reads, and the
driver's overhead over raw asyncua for the same batched request (server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds

from modulecontrol.descriptors import ModuleInstance, builtin_types
from modulecontrol.drivers.opcua import OpcUaDriver
from modulecontrol.simulators.opcua_pea import build_pea_server

N_TAGS = 40
BATCHED_ROUNDS = 300
SINGLE_ROUNDS = 15


async def _bench() -> dict[str, Any]:
    mt = builtin_types().get("CoilReactor")
    server = await build_pea_server(mt)
    async with server:
        inst = ModuleInstance.model_validate({
            "tag": "R1", "type": "CoilReactor",
            "endpoint": {"protocol": "opcua", "url": server.url, "security_policy": "None",
                         "security_mode": "None", "timeout": 5.0}})
        drv = OpcUaDriver(mt, inst)
        async with drv:
            tags = [t for t, i in drv.tags.items() if i.readable][:N_TAGS]
            await drv.read(tags)  # warm-up


            t0 = time.perf_counter()
            for _ in range(SINGLE_ROUNDS):
                for tag in tags:
                    await drv.read([tag])
            single = time.perf_counter() - t0

            client = drv._client
            assert client is not None
            params = ua.ReadParameters()
            for tag in tags:
                rv = ua.ReadValueId()
                rv.NodeId = drv._node_ids[tag]
                rv.AttributeId = AttributeIds.Value
                params.NodesToRead.append(rv)
            # Interleaved, so both see the same server, cache and GC conditions.
            batched = raw = 0.0
            for _ in range(BATCHED_ROUNDS):
                t0 = time.perf_counter()
                await drv.read(tags)
                t1 = time.perf_counter()
                await client.uaclient.read(params)
                t2 = time.perf_counter()
                batched += t1 - t0
                raw += t2 - t1

    single_requests = SINGLE_ROUNDS * len(tags)
    per_batched = batched / BATCHED_ROUNDS
    per_raw = raw / BATCHED_ROUNDS
    return {
        "tags_per_request_batched": len(tags),
        "batched_requests_per_s": round(BATCHED_ROUNDS / batched, 1),
        "batched_tags_per_s": round(BATCHED_ROUNDS * len(tags) / batched, 1),
        "single_requests_per_s": round(single_requests / single, 1),
        "single_tags_per_s": round(single_requests / single, 1),
        "batched_speedup_tags_per_s": round((BATCHED_ROUNDS * len(tags) / batched)
                                            / (single_requests / single), 2),
        "raw_asyncua_batched_ms": round(per_raw * 1000, 3),
        "driver_batched_ms": round(per_batched * 1000, 3),
        "driver_overhead_ms": round((per_batched - per_raw) * 1000, 3),
        "driver_overhead_pct": round(100 * (per_batched - per_raw) / per_raw, 1),
    }


def run() -> dict[str, Any]:
    return asyncio.run(_bench())


if __name__ == "__main__":
    from modulecontrol.bootstrap import configure

    configure()  # the composition root of this script
    for k, v in run().items():
        print(f"{k:32} {v}")

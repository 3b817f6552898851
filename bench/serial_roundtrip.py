"""Round trips of the serial driver against the SYR-1 emulator on a pty (no baud-rate delay)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from modulecontrol.descriptors import ModuleInstance, builtin_types
from modulecontrol.drivers.serial import SerialDriver
from modulecontrol.simulators.syringe_serial import SyringeSerialEmulator


async def _measure(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with SyringeSerialEmulator(link=Path(tmp) / "tty") as emu:
            inst = ModuleInstance.model_validate(
                {"tag": "P1", "type": "SyringePump",
                 "endpoint": {"protocol": "serial", "port": emu.port}}
            )
            async with SerialDriver(builtin_types().get("SyringePump"), inst) as drv:
                tags = [t for t, i in drv.tags.items() if i.readable]
                t0 = time.perf_counter()
                for _ in range(n):
                    await drv.read(["Rate.VRbk"])
                single = (time.perf_counter() - t0) / n
                t0 = time.perf_counter()
                for _ in range(n // len(tags)):
                    await drv.read(tags)
                per_tag = (time.perf_counter() - t0) / (n // len(tags) * len(tags))
    return {"exchanges": float(n), "round_trip_ms": single * 1e3,
            "per_tag_in_batch_ms": per_tag * 1e3, "exchanges_per_s": 1.0 / single}


def run() -> dict[str, float]:
    return asyncio.run(_measure(700))


if __name__ == "__main__":
    from modulecontrol.bootstrap import configure

    configure()  # the composition root of this script
    print(run())

"""A Modbus TCP device in its own process for ``bench/drivers_modbus.py``.

Why a separate process: with the server on the client's event loop, every request's server-side
work (decode, datastore, encode) is billed to the client, which hides client overhead behind a
constant and lets server scheduling jitter leak into the ratios. Usage:
``python bench/_modbus_server.py PORT``; prints ``ready`` once listening, serves until killed.
"""

from __future__ import annotations

import asyncio
import sys

from modulecontrol.testing.modbus import RecordingStore, TcpDevice


async def _serve(port: int) -> None:
    store = RecordingStore(size=1000)
    for i in range(1000):  # something other than zeros to decode
        store.tables[1]["input"][i] = (i * 37) & 0xFFFF
        store.tables[1]["discrete_input"][i] = i % 3 == 0
    dev = TcpDevice(store, port=port)
    await dev.start()
    print("ready", flush=True)
    while True:  # the access log is for tests; keep the server's memory flat
        await asyncio.sleep(0.5)
        store.log.clear()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))

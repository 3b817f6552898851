"""A tiny acme device: a heater behind the acme line protocol on 127.0.0.1.

Why in the plug-in: a driver package ships (or points to) something its driver can talk to,
so its tests and the users' dry runs need no hardware. The heater's temperature ``T`` moves
towards the setpoint ``SP`` while ``RUN`` is on and back towards ambient when it is off; the
model steps on its own task every ``dt`` seconds of wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

AMBIENT = 20.0


class AcmeHeaterDevice:
    """Serve ``SP`` (writable), ``RUN`` (writable, 0/1) and ``T`` (read-only) over TCP."""

    WRITABLE = frozenset({"SP", "RUN"})

    def __init__(self, port: int = 0, *, dt: float = 0.02, gain: float = 0.2) -> None:
        self.registers: dict[str, float] = {"SP": AMBIENT, "RUN": 0.0, "T": AMBIENT}
        self.writes: list[tuple[str, float]] = []
        """Every accepted ``SET``, in order (what the test checks the recipe did)."""
        self.port = port
        self.dt = dt
        self.gain = gain
        self._server: asyncio.Server | None = None
        self._model: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._model = asyncio.create_task(self._run_model())

    async def stop(self) -> None:
        if self._model is not None:
            self._model.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._model
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _run_model(self) -> None:
        while True:
            await asyncio.sleep(self.dt)
            r = self.registers
            target = r["SP"] if r["RUN"] else AMBIENT
            r["T"] += (target - r["T"]) * self.gain

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write((self.answer(line.decode("ascii", "replace").strip()) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def answer(self, request: str) -> str:
        """The reply to one request line (the whole protocol)."""
        parts = request.split()
        if len(parts) == 2 and parts[0] == "GET" and parts[1] in self.registers:
            return f"= {self.registers[parts[1]]!r}"
        if len(parts) == 3 and parts[0] == "SET":
            name, text = parts[1], parts[2]
            if name not in self.WRITABLE:
                return f"ERR {name} is not writable"
            try:
                value = float(text)
            except ValueError:
                return f"ERR not a number: {text}"
            if not math.isfinite(value):
                return "ERR not a finite number"
            self.registers[name] = value
            self.writes.append((name, value))
            return "OK"
        return f"ERR bad request: {request[:40]}"

"""The stirrer's simulator: the device side of the textline protocol on a pseudo-terminal.

Why the package ships it: tests and dry runs need something the driver can open that
answers as the device does, refusals included (an unknown name, a value beyond the device's
range, a write to a read-only value). The speed follows the set point while ``RUN`` is on
(first order, time constant ``tau``); the plate temperature rises slowly with the speed.

``silent`` makes it stop answering (a hung device); :meth:`vanish` and :meth:`reappear`
close and reopen the port behind a stable path (a USB adapter pulled and replugged).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from pathlib import Path

from example_devices.textline import (
    MALFORMED,
    MAX_LINE,
    OUT_OF_RANGE,
    READ_ONLY,
    UNKNOWN,
    CodecError,
    Reply,
    decode_request,
    encode_reply,
)
from modulecontrol.simulators import PtyPort

RANGES: dict[str, tuple[float, float]] = {"SPEED_SP": (0.0, 1500.0), "RUN": (0.0, 1.0)}
"""The writable values and the range the device accepts."""


class StirrerSimulator:
    """A hotplate stirrer on a pty; ``port`` is the path a driver opens."""

    def __init__(self, link: Path | None = None, *, tau: float = 0.5, dt: float = 0.02) -> None:
        self.values: dict[str, float] = {"SPEED_SP": 0.0, "RUN": 0.0, "SPEED": 0.0,
                                         "TEMP": 22.0}
        self.tau = tau
        self.dt = dt
        self.silent = False
        self.requests: list[bytes] = []
        """Every request line received (what a test checks the driver sent)."""
        self._pty = PtyPort(self._on_data, link=link)
        self._buffer = bytearray()
        self._model: asyncio.Task[None] | None = None

    @property
    def port(self) -> str:
        return self._pty.port

    async def start(self) -> None:
        self._pty.open()
        self._model = asyncio.get_running_loop().create_task(self._run_model())

    async def stop(self) -> None:
        if self._model is not None:
            self._model.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._model
            self._model = None
        self._pty.close()

    def vanish(self) -> None:
        self._pty.close()
        self._buffer.clear()

    def reappear(self) -> None:
        self._pty.open()

    async def _run_model(self) -> None:
        while True:
            await asyncio.sleep(self.dt)
            v = self.values
            target = v["SPEED_SP"] if v["RUN"] else 0.0
            v["SPEED"] += (target - v["SPEED"]) * (1.0 - math.exp(-self.dt / self.tau))
            v["TEMP"] += (22.0 + v["SPEED"] / 100.0 - v["TEMP"]) * 0.01

    def _on_data(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            self.requests.append(line)
            if not self.silent:
                self._pty.write(encode_reply(self.answer(line)))
        if len(self._buffer) > MAX_LINE:  # noise: drop it, as a device's line buffer would
            self._buffer.clear()

    def answer(self, line: bytes) -> Reply:
        """The reply to one request line (the whole device)."""
        try:
            name, value = decode_request(line)
        except CodecError as exc:
            return Reply("error", "-", code=MALFORMED, text=str(exc))
        if name not in self.values:
            return Reply("error", name, code=UNKNOWN, text="unknown")
        if value is None:
            return Reply("value", name, value=self.values[name])
        if name not in RANGES:
            return Reply("error", name, code=READ_ONLY, text="read-only")
        lo, hi = RANGES[name]
        if not lo <= value <= hi:
            return Reply("error", name, code=OUT_OF_RANGE, text=f"{lo:g}..{hi:g}")
        self.values[name] = value
        return Reply("ok", name)

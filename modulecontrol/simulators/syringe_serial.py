"""Emulator of the SYR-1 syringe pump protocol (``docs/syringe-protocol.md``) on a pseudo-terminal.

The emulator owns the master side of a pty; a client (the serial driver, a terminal program)
opens the slave path with pyserial exactly as it would open ``/dev/ttyUSB0``. A stable symlink
(``link=``) keeps the path valid when the port is made to vanish and come back.

The pump's physics come from a :class:`SyringeModel`: anything with the attributes below, so
the process-model package can plug in its ``SyringePump``. :class:`BuiltinSyringe` is a small
stand-alone model that integrates the dispensed volume over (monotonic) time.

Fault injection (:class:`Faults`) reproduces what a real line does wrong: a pump that stops
answering, answers late, answers noise, or answers an error to everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from modulecontrol.drivers.ascii_codec import CHECKSUM_DIGITS, Checksum, checksum_hex
from modulecontrol.simulators._ports import PtyPort
from modulecontrol.units import convert

__all__ = [
    "RATE_UNITS",
    "BuiltinSyringe",
    "Faults",
    "SyringeModel",
    "SyringeSerialEmulator",
]

MAX_RATE = 50.0
"""mL/min; faster settings answer ``?OOR`` (unless the model gives its own ``rate_range``)."""
DIAMETER_RANGE = (0.1, 50.0)
"""mm; other diameters answer ``?OOR`` (unless the model gives its own ``diameter_range``)."""
RATE_UNITS: dict[str, float] = {"MM": 1.0, "MH": 1 / 60, "UM": 1e-3, "UH": 1e-3 / 60}
"""Factor from each rate unit to mL/min."""


@runtime_checkable
class SyringeModel(Protocol):
    """What the emulator needs of a pump model (units: mm, mL/min, mL, bar).

    The attribute names are the ``simulator.links`` of the built-in ``SyringePump`` type.
    Setting ``running`` to True on an empty or stalled syringe may leave it False; the
    emulator reads it back to answer. A model may also carry ``rate_range`` (mL/min) and
    ``diameter_range`` (mm), each ``(min, max)``: the settings the pump accepts, answering
    ``?OOR`` outside them (default: 0-50 mL/min, 0.1-50 mm).
    """

    diameter: float
    flow_setpoint: float
    running: bool

    @property
    def dispensed(self) -> float: ...
    @property
    def volume_left(self) -> float: ...
    @property
    def pressure(self) -> float: ...
    @property
    def stalled(self) -> bool: ...


class BuiltinSyringe:
    """A syringe that empties at the set rate, builds pressure against a fixed line
    resistance and stalls when the plunger force exceeds the drive's limit.

    State advances lazily from ``clock`` on every access, so it needs no task of its own.
    """

    def __init__(
        self,
        *,
        syringe_volume: Any = "50 mL",
        diameter: Any = "14.5 mm",
        max_force: Any = "800 N",
        resistance: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.syringe_volume = convert(syringe_volume, "mL", "mL")
        self._diameter = convert(diameter, "mm", "mm")
        self.max_force = convert(max_force, "N", "N")
        self.resistance = float(resistance)
        """bar per mL/min of flow (tubing and back-pressure regulator)."""
        self._clock = clock
        self._t = clock()
        self._flow = 0.0
        self._running = False
        self._stalled = False
        self._dispensed = 0.0
        self._left = self.syringe_volume

    # -- settable -------------------------------------------------------------------------
    @property
    def diameter(self) -> float:
        return self._diameter

    @diameter.setter
    def diameter(self, value: float) -> None:
        self._sync()
        self._diameter = float(value)

    @property
    def flow_setpoint(self) -> float:
        return self._flow

    @flow_setpoint.setter
    def flow_setpoint(self, value: float) -> None:
        self._sync()
        self._flow = float(value)
        self._check_force()

    @property
    def running(self) -> bool:
        self._sync()
        return self._running

    @running.setter
    def running(self, value: bool) -> None:
        self._sync()
        self._stalled = False  # RUN and STP both acknowledge the stall alarm
        self._running = bool(value) and self._left > 0
        self._check_force()

    # -- read-only ------------------------------------------------------------------------
    @property
    def dispensed(self) -> float:
        self._sync()
        return self._dispensed

    @property
    def volume_left(self) -> float:
        self._sync()
        return self._left

    @property
    def pressure(self) -> float:
        self._sync()
        return self._pressure()

    @property
    def stalled(self) -> bool:
        self._sync()
        return self._stalled

    def refill(self) -> None:
        """Fill the syringe again (the pump is stopped by the operator to do it)."""
        self._sync()
        self._left = self.syringe_volume

    # -- internals ------------------------------------------------------------------------
    def _pressure(self) -> float:
        return self.resistance * self._flow if self._running else 0.0

    def _check_force(self) -> None:
        area = math.pi * (self._diameter / 2000.0) ** 2  # m²
        force = convert(self._pressure(), "Pa", "bar") * area
        if self._running and force > self.max_force:
            self._running = False
            self._stalled = True

    def _sync(self) -> None:
        now = self._clock()
        dt_min = max(0.0, now - self._t) / 60.0
        self._t = now
        if self._running and dt_min > 0:
            dv = min(self._flow * dt_min, self._left)
            self._dispensed += dv
            self._left -= dv
            if self._left <= 0:
                self._left = 0.0
                self._running = False


@dataclass
class Faults:
    """Switches a test flips to make the pump misbehave; all off by default."""

    silent: bool = False
    """Swallow requests without answering (a pump switched off, a broken TX wire)."""
    delay: float = 0.0
    """Seconds to wait before each reply."""
    garbage: bytes | None = None
    """Send these bytes instead of the reply (line noise, wrong baud rate)."""
    error: str | None = None
    """Answer every request with this error code (``?``, ``?NA``, ``?OOR``, ``?COM``)."""


_REQUEST = re.compile(r"^(?P<addr>\d{2})?(?P<cmd>[A-Za-z]{3}\??)(?:\s+(?P<args>.*))?$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


@dataclass
class SyringeSerialEmulator:
    """Serves one or more pumps (a daisy chain, by address) on a pseudo-terminal."""

    pumps: Mapping[int, SyringeModel] = field(default_factory=lambda: {0: BuiltinSyringe()})
    checksum: Checksum = "none"
    request_terminator: bytes = b"\r"
    reply_terminator: bytes = b"\r"
    link: Path | None = None
    """A symlink kept pointing at the current slave device: a port path that survives
    :meth:`vanish` / :meth:`reappear`."""
    faults: Faults = field(default_factory=Faults)
    log: list[bytes] = field(default_factory=list)
    """Every request line received, terminator stripped, for byte-exact assertions."""

    _pty: PtyPort = field(init=False, repr=False)
    _buffer: bytearray = field(default_factory=bytearray, init=False, repr=False)
    _queue: asyncio.Queue[bytes] | None = field(default=None, init=False, repr=False)
    _worker: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._pty = PtyPort(self._received)

    @property
    def port(self) -> str:
        """The path a client opens."""
        return str(self.link) if self.link is not None else self._pty.port

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._serve(), name="syringe-emu")
        self._open()

    async def stop(self) -> None:
        self._pty.close()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def __aenter__(self) -> SyringeSerialEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def vanish(self) -> None:
        """Close the pty as if the USB adapter were pulled: open clients see the port die."""
        self._pty.close()

    def reappear(self) -> None:
        """Plug the adapter back in: a new pty, and the link points at it."""
        if not self._pty.is_open:
            self._open()

    def _open(self) -> None:
        self._buffer.clear()
        self._pty.link = self.link  # ``link`` may have been set since the last open
        self._pty.open()

    def _received(self, data: bytes) -> None:
        self._buffer += data
        while (i := self._buffer.find(self.request_terminator)) >= 0:
            line = bytes(self._buffer[:i])
            del self._buffer[: i + len(self.request_terminator)]
            assert self._queue is not None
            self._queue.put_nowait(line)

    async def _serve(self) -> None:
        assert self._queue is not None
        while True:
            line = await self._queue.get()
            self.log.append(line)
            reply = self.handle(line)
            f = self.faults
            if f.silent or reply is None:
                continue
            if f.delay > 0:
                await asyncio.sleep(f.delay)
            self._pty.write(f.garbage if f.garbage is not None else reply)

    # -- protocol -------------------------------------------------------------------------
    def handle(self, line: bytes) -> bytes | None:
        """The framed reply to one request line (without terminator); None means silence."""
        n = CHECKSUM_DIGITS[self.checksum]
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            text = None
        addr_m = re.match(rb"^(\d{2})", line)
        addr = int(addr_m.group(1)) if addr_m else None
        if addr is not None and addr not in self.pumps:
            return None  # another device on the chain
        pump = self.pumps.get(0 if addr is None else addr) or next(iter(self.pumps.values()))
        if text is None or not text.isprintable() or len(text) < n:
            return self._frame(addr, self._prompt(pump) + "?COM")
        if n:
            body, got = text[:-n], text[-n:]
            if got.upper() != checksum_hex(self.checksum, body.encode("ascii")):
                return self._frame(addr, self._prompt(pump) + "?COM")
            text = body
        if self.faults.error is not None:
            return self._frame(addr, self._prompt(pump) + self.faults.error)
        m = _REQUEST.match(text)
        if m is None:
            return self._frame(addr, self._prompt(pump) + "?")
        data = self._command(pump, m.group("cmd").upper(), (m.group("args") or "").split())
        return self._frame(addr, self._prompt(pump) + data)

    def _frame(self, addr: int | None, text: str) -> bytes:
        body = (f"{addr:02d}" if addr is not None else "") + text
        raw = body.encode("ascii")
        return raw + checksum_hex(self.checksum, raw).encode("ascii") + self.reply_terminator

    @staticmethod
    def _prompt(pump: SyringeModel) -> str:
        if pump.running:
            return "I"
        return "A" if pump.stalled else "S"

    @staticmethod
    def _command(pump: SyringeModel, cmd: str, args: list[str]) -> str:
        if cmd == "DIA":
            if not args:
                return f"{pump.diameter:.2f}"
            if len(args) != 1 or not _NUMBER.match(args[0]):
                return "?"
            if pump.running:
                return "?NA"
            d = float(args[0])
            lo, hi = _range(pump, "diameter_range", DIAMETER_RANGE)
            if not lo <= d <= hi:
                return "?OOR"
            pump.diameter = d
            return ""
        if cmd == "RAT":
            if not args:
                return f"{pump.flow_setpoint:.4f}MM"
            if len(args) > 2 or not _NUMBER.match(args[0]):
                return "?"
            unit = args[1].upper() if len(args) == 2 else "MM"
            if unit not in RATE_UNITS:
                return "?"
            rate = float(args[0]) * RATE_UNITS[unit]
            lo, hi = _range(pump, "rate_range", (0.0, MAX_RATE))
            if not lo <= rate <= hi:
                return "?OOR"
            pump.flow_setpoint = rate
            return ""
        if args:
            return "?"
        if cmd == "RUN":
            if pump.volume_left <= 0:
                return "?NA"
            pump.running = True
            return ""
        if cmd == "STP":
            pump.running = False
            return ""
        if cmd == "RUN?":
            return "1" if pump.running else "0"
        if cmd == "DIS":
            return f"I{pump.dispensed:.3f}W0.000ML"
        if cmd == "VLF":
            return f"{pump.volume_left:.3f}ML"
        if cmd == "PRS":
            return f"{pump.pressure:.2f}"
        if cmd == "STA":
            return "1" if pump.stalled else "0"
        if cmd == "VER":
            return "SYR-1 V1.0"
        return "?"


def _range(pump: SyringeModel, name: str, default: tuple[float, float]) -> tuple[float, float]:
    """The model's own ``(min, max)`` for a setting, else the emulator's default."""
    given = getattr(pump, name, None)
    if given is None:
        return default
    lo, hi = given
    return float(lo), float(hi)

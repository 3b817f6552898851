"""A Modbus device for tests: real pymodbus TCP server or an RTU responder on a pseudo-terminal.

Why not pymodbus' simulator datastore: tests need to *observe* the device (how many requests,
how many times a write was executed) and to *misbehave* on cue (answer late, never answer,
reject an address). :class:`RecordingStore` does both and plugs into pymodbus' own server, so
the bytes on the wire are the library's, not ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tty
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler

_TABLE_OF_FC: dict[int, str] = {1: "coil", 5: "coil", 15: "coil", 2: "discrete_input",
                                3: "holding", 6: "holding", 16: "holding", 22: "holding",
                                23: "holding", 4: "input"}


@dataclass(frozen=True, slots=True)
class Access:
    """One datastore access as the server executed it."""

    unit: int
    table: str
    op: str
    """``read`` or ``write``."""
    address: int
    count: int


class RecordingStore(ModbusServerContext):
    """Coils, discrete inputs, holding and input registers per unit, with a log of accesses.

    ``delay`` (s) holds every reply back; ``silent`` units never answer; addresses at or past
    ``size`` are answered with exception 2 (illegal data address).
    """

    def __init__(self, units: Iterable[int] = (1,), size: int = 1000) -> None:
        # ModbusServerContext.__init__ builds pymodbus' own store; this one replaces it, and
        # ``old_simulator`` makes the server call our async_getValues/async_setValues.
        self.old_simulator = True
        self.simdevices = []
        self.size = size
        self.tables: dict[int, dict[str, list[int]]] = {
            u: {t: [0] * size for t in ("coil", "discrete_input", "holding", "input")}
            for u in units
        }
        self.log: list[Access] = []
        self.delay = 0.0
        self.silent: set[int] = set()
        self._release = asyncio.Event()

    # -- what tests look at -------------------------------------------------------------
    def count(self, op: str | None = None, unit: int | None = None,
              table: str | None = None) -> int:
        return sum(1 for a in self.log if (op is None or a.op == op)
                   and (unit is None or a.unit == unit) and (table is None or a.table == table))

    def reads(self) -> Counter[tuple[int, str]]:
        return Counter((a.unit, a.table) for a in self.log if a.op == "read")

    def set(self, unit: int, table: str, address: int, values: Sequence[int]) -> None:
        self.tables[unit][table][address:address + len(values)] = list(values)

    def get(self, unit: int, table: str, address: int, count: int = 1) -> list[int]:
        return self.tables[unit][table][address:address + count]

    def wake(self) -> None:
        """Let silent units' pending requests end (call before stopping the server)."""
        self._release.set()
        self._release = asyncio.Event()

    # -- pymodbus datastore protocol -------------------------------------------------------
    def device_ids(self) -> list[int]:
        return list(self.tables)

    def _unit(self, device_id: int) -> dict[str, list[int]]:
        if device_id not in self.tables:
            raise NoSuchIdException(f"no unit {device_id}")
        return self.tables[device_id]

    async def _hold(self, device_id: int) -> None:
        if device_id in self.silent:
            await self._release.wait()  # the event object of the moment, set by wake()
            raise asyncio.CancelledError
        if self.delay:
            await asyncio.sleep(self.delay)

    async def async_getValues(self, device_id: int, func_code: int, address: int,
                              count: int = 1) -> list[int] | list[bool] | ExcCodes:
        unit = self._unit(device_id)
        table = _TABLE_OF_FC[func_code]
        if func_code in (1, 2, 3, 4):
            self.log.append(Access(device_id, table, "read", address, count))
            await self._hold(device_id)
        if address + count > self.size:
            return ExcCodes.ILLEGAL_ADDRESS
        values = unit[table][address:address + count]
        return [bool(v) for v in values] if table in ("coil", "discrete_input") else values

    async def async_setValues(self, device_id: int, func_code: int, address: int,
                              values: Sequence[int] | Sequence[bool]) -> ExcCodes | None:
        unit = self._unit(device_id)
        table = _TABLE_OF_FC[func_code]
        if address + len(values) > self.size:
            return ExcCodes.ILLEGAL_ADDRESS
        self.log.append(Access(device_id, table, "write", address, len(values)))
        unit[table][address:address + len(values)] = [int(v) for v in values]
        await self._hold(device_id)
        return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Handler(ServerRequestHandler):
    """pymodbus' handler, but each reply is bound to its own request.

    pymodbus 3.16 reads ``self.last_pdu`` again *after* awaiting the datastore, so a reply that
    was held back (``delay``) goes out with the transaction id of the next request. A device
    test must not invent replies, so the request is captured before the await.
    """

    async def handle_request(self) -> None:
        pdu, addr = self.last_pdu, self.last_addr
        if not pdu:
            return
        try:
            response = await pdu.datastore_update(self.server.context, pdu.dev_id)
        except NoSuchIdException:
            if self.server.ignore_missing_devices:
                return
            response = ExceptionResponse(pdu.function_code, ExcCodes.GATEWAY_NO_RESPONSE)
        except asyncio.CancelledError:
            return
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        self.server_send(response, addr)  # type: ignore[no-untyped-call]


class _Server(ModbusTcpServer):
    def callback_new_connection(self) -> _Handler:
        return _Handler(  # type: ignore[no-untyped-call]
            self, self.trace_packet, self.trace_pdu, self.trace_connect)


class TcpDevice:
    """A pymodbus TCP server on 127.0.0.1 around a :class:`RecordingStore`; restartable."""

    def __init__(self, store: RecordingStore, port: int | None = None) -> None:
        self.store = store
        self.port = port or free_port()
        self._server: _Server | None = None

    async def start(self) -> None:
        self._server = _Server(self.store, address=("127.0.0.1", self.port))
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        if self._server is not None:
            self.store.wake()
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> TcpDevice:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class RtuResponder:
    """Answers Modbus RTU requests on the master side of a pseudo-terminal.

    The driver opens the slave side (``port``) like a USB-RS485 adapter. Frames are decoded
    and built with pymodbus' RTU framer; units in ``store.silent`` never answer, as a device
    that is off would on a shared line.
    """

    def __init__(self, store: RecordingStore) -> None:
        self.store = store
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self._framer = FramerRTU(DecodePDU(True))
        self._buf = b""
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        os.set_blocking(self.master, False)
        self._loop.add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, OSError):
            return
        self._buf += data
        while self._buf:
            used, pdu = self._framer.handleFrame(self._buf, 0, 0)
            if not used:
                break
            self._buf = self._buf[used:]
            if pdu is not None:
                task = asyncio.get_running_loop().create_task(self._answer(pdu))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _answer(self, pdu: object) -> None:
        dev_id: int = pdu.dev_id  # type: ignore[attr-defined]
        if dev_id not in self.store.tables:
            return
        try:
            rsp = await pdu.datastore_update(self.store, dev_id)  # type: ignore[attr-defined]
        except asyncio.CancelledError:
            return
        except Exception:
            rsp = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)  # type: ignore[attr-defined]
        rsp.dev_id = dev_id
        with contextlib.suppress(OSError):
            os.write(self.master, self._framer.buildFrame(rsp))

    async def stop(self) -> None:
        self.store.wake()
        if self._loop is not None:
            self._loop.remove_reader(self.master)
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.asynccontextmanager
async def tcp_device(units: Iterable[int] = (1,), size: int = 1000) -> AsyncIterator[TcpDevice]:
    """A running :class:`TcpDevice` for the ``async with`` block."""
    dev = TcpDevice(RecordingStore(units, size))
    await dev.start()
    try:
        yield dev
    finally:
        await dev.stop()

"""Modbus TCP servers for simulated modules: registers and coils backed by module views.

The datastore holds no values of its own: a read encodes the current model values of the
tags in the requested range with the driver's own codec
(:mod:`modulecontrol.drivers.modbus_codec`), and a write decodes the tags it touched and
hands them to the model. So a driver reading a simulated pump decodes exactly what the same
descriptor says a real one would send.

It refuses what a real device refuses: an address outside the descriptor's register map
(exception 2, reads and writes), a value outside the data assembly's limits (exception 3).

Transport faults of a module (:class:`TransportFaults`) are honoured per unit id: silent
(no reply), slow (reply after ``delay`` s), exception (Modbus exception code), garbage
(bytes that are not a Modbus frame).

The slave side itself (:class:`SlaveStore`, :class:`ModbusTcpSlave`, :class:`ModbusRtuSlave`)
does not care what backs the registers: the test kit's recording device
(``modulecontrol.testing.modbus``) runs on the same request handling with its own store.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from pathlib import Path

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler

from modulecontrol.descriptors import ModbusBinding
from modulecontrol.drivers import TagInfo, check_value, tag_table
from modulecontrol.drivers.modbus_codec import (
    INT_RANGE,
    decode_registers,
    encode_registers,
    to_engineering,
    to_raw,
    with_bit,
)
from modulecontrol.simulators._ports import PtyPort
from modulecontrol.simulators._view import ModuleView

__all__ = ["TABLE_OF_FC", "ModbusRtuSlave", "ModbusTcpSlave", "Refused", "SlaveStore", "ViewStore"]

TABLE_OF_FC: dict[int, str] = {1: "coil", 5: "coil", 15: "coil", 2: "discrete_input",
                               3: "holding", 6: "holding", 16: "holding", 22: "holding",
                               23: "holding", 4: "input"}
"""The table (coil, discrete_input, holding, input) each supported function code acts on."""
_SIZE = 65536
_GARBAGE = b"\x13\x37garbage\xff\x00"
"""Sent instead of a reply by a unit with the ``garbage`` fault: no Modbus frame."""


class SlaveStore(ModbusServerContext):
    """What the slaves below need of a datastore: pymodbus' async datastore protocol
    (``async_getValues``/``async_setValues``, ``device_ids``), :meth:`wake` for requests a
    silent unit holds, and :meth:`garbage` for the line-noise fault.

    ``ModbusServerContext.__init__`` builds pymodbus' own store; subclasses replace it, and
    ``old_simulator`` makes the server call their async_getValues/async_setValues.
    """

    def __init__(self) -> None:
        self.old_simulator = True
        self.simdevices = []
        self._release = asyncio.Event()

    async def _silence(self) -> None:
        """Hold a request of a silent unit until :meth:`wake`, then drop it unanswered."""
        await self._release.wait()  # the event object of the moment, set by wake()
        raise asyncio.CancelledError

    def wake(self) -> None:
        """Let requests held by a silent unit end (call before stopping the server)."""
        self._release.set()
        self._release = asyncio.Event()

    def device_ids(self) -> list[int]:
        """The unit ids this store answers for."""
        raise NotImplementedError

    def garbage(self, device_id: int) -> bool:
        """Whether ``device_id`` answers noise instead of a frame (never, by default)."""
        return False


class Refused(Exception):
    """A request the simulated device answers with a Modbus exception, as a real one would."""

    def __init__(self, code: ExcCodes, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class _Unit:
    """One simulated device: its register map (from the descriptor) over a module view.

    Like a real device it has only the addresses its map names: a read or write touching any
    other address is refused with exception 2 (illegal data address), and a value outside
    the data assembly's limits (min/max, i.e. VMin/VMax, after the binding's scaling) with
    exception 3 (illegal data value); a refused write changes nothing.
    """

    def __init__(self, view: ModuleView) -> None:
        self.view = view
        self.tags: list[tuple[TagInfo, ModbusBinding]] = []
        self.mapped: dict[str, set[int]] = {}
        """Addresses each table has (a multi-register value covers all of its registers)."""
        for info in tag_table(view.module_type, "modbus").values():
            assert isinstance(info.binding, ModbusBinding)
            b = info.binding
            self.tags.append((info, b))
            self.mapped.setdefault(b.table, set()).update(range(b.address, b.address + b.count))

    def _tags(self, table: str, address: int, count: int) -> list[tuple[TagInfo, ModbusBinding]]:
        return [(i, b) for i, b in self.tags if b.table == table
                and b.address < address + count and address < b.address + b.count]

    def _check_mapped(self, table: str, address: int, count: int) -> None:
        have = self.mapped.get(table, set())
        missing = [a for a in range(address, address + count) if a not in have]
        if missing:
            raise Refused(ExcCodes.ILLEGAL_ADDRESS,
                          f"{self.view.tag}: no {table} {missing[0]} in the register map")

    def read(self, table: str, address: int, count: int) -> list[int]:
        self._check_mapped(table, address, count)
        regs = [0] * count
        for info, b in self._tags(table, address, count):
            value = self.view.read(info.assembly.name, info.attribute)
            if value is None:
                continue
            if table in ("coil", "discrete_input"):
                regs[b.address - address] = int(bool(value))
                continue
            try:
                raw = to_raw(b, value)
            except ValueError:
                if not (isinstance(value, float) and not math.isfinite(value)
                        and b.type in ("float32", "float64")):
                    continue  # out of the register's range: leave it at 0, as a device clips
                raw = value  # a failed sensor's float register reads NaN/inf on the wire
            if b.type == "bool":
                i = b.address - address
                assert b.bit is not None
                regs[i] = with_bit(regs[i], b.bit, bool(raw))
                continue
            words = encode_registers(b, raw)
            for k, w in enumerate(words):
                i = b.address + k - address
                if 0 <= i < count:
                    regs[i] = w
        return regs

    def write(self, table: str, address: int, values: Sequence[int]) -> None:
        """Decode and check every value the request carries, then apply them all (or none)."""
        count = len(values)
        self._check_mapped(table, address, count)
        changes: list[tuple[TagInfo, object]] = []
        for info, b in self._tags(table, address, count):
            if not info.writable:
                continue
            if table == "coil":
                value: object = bool(values[b.address - address])
            else:
                if b.address < address or b.address + b.count > address + count:
                    raise Refused(ExcCodes.ILLEGAL_ADDRESS,
                                  f"{self.view.tag}: a write of part of {info.name} "
                                  f"({b.count} registers at {b.address})")
                regs = list(values[b.address - address:b.address - address + b.count])
                value = _within_limits(info, b, to_engineering(b, decode_registers(b, regs)))
            changes.append((info, value))
        for info, value in changes:
            self.view.write(info.assembly.name, info.attribute, value)


def _within_limits(info: TagInfo, b: ModbusBinding, value: int | float | bool) -> object:
    """``value`` checked against the assembly's limits as the device checks it.

    The register holds the value to its own resolution (half a raw step of a scaled integer,
    float32 rounding), so a limit written exactly may decode a hair outside it: that is
    taken as the limit. Not a number, or anything farther out, is refused (exception 3).
    """
    da = info.assembly
    if isinstance(value, float) and not math.isfinite(value):
        raise Refused(ExcCodes.ILLEGAL_VALUE, f"{info.name}: {value} is not a value")
    if da.kind == "number" and not isinstance(value, bool):
        lo, hi = da.min, da.max
        if lo is not None and value < lo and lo - value <= _resolution(b, lo):
            value = lo
        elif hi is not None and value > hi and value - hi <= _resolution(b, hi):
            value = hi
    try:
        return check_value(info, value)
    except ValueError as exc:
        raise Refused(ExcCodes.ILLEGAL_VALUE, str(exc)) from None


def _resolution(b: ModbusBinding, near: float) -> float:
    if b.type in INT_RANGE:
        return abs(b.scale) / 2
    if b.type == "float32":
        return abs(near) * 1.2e-7 + abs(b.offset) * 1.2e-7
    return abs(near) * 1e-15


class ViewStore(SlaveStore):
    """A pymodbus datastore whose units are module views (unit id -> view)."""

    def __init__(self, units: dict[int, ModuleView]) -> None:
        super().__init__()
        self.units = {uid: _Unit(v) for uid, v in units.items()}

    def device_ids(self) -> list[int]:
        return list(self.units)

    def _unit(self, device_id: int) -> _Unit:
        if device_id not in self.units:
            raise NoSuchIdException(f"no unit {device_id}")
        return self.units[device_id]

    async def _hold(self, unit: _Unit) -> ExcCodes | None:
        t = unit.view.transport
        if t.silent:
            await self._silence()
        if t.delay:
            await asyncio.sleep(t.delay)
        if t.error is not None:
            code = int(t.error) if isinstance(t.error, int) else 4
            return ExcCodes(code)
        return None

    def garbage(self, device_id: int) -> bool:
        unit = self.units.get(device_id)
        return unit is not None and unit.view.transport.garbage

    async def async_getValues(self, device_id: int, func_code: int, address: int,
                              count: int = 1) -> list[int] | list[bool] | ExcCodes:
        unit = self._unit(device_id)
        exc = await self._hold(unit)
        if exc is not None:
            return exc
        if address + count > _SIZE:
            return ExcCodes.ILLEGAL_ADDRESS
        table = TABLE_OF_FC[func_code]
        try:
            regs = unit.read(table, address, count)
        except Refused as refused:
            return refused.code
        return [bool(v) for v in regs] if table in ("coil", "discrete_input") else regs

    async def async_setValues(self, device_id: int, func_code: int, address: int,
                              values: Sequence[int] | Sequence[bool]) -> ExcCodes | None:
        unit = self._unit(device_id)
        exc = await self._hold(unit)
        if exc is not None:
            return exc
        if address + len(values) > _SIZE:
            return ExcCodes.ILLEGAL_ADDRESS
        try:
            unit.write(TABLE_OF_FC[func_code], address, [int(v) for v in values])
        except Refused as refused:
            return refused.code
        except ValueError:  # e.g. an inlet channel without a feed: refused as a device would
            return ExcCodes.ILLEGAL_VALUE
        return None


class _Handler(ServerRequestHandler):
    """pymodbus' handler with each reply bound to its own request, and garbage replies.

    pymodbus 3.16 reads ``self.last_pdu`` again *after* awaiting the datastore, so a reply
    that was held back (a slow unit) would go out with the transaction id of the next
    request; a device must not invent replies, so the request is captured before the await.
    """

    async def handle_request(self) -> None:
        pdu, addr = self.last_pdu, self.last_addr
        if not pdu:
            return
        ctx: SlaveStore = self.server.context
        try:
            response = await pdu.datastore_update(ctx, pdu.dev_id)
        except NoSuchIdException:
            if self.server.ignore_missing_devices:
                return
            response = ExceptionResponse(pdu.function_code, ExcCodes.GATEWAY_NO_RESPONSE)
        except asyncio.CancelledError:
            return
        if ctx.garbage(pdu.dev_id):
            with contextlib.suppress(Exception):
                self.send(_GARBAGE)
            return
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        self.server_send(response, addr)  # type: ignore[no-untyped-call]


class _Server(ModbusTcpServer):
    def callback_new_connection(self) -> _Handler:
        return _Handler(  # type: ignore[no-untyped-call]
            self, self.trace_packet, self.trace_pdu, self.trace_connect)


class ModbusTcpSlave:
    """One Modbus TCP server on ``host:port`` serving a store's units; restartable.

    ``port`` 0 binds a port the OS picks at the first :meth:`start`, and :attr:`port` is then
    that port (a restart keeps it): no other process can take it between choosing and
    binding, as it can a port chosen free beforehand."""

    def __init__(self, store: SlaveStore, host: str, port: int) -> None:
        self.store = store
        self.host = host
        self.port = port
        self._server: _Server | None = None

    async def start(self) -> None:
        self._server = _Server(self.store, address=(self.host, self.port))
        await self._server.serve_forever(background=True)
        if self.port == 0:
            listener = self._server.transport
            assert isinstance(listener, asyncio.Server), listener
            self.port = int(listener.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self.store.wake()
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None


class ModbusRtuSlave:
    """Modbus RTU slaves on one pseudo-terminal (a multi-drop line): every unit id of the
    store answers; requests for other ids pass in silence, as on a shared line.

    The driver opens :attr:`port` as it would a USB-RS485 adapter. :meth:`vanish` and
    :meth:`reappear` pull and re-plug the adapter; with ``link`` set, :attr:`port` is a
    symlink kept pointing at the current pty, so the same path works after a re-plug.
    Frames are decoded and built with pymodbus' RTU framer; bytes that are no frame are
    dropped, as a real slave resynchronises on the next silence.
    """

    def __init__(self, store: SlaveStore, link: Path | None = None) -> None:
        self.store = store
        self.link = link
        self._pty = PtyPort(self._received)
        self._framer = FramerRTU(DecodePDU(True))
        self._buf = b""
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> str:
        return str(self.link) if self.link is not None else self._pty.port

    async def start(self) -> None:
        self._open()

    async def stop(self) -> None:
        self.store.wake()
        self._pty.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def vanish(self) -> None:
        """Close the pty as if the adapter were unplugged."""
        self._pty.close()

    def reappear(self) -> None:
        if not self._pty.is_open:
            self._open()

    def _open(self) -> None:
        self._buf = b""
        self._pty.link = self.link  # ``link`` may have been set since the last open
        self._pty.open()

    def _received(self, data: bytes) -> None:
        self._buf += data
        while self._buf:
            try:
                used, pdu = self._framer.handleFrame(self._buf, 0, 0)
            except Exception:  # noise on the line: drop it, as a real slave resynchronises
                self._buf = b""
                break
            if not used:
                break
            self._buf = self._buf[used:]
            if pdu is not None:
                task = asyncio.get_running_loop().create_task(self._answer(pdu))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _answer(self, pdu: object) -> None:
        dev_id: int = pdu.dev_id  # type: ignore[attr-defined]
        if dev_id not in self.store.device_ids():
            return  # another slave's address: a shared line stays quiet
        try:
            rsp = await pdu.datastore_update(self.store, dev_id)  # type: ignore[attr-defined]
        except asyncio.CancelledError:
            return
        except Exception:
            rsp = ExceptionResponse(pdu.function_code,  # type: ignore[attr-defined]
                                    ExcCodes.DEVICE_FAILURE)
        rsp.dev_id = dev_id
        self._pty.write(_GARBAGE if self.store.garbage(dev_id) else self._framer.buildFrame(rsp))

"""Modbus TCP servers for simulated modules: registers and coils backed by module views.

The datastore holds no values of its own: a read encodes the current model values of the
tags in the requested range with the driver's own codec (``_modbus_codec``), and a write
decodes the tags it touched and hands them to the model. So a driver reading a simulated
pump decodes exactly what the same descriptor says a real one would send.

Transport faults of a module (:class:`TransportFaults`) are honoured per unit id: silent
(no reply), slow (reply after ``delay`` s), exception (Modbus exception code), garbage
(bytes that are not a Modbus frame).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler

from modulecontrol.descriptors import ModbusBinding
from modulecontrol.drivers._base import TagInfo, tag_table
from modulecontrol.drivers._modbus_codec import (
    decode_registers,
    encode_registers,
    to_engineering,
    to_raw,
    with_bit,
)
from modulecontrol.simulators._view import ModuleView

__all__ = ["ModbusModuleServer", "ViewStore"]

_TABLE_OF_FC: dict[int, str] = {1: "coil", 5: "coil", 15: "coil", 2: "discrete_input",
                                3: "holding", 6: "holding", 16: "holding", 22: "holding",
                                23: "holding", 4: "input"}
_SIZE = 65536


class _Unit:
    def __init__(self, view: ModuleView) -> None:
        self.view = view
        self.tags: list[tuple[TagInfo, ModbusBinding]] = []
        for info in tag_table(view.module_type, "modbus").values():
            assert isinstance(info.binding, ModbusBinding)
            self.tags.append((info, info.binding))

    def _tags(self, table: str, address: int, count: int) -> list[tuple[TagInfo, ModbusBinding]]:
        return [(i, b) for i, b in self.tags if b.table == table
                and b.address < address + count and address < b.address + b.count]

    def read(self, table: str, address: int, count: int) -> list[int]:
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
                continue  # out of the register's range: leave it at 0, as a device would clip
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
        count = len(values)
        for info, b in self._tags(table, address, count):
            if not info.writable:
                continue
            if table == "coil":
                value: object = bool(values[b.address - address])
            else:
                if b.address < address or b.address + b.count > address + count:
                    continue  # a partial write of a multi-register value is ignored
                regs = list(values[b.address - address:b.address - address + b.count])
                value = to_engineering(b, decode_registers(b, regs))
            self.view.write(info.assembly.name, info.attribute, value)


class ViewStore(ModbusServerContext):
    """A pymodbus datastore whose units are module views (unit id -> view)."""

    def __init__(self, units: dict[int, ModuleView]) -> None:
        # Our async_getValues/async_setValues replace pymodbus' store (see testing/modbus.py).
        self.old_simulator = True
        self.simdevices = []
        self.units = {uid: _Unit(v) for uid, v in units.items()}
        self._release = asyncio.Event()

    def device_ids(self) -> list[int]:
        return list(self.units)

    def _unit(self, device_id: int) -> _Unit:
        if device_id not in self.units:
            raise NoSuchIdException(f"no unit {device_id}")
        return self.units[device_id]

    async def _hold(self, unit: _Unit) -> ExcCodes | None:
        t = unit.view.transport
        if t.silent:
            await self._release.wait()
            raise asyncio.CancelledError
        if t.delay:
            await asyncio.sleep(t.delay)
        if t.error is not None:
            code = int(t.error) if isinstance(t.error, int) else 4
            return ExcCodes(code)
        return None

    def wake(self) -> None:
        """Let requests held by a silent unit end (before the server stops)."""
        self._release.set()
        self._release = asyncio.Event()

    async def async_getValues(self, device_id: int, func_code: int, address: int,
                              count: int = 1) -> list[int] | list[bool] | ExcCodes:
        unit = self._unit(device_id)
        exc = await self._hold(unit)
        if exc is not None:
            return exc
        if address + count > _SIZE:
            return ExcCodes.ILLEGAL_ADDRESS
        table = _TABLE_OF_FC[func_code]
        regs = unit.read(table, address, count)
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
            unit.write(_TABLE_OF_FC[func_code], address, [int(v) for v in values])
        except ValueError:  # e.g. an inlet channel without a feed: refused as a device would
            return ExcCodes.ILLEGAL_VALUE
        return None


class _Handler(ServerRequestHandler):
    """pymodbus' handler with each reply bound to its own request (pymodbus 3.16 re-reads
    ``last_pdu`` after awaiting the datastore, so a delayed reply would carry the next
    request's transaction id), and garbage replies for the ``garbage`` fault."""

    async def handle_request(self) -> None:
        pdu, addr = self.last_pdu, self.last_addr
        if not pdu:
            return
        ctx: ViewStore = self.server.context
        unit = ctx.units.get(pdu.dev_id)
        try:
            response = await pdu.datastore_update(ctx, pdu.dev_id)
        except NoSuchIdException:
            if self.server.ignore_missing_devices:
                return
            response = ExceptionResponse(pdu.function_code, ExcCodes.GATEWAY_NO_RESPONSE)
        except asyncio.CancelledError:
            return
        if unit is not None and unit.view.transport.garbage:
            with contextlib.suppress(Exception):
                self.send(b"\x13\x37garbage\xff\x00")
            return
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        self.server_send(response, addr)  # type: ignore[no-untyped-call]


class _Server(ModbusTcpServer):
    def callback_new_connection(self) -> _Handler:
        return _Handler(  # type: ignore[no-untyped-call]
            self, self.trace_packet, self.trace_pdu, self.trace_connect)


class ModbusModuleServer:
    """One Modbus TCP server on ``host:port`` serving one or more modules by unit id."""

    def __init__(self, host: str, port: int, units: dict[int, ModuleView]) -> None:
        self.host = host
        self.port = port
        self.store = ViewStore(units)
        self._server: _Server | None = None

    async def start(self) -> None:
        self._server = _Server(self.store, address=(self.host, self.port))
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        if self._server is not None:
            self.store.wake()
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

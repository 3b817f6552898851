"""A Modbus device for tests: real pymodbus TCP server or an RTU responder on a pseudo-terminal.

Why not pymodbus' simulator datastore: tests need to *observe* the device (how many requests,
how many times a write was executed) and to *misbehave* on cue (answer late, never answer,
reject an address). :class:`RecordingStore` does both and plugs into pymodbus' own server, so
the bytes on the wire are the library's, not ours.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException

from modulecontrol.simulators import (
    TABLE_OF_FC,
    ModbusRtuSlave,
    ModbusTcpSlave,
    SlaveStore,
    free_port,
)

__all__ = ["Access", "RecordingStore", "RtuResponder", "TcpDevice", "free_port", "tcp_device"]


@dataclass(frozen=True, slots=True)
class Access:
    """One datastore access as the server executed it."""

    unit: int
    table: str
    op: str
    """``read`` or ``write``."""
    address: int
    count: int


class RecordingStore(SlaveStore):
    """Coils, discrete inputs, holding and input registers per unit, with a log of accesses.

    ``delay`` (s) holds every reply back; ``silent`` units never answer; addresses at or past
    ``size`` are answered with exception 2 (illegal data address).
    """

    def __init__(self, units: Iterable[int] = (1,), size: int = 1000) -> None:
        super().__init__()
        self.size = size
        self.tables: dict[int, dict[str, list[int]]] = {
            u: {t: [0] * size for t in ("coil", "discrete_input", "holding", "input")}
            for u in units
        }
        self.log: list[Access] = []
        self.delay = 0.0
        self.silent: set[int] = set()

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

    # -- pymodbus datastore protocol -------------------------------------------------------
    def device_ids(self) -> list[int]:
        return list(self.tables)

    def _unit(self, device_id: int) -> dict[str, list[int]]:
        if device_id not in self.tables:
            raise NoSuchIdException(f"no unit {device_id}")
        return self.tables[device_id]

    async def _hold(self, device_id: int) -> None:
        if device_id in self.silent:
            await self._silence()
        if self.delay:
            await asyncio.sleep(self.delay)

    async def async_getValues(self, device_id: int, func_code: int, address: int,
                              count: int = 1) -> list[int] | list[bool] | ExcCodes:
        unit = self._unit(device_id)
        table = TABLE_OF_FC[func_code]
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
        table = TABLE_OF_FC[func_code]
        if address + len(values) > self.size:
            return ExcCodes.ILLEGAL_ADDRESS
        self.log.append(Access(device_id, table, "write", address, len(values)))
        unit[table][address:address + len(values)] = [int(v) for v in values]
        await self._hold(device_id)
        return None


class TcpDevice(ModbusTcpSlave):
    """The simulators' Modbus TCP slave on 127.0.0.1 around a :class:`RecordingStore`;
    restartable, and an ``async with`` block. Without a port it binds one the OS picks
    (:attr:`port` once started), so no other process can take it first."""

    store: RecordingStore

    def __init__(self, store: RecordingStore, port: int | None = None) -> None:
        super().__init__(store, "127.0.0.1", port or 0)

    async def __aenter__(self) -> TcpDevice:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class RtuResponder(ModbusRtuSlave):
    """The simulators' Modbus RTU slave line on a pseudo-terminal around a
    :class:`RecordingStore`: the driver opens :attr:`port` like a USB-RS485 adapter; units in
    ``store.silent`` never answer, as a device that is off would on a shared line."""

    store: RecordingStore

    def __init__(self, store: RecordingStore) -> None:
        super().__init__(store)


@contextlib.asynccontextmanager
async def tcp_device(units: Iterable[int] = (1,), size: int = 1000) -> AsyncIterator[TcpDevice]:
    """A running :class:`TcpDevice` for the ``async with`` block."""
    dev = TcpDevice(RecordingStore(units, size))
    await dev.start()
    try:
        yield dev
    finally:
        await dev.stop()

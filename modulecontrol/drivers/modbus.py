"""Modbus TCP and RTU driver on pymodbus' async clients.

The register map comes from the module type (``ModbusBinding`` on each attribute); this
module only moves values. Reads of one module are coalesced into the fewest requests
(:func:`plan_reads`); reads are retried up to the endpoint's ``read_retries``; writes are sent
once unless the data assembly is ``idempotent``, because a write whose reply was lost may
already have been executed (a "zero the totaliser" command must not run twice).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from modulecontrol.descriptors import (
    Binding,
    EndpointBase,
    ModbusBinding,
    ModbusRtuEndpoint,
    ModbusTcpEndpoint,
    ModuleInstance,
    ModuleType,
)
from modulecontrol.drivers import _modbus_link
from modulecontrol.drivers._base import (
    BaseDriver,
    DeviceRejected,
    Disconnected,
    DriverError,
    DriverTimeout,
    Health,
    OutOfRange,
    TagInfo,
    TagValue,
    ValueRefused,
    refusal,
)
from modulecontrol.drivers._modbus_link import EXCEPTION_NAMES, Link
from modulecontrol.drivers._modbus_plan import (
    BIT_TABLES,
    MAX_BITS,
    MAX_REGISTERS,
    Block,
    plan_reads,
)
from modulecontrol.drivers.modbus_codec import (
    BlockDecoder,
    encode_registers,
    tag_decoder,
    to_raw,
    with_bit,
)

__all__ = ["EXCEPTION_NAMES", "MAX_BITS", "MAX_REGISTERS", "Block", "ModbusDriver", "plan_reads"]

_RETRYABLE = (DriverTimeout, Disconnected)
ILLEGAL_ADDRESS = 2
"""Modbus exception: the address (or address and count) is not the device's."""
ILLEGAL_VALUE = 3
"""Modbus exception: the device refuses the value."""


class ModbusDriver(BaseDriver):
    """Talks Modbus TCP or RTU to one module instance (one unit id, or several per binding)."""

    transport: ClassVar[str] = "modbus"
    binding_model: ClassVar[type[Binding]] = ModbusBinding
    endpoint_models: ClassVar[tuple[type[EndpointBase], ...]] = (
        ModbusTcpEndpoint,
        ModbusRtuEndpoint,
    )

    def __init__(self, module_type: ModuleType, instance: ModuleInstance) -> None:
        super().__init__(module_type, instance)
        ep = instance.endpoint
        if not isinstance(ep, ModbusTcpEndpoint | ModbusRtuEndpoint):
            raise ValueError(
                f"module {instance.tag}: the modbus driver needs a 'modbus-tcp' or 'modbus-rtu' "
                f"endpoint, not '{getattr(ep, 'protocol', None)}'"
            )
        self.endpoint: ModbusTcpEndpoint | ModbusRtuEndpoint = ep
        self.unit_id = ep.unit_id
        self.read_retries = ep.read_retries
        self.max_gap = ep.max_gap
        self._link: Link | None = None

    # -- BaseDriver hooks ------------------------------------------------------------------
    def _budget(self, op: str, count: int) -> float | None:
        # Each wire request is bounded by the link (timeout) and retries are counted here.
        return None

    async def _connect(self) -> None:
        if self._link is None:
            self._link = await _modbus_link.acquire(self.endpoint)
        try:
            await self._link.ensure(force=True)
        except Disconnected as exc:
            self._fail(str(exc))
            raise Disconnected(str(exc), module=self.tag_name) from None

    async def _close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await _modbus_link.release(link)

    def health(self) -> Health:
        if self._link is not None:
            self._health.connected = self._link.connected
            self._health.reconnects = self._link.reconnects
        return self._health

    def _compile_read(self, infos: Sequence[TagInfo]) -> list[_BlockRead]:
        """Plan the requests for these tags and a decoder per block, once per tag list."""
        by_name = {i.name: i for i in infos}
        plan = plan_reads([(i.name, _mb(i)) for i in infos], self.max_gap,
                          default_unit=self.unit_id)
        steps: list[_BlockRead] = []
        for blk in plan:
            decoders = [tag_decoder(n, _mb(by_name[n]), blk.address,
                                    by_name[n].assembly.kind == "bool") for n in blk.tags]
            steps.append(_BlockRead(
                blk, f"read of {blk.count} {blk.table} at {blk.address}",
                BlockDecoder(blk.count, blk.table in BIT_TABLES, decoders)))
        return steps

    async def _read(self, infos: Sequence[TagInfo]) -> dict[str, TagValue]:
        return await self._read_prepared(self._compile_read(infos))

    async def _read_prepared(self, plan: list[_BlockRead]) -> dict[str, TagValue]:
        out: dict[str, TagValue] = {}
        retries = self.read_retries
        module = self.tag_name
        for step in plan:
            blk = step.block
            attempt = 0
            while True:  # retry a block after a timeout or lost link, never after a rejection
                try:
                    link = self._require_link()
                    rsp = await link.request(
                        blk.unit_id, step.what, link.readers[blk.table], blk.address,
                        count=blk.count, device_id=blk.unit_id, module=module)
                    break
                except _RETRYABLE:
                    if attempt >= retries:
                        raise
                    attempt += 1
                except DeviceRejected as exc:
                    if exc.code != ILLEGAL_ADDRESS:
                        raise
                    raise DeviceRejected(
                        f"unit {blk.unit_id} refused the {step.what} (Modbus exception 2, "
                        f"illegal data address; tags {', '.join(blk.tags)}): the device does "
                        "not have every address of that range. Check the descriptor's "
                        "register map; if the device refuses reads across unused addresses, "
                        "set 'max_gap: 0' on the endpoint", code=exc.code, module=module
                    ) from None
            data = rsp.bits if step.decoder.bits else rsp.registers
            try:
                step.decoder.decode(data, time.time(), out)
            except ValueError as exc:
                raise DriverError(f"unit {blk.unit_id} answered {step.what} with {exc}",
                                  module=module) from None
        return out

    async def _write(self, info: TagInfo, value: Any) -> None:
        b = _mb(info)
        try:
            raw = to_raw(b, value)
        except ValueError as exc:
            raise OutOfRange(str(exc), tag=info.name, module=self.tag_name) from None
        retries = self.read_retries if info.assembly.idempotent else 0
        try:
            await self._with_retries(retries, lambda: self._write_raw(info, b, raw))
        except DeviceRejected as exc:
            raise self._refused(info, b, value, exc) from None

    def _refused(self, info: TagInfo, b: ModbusBinding, value: Any,
                 exc: DeviceRejected) -> DriverError:
        """The error for a write the device answered with an exception.

        Exception 3 (illegal data value) is the device refusing the value: a ValueRefused
        naming the setting and its limits. Exception 2 (illegal data address) means the
        register map of the descriptor is not the device's. Neither is retried: the same
        request would get the same answer.
        """
        code = exc.code
        how = f"Modbus exception {code}"
        if code == ILLEGAL_VALUE:
            return ValueRefused(refusal(self.tag_name, info, value, how), code=code,
                                tag=info.name, module=self.tag_name)
        if code == ILLEGAL_ADDRESS:
            return DeviceRejected(
                f"unit {self._unit(b)} has no writable {b.table} {b.address}"
                f"{'' if b.count == 1 else f'..{b.address + b.count - 1}'} ({how}, illegal "
                "data address): the descriptor's register map does not match the device; "
                "check the binding's table and address", code=code, tag=info.name,
                module=self.tag_name)
        return exc

    # -- wire ------------------------------------------------------------------------------
    def _unit(self, b: ModbusBinding) -> int:
        return self.unit_id if b.unit_id is None else b.unit_id

    def _require_link(self) -> Link:
        if self._link is None:
            raise Disconnected("not connected: call connect() first", module=self.tag_name)
        return self._link

    async def _with_retries(self, retries: int, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``attempt`` up to ``retries`` more times after a timeout or lost link."""
        for n in range(retries + 1):
            try:
                return await attempt()
            except _RETRYABLE:
                if n == retries:
                    raise
        raise AssertionError("unreachable")

    async def _write_raw(self, info: TagInfo, b: ModbusBinding, raw: int | float | bool) -> None:
        link = self._require_link()
        c = link.client
        u = self._unit(b)
        what = f"write of {info.name} ({b.table} {b.address})"
        m = self.tag_name
        if b.table == "coil":
            await link.request(u, what, c.write_coil, b.address, bool(raw), device_id=u, module=m)
            return
        if b.bit is not None:
            # Read-modify-write of a packed boolean; not atomic against other masters.
            rsp = await link.request(u, what, c.read_holding_registers, b.address, count=1,
                                     device_id=u, module=m)
            word = with_bit(int(rsp.registers[0]), b.bit, bool(raw))
            await link.request(u, what, c.write_register, b.address, word, device_id=u, module=m)
            return
        regs = encode_registers(b, raw)
        if len(regs) == 1:
            await link.request(u, what, c.write_register, b.address, regs[0], device_id=u,
                               module=m)
        else:
            await link.request(u, what, c.write_registers, b.address, regs, device_id=u,
                               module=m)


@dataclass(frozen=True, slots=True)
class _BlockRead:
    """One wire request of a compiled read: the block, its error label, its decoder."""

    block: Block
    what: str
    decoder: BlockDecoder


def _mb(info: TagInfo) -> ModbusBinding:
    b = info.binding
    assert isinstance(b, ModbusBinding)
    return b

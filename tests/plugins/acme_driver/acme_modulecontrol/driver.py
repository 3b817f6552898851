"""The acme driver: its binding model, its endpoint model and the driver itself.

The protocol is one ASCII line each way over TCP: ``GET <register>`` answered by
``= <number>``, ``SET <register> <number>`` answered by ``OK``, and ``ERR <text>`` for any
refusal. Values are numbers on the wire; booleans are ``1``/``0``.

modulecontrol never imports this module by path: its composition root loads the entry point
``acme`` of the group ``modulecontrol.drivers`` (see ``pyproject.toml``) and registers
:attr:`AcmeDriver.binding_model` under ``acme`` and each model of
:attr:`AcmeDriver.endpoint_models` under its ``protocol``. A module type may then carry
``acme:`` bindings, and a plant may say ``protocol: acme``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from modulecontrol.descriptors import (
    Binding,
    EndpointBase,
    ModuleInstance,
    ModuleType,
)
from modulecontrol.drivers import (
    BadReply,
    BaseDriver,
    DeviceRejected,
    Disconnected,
    TagInfo,
    TagValue,
)
from modulecontrol.mtpcore import value_kind

MAX_LINE = 256
"""Longest reply accepted; a device that sends more is answering something else."""


class AcmeBinding(Binding):
    """Where an attribute lives on an acme device: one named register (``reg``)."""

    reg: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,15}$")
    access: Literal["read", "readwrite"] = "read"

    @property
    def writable(self) -> bool:
        return self.access == "readwrite"


class AcmeEndpoint(EndpointBase):
    """How a plant reaches an acme device: ``{protocol: acme, port: 15400}``."""

    protocol: Literal["acme"]
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)


class AcmeDriver(BaseDriver):
    """One TCP connection per device; one request at a time; never retries a write."""

    transport: ClassVar[str] = "acme"
    binding_model: ClassVar[type[Binding]] = AcmeBinding
    endpoint_models: ClassVar[tuple[type[EndpointBase], ...]] = (AcmeEndpoint,)

    def __init__(self, module_type: ModuleType, instance: ModuleInstance) -> None:
        super().__init__(module_type, instance)
        if not isinstance(instance.endpoint, AcmeEndpoint):
            raise ValueError(f"module {instance.tag}: the acme driver needs an acme endpoint")
        self.endpoint: AcmeEndpoint = instance.endpoint
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.open_connection(
                self.endpoint.host, self.endpoint.port, limit=MAX_LINE
            )
        except OSError as exc:
            raise Disconnected(f"cannot reach {self._where()}: {exc}",
                               module=self.tag_name) from exc

    async def _close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _read(self, infos: Sequence[TagInfo]) -> dict[str, TagValue]:
        out: dict[str, TagValue] = {}
        for info in infos:
            reply = await self._ask(f"GET {_binding(info).reg}", info.name)
            if not reply.startswith("= "):
                raise BadReply(f"expected '= <number>', got {reply!r}", reply=reply,
                               tag=info.name, module=self.tag_name)
            try:
                number = float(reply[2:])
            except ValueError:
                raise BadReply(f"not a number: {reply!r}", reply=reply, tag=info.name,
                               module=self.tag_name) from None
            if not math.isfinite(number):
                raise BadReply(f"not a finite number: {reply!r}", reply=reply, tag=info.name,
                               module=self.tag_name)
            value: Any = number != 0 if value_kind(info.assembly.class_) == "bool" else number
            out[info.name] = TagValue(value, raw=reply)
        return out

    async def _write(self, info: TagInfo, value: Any) -> None:
        number = float(bool(value)) if isinstance(value, bool) else float(value)
        reply = await self._ask(f"SET {_binding(info).reg} {number!r}", info.name)
        if reply != "OK":
            raise BadReply(f"expected 'OK', got {reply!r}", reply=reply, tag=info.name,
                           module=self.tag_name)

    async def _ask(self, request: str, tag: str) -> str:
        """One request, one reply line; a lost link closes the connection for a reconnect."""
        async with self._lock:
            if self._writer is None or self._reader is None:
                await self._connect()
            assert self._writer is not None and self._reader is not None
            try:
                self._writer.write(request.encode("ascii") + b"\n")
                await self._writer.drain()
                line = await self._reader.readline()
            except (OSError, ValueError, asyncio.LimitOverrunError) as exc:
                await self._close()
                raise Disconnected(f"link to {self._where()} lost: {exc}", tag=tag,
                                   module=self.tag_name) from exc
            if not line.endswith(b"\n"):
                await self._close()
                raise Disconnected(f"{self._where()} closed the connection", tag=tag,
                                   module=self.tag_name)
        reply = line.decode("ascii", "replace").strip()
        if reply.startswith("ERR"):
            raise DeviceRejected(reply[3:].strip() or "refused", code=reply, tag=tag,
                                 module=self.tag_name)
        return reply

    def _where(self) -> str:
        return f"acme device {self.endpoint.host}:{self.endpoint.port}"


def _binding(info: TagInfo) -> AcmeBinding:
    b = info.binding
    assert isinstance(b, AcmeBinding), f"{info.name}: not an acme binding"
    return b

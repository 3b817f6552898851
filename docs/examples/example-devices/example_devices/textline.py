"""The ``textline`` transport: a codec for a one-line-per-message serial protocol and the
driver that speaks it.

The protocol (ASCII, each message ends in CR LF)::

    ?SPEED            ->  SPEED=250.5             read a named value
    !SPEED_SP=250     ->  OK SPEED_SP             write one
                      ->  ERR 3 SPEED_SP 0..1500  refused: 2 unknown name, 3 out of range,
                                                  4 read-only, 5 malformed request

Every reply names what it answers, so a late reply to an earlier request is recognised and
never taken for the answer to the current one.

modulecontrol finds the driver by its entry point (``textline`` in the group
``modulecontrol.drivers``, see ``pyproject.toml``) and registers its binding and endpoint
models, so module types may carry ``textline:`` bindings and plants ``protocol: textline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import serial
import serial_asyncio_fast
from pydantic import Field

from modulecontrol.descriptors import Binding, EndpointBase, ModuleInstance, ModuleType
from modulecontrol.drivers import (
    BadReply,
    BaseDriver,
    DeviceRejected,
    Disconnected,
    TagInfo,
    TagValue,
    ValueRefused,
    refusal,
)

NAME = r"[A-Z][A-Z0-9_]{0,15}"
MAX_LINE = 128
"""Longest line either side sends; anything longer is noise on the line."""
UNKNOWN, OUT_OF_RANGE, READ_ONLY, MALFORMED = 2, 3, 4, 5
"""The device's error codes."""

# -- codec ------------------------------------------------------------------------------------


class CodecError(ValueError):
    """A line that is not a message of the protocol."""


@dataclass(frozen=True)
class Reply:
    """One decoded reply: a value (``SPEED=250``), an acknowledgement (``OK NAME``) or an
    error (``ERR code NAME text``)."""

    kind: Literal["value", "ok", "error"]
    name: str
    value: float | None = None
    code: int | None = None
    text: str = ""


def encode_read(name: str) -> bytes:
    """``?NAME``: ask for one value."""
    _check_name(name)
    return f"?{name}\r\n".encode("ascii")


def encode_write(name: str, value: float) -> bytes:
    """``!NAME=value``: set one value (``repr`` of a float: exact and round-trips)."""
    _check_name(name)
    if not math.isfinite(value):
        raise CodecError(f"{name}: {value!r} is not a finite number")
    return f"!{name}={float(value)!r}\r\n".encode("ascii")


def encode_reply(reply: Reply) -> bytes:
    """The device side of the codec (the simulator uses it)."""
    if reply.kind == "value":
        assert reply.value is not None
        body = f"{reply.name}={float(reply.value)!r}"
    elif reply.kind == "ok":
        body = f"OK {reply.name}"
    else:
        body = f"ERR {reply.code} {reply.name} {reply.text}".rstrip()
    return body.encode("ascii") + b"\r\n"


_VALUE = re.compile(rf"^({NAME})=(\S+)$")
_OK = re.compile(rf"^OK ({NAME})$")
_ERR = re.compile(rf"^ERR (\d) ({NAME}|-)(?: (.*))?$")


def decode_reply(line: bytes) -> Reply:
    """One reply line (terminator included or not) -> :class:`Reply`; anything else is a
    :class:`CodecError` naming what was received."""
    try:
        text = line.decode("ascii").rstrip("\r\n")
    except UnicodeDecodeError:
        raise CodecError(f"not ASCII: {line[:40]!r}") from None
    if m := _VALUE.match(text):
        try:
            value = float(m.group(2))
        except ValueError:
            raise CodecError(f"{m.group(1)}: not a number: {m.group(2)!r}") from None
        if not math.isfinite(value):
            raise CodecError(f"{m.group(1)}: not a finite number: {m.group(2)!r}")
        return Reply("value", m.group(1), value=value)
    if m := _OK.match(text):
        return Reply("ok", m.group(1))
    if m := _ERR.match(text):
        return Reply("error", m.group(2), code=int(m.group(1)), text=m.group(3) or "")
    raise CodecError(f"not a reply of the textline protocol: {text[:40]!r}")


def decode_request(line: bytes) -> tuple[str, float | None]:
    """The device side: ``?NAME`` -> (name, None), ``!NAME=value`` -> (name, value)."""
    text = line.decode("ascii", "replace").rstrip("\r\n")
    if re.fullmatch(rf"\?{NAME}", text):
        return text[1:], None
    if m := re.fullmatch(rf"!({NAME})=(\S+)", text):
        try:
            value = float(m.group(2))
        except ValueError:
            raise CodecError(f"not a number: {m.group(2)!r}") from None
        if math.isfinite(value):
            return m.group(1), value
    raise CodecError(f"malformed request {text[:40]!r}")


def _check_name(name: str) -> None:
    if not re.fullmatch(NAME, name):
        raise CodecError(f"{name!r} is not a textline name (A-Z, 0-9, _; 16 at most)")


# -- models -----------------------------------------------------------------------------------


class TextLineBinding(Binding):
    """Where an attribute lives on a textline device: one named value."""

    name: str = Field(pattern=rf"^{NAME}$")
    access: Literal["read", "readwrite"] = "read"

    @property
    def writable(self) -> bool:
        return self.access == "readwrite"


class TextLineEndpoint(EndpointBase):
    """How a plant reaches a textline device: ``{protocol: textline, port: /dev/ttyUSB0}``."""

    protocol: Literal["textline"]
    port: str = Field(min_length=1)
    baudrate: int = Field(default=9600, gt=0)


# -- driver -----------------------------------------------------------------------------------


class TextLineDriver(BaseDriver):
    """One open serial port per device, one request at a time, writes never retried."""

    transport: ClassVar[str] = "textline"
    binding_model: ClassVar[type[Binding]] = TextLineBinding
    endpoint_models: ClassVar[tuple[type[EndpointBase], ...]] = (TextLineEndpoint,)

    def __init__(self, module_type: ModuleType, instance: ModuleInstance) -> None:
        super().__init__(module_type, instance)
        if not isinstance(instance.endpoint, TextLineEndpoint):
            raise ValueError(f"module {instance.tag}: the textline driver needs a textline "
                             "endpoint")
        self.endpoint: TextLineEndpoint = instance.endpoint
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> None:
        try:
            self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=self.endpoint.port, baudrate=self.endpoint.baudrate, limit=MAX_LINE)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise Disconnected(f"cannot open {self.endpoint.port}: {exc}",
                               module=self.tag_name) from None

    async def _close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read(self, infos: Sequence[TagInfo]) -> dict[str, TagValue]:
        out: dict[str, TagValue] = {}
        for info in infos:
            name = _binding(info).name
            reply = await self._ask(encode_read(name), name, info)
            if reply.kind != "value" or reply.value is None:
                raise BadReply(f"expected '{name}=<number>', got {reply}", tag=info.name,
                               module=self.tag_name)
            value: Any = reply.value != 0 if info.assembly.kind == "bool" else reply.value
            out[info.name] = TagValue(value, raw=reply.value)
        return out

    async def _write(self, info: TagInfo, value: Any) -> None:
        name = _binding(info).name
        number = float(bool(value)) if isinstance(value, bool) else float(value)
        reply = await self._ask(encode_write(name, number), name, info, value)
        if reply.kind != "ok":
            raise BadReply(f"expected 'OK {name}', got {reply}", tag=info.name,
                           module=self.tag_name)

    async def _ask(self, request: bytes, name: str, info: TagInfo, value: Any = None) -> Reply:
        """Send one request and return its reply. A lost port, or a reply to something else
        (a late answer after a timeout), closes the port: the next call opens it afresh."""
        async with self._lock:
            if self._writer is None:  # lost on an earlier call: open the port again
                await self._connect()
                self._health.reconnects += 1  # the transport keeps its own health figures
                self._health.connected = True
            assert self._reader is not None and self._writer is not None
            try:
                self._writer.write(request)
                await self._writer.drain()
                line = await self._reader.readuntil(b"\n")
            except (OSError, serial.SerialException, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError) as exc:
                await self._close()
                self._health.connected = False
                raise Disconnected(f"{self.endpoint.port}: link lost: {exc}", tag=info.name,
                                   module=self.tag_name) from None
            except BaseException:  # a timeout cancelled us mid-exchange: resynchronise
                await self._close()
                raise
            try:
                reply = decode_reply(line)
            except CodecError as exc:
                await self._close()
                raise BadReply(str(exc), tag=info.name, module=self.tag_name) from None
            if reply.name != name:
                await self._close()
                raise BadReply(f"asked for {name}, the reply is about {reply.name}",
                               tag=info.name, module=self.tag_name)
        if reply.kind == "error":
            if reply.code == OUT_OF_RANGE and value is not None:
                raise ValueRefused(refusal(self.tag_name, info, value,
                                           f"device range {reply.text}"),
                                   code=reply.code, tag=info.name, module=self.tag_name)
            raise DeviceRejected(f"{name}: {reply.text or 'refused'}", code=reply.code,
                                 tag=info.name, module=self.tag_name)
        return reply


def _binding(info: TagInfo) -> TextLineBinding:
    b = info.binding
    assert isinstance(b, TextLineBinding), f"{info.name}: not a textline binding"
    return b

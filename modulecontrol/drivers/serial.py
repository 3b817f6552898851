"""Serial driver for line-based ASCII request/response devices (syringe pumps, balances, ...).

The descriptor declares each exchange (pymeasure style): a command template, a response
pattern and a conversion; the endpoint declares the framing (terminators, daisy-chain address,
checksum, error replies). See ``docs/drivers.md`` (Serial).

Async I/O runs on pyserial-asyncio-fast: on POSIX it registers the port's file descriptor with
the event loop (no thread per port, no polling), so a timeout is a plain ``asyncio.wait_for``
that really abandons the read, and a vanished port shows up at once as a lost connection. An
executor thread around blocking ``Serial.read`` would tie up a thread per in-flight request and
could only be interrupted by the pyserial read timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import weakref
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import serial
import serial_asyncio_fast

from modulecontrol.descriptors import (
    Binding,
    EndpointBase,
    ModuleInstance,
    ModuleType,
    SerialBinding,
    SerialCommand,
    SerialEndpoint,
)
from modulecontrol.drivers._base import (
    BadReply,
    BadRequest,
    BaseDriver,
    DeviceRejected,
    Disconnected,
    DriverError,
    DriverTimeout,
    Health,
    TagInfo,
    TagValue,
    ValueRefused,
    refusal,
)
from modulecontrol.drivers.ascii_codec import (
    MAX_LINE,
    Framing,
    checksum_hex,
    parse_reply,
    render,
)

__all__ = ["BadReply", "BadRequest", "Framing", "SerialDriver", "checksum_hex"]


class _LineProtocol(asyncio.Protocol):
    """Collects bytes from the port; one reader at a time waits for a terminated line."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self._wake: asyncio.Event = asyncio.Event()
        self.closed: asyncio.Event = asyncio.Event()
        self.made: asyncio.Event = asyncio.Event()
        """Set by ``connection_made``, which the loop calls soon after the port opened, not
        before ``create_serial_connection`` returns."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.made.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc if exc is not None else ConnectionResetError("port closed")
        self._wake.set()
        self.closed.set()

    @property
    def alive(self) -> bool:
        return self.lost is None and self.transport is not None and not self.transport.is_closing()

    def flush(self) -> None:
        """Drop whatever arrived since the last exchange (late replies, line noise)."""
        self.buffer.clear()
        transport = self.transport
        port = transport.get_extra_info("serial") if transport is not None else None
        if isinstance(port, serial.Serial):
            with contextlib.suppress(Exception):
                port.reset_input_buffer()

    async def read_line(self, terminator: bytes) -> bytes:
        while True:
            i = self.buffer.find(terminator)
            if i >= 0:
                line = bytes(self.buffer[: i + len(terminator)])
                del self.buffer[: i + len(terminator)]
                return line
            if len(self.buffer) > MAX_LINE:
                junk = bytes(self.buffer[:80])
                self.buffer.clear()
                raise BadReply(f"no line terminator in {MAX_LINE} bytes (starts {junk!r}); "
                               "check the baud rate and the endpoint's 'read_terminator'")
            if self.lost is not None:
                raise Disconnected(f"port lost while waiting for a reply: {self.lost}")
            self._wake.clear()
            await self._wake.wait()


class _Port:
    """One open serial port shared by every driver on it (a daisy chain): one lock, one link.

    Why shared: two pumps on one RS-232 chain are two module instances with the same port and
    different addresses; opening the port twice would split the replies between two readers.
    """

    def __init__(self, ep: SerialEndpoint) -> None:
        self.path = ep.port
        self.settings = (ep.baudrate, ep.bytesize, ep.parity, ep.stopbits)
        self.lock = asyncio.Lock()
        self.protocol: _LineProtocol | None = None
        self.users = 0
        self.opened = 0
        self.owed = 0
        """Requests on this line that timed out and whose replies may still come: the device
        answers in order, so the next exchange may first see their late replies."""

    @property
    def connected(self) -> bool:
        return self.protocol is not None and self.protocol.alive

    async def ensure_open(self, limit: float) -> None:
        if self.connected:
            return
        self._drop()
        baud, bytesize, parity, stopbits = self.settings
        try:
            async with asyncio.timeout(limit):
                _, proto = await serial_asyncio_fast.create_serial_connection(
                    asyncio.get_running_loop(), _LineProtocol, self.path, baudrate=baud,
                    bytesize=bytesize, parity=parity, stopbits=stopbits,
                )
                assert isinstance(proto, _LineProtocol)
                await proto.made.wait()
        except TimeoutError:
            raise DriverTimeout(f"opening {self.path} took longer than {limit:g} s") from None
        except (serial.SerialException, OSError, ValueError) as exc:
            raise Disconnected(
                f"cannot open serial port {self.path}: {exc}; check that the device is "
                "plugged in, the path is right and no other program holds the port"
            ) from None
        self.protocol = proto
        self.opened += 1
        self.owed = 0  # a new link: nothing said on the old one arrives on it

    async def exchange(self, request: bytes, terminator: bytes, limit: float,
                       answers: Callable[[bytes], bool] | None = None) -> bytes:
        """Send one request and return its reply line; the caller holds ``lock``.

        ``answers`` says whether a line can be the reply to this request (its shape). While
        earlier requests' replies are owed (they timed out), a line that cannot be is taken
        for one of those late replies and skipped, and the reply is waited for on (within
        the same ``limit``; nothing is sent again). With none owed every line is returned,
        so a wrong one fails at once as it did.
        """
        await self.ensure_open(limit)
        proto = self.protocol
        assert proto is not None and proto.transport is not None
        proto.flush()
        try:
            proto.transport.write(request)
        except (serial.SerialException, OSError) as exc:
            self._drop()
            raise Disconnected(f"writing to {self.path} failed: {exc}") from None
        try:
            async with asyncio.timeout(limit):
                while True:
                    line = await proto.read_line(terminator)
                    if self.owed > 0 and answers is not None and not answers(line):
                        self.owed -= 1  # an earlier request's late reply: not ours
                        continue
                    self.owed = 0  # the line is in step again (or its replies are lost)
                    return line
        except TimeoutError:
            self.owed += 1
            raise DriverTimeout(f"no reply from {self.path} within {limit:g} s") from None
        except Disconnected:
            self._drop()
            raise

    def _drop(self) -> None:
        proto, self.protocol = self.protocol, None
        if proto is not None and proto.transport is not None and not proto.transport.is_closing():
            proto.transport.close()

    async def close(self) -> None:
        proto = self.protocol
        self._drop()
        if proto is not None and proto.lost is None:
            # Let the transport finish closing the file descriptor before the loop moves on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await proto.closed.wait()


_PORTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Port]] = (
    weakref.WeakKeyDictionary()
)


def _acquire(ep: SerialEndpoint) -> _Port:
    ports = _PORTS.setdefault(asyncio.get_running_loop(), {})
    port = ports.get(ep.port)
    if port is None:
        port = ports[ep.port] = _Port(ep)
    elif port.settings != (ep.baudrate, ep.bytesize, ep.parity, ep.stopbits):
        raise ValueError(
            f"serial port {ep.port} is already open with settings {port.settings} "
            "(baudrate, bytesize, parity, stopbits); every device on one port must agree"
        )
    port.users += 1
    return port


async def _release(port: _Port) -> None:
    port.users -= 1
    if port.users > 0:
        return
    ports = _PORTS.get(asyncio.get_running_loop(), {})
    if ports.get(port.path) is port:
        del ports[port.path]
    await port.close()


class SerialDriver(BaseDriver):
    """A module reached over a serial line with an ASCII request/response protocol.

    Every read or write is one exchange per tag, one at a time per port, each bounded by the
    command's ``timeout`` (else the endpoint's). A lost port is reopened at the next request.
    """

    transport: ClassVar[str] = "serial"
    binding_model: ClassVar[type[Binding]] = SerialBinding
    endpoint_models: ClassVar[tuple[type[EndpointBase], ...]] = (SerialEndpoint,)

    def __init__(self, module_type: ModuleType, instance: ModuleInstance) -> None:
        super().__init__(module_type, instance)
        ep = instance.endpoint
        if not isinstance(ep, SerialEndpoint):
            raise ValueError(f"module {instance.tag}: the serial driver needs a serial endpoint")
        self.endpoint = ep
        self.framing = Framing.from_endpoint(ep)
        self.range_errors = frozenset(ep.range_errors)
        """Error codes meaning "value out of range" (ValueRefused rather than DeviceRejected)."""
        self._port: _Port | None = None
        self._opened_base = 0

    # -- BaseDriver hooks ----------------------------------------------------------------
    async def _connect(self) -> None:
        if self._port is not None:
            return
        port = _acquire(self.endpoint)
        try:
            async with port.lock:
                await port.ensure_open(self.timeout)
        except BaseException:
            await _release(port)
            raise
        self._port = port
        self._opened_base = port.opened

    async def _close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            await _release(port)

    async def _read(self, infos: Sequence[TagInfo]) -> dict[str, TagValue]:
        out: dict[str, TagValue] = {}
        for info in infos:
            cmd = _binding(info).read
            assert cmd is not None
            value, text = await self._ask(cmd, None, info.name)
            out[info.name] = TagValue(value, raw=text)
        return out

    async def _write(self, info: TagInfo, value: Any) -> None:
        cmd = _binding(info).write
        assert cmd is not None
        try:
            await self._ask(cmd, value, info.name)
        except DeviceRejected as exc:
            if exc.code not in self.range_errors:
                raise
            # The device said the value is out of its range: name the setting and the
            # limits; sending it again would only be refused again.
            how = f"reply {exc.code!r} to {render(cmd, value)!r}"
            raise ValueRefused(refusal(self.tag_name, info, value, how), code=exc.code,
                               tag=info.name, module=self.tag_name) from None

    def _budget(self, op: str, count: int) -> float | None:
        # Each exchange carries its own (per-command) timeout, so no overall bound here: a
        # read of five tags may rightly take five timeouts, and a slow command may declare
        # more than the endpoint's default.
        return None

    def health(self) -> Health:
        port = self._port
        self._health.connected = port is not None and port.connected
        if port is not None:
            self._health.reconnects = max(0, port.opened - self._opened_base)
        return self._health

    # -- public extras -------------------------------------------------------------------
    async def request(self, text: str, *, reply_timeout: float | None = None) -> str:
        """Send raw command text (framed with address and checksum) and return the reply text.

        For vendor drivers and commissioning: the reply is unframed and checked for an error
        reply, nothing else. Raises ``DeviceRejected``, ``BadReply``, ``DriverTimeout`` or
        ``Disconnected``.
        """
        try:
            framed = self.framing.frame(text)
        except ValueError as exc:
            raise BadRequest(str(exc), module=self.tag_name) from None

        async def go() -> str:
            line = await self._exchange(framed, reply_timeout, None)
            try:
                _, reply = parse_reply(self.framing, None, line)
            except BadReply as exc:
                raise BadReply(_bare(exc), reply=exc.reply, module=self.tag_name) from None
            except DeviceRejected as exc:
                raise DeviceRejected(f"{_bare(exc)} to {text!r}", code=exc.code,
                                     module=self.tag_name) from None
            return reply

        reply: str = await self._timed(go(), None)
        return reply

    # -- internals -----------------------------------------------------------------------
    async def _ask(self, cmd: SerialCommand, value: Any, tag: str) -> tuple[Any, str]:
        try:
            text = render(cmd, value)
            request = self.framing.frame(text)
        except ValueError as exc:
            raise BadRequest(str(exc), tag=tag, module=self.tag_name) from None

        def answers(line: bytes) -> bool:
            """The line has the shape of this request's reply (an error reply counts)."""
            try:
                self._parse(cmd, value, line)
            except BadReply:
                return False
            except DeviceRejected:
                pass  # the device's error reply to this request is an answer too
            return True

        line = await self._exchange(request, cmd.timeout, tag, answers)
        try:
            return self._parse(cmd, value, line)
        except BadReply as exc:
            raise BadReply(_bare(exc), reply=exc.reply, tag=tag, module=self.tag_name) from None
        except DeviceRejected as exc:
            raise DeviceRejected(f"{_bare(exc)} to {text!r}", code=exc.code, tag=tag,
                                 module=self.tag_name) from None

    def _parse(self, cmd: SerialCommand, value: Any, line: bytes) -> tuple[Any, str]:
        """The value and text of the reply ``line`` to ``cmd`` (a write when ``value`` is
        not None). Raises :class:`BadReply` or ``DeviceRejected``."""
        if value is not None:  # a write: the reply confirms it and carries no value
            _, reply = parse_reply(self.framing, None, line)
            if cmd.response is not None and re.search(cmd.response, reply) is None:
                raise BadReply(
                    f"reply {reply!r} to a write does not match {cmd.response!r} (a late "
                    "reply to an earlier request?): the write is not confirmed",
                    reply=reply)
            return None, reply
        return parse_reply(self.framing, cmd, line)

    async def _exchange(self, request: bytes, limit: float | None, tag: str | None,
                        answers: Callable[[bytes], bool] | None = None) -> bytes:
        port = self._port
        if port is None:
            raise Disconnected("not connected; call connect() first", tag=tag,
                               module=self.tag_name)
        seconds = self.timeout if limit is None else float(limit)
        async with port.lock:
            try:
                return await port.exchange(request, self.framing.read_terminator, seconds,
                                           answers)
            except BadReply as exc:
                raise BadReply(_bare(exc), reply=exc.reply, tag=tag, module=self.tag_name
                               ) from None
            except DriverTimeout as exc:
                raise DriverTimeout(_bare(exc), tag=tag, module=self.tag_name) from None
            except Disconnected as exc:
                raise Disconnected(_bare(exc), tag=tag, module=self.tag_name) from None


def _binding(info: TagInfo) -> SerialBinding:
    b = info.binding
    assert isinstance(b, SerialBinding)
    return b


def _bare(exc: DriverError) -> str:
    """The message of ``exc`` without a location prefix, to re-raise it with one."""
    msg = str(exc)
    where = " ".join(x for x in (exc.module, exc.tag) if x)
    return msg[len(where) + 2:] if where and msg.startswith(where + ": ") else msg

"""One pymodbus client per physical link, shared by every driver that uses it.

Why a pool: on an RS-485 line several devices (unit ids) hang off one serial port, and a
port can be opened once. Every module instance on that port gets its own driver, so drivers
borrow the port's client from here and take its lock for each request, which keeps frames of
different units from interleaving. A TCP gateway serving several unit ids is shared the same way.

Reconnection is ours, not pymodbus's (``reconnect_delay=0``): a request on a dropped link tries
to connect at most once per back-off period, doubling from 0.1 s up to the endpoint's
``reconnect_max_delay``, and fails fast with Disconnected in between. That keeps every call
bounded in time and makes the back-off observable in ``health()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from modulecontrol.descriptors import ModbusRtuEndpoint, ModbusTcpEndpoint
from modulecontrol.drivers._base import DeviceRejected, Disconnected, DriverError, DriverTimeout

FIRST_DELAY = 0.1
"""Seconds before the first reconnect attempt after a link drops."""

EXCEPTION_NAMES: dict[int, str] = {
    int(ExcCodes.ILLEGAL_FUNCTION): "illegal function",
    int(ExcCodes.ILLEGAL_ADDRESS): "illegal data address",
    int(ExcCodes.ILLEGAL_VALUE): "illegal data value",
    int(ExcCodes.DEVICE_FAILURE): "server device failure",
    int(ExcCodes.ACKNOWLEDGE): "acknowledge",
    int(ExcCodes.DEVICE_BUSY): "server device busy",
    int(ExcCodes.NEGATIVE_ACKNOWLEDGE): "negative acknowledge",
    int(ExcCodes.MEMORY_PARITY_ERROR): "memory parity error",
    int(ExcCodes.GATEWAY_PATH_UNAVIABLE): "gateway path unavailable",
    int(ExcCodes.GATEWAY_NO_RESPONSE): "gateway target device failed to respond",
}

ModbusEndpoint = ModbusTcpEndpoint | ModbusRtuEndpoint

if sys.platform != "win32":
    import termios

    _SETUP_ERRORS: tuple[type[Exception], ...] = (termios.error, ValueError)
else:  # pragma: no cover - pyserial reports refused settings as ValueError there
    _SETUP_ERRORS = (ValueError,)
"""What pyserial raises when a port opens but refuses the line settings (``termios.error``
is no OSError): e.g. parity on a pseudo-terminal, a baud rate the adapter cannot do."""


def link_key(ep: ModbusEndpoint) -> tuple[Any, ...]:
    if isinstance(ep, ModbusTcpEndpoint):
        return ("tcp", ep.host, ep.port)
    return ("rtu", ep.port)


def describe(ep: ModbusEndpoint) -> str:
    if isinstance(ep, ModbusTcpEndpoint):
        return f"{ep.host}:{ep.port}"
    return ep.port


class Link:
    """A pymodbus client, its request lock and our reconnect bookkeeping."""

    def __init__(self, ep: ModbusEndpoint) -> None:
        self.endpoint = ep
        self.where = describe(ep)
        self.timeout = float(ep.timeout)
        self.max_delay = float(ep.reconnect_max_delay)
        self.client: AsyncModbusTcpClient | AsyncModbusSerialClient
        # retries=0: pymodbus must never re-send on its own, or a timed-out write could be
        # executed twice; the driver decides what may be retried.
        if isinstance(ep, ModbusTcpEndpoint):
            self.client = AsyncModbusTcpClient(
                ep.host, port=ep.port, timeout=self.timeout, retries=0, reconnect_delay=0
            )
        else:
            self.client = AsyncModbusSerialClient(
                ep.port, baudrate=ep.baudrate, bytesize=ep.bytesize, parity=ep.parity,
                stopbits=ep.stopbits, timeout=self.timeout, retries=0, reconnect_delay=0,
            )
        c = self.client
        self.readers: dict[str, Callable[..., Awaitable[Any]]] = {
            "coil": c.read_coils,
            "discrete_input": c.read_discrete_inputs,
            "holding": c.read_holding_registers,
            "input": c.read_input_registers,
        }
        """The client's read call per table, looked up once rather than per request."""
        self.lock = asyncio.Lock()
        self.users = 0
        self.delay = FIRST_DELAY
        self.next_attempt = 0.0
        self.ever_connected = False
        self.reconnects = 0
        self.closed = False

    def compatible(self, ep: ModbusEndpoint) -> str | None:
        """Why ``ep`` cannot share this link (different line settings), or None."""
        mine = self.endpoint
        if isinstance(mine, ModbusRtuEndpoint) and isinstance(ep, ModbusRtuEndpoint):
            for f in ("baudrate", "bytesize", "parity", "stopbits"):
                if getattr(mine, f) != getattr(ep, f):
                    return (f"{f} {getattr(ep, f)} differs from {getattr(mine, f)} set by "
                            f"another module on {ep.port}; devices on one line share settings")
        return None

    @property
    def connected(self) -> bool:
        return self.is_up()

    def is_up(self) -> bool:
        return bool(self.client.connected)

    async def ensure(self, *, force: bool = False) -> None:
        """Connect if needed, at most once per back-off period (``force`` skips the wait)."""
        if self.is_up():
            return
        now = time.monotonic()
        if not force and now < self.next_attempt:
            raise Disconnected(
                f"no link to {self.where}; next reconnect attempt in "
                f"{self.next_attempt - now:.1f} s"
            )
        refused = ""
        try:
            async with asyncio.timeout(self.timeout + 1.0):
                ok = await self.client.connect()
        except (TimeoutError, OSError, ModbusException):
            ok = False
        except _SETUP_ERRORS as exc:
            ok = False
            ep = self.endpoint
            if isinstance(ep, ModbusRtuEndpoint):
                refused = (f"{ep.port} refused the line settings {ep.baudrate} baud "
                           f"{ep.bytesize}{ep.parity}{ep.stopbits} ({exc}); check that "
                           "the adapter supports them (a pseudo-terminal takes no parity "
                           "and 8 data bits only)")
            else:
                refused = f"cannot connect to {self.where}: {exc}"
        if not ok or not self.is_up():
            self.next_attempt = time.monotonic() + self.delay
            self.delay = min(self.delay * 2, self.max_delay)
            raise Disconnected(
                refused or f"cannot connect to {self.where}: check that the device is powered "
                "and reachable and that the endpoint's host/port is right"
            )
        if self.ever_connected:
            self.reconnects += 1
        self.ever_connected = True
        self.delay = FIRST_DELAY
        self.next_attempt = 0.0

    async def request(self, unit: int, what: str, call: Callable[..., Awaitable[Any]],
                      *args: Any, module: str | None = None, **kwargs: Any) -> Any:
        """Run ``call(*args, **kwargs)`` under the link lock; map every failure to a typed error.

        One deadline per wire request: pymodbus' own wait for the reply (``timeout``, retries
        off). ``ensure`` bounds the connect. No second timer is layered on top, since each
        costs a timer handle per request and could only fire after pymodbus' has.
        """
        async with self.lock:
            if self.closed:
                raise Disconnected(f"link to {self.where} is closed", module=module)
            if not self.client.connected:
                try:
                    await self.ensure()
                except Disconnected as exc:
                    raise Disconnected(str(exc), module=module) from None
            try:
                rsp = await call(*args, **kwargs)
            except TimeoutError:
                raise DriverTimeout(
                    f"unit {unit} did not answer {what} within {self.timeout:g} s", module=module
                ) from None
            except ConnectionException as exc:
                raise Disconnected(f"link to {self.where} lost during {what}: {exc}",
                                   module=module) from None
            except ModbusIOException as exc:
                if not self.connected:
                    raise Disconnected(f"link to {self.where} lost during {what}",
                                       module=module) from None
                if "No response" in str(exc):
                    raise DriverTimeout(
                        f"unit {unit} did not answer {what} within {self.timeout:g} s",
                        module=module,
                    ) from None
                raise DriverError(f"bad reply from unit {unit} to {what}: {exc}",
                                  module=module) from None
            except ModbusException as exc:
                raise DriverError(f"bad reply from unit {unit} to {what}: {exc}",
                                  module=module) from None
        if rsp is None:
            raise DriverTimeout(f"unit {unit} gave no reply to {what}", module=module)
        foreign = _foreign_reply(rsp, call, args, kwargs)
        if foreign is not None:
            raise DriverTimeout(
                f"unit {unit} did not answer {what}: the reply that came belongs to another "
                f"request ({foreign}), e.g. a late answer to one that timed out",
                module=module)
        if rsp.isError():
            code = int(getattr(rsp, "exception_code", 0))
            name = EXCEPTION_NAMES.get(code, "unknown exception")
            raise DeviceRejected(
                f"unit {unit} rejected {what}: Modbus exception {code} ({name})", code=code,
                module=module,
            )
        return rsp

    async def shutdown(self) -> None:
        self.closed = True
        self.client.close()
        await asyncio.sleep(0)


_FUNCTION_CODES: dict[str, int] = {
    "read_coils": 1, "read_discrete_inputs": 2, "read_holding_registers": 3,
    "read_input_registers": 4, "write_coil": 5, "write_register": 6, "write_registers": 16,
}
"""Function code of the reply each client call expects (an exception reply adds 0x80)."""


def _foreign_reply(rsp: Any, call: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> str | None:
    """Why ``rsp`` cannot be the reply to this request, or None if it can be.

    Why: RTU frames carry no transaction id, and pymodbus matches a reply to the pending
    request by unit id alone. A reply that arrives after its request timed out is therefore
    taken as the answer to the *next* request: a coil read's bits decoded as registers, or a
    write reported done when the device has not answered it. Function code, read length and
    a write's echoed address (and count) tell most of these apart; two reads of the same
    length and table cannot be, since a read reply does not echo its address. The echoed
    value is not compared: devices (pymodbus' server too) echo the value read back after the
    write, which differs for a momentary command such as a totaliser reset.
    """
    fc = _FUNCTION_CODES.get(getattr(call, "__name__", ""))
    if fc is None:
        return None
    got = int(rsp.function_code) & 0x7F
    if got != fc:
        return f"function {got}, not {fc}"
    if rsp.isError():
        return None
    if fc <= 2:
        count = int(kwargs.get("count", 1))
        if not count <= len(rsp.bits) < count + 8:
            return f"{len(rsp.bits)} bits, not {count}"
    elif fc <= 4:
        count = int(kwargs.get("count", 1))
        if len(rsp.registers) != count:
            return f"{len(rsp.registers)} registers, not {count}"
    elif rsp.address != args[0]:
        return f"echo of address {rsp.address}, not {args[0]}"
    elif fc == 16 and rsp.count != len(args[1]):
        return f"echo of {rsp.count} registers, not {len(args[1])}"
    return None


_POOL: dict[tuple[Any, ...], Link] = {}


async def acquire(ep: ModbusEndpoint) -> Link:
    """The shared link for ``ep`` in the running loop, created on first use."""
    key = (id(asyncio.get_running_loop()), *link_key(ep))
    link = _POOL.get(key)
    if link is not None and link.closed:
        link = None
    if link is None:
        link = Link(ep)
        _POOL[key] = link
    else:
        problem = link.compatible(ep)
        if problem:
            raise ValueError(problem)
    link.users += 1
    return link


async def release(link: Link) -> None:
    """Drop one user; the last one closes the client and frees the port."""
    link.users -= 1
    if link.users > 0:
        return
    for key, value in list(_POOL.items()):
        if value is link:
            del _POOL[key]
    with contextlib.suppress(Exception):
        await link.shutdown()

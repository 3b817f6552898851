"""Where simulated devices listen: a free TCP port on a host, and the device side of a
simulated serial port, a pseudo-terminal whose slave path a driver opens as it would
``/dev/ttyUSB0``.

A port chosen free is only free a moment ago: another process (an outgoing connection's
ephemeral port, a parallel test) can take it before the server binds it. Servers that can
bind port 0 and report the port they got should do that (the Modbus TCP slave, the control
service's API); for those that must be told their port first (asyncua's PEA, Mosquitto,
PostgreSQL) :func:`start_on_free_port` / :func:`astart_on_free_port` retry the start on a new
port when the chosen one was taken, a bounded number of times.

:class:`PtyPort` is the one implementation for every simulated serial device (the SYR-1
syringe emulator, Modbus RTU slaves): opening in raw mode, a stable symlink (``link``) that
keeps the port's path valid across :meth:`PtyPort.close` / :meth:`PtyPort.open` (a USB
adapter pulled and re-plugged), reading on the event loop, and writes that are dropped
while the port is gone, as bytes sent to an unplugged adapter are.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import tty
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["PORT_ATTEMPTS", "PtyPort", "astart_on_free_port", "free_port", "port_in_use",
           "start_on_free_port"]

T = TypeVar("T")

PORT_ATTEMPTS = 5
"""Starts on a new port before a taken port is an error: losing the race once is rare (the
window is a few milliseconds to a second), five times in a row means something else is
wrong."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (for a server that must be told its
    port before it binds, e.g. asyncua's)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_in_use(exc: BaseException) -> bool:
    """Whether ``exc`` says the port to listen on was taken (``EADDRINUSE``), the one failure
    a start on another port can cure."""
    return isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE


def start_on_free_port(start: Callable[[int], T], host: str = "127.0.0.1",
                       attempts: int = PORT_ATTEMPTS) -> T:
    """``start(port)`` on a free port of ``host``, again on a new port while the chosen one
    turns out taken (:func:`port_in_use`); for a server that must be told its port before it
    binds. Any other failure, and the last attempt's, is raised as it is."""
    for attempt in range(1, attempts + 1):
        try:
            return start(free_port(host))
        except OSError as exc:
            if attempt == attempts or not port_in_use(exc):
                raise
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def astart_on_free_port(start: Callable[[int], Awaitable[T]], host: str = "127.0.0.1",
                              attempts: int = PORT_ATTEMPTS) -> T:
    """:func:`start_on_free_port` for a start that is a coroutine (asyncua's server)."""
    for attempt in range(1, attempts + 1):
        try:
            return await start(free_port(host))
        except OSError as exc:
            if attempt == attempts or not port_in_use(exc):
                raise
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


class PtyPort:
    """The master side of a pty; ``on_data`` gets every chunk of bytes a client wrote."""

    def __init__(self, on_data: Callable[[bytes], None], link: Path | None = None) -> None:
        self.on_data = on_data
        self.link = link
        """A symlink kept pointing at the current slave device: a port path that survives
        :meth:`close` / :meth:`open`."""
        self._master: int | None = None
        self._slave: int | None = None
        self._slave_name = ""

    @property
    def port(self) -> str:
        """The path a client opens."""
        return str(self.link) if self.link is not None else self._slave_name

    @property
    def is_open(self) -> bool:
        return self._master is not None

    def open(self) -> None:
        """A new pty (nothing if one is open), the link pointed at it, reading started.
        Needs a running event loop."""
        if self._master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)  # no echo, no line editing: bytes pass through untouched
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._slave_name = os.ttyname(slave)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self._slave_name)
            tmp.replace(self.link)
        asyncio.get_running_loop().add_reader(master, self._readable)

    def close(self) -> None:
        """Close the pty and remove the link: open clients see the port die, new ones find
        no port."""
        master, slave = self._master, self._slave
        self._master = self._slave = None
        if master is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(master)
            with contextlib.suppress(OSError):
                os.close(master)
        if slave is not None:
            with contextlib.suppress(OSError):
                os.close(slave)
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()

    def write(self, data: bytes) -> None:
        """Send ``data`` to the client; lost if the port is closed or the client is gone."""
        if self._master is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._master, data)

    def _readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except OSError:  # includes BlockingIOError / EIO once the client side went away
            return
        self.on_data(data)

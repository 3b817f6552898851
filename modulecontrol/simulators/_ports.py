"""Where simulated devices listen: a free TCP port on a host, and the device side of a
simulated serial port, a pseudo-terminal whose slave path a driver opens as it would
``/dev/ttyUSB0``.

:class:`PtyPort` is the one implementation for every simulated serial device (the SYR-1
syringe emulator, Modbus RTU slaves): opening in raw mode, a stable symlink (``link``) that
keeps the port's path valid across :meth:`PtyPort.close` / :meth:`PtyPort.open` (a USB
adapter pulled and re-plugged), reading on the event loop, and writes that are dropped
while the port is gone, as bytes sent to an unplugged adapter are.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tty
from collections.abc import Callable
from pathlib import Path

__all__ = ["PtyPort", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (for a server that must be told its
    port before it binds, e.g. asyncua's)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


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

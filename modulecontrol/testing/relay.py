"""A TCP relay that pulls, stalls, slows or garbles a link between a client and a server.

For integrators testing a driver's fault handling against the real server of their device
(or a simulator) without touching either: the client connects to the relay's port, and
the test flips the relay. Used by the fault matrix (``tests/faults``) and the OPC UA
driver's conformance and keep-alive tests.

Example::

    async with TcpRelay(server_port) as relay:
        driver = make_driver(port=relay.port)
        relay.stalled.clear()   # the device stops answering
        relay.stalled.set()
        relay.cut()             # the cable is pulled; new connections are refused
        relay.restore()

For a server known by URL (``opc.tcp://127.0.0.1:4840/pea``)::

    async with TcpRelay.for_url(server.url) as relay:
        driver = make_driver(url=relay.relayed(server.url))
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

__all__ = ["TcpRelay"]


class TcpRelay:
    """A TCP relay between a client and a server on 127.0.0.1 that can drop the link.

    ``cut()`` closes every open connection and refuses new ones (the cable pulled);
    ``restore()`` accepts again. The client sees exactly what a lost link looks like.
    ``garbage`` replaces what the server sends with random bytes, so a client gets replies
    that are not replies inside a session it has already opened (a protocol stack such as
    asyncua always frames its replies, so the server itself cannot be made to do that).
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_port = target_port
        self.target_host = target_host
        self.port = 0
        self.up = True
        self.stalled = asyncio.Event()
        self.stalled.set()
        """Cleared: bytes are held back in both directions (a device that stops answering)."""
        self.delay = 0.0
        """Seconds each server->client chunk is held back (a slow device)."""
        self.garbage = False
        """True: each server->client chunk is replaced by as many random bytes."""
        self._rng = random.Random(20240601)  # reproducible garbage
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @classmethod
    def for_url(cls, url: str) -> TcpRelay:
        """A relay to the server of ``url`` (``scheme://host:port/path``)."""
        parts = urlsplit(url)
        if parts.port is None or parts.hostname is None:
            raise ValueError(f"{url!r} names no host:port to relay to")
        return cls(parts.port, parts.hostname)

    def relayed(self, url: str) -> str:
        """``url`` pointed at this relay (after :meth:`start`): same scheme and path."""
        parts = urlsplit(url)
        return parts._replace(netloc=f"127.0.0.1:{self.port}").geturl()

    async def __aenter__(self) -> TcpRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1 (``port``); point the client there."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        try:
            up_r, up_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_w}

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, down: bool) -> None:
            # Reading and forwarding are separate so that ``delay`` is a constant latency
            # per chunk (each leaves ``delay`` s after it arrived), not a queue that grows
            # with every chunk held back behind the previous one.
            loop = asyncio.get_running_loop()
            chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def receive() -> None:
                with contextlib.suppress(Exception):
                    while data := await r.read(65536):
                        chunks.put_nowait((loop.time(), data))
                chunks.put_nowait((loop.time(), b""))

            receiver = loop.create_task(receive())
            try:
                with contextlib.suppress(Exception):
                    while (chunk := await chunks.get())[1]:
                        arrived, data = chunk
                        await self.stalled.wait()
                        if down and self.delay:
                            await asyncio.sleep(max(0.0, arrived + self.delay - loop.time()))
                        if down and self.garbage:
                            data = self._rng.randbytes(len(data))
                        w.write(data)
                        await w.drain()
            finally:
                receiver.cancel()
                w.close()

        await asyncio.gather(pump(reader, up_w, False), pump(up_r, writer, True))
        self._writers -= {writer, up_w}

    def cut(self) -> None:
        self.up = False
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.up = True

    @contextlib.asynccontextmanager
    async def stall(self) -> AsyncIterator[None]:
        """Inside: the device holds back every byte (the conformance kit's ``stall``)."""
        self.stalled.clear()
        try:
            yield
        finally:
            self.stalled.set()

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """Inside: the link is cut and new connections refused (the kit's ``outage``)."""
        self.cut()
        try:
            yield
        finally:
            self.restore()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await self._server.wait_closed()

"""Serving the API with uvicorn in the service's own asyncio loop.

One loop runs the drivers, the orchestrator, the historian's feed and the HTTP server, so a
request reads the proxies' values directly, without locks or copies. The server binds the
loopback interface by default; any other address needs TLS (certificate and key files),
because tokens and passwords travel in every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from modulecontrol.service._api import create_app
from modulecontrol.service._service import ControlService, ServiceError, ServiceOptions


@dataclass
class BindOptions:
    host: str = "127.0.0.1"
    port: int = 8470
    tls_cert: Path | None = None
    tls_key: Path | None = None


def check_bind(bind: BindOptions) -> None:
    """Refuse a non-loopback address without TLS (ServiceError, the message says what)."""
    if (bind.tls_cert is None) != (bind.tls_key is None):
        raise ServiceError(2, "incomplete TLS", "--tls-cert and --tls-key go together")
    if bind.tls_cert is not None:
        return
    try:
        loopback = bind.host == "localhost" or ipaddress.ip_address(bind.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ServiceError(2, "refusing to bind without TLS",
                           f"--host {bind.host} is not a loopback address: give --tls-cert and "
                           f"--tls-key to serve it over TLS, or keep the default 127.0.0.1")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: a signal stops the whole service (see
    :func:`serve`), not only its HTTP server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """uvicorn for one service, started and stopped inside the running loop."""

    def __init__(self, service: ControlService, bind: BindOptions,
                 mounts: Sequence[Callable[[FastAPI], None]] = ()) -> None:
        check_bind(bind)
        self.bind = bind
        app = create_app(service)
        for mount in mounts:  # e.g. the operator station, chosen by the composition root
            mount(app)
        config = uvicorn.Config(
            app, host=bind.host, port=bind.port, log_level="warning",
            lifespan="off", ssl_certfile=bind.tls_cert, ssl_keyfile=bind.tls_key,
            ws="websockets-sansio")
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.bind.tls_cert else "http"
        return f"{scheme}://{self.bind.host}:{self.port}"

    @property
    def port(self) -> int:
        """The port actually bound (``port=0`` asks the system for a free one)."""
        for server in self._server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.bind.port

    async def start(self, timeout: float = 10.0) -> None:
        self._task = asyncio.get_running_loop().create_task(self._server.serve())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError(f"the API server did not start on {self.bind.host}:"
                              f"{self.bind.port}")
            if loop.time() > deadline:
                raise TimeoutError(f"the API server did not start within {timeout:g} s")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            # waited for, not awaited under a timeout: Python 3.11's wait_for can drop a
            # cancellation of this stop; the task's own failure is still raised
            done, _ = await asyncio.wait({self._task}, timeout=10.0)
            if not done:
                self._server.force_exit = True
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=5.0)
            elif not self._task.cancelled():
                self._task.result()


Extension = Callable[[ControlService, str], Callable[[], Awaitable[None]]]
"""Composed in by the caller once the service runs and its API listens: called in the
service's loop with the service and the API's URL, returns what closes it (awaited before
the service closes). The Sparkplug edge node of ``serve --sparkplug`` is one."""


async def serve(options: ServiceOptions, bind: BindOptions,
                ready: Callable[[str], None] | None = None,
                mounts: Sequence[Callable[[FastAPI], None]] = (),
                extensions: Sequence[Extension] = ()) -> None:
    """``modulecontrol serve``: the service and its API until SIGINT or SIGTERM, then an
    orderly shutdown (the active run is stopped and recorded, the modules closed).
    ``mounts`` add to the API's app what the caller composes in (the operator station),
    ``extensions`` what runs beside the service (:data:`Extension`)."""
    check_bind(bind)  # refused before anything starts
    service = ControlService(options)
    await service.start()
    server = ApiServer(service, bind, mounts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    closers: list[Callable[[], Awaitable[None]]] = []
    try:
        await server.start()
        for extension in extensions:
            closers.append(extension(service, server.url))
        if ready is not None:
            ready(server.url)
        await stop.wait()
    finally:
        await server.stop()
        for close in reversed(closers):
            await close()
        await service.close()

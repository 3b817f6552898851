"""A control service on loopback for tests and test rigs: its own thread and event loop.

The service runs in a thread with its own loop, so a test, synchronous or on any event
loop, talks to it only over HTTP and WebSocket, as every other client does. Users of every
role are created with random passwords before it starts (there are no default ones).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modulecontrol.service import (
    ApiServer,
    BindOptions,
    ControlService,
    Extension,
    Role,
    ServiceOptions,
    ServiceStore,
    hash_password,
)


@dataclass
class ServedLine:
    """A running service: where it is, its database and one user per role."""

    url: str
    db: Path
    users: dict[str, tuple[str, str]] = field(default_factory=dict)
    """role -> (user name, password)."""


class ServiceThread:
    """Start with :meth:`start` (returns the :class:`ServedLine`), stop with :meth:`stop`."""

    def __init__(self, options: ServiceOptions, startup_timeout: float = 120.0,
                 mounts: Sequence[Callable[[Any], None]] = (),
                 extensions: Sequence[Extension] = ()) -> None:
        self.options = options
        self.mounts = mounts
        self.extensions = extensions
        """Run beside the service, as ``modulecontrol serve --sparkplug`` runs its edge."""
        """Added to the API's app, as ``modulecontrol serve`` adds the operator station."""
        self.service: ControlService | None = None
        """The running service, for a test that drives the simulated plant (faults) beside
        the API; use it only through :meth:`call`."""
        self.startup_timeout = startup_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._url = ""
        self._thread = threading.Thread(target=self._main, name="control service",
                                        daemon=True)

    def start(self) -> ServedLine:
        users: dict[str, tuple[str, str]] = {}
        store = ServiceStore(self.options.db)
        try:
            for role in Role:
                name, password = f"{role.value}-user", secrets.token_urlsafe(12)
                if store.user(name) is None:
                    store.add_user(name, role.value, hash_password(password))
                    users[role.value] = (name, password)
        finally:
            store.close()
        self._thread.start()
        if not self._ready.wait(self.startup_timeout):
            raise TimeoutError(f"the control service did not start within "
                               f"{self.startup_timeout:g} s")
        if self._error is not None:
            raise self._error
        return ServedLine(self._url, self.options.db, users)

    def stop(self, timeout: float = 120.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the control service did not stop within {timeout:g} s")

    def call(self, fn: Callable[[ControlService], Any], timeout: float = 10.0) -> Any:
        """Run ``fn(service)`` in the service's loop and return its result."""
        assert self._loop is not None and self.service is not None, "not started"
        service = self.service

        async def go() -> Any:
            return fn(service)

        return asyncio.run_coroutine_threadsafe(go(), self._loop).result(timeout)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        service = ControlService(self.options)
        await service.start()
        self.service = service
        server = ApiServer(service, BindOptions(host="127.0.0.1", port=0), self.mounts)
        closers = []
        try:
            await server.start()
            self._url = server.url
            for extension in self.extensions:
                closers.append(extension(service, server.url))
            self._ready.set()
            await self._stop.wait()
        finally:
            await server.stop()
            for close in reversed(closers):
                await close()
            await service.close()

"""A control service on loopback for tests and test rigs.

Two ways to run it:

- :class:`ServiceThread`: the service in a thread with its own loop, so a test, synchronous
  or on any event loop, talks to it only over HTTP and WebSocket, as every other client
  does. Users of every role are created with random passwords before it starts (there are
  no default ones).
- :class:`ServeProcess`: ``modulecontrol serve --simulate`` in a process of its own, with
  its simulated plant in another (kept across a restart): what a restart test kills.
  :func:`serve_folder` prepares its folder (recipes, a user), :func:`production_recipe` is
  the small production recipe (a pump on, a long wait) such tests run, :func:`pid_alive`
  and :func:`kill_left_plant` watch and clean up the plant process.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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

__all__ = [
    "ServeProcess",
    "ServedLine",
    "ServiceThread",
    "child_env",
    "kill_left_plant",
    "pid_alive",
    "production_recipe",
    "serve_folder",
]


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

    def stop(self, timeout: float = 180.0) -> None:
        """Ask the service to stop and wait for its thread. Its shutdown is a sum of bounded
        waits (the active run 60 s, extensions such as the Sparkplug edge 35 s, the plant
        10 s, the records 30 s); past ``timeout`` the error names where every thread is."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the control service did not stop within {timeout:g} s; "
                               f"where its threads are:\n{_stacks()}")

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


def _stacks() -> str:
    """Every thread's stack, for a service that does not stop: what it waits for is the
    cause, and a test that only says "did not stop" cannot be mended."""
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(f"--- {names.get(ident, ident)}\n" + "".join(traceback.format_stack(f))
                     for ident, f in sys._current_frames().items())


def production_recipe(plant: Path, *, name: str = "production", flow: float = 0.375,
                      duration: str = "4 h") -> str:
    """A recipe that starts the amine pump P1 of the lomustine plant at ``flow`` mL/min
    and waits ``duration`` (step ``feeding``): product flows for as long as a test needs."""
    return f"""\
kind: Recipe
name: {name}
version: 1.0.0
plant: {plant.as_posix()}
procedure:
  - name: line
    steps:
      - name: amine_on
        service: {{module: P1, service: Dosing, parameters: {{FlowSP: {flow:g}}}}}
      - name: feeding
        wait: {{duration: {duration}}}
"""


def child_env(password: str | None = None) -> dict[str, str]:
    """The environment of a child ``modulecontrol`` process: this very package first on
    its path (a test of a working tree tests that tree), unbuffered output, and the
    password ``user add`` reads instead of a prompt."""
    import modulecontrol

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if password is not None:
        env["MODULECONTROL_PASSWORD"] = password
    root = str(Path(modulecontrol.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def serve_folder(folder: Path, recipes: Mapping[str, str], user: str, password: str,
                 role: str = "engineer") -> Path:
    """``folder/recipes/NAME.yaml`` for each recipe text, and ``user`` (with ``role``) in
    ``folder/line.db``; returns the database path."""
    (folder / "recipes").mkdir(parents=True, exist_ok=True)
    for name, text in recipes.items():
        (folder / "recipes" / f"{name}.yaml").write_text(text, encoding="utf-8")
    db = folder / "line.db"
    subprocess.run([sys.executable, "-m", "modulecontrol.cli", "user", "add", user, "--role",
                    role, "--db", str(db)], env=child_env(password), check=True,
                   capture_output=True, timeout=120)
    return db


class ServeProcess:
    """``modulecontrol serve PLANT --simulate`` in a process of its own, on a free loopback
    port, with ``folder/line.db`` and ``folder/recipes``; ready (its URL read from its
    ready line) when constructed. ``t_start``/``t_ready``: perf_counter at the spawn and at
    the ready line. End it with :meth:`end` (``SIGKILL`` leaves the plant running)."""

    def __init__(self, folder: Path, plant: Path, *, speed: float = 60.0,
                 startup_timeout: float = 180.0) -> None:
        self.folder = folder
        self.t_start = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modulecontrol.cli", "serve", str(plant), "--simulate",
             "--speed", f"{speed:g}", "--port", "0", "--db", str(folder / "line.db"),
             "--recipes", str(folder / "recipes")],
            cwd=folder, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        assert self.proc.stdout is not None
        said: list[str] = []
        timer = threading.Timer(startup_timeout, self.proc.kill)  # a hung start ends
        timer.start()
        try:
            for line in self.proc.stdout:  # the ready line names the URL
                said.append(line)
                if " at http://" in line:
                    self.url = line.split(" at ", 1)[1].split()[0]
                    break
            else:
                raise RuntimeError("serve did not start:\n" + "".join(said[-30:]))
        finally:
            timer.cancel()
        self.t_ready = time.perf_counter()
        # the rest of its output is drained, so a chatty service never blocks on its pipe
        threading.Thread(target=self._drain, name="serve output", daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    @property
    def plant_pid(self) -> int:
        """The process id of the simulated plant (from ``line.db.plant``)."""
        return int(json.loads((self.folder / "line.db.plant").read_text())["pid"])

    def end(self, sig: int = signal.SIGTERM, timeout: float = 180.0) -> int:
        """Send ``sig`` (if it still runs) and wait for the exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def pid_alive(pid: int) -> bool:
    """The process runs (a zombie, exited but not reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def kill_left_plant(folder: Path) -> None:
    """Kill the simulated plant a failed test left running (``folder/line.db.plant``)."""
    state = folder / "line.db.plant"
    if state.exists():
        pid = int(json.loads(state.read_text())["pid"])
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

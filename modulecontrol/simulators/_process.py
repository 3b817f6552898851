"""The controller's side of a simulated plant in its own process (``sim serve --control``).

:func:`spawn_plant` starts the child, hands it the secret and the clock on stdin, waits for
its ready line and connects to the control channel (``_control.py``); :func:`attach_plant`
finds a plant a previous controller left running (the state file written at spawn) and
connects to it again without touching a module. Either way the result is a
:class:`PlantProcess`: the served configuration the drivers use, the plant's faults, the
channel's operations, and ``on_lost`` listeners told when the plant process has gone (the
proxies see their links fail too: a device fault for the supervision, not a crash here).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modulecontrol.clock import Clock
from modulecontrol.descriptors import PlantConfig
from modulecontrol.simulators._control import MAX_LINE
from modulecontrol.simulators._faults import FaultRecord, Scenario
from modulecontrol.simulators._serve import ServeError

__all__ = ["PlantProcess", "RemoteFaults", "attach_plant", "spawn_plant"]

_log = logging.getLogger(__name__)

READY_TIMEOUT = 120.0
"""Wall seconds a child has to import, build its models and listen (a busy CI machine)."""
CALL_TIMEOUT = 15.0


class RemoteFaults:
    """The plant's faults, over the channel: what :class:`FaultInjector` offers a test or a
    session (inject, clear, records), for a plant in another process."""

    def __init__(self, proc: PlantProcess) -> None:
        self._proc = proc
        self._listeners: list[Callable[[FaultRecord], None]] = []

    def on_record(self, listener: Callable[[FaultRecord], None]) -> None:
        self._listeners.append(listener)

    def inject(self, module: str, fault: str, **params: Any) -> None:
        """Start a fault now; its record arrives through :meth:`on_record`."""
        self._proc.send("inject", module=module, fault=fault, params=params)

    def clear(self, module: str, fault: str) -> None:
        self._proc.send("clear", module=module, fault=fault)

    def _deliver(self, msg: dict[str, Any]) -> None:
        rec = FaultRecord(float(msg["time"]), str(msg["module"]), str(msg["fault"]),
                          "end" if msg.get("phase") == "end" else "start",
                          dict(msg.get("params") or {}))
        for listener in list(self._listeners):
            listener(rec)


class PlantProcess:
    """A connected control channel to a simulated plant in another process."""

    def __init__(self, config: PlantConfig, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, pid: int,
                 child: subprocess.Popen[bytes] | None = None) -> None:
        self.config = config
        """The plant as the drivers must see it (the ports and ptys actually served)."""
        self.pid = pid
        self.faults = RemoteFaults(self)
        self.on_lost: list[Callable[[str], None]] = []
        """Called once with the reason when the plant process has gone unasked."""
        self._reader, self._writer = reader, writer
        self._child = child
        self._ids = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._read(), name="plant-channel")

    async def _read(self) -> None:
        reason = "the simulated plant process closed its control channel"
        try:
            while line := await self._reader.readline():
                msg = json.loads(line)
                if msg.get("event") == "fault":
                    self.faults._deliver(msg)
                    continue
                fut = self._pending.pop(int(msg.get("id", -1)), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except (ConnectionError, ValueError, asyncio.LimitOverrunError) as exc:
            reason = f"the control channel of the simulated plant failed: {exc}"
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(reason))
        self._pending.clear()
        if not self._stopping:
            _log.error("%s (pid %d): its modules are unreachable; the supervision treats "
                       "them as faulted", reason, self.pid)
            for listener in list(self.on_lost):
                listener(reason)

    def send(self, op: str, **args: Any) -> asyncio.Future[dict[str, Any]]:
        """Send a request; the future has its answer (raises ServeError if refused)."""
        self._ids += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if self._task.done():
            fut.set_exception(ConnectionError("the simulated plant process has gone"))
            return fut
        self._pending[self._ids] = fut
        self._writer.write((json.dumps({"id": self._ids, "op": op, **args}) + "\n").encode())
        return fut

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        """One operation of the channel (``ping``, ``clock``, ``follow``, ``pause``,
        ``resume``, ``step``, ``inject``, ``clear``, ``play``); ServeError if refused."""
        async with asyncio.timeout(CALL_TIMEOUT):
            answer = await self.send(op, **args)
        if not answer.get("ok"):
            raise ServeError(f"simulated plant: {answer.get('error')}")
        return answer

    async def follow(self, clock: Clock) -> None:
        """Have the plant read ``clock`` from now on (after a speed change, say)."""
        await self.call("follow", clock=clock.anchor())

    async def play(self, scenario: Scenario) -> None:
        await self.call("play", scenario=scenario.model_dump(mode="json"))

    @property
    def alive(self) -> bool:
        return not self._task.done()

    async def detach(self) -> None:
        """Close the channel and leave the plant running (for a controller that keeps it)."""
        self._stopping = True
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._task

    async def stop(self) -> None:
        """Stop the plant process: asked over the channel, then waited for (killed if it
        does not end within 10 s)."""
        self._stopping = True
        if self.alive:
            with contextlib.suppress(Exception):
                await self.call("stop")
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._task
        if self._child is not None:
            try:
                async with asyncio.timeout(10.0):
                    await asyncio.to_thread(self._child.wait)
            except TimeoutError:
                _log.warning("the simulated plant (pid %d) did not stop: killed", self.pid)
                self._child.kill()
                await asyncio.to_thread(self._child.wait)


async def _connect(port: int, secret: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(5.0):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=MAX_LINE)
    writer.write((json.dumps({"secret": secret, "owner": True}) + "\n").encode())
    async with asyncio.timeout(5.0):
        line = await reader.readline()
    answer = json.loads(line or b"{}")
    if not answer.get("ok"):
        writer.close()
        raise ServeError(f"the simulated plant on port {port} refused the controller: "
                         f"{answer.get('error', 'no answer')}")
    return reader, writer


async def _served_config(proc: PlantProcess, config: PlantConfig) -> PlantConfig:
    endpoints = (await proc.call("endpoints"))["endpoints"]
    modules = []
    for m in config.plant.modules:
        if m.tag in endpoints and m.endpoint is not None:
            ep = type(m.endpoint).model_validate(endpoints[m.tag])
            m = m.model_copy(update={"endpoint": ep})
        modules.append(m)
    return dataclasses.replace(config, plant=config.plant.model_copy(update={"modules": modules}))


def _plant_file(config: PlantConfig) -> str | None:
    """The plant's file, absolute; None for a plant made in code (nothing a child can read)."""
    if not config.file or not Path(config.file).is_file():
        return None
    return str(Path(config.file).resolve())


def _start_child(plant: str, hello: dict[str, Any], dt: float, pki: Path, insecure: bool,
                 log_file: Path | None) -> tuple[subprocess.Popen[bytes], Any]:
    """Start ``sim serve --control`` and wait for its ready line (blocking: in a thread)."""
    cmd = [sys.executable, "-m", "modulecontrol.cli", "sim", "serve", plant, "--control",
           "--dt", repr(dt), "--pki", str(pki.resolve())]
    if insecure:
        cmd.append("--insecure")
    with open(log_file if log_file is not None else os.devnull, "ab") as log:
        # its own session: a Ctrl-C in the controller's terminal reaches the controller,
        # which leaves the plant safe first and then stops the plant in its turn
        child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=log, start_new_session=True)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write((json.dumps(hello) + "\n").encode())
    child.stdin.close()
    with child.stdout as stdout:
        line = stdout.readline(MAX_LINE)
    try:
        return child, json.loads(line) if line else None
    except ValueError:
        return child, None


def _last_words(log_file: Path | None) -> str:
    """The child's last line of its log (its ``error: ...``), to say why it did not start."""
    if log_file is None:
        return ""
    try:
        with open(log_file, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln]
    # the console folds a long message over several lines: from its "error:" to the end
    start = max((i for i, ln in enumerate(lines) if ln.startswith("error:")),
                default=len(lines) - 1)
    return " ".join(lines[start:]).removeprefix("error: ")


def _write_state(path: Path, state: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)


async def spawn_plant(config: PlantConfig, clock: Clock, *, dt: float, pki: Path,
                      insecure: bool = False, keep: bool = False,
                      state_file: Path | None = None, log_file: Path | None = None
                      ) -> PlantProcess:
    """Start ``modulecontrol sim serve --control`` for ``config`` on ``clock``.

    ``keep`` and ``state_file`` are for the control service: the plant outlives the
    connection, and the file (owner-only: it holds the channel's secret) says where to
    reattach. The child's log goes to ``log_file`` (default: the null device), never to a
    pipe that a dead controller would break. Raises ServeError if it does not come up.
    """
    plant = await asyncio.to_thread(_plant_file, config)
    if plant is None:
        raise ServeError("a plant served in its own process is read from its file; this "
                         "plant has none (pass plant_process=False to serve it in-process)")
    secret = secrets.token_urlsafe(32)
    hello = {"secret": secret, "clock": clock.anchor(), "keep": keep}
    start = asyncio.to_thread(_start_child, plant, hello, dt, pki, insecure, log_file)
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            child, ready = await start
    except TimeoutError:
        raise ServeError(f"the simulated plant process did not start within "
                         f"{READY_TIMEOUT:g} s") from None
    if not isinstance(ready, dict) or "control" not in ready:
        child.kill()
        code = await asyncio.to_thread(child.wait)
        said = await asyncio.to_thread(_last_words, log_file)
        where = f"; see {log_file}" if log_file is not None else ""
        raise ServeError(f"{said or 'the simulated plant process did not start'} (exit code "
                         f"{code}{where})")
    try:
        reader, writer = await _connect(int(ready["control"]), secret)
    except (OSError, TimeoutError, ServeError):
        child.kill()
        await asyncio.to_thread(child.wait)
        raise
    proc = PlantProcess(config, reader, writer, int(ready["pid"]), child)
    proc.config = await _served_config(proc, config)
    if state_file is not None:
        await asyncio.to_thread(_write_state, state_file, {
            "pid": proc.pid, "control": int(ready["control"]), "secret": secret,
            "plant": plant})
    return proc


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text())
        return {"control": int(state["control"]), "secret": str(state["secret"]),
                "pid": int(state["pid"]), "plant": str(state["plant"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


async def attach_plant(config: PlantConfig, state_file: Path) -> PlantProcess | None:
    """Reconnect to the plant a previous controller left running, or None if there is none
    (no state file, a plant of another file, nobody on its port, a wrong secret).

    Nothing is written to a module: the caller reads where everything is."""
    state = await asyncio.to_thread(_read_state, state_file)
    if state is None:
        return None
    port, secret, pid = state["control"], state["secret"], state["pid"]
    if state["plant"] != await asyncio.to_thread(_plant_file, config):
        _log.warning("%s names the plant %s, not %s: not reattaching", state_file,
                     state["plant"], config.file)
        return None
    try:
        reader, writer = await _connect(port, secret)
    except (OSError, TimeoutError, ServeError, ValueError) as exc:
        _log.info("no simulated plant to reattach to at port %d: %s", port, exc)
        return None
    proc = PlantProcess(config, reader, writer, pid)
    proc.config = await _served_config(proc, config)
    return proc

"""The control channel of a simulated plant served in a process of its own.

``modulecontrol sim serve --control`` serves the plant's modules over their real protocols
and, beside them, this channel: JSON lines over TCP on 127.0.0.1, one request and one
answer per line, authenticated by a secret the controller makes for each start and hands
over on the child's stdin (never on its command line, which every user of the machine can
read). Through it the controller keeps the plant on its clock (``follow``: the clock's
anchor, :meth:`~modulecontrol.clock.Clock.anchor`), pauses, steps and resumes the models,
injects faults and stops the process; the plant pushes its fault records back as
``{"event": "fault", ...}`` lines. Values and commands never travel here: the controller
talks to the modules only over Modbus, OPC UA and serial, as it would to hardware.

Why a process of its own: the controller then measures only itself (its CPU, its latency),
a simulator that crashes is a device fault the supervision handles rather than a crash of
the controller, and a controller killed with ``kill -9`` finds the plant still running and
reattaches to it (``keep``: the plant outlives the connection of its controller).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from modulecontrol.clock import Clock
from modulecontrol.simulators._faults import FaultRecord, Scenario
from modulecontrol.simulators._serve import PlantServer

__all__ = ["MAX_LINE", "ControlServer", "fault_message"]

_log = logging.getLogger(__name__)

MAX_LINE = 1 << 20
"""Longest request or answer line (the endpoints of a large plant fit; a flood does not)."""
_HELLO_TIMEOUT = 5.0


def fault_message(rec: FaultRecord) -> dict[str, Any]:
    """A fault record as the channel pushes it."""
    return {"event": "fault", "time": rec.time, "module": rec.module, "fault": rec.fault,
            "phase": rec.event, "params": {k: v for k, v in rec.params.items()
                                           if isinstance(v, str | int | float | bool)}}


class ControlServer:
    """Serve the control channel of ``server``'s plant until :attr:`stopped` is set.

    ``keep``: when the controller's connection (the one whose hello says ``owner``) drops
    without a ``stop``, keep serving for a controller that reattaches (the control
    service); otherwise stop, so a plant started by ``modulecontrol run`` never outlives
    it as an orphan.
    """

    def __init__(self, server: PlantServer, clock: Clock, secret: str, *,
                 keep: bool) -> None:
        self.server = server
        self.plant = server.plant
        self.clock = clock
        self._secret = secret.encode()
        self.keep = keep
        self.stopped = asyncio.Event()
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._listener: asyncio.Server | None = None
        self._scenario: asyncio.Task[None] | None = None
        self._paused = False
        self.plant.faults.on_record(self._push_fault)

    async def start(self) -> int:
        """Listen on a free loopback port; returns it."""
        self._listener = await asyncio.start_server(self._serve, "127.0.0.1", 0,
                                                    limit=MAX_LINE)
        self.port = int(self._listener.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._scenario is not None:
            await self.plant.faults.cancel(self._scenario)
        if self._listener is not None:
            self._listener.close()
        for w in list(self._writers):
            w.close()

    def _push_fault(self, rec: FaultRecord) -> None:
        line = (json.dumps(fault_message(rec)) + "\n").encode()
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.write(line)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        owner = False
        try:
            try:
                async with asyncio.timeout(_HELLO_TIMEOUT):
                    line = await reader.readline()
                hello = json.loads(line)
                given = str(hello.get("secret", "")).encode()
            except (TimeoutError, ValueError, AttributeError, asyncio.LimitOverrunError):
                given = b""
            if not hmac.compare_digest(given, self._secret):
                _log.warning("control channel: a connection without the right secret was "
                             "refused")
                writer.write(b'{"ok": false, "error": "not authenticated"}\n')
                return
            owner = bool(hello.get("owner"))
            self._writers.add(writer)
            writer.write((json.dumps({"ok": True, "time": self.plant.time}) + "\n").encode())
            while not self.stopped.is_set():
                line = await reader.readline()
                if not line:
                    break
                answer = await self._answer(line)
                writer.write((json.dumps(answer) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()
            if owner and not self.keep and not self.stopped.is_set():
                _log.warning("control channel: the controller has gone; stopping the plant")
                self.stopped.set()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            rid = req.get("id")
            op = str(req.get("op"))
        except (ValueError, AttributeError):
            return {"ok": False, "error": "not a JSON object"}
        handler = self._ops.get(op)
        if handler is None:
            return {"id": rid, "ok": False,
                    "error": f"unknown op '{op}' (known: {', '.join(sorted(self._ops))})"}
        try:
            result = await handler(self, req)
        except (KeyError, ValueError, TypeError) as exc:
            return {"id": rid, "ok": False, "error": f"{op}: {exc}"}
        return {"id": rid, "ok": True, **result}

    # -- operations ----------------------------------------------------------------------
    async def _ping(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"time": self.plant.time, "paused": self._paused}

    async def _clock(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"clock": self.clock.anchor()}

    async def _endpoints(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"endpoints": {tag: ep.model_dump(mode="json")
                              for tag, ep in self.server.endpoints.items()}}

    async def _follow(self, req: dict[str, Any]) -> dict[str, Any]:
        self.clock.adopt(req["clock"])
        if not self._paused:  # the stepping task measures from its own start: restart it
            await self.plant.stop()
            self.plant.start()
        return {"clock": self.clock.anchor()}

    async def _pause(self, req: dict[str, Any]) -> dict[str, Any]:
        await self.plant.stop()
        self._paused = True
        return {"time": self.plant.time}

    async def _resume(self, req: dict[str, Any]) -> dict[str, Any]:
        self._paused = False
        self.plant.start()
        return {"time": self.plant.time}

    async def _step(self, req: dict[str, Any]) -> dict[str, Any]:
        if not self._paused:
            raise ValueError("pause the plant first: a running plant steps on its clock")
        n = int(req.get("n", 1))
        if not 1 <= n <= 100_000:
            raise ValueError(f"n must be 1..100000, not {n}")
        self.plant.step(n)
        return {"time": self.plant.time}

    async def _inject(self, req: dict[str, Any]) -> dict[str, Any]:
        rec = self.plant.faults.inject(str(req["module"]), str(req["fault"]),
                                       **dict(req.get("params") or {}))
        return fault_message(rec)

    async def _clear(self, req: dict[str, Any]) -> dict[str, Any]:
        rec = self.plant.faults.clear(str(req["module"]), str(req["fault"]))
        return {"cleared": rec is not None}

    async def _play(self, req: dict[str, Any]) -> dict[str, Any]:
        scenario = Scenario.model_validate(req["scenario"])
        if self._scenario is not None:
            await self.plant.faults.cancel(self._scenario)
        self._scenario = self.plant.faults.start_scenario(scenario)
        return {}

    async def _stop(self, req: dict[str, Any]) -> dict[str, Any]:
        self.stopped.set()
        return {}

    _ops: ClassVar[dict[str, Callable[[ControlServer, dict[str, Any]], Any]]] = {
        "ping": _ping, "clock": _clock, "endpoints": _endpoints, "follow": _follow,
        "pause": _pause, "resume": _resume, "step": _step, "inject": _inject,
        "clear": _clear, "play": _play, "stop": _stop,
    }
    """The channel's operations, by name."""

"""A small rig per transport for the fault matrix: one simulated module (P1) behind its real
protocol, a proxy, an orchestrator running a tiny recipe and a historian, all in one Session.

Why a whole session and not a driver alone: the reactions under test cross the layers
(driver timeout -> proxy fault -> orchestrator hold -> proxy safe state on link return ->
orchestrator resume) and the records are written by the session's wiring. A run per
transport (faults one after the other) keeps the matrix to a few seconds per transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modulecontrol.clock import Clock
from modulecontrol.descriptors import PlantConfig
from modulecontrol.simulators import PlantServer, SimulatedPlant

TIMEOUT = 0.3
"""Endpoint timeout of P1 (s): every detection bound is twice this."""

STALE_AFTER = 20.0
"""Simulated seconds a measured ``signal`` may stay frozen before P1 is faulted (the frozen
cell); its simulated sensor has measurement noise, as a real one, so it never freezes by
itself."""
_NOISE = {"Pressure": "0.05 bar", "T": "0.05 K"}

_SINK = ("  - {tag: W1, type: DivertValve, simulated: true,\n"
         "     endpoint: {protocol: modbus-tcp, port: 15029, unit_id: 2}}\n")
_EP = f"timeout: {TIMEOUT}"


@dataclass(frozen=True)
class Transport:
    name: str
    label: str
    module_type: str
    endpoint: str
    service: str
    procedure: str
    parameters: str
    signal: str
    """The measured assembly the sensor faults act on."""
    trip: str
    """Interlock condition a stuck (implausible) value of ``signal`` violates."""
    stuck_value: float
    write_tag: str
    """A non-idempotent tag written during the slow fault (server-side execution count)."""
    feed: bool = True


TRANSPORTS: dict[str, Transport] = {
    "modbus-tcp": Transport(
        "modbus-tcp", "Modbus TCP", "HPLCPump",
        f"{{protocol: modbus-tcp, port: 15021, {_EP}, reconnect_max_delay: 0.2}}",
        "Dosing", "Continuous", "{FlowSP: 1}", "Pressure", "P1.Pressure > 50 bar", 60.0,
        "TotalReset.VMan"),
    "modbus-rtu": Transport(
        "modbus-rtu", "Modbus RTU (pty)", "HPLCPump",
        f"{{protocol: modbus-rtu, port: /dev/ttyRS485, baudrate: 115200, {_EP}, "
        "reconnect_max_delay: 0.2}",
        "Dosing", "Continuous", "{FlowSP: 1}", "Pressure", "P1.Pressure > 50 bar", 60.0,
        "TotalReset.VMan"),
    "opcua": Transport(
        "opcua", "OPC UA", "CoilReactor",
        f'{{protocol: opcua, url: "opc.tcp://127.0.0.1:14841/p1", security_policy: "None", '
        f'security_mode: "None", {_EP}, sampling_interval: 0.05}}',
        "Tempering", "Hold", "{TempSP: 40}", "T", "P1.T > 100 degC", 120.0,
        "Tempering.CommandExt", feed=False),
    "serial": Transport(
        "serial", "Serial ASCII (pty)", "SyringePump",
        f"{{protocol: serial, port: /dev/ttyUSB0, {_EP}}}",
        "Dosing", "Continuous", "{FlowSP: 1}", "Pressure", "P1.Pressure > 50 bar", 60.0,
        "Run.VMan"),
}


def plant_text(t: Transport) -> str:
    mods = ""
    conns = ""
    if not t.feed:  # a reactor needs something flowing in
        mods += ("  - tag: P0\n    type: HPLCPump\n    simulated: true\n"
                 "    endpoint: {protocol: modbus-tcp, port: 15028, unit_id: 3}\n"
                 "    overrides: {simulator: {feed: {THF: 12.33 mol/L}}}\n")
        conns += "  - {from: P0.outlet, to: P1.inlet, volume: 1 mL}\n"
    mods += (f"  - tag: P1\n    type: {t.module_type}\n    simulated: true\n"
             f"    endpoint: {t.endpoint}\n")
    feed = "simulator: {feed: {THF: 12.33 mol/L}}, " if t.feed else ""
    watch = f"{{{t.signal}: {{stale_after: {STALE_AFTER:g} s}}}}"
    mods += (f"    overrides: {{{feed}assemblies: {watch}, "
             f"simulator_noise: {{{t.signal}: {_NOISE[t.signal]}}}}}\n")
    conns += "  - {from: P1.outlet, to: W1.inlet, volume: 1 mL}\n"
    return f"kind: Plant\nname: fault-rig\nmodules:\n{mods}{_SINK}connections:\n{conns}"


def recipe_text(t: Transport) -> str:
    return f"""\
kind: Recipe
name: fault-rig
version: 1.0.0
plant: plant.yaml
interlocks:
  - {{name: implausible, when: "{t.trip}", action: hold, resume: auto}}
procedure:
  - name: main
    steps:
      - name: start
        service: {{module: P1, service: {t.service}, procedure: {t.procedure},
                   parameters: {t.parameters}}}
      - name: run
        wait: {{duration: 20 h}}
"""


class TcpRelay:
    """A TCP relay between a client and a server on 127.0.0.1 that can drop the link.

    ``cut()`` closes every open connection and refuses new ones (the cable pulled);
    ``restore()`` accepts again. The client sees exactly what a lost link looks like.
    ``garbage`` replaces what the server sends with random bytes, so a client gets replies
    that are not replies inside a session it has already opened (a protocol stack such as
    asyncua always frames its replies, so the server itself cannot be made to do that).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
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

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
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

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)


@dataclass
class Rig:
    """What the session's simulation factory returns (``config``, ``plant``, ``stop``)."""

    transport: Transport
    server: PlantServer
    config: PlantConfig
    relay: TcpRelay | None = None
    writes: list[tuple[str, str, Any]] = field(default_factory=list)
    """Every write the simulated P1 executed (server side): (assembly, attribute, value)."""

    @property
    def plant(self) -> SimulatedPlant:
        return self.server.plant

    def cut(self) -> None:
        if self.relay is not None:
            self.relay.cut()
        elif self.transport.name == "serial":
            self.server.serial["P1"].vanish()
        else:
            next(iter(self.server.rtu.values())).vanish()

    def restore(self) -> None:
        if self.relay is not None:
            self.relay.restore()
        elif self.transport.name == "serial":
            self.server.serial["P1"].reappear()
        else:
            next(iter(self.server.rtu.values())).reappear()

    async def stop(self) -> None:
        if self.relay is not None:
            await self.relay.stop()
        await self.server.stop()


async def start_rig(t: Transport, cfg: PlantConfig, clock: Clock, folder: Path) -> Rig:
    """Serve the plant on free ports and route P1 so its link can be pulled."""
    plant = SimulatedPlant.from_config(cfg, clock, dt=1.0)
    server = PlantServer(plant, free_ports=True)
    await server.start()
    served = server.served_config()
    relay: TcpRelay | None = None
    ep = served.instance("P1").endpoint
    assert ep is not None
    if t.name == "modbus-tcp":
        relay = TcpRelay(int(ep.port))  # type: ignore[union-attr]
        await relay.start()
        new_ep = ep.model_copy(update={"port": relay.port})
    elif t.name == "opcua":
        url: str = ep.url  # type: ignore[union-attr]
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        relay = TcpRelay(port)
        await relay.start()
        new_ep = ep.model_copy(update={"url": url.replace(f":{port}/", f":{relay.port}/")})
    else:  # a symlink that survives pulling the adapter out and plugging it back in
        link = folder / "ttyP1"
        dev: Any = server.serial["P1"] if t.name == "serial" else next(iter(server.rtu.values()))
        dev.link = link
        dev.vanish()
        dev.reappear()
        new_ep = ep.model_copy(update={"port": str(link)})
    server.endpoints["P1"] = new_ep
    rig = Rig(t, server, server.served_config(), relay)
    view = plant.view("P1")
    original = view.write

    def counting_write(assembly: str, attribute: str | None, value: Any) -> bool:
        rig.writes.append((assembly, str(attribute), value))
        result: bool = original(assembly, attribute, value)
        return result

    view.write = counting_write  # type: ignore[method-assign]
    if "P1" in server.peas:
        pea, _ = server.peas["P1"]

        async def on_write(tag: str, value: Any) -> None:
            obj, _, attr = tag.partition(".")
            rig.writes.append((obj, attr, value))

        pea.on_write(on_write)
    return rig

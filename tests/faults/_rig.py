"""A small rig per transport for the fault matrix: one simulated module (P1) behind its real
protocol, a proxy, an orchestrator running a tiny recipe and a historian, all in one Session.

Why a whole session and not a driver alone: the reactions under test cross the layers
(driver timeout -> proxy fault -> orchestrator hold -> proxy safe state on link return ->
orchestrator resume) and the records are written by the session's wiring. A run per
transport (faults one after the other) keeps the matrix to a few seconds per transport.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modulecontrol.clock import Clock
from modulecontrol.descriptors import PlantConfig
from modulecontrol.simulators import FaultInjector, PlantServer, SimulatedPlant
from modulecontrol.testing import TcpRelay

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

    @property
    def faults(self) -> FaultInjector:
        """The plant's fault injection, as every simulation offers it."""
        return self.server.plant.faults

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
    server = PlantServer(plant, free_ports=True, insecure=True)  # the OPC UA rig says None
    await server.start()
    served = server.served_config()
    relay: TcpRelay | None = None
    ep = served.instance("P1").endpoint
    assert ep is not None
    if t.name == "modbus-tcp":
        relay = TcpRelay(int(ep.port))  # type: ignore[attr-defined]
        await relay.start()
        new_ep = ep.model_copy(update={"port": relay.port})
    elif t.name == "opcua":
        url: str = ep.url  # type: ignore[attr-defined]
        relay = TcpRelay.for_url(url)
        await relay.start()
        new_ep = ep.model_copy(update={"url": relay.relayed(url)})
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

"""A module type served by its own simulator, for the conformance kit.

Why: a descriptor-only device (a module type YAML with a register map, no code) has no test
device of its own: its simulator is the model its ``simulator:`` section names, served over
the protocol of the endpoint exactly as ``modulecontrol sim serve`` serves a plant. So the
kit serves a one-module plant and connects the installed driver of that protocol to it; the
register map under test is then read and written through the real driver and the real
simulated device, and a map that points at a register the device does not serve fails.

TCP endpoints (Modbus TCP, OPC UA) are reached through a :class:`TcpRelay`, which gives the
kit's ``stall`` and ``outage`` tests a link to hold back or cut.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from modulecontrol.clock import Clock
from modulecontrol.descriptors import (
    ModbusTcpEndpoint,
    ModuleInstance,
    ModuleType,
    OpcUaEndpoint,
    PlantConfig,
    installed_types,
    load_module_type,
    plant_from_doc,
    transport_of,
)
from modulecontrol.drivers import Driver, load_driver
from modulecontrol.simulators import PlantServer, SimulatedPlant
from modulecontrol.testing.relay import TcpRelay
from modulecontrol.yamlio import dump_yaml, load_yaml_text

__all__ = ["ServedModule", "SimulatedDevice", "resolve_module_type"]


@runtime_checkable
class SimulatedDevice(Protocol):
    """What the kit's ``running_device`` fixture starts before a test and stops after it:
    any simulator with ``async start()`` and ``async stop()``."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def resolve_module_type(module_type: ModuleType | str | Path) -> ModuleType:
    """A module type given as itself, as a YAML file, or by the name of an installed type
    (built-in or from a plug-in package registered by ``modulecontrol_wiring``)."""
    if isinstance(module_type, ModuleType):
        return module_type
    text = str(module_type)
    if isinstance(module_type, Path) or text.endswith((".yaml", ".yml")):
        return load_module_type(text)
    return installed_types().get(text)


class ServedModule:
    """One module of type ``module_type`` served by its simulator on ``endpoint``.

    ``endpoint`` is what a plant writes (``{protocol: modbus-tcp, port: 502, unit_id: 1}``);
    the port is replaced by a free one, and the module is simulated with its type's
    ``simulator:`` section, stepped every ``dt`` seconds of wall time. After :meth:`start`,
    :attr:`instance` is the module as a plant would declare it at the served address
    (through :attr:`relay` for TCP endpoints) and :meth:`driver` makes a fresh driver for it.
    """

    def __init__(self, module_type: ModuleType | str | Path, endpoint: Mapping[str, Any], *,
                 tag: str = "M1", dt: float = 0.1, pki: str | Path | None = None) -> None:
        self.module_type = resolve_module_type(module_type)
        self.endpoint = dict(endpoint)
        self.tag = tag
        self.dt = dt
        self.pki = pki
        self.relay: TcpRelay | None = None
        """The relay in front of a TCP device (None for a serial line or pty)."""
        self.config: PlantConfig | None = None
        self._server: PlantServer | None = None
        self._instance: ModuleInstance | None = None

    def plant(self) -> PlantConfig:
        """The one-module plant that is served (validated as any plant is). Its required
        outlets end in a waste sink; a type with a required inlet cannot stand alone and is
        refused with the plant's own error (serve it in a plant of yours instead)."""
        library = installed_types()
        if self.module_type.name not in library:
            library.add(self.module_type, "<conformance kit>")
        doc: dict[str, Any] = {
            "kind": "Plant", "name": "conformance-kit",
            "modules": [{"tag": self.tag, "type": self.module_type.name,
                         "simulated": True, "endpoint": self.endpoint}]}
        outlets = [p.name for p in self.module_type.ports if p.required and p.direction == "out"]
        if outlets:  # what leaves the module goes to waste (a plant may end in any sink)
            doc["sinks"] = {f"{self.tag}.{name}": "waste" for name in outlets}
        return plant_from_doc(load_yaml_text(dump_yaml(doc), "<conformance kit plant>"),
                              library)

    @property
    def instance(self) -> ModuleInstance:
        if self._instance is None:
            raise RuntimeError("start the served module first")
        return self._instance

    def driver(self) -> Driver:
        """A fresh, unconnected driver of the endpoint's protocol for the served module,
        the installed driver of that transport (as a plant's proxy would load it)."""
        assert self.config is not None
        cls = load_driver(transport_of(self.instance.endpoint.protocol)
                          if self.instance.endpoint is not None else "")
        driver: Driver = cls(self.config.type_of(self.tag), self.instance)
        return driver

    async def start(self) -> None:
        self.config = self.plant()
        plant = SimulatedPlant.from_config(self.config, Clock.realtime(), dt=self.dt)
        server = PlantServer(plant, free_ports=True, pki=self.pki)
        await server.start()
        self._server = server
        instance = server.served_config().instance(self.tag)
        ep = instance.endpoint
        try:
            if isinstance(ep, ModbusTcpEndpoint):
                self.relay = TcpRelay(ep.port, ep.host)
                await self.relay.start()
                ep = ep.model_copy(update={"host": "127.0.0.1", "port": self.relay.port})
            elif isinstance(ep, OpcUaEndpoint):
                self.relay = TcpRelay.for_url(ep.url)
                await self.relay.start()
                ep = ep.model_copy(update={"url": self.relay.relayed(ep.url)})
        except BaseException:
            await self.stop()
            raise
        self._instance = instance.model_copy(update={"endpoint": ep})

    async def stop(self) -> None:
        relay, self.relay = self.relay, None
        if relay is not None:
            with contextlib.suppress(Exception):
                await relay.stop()
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    async def __aenter__(self) -> ServedModule:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

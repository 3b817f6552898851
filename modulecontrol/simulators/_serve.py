"""Serve every simulated module of a plant on its endpoint, over the real protocol.

Ports: the plant's fixed ports are used as written, shifted by ``port_offset``, replaced
per module by ``ports``, or (``free_ports=True``, for tests) chosen free by the OS. Serial
modules get a pseudo-terminal. :attr:`PlantServer.endpoints` and :meth:`served_config` tell
the caller where each module really is, so drivers and proxies connect to the right place.

OPC UA modules are served secure by default (Basic256Sha256 SignAndEncrypt, users with
passwords, certificates and passwords generated at first use into ``pki``: see
:class:`~modulecontrol.simulators._pki.Credentials`); the served endpoints carry what a
client needs to log in (its certificate, the server's certificate to pin, the user name and
the password's file or variable), so a simulated run connects without any setup. Without
security only with ``insecure=True`` (``--insecure``), which logs a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modulecontrol.clock import Clock
from modulecontrol.descriptors import (
    Endpoint,
    ModbusRtuEndpoint,
    ModbusTcpEndpoint,
    OpcUaEndpoint,
    PlantConfig,
    SerialEndpoint,
)
from modulecontrol.simulators._faults import FaultInjector, FaultRecord
from modulecontrol.simulators._modbus_server import ModbusRtuSlave, ModbusTcpSlave, ViewStore
from modulecontrol.simulators._opcua_server import PeaRuntime, pea_logins, serve_pea
from modulecontrol.simulators._pki import Credentials
from modulecontrol.simulators._plant import SimulatedPlant
from modulecontrol.simulators._ports import astart_on_free_port
from modulecontrol.simulators._serial import serial_emulator, sync_faults
from modulecontrol.simulators._view import ModuleView
from modulecontrol.simulators.opcua_pea import PeaServer, Refusal
from modulecontrol.simulators.syringe_serial import SyringeSerialEmulator

__all__ = ["PlantServer", "ServeError", "ServedEndpoint"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_PTY_LINE: dict[str, Any] = {"parity": "N", "bytesize": 8}
"""Line settings a served pseudo-terminal is opened with, whatever the plant's line says.

A pty moves bytes, not characters on a wire: Linux keeps it at 8 data bits without parity and
``tcsetattr`` fails with EINVAL when a client asks for parity or 7-bit characters (the Modbus
RTU default 8E1 included), so a driver could never open a simulated RTU line. Baud rate and
stop bits are accepted (and ignored), so they stay as configured."""
_LINE_SETTINGS = ("baudrate", "bytesize", "parity", "stopbits")
_log = logging.getLogger(__name__)


class ServeError(RuntimeError):
    """A module cannot be served as configured; the message says how to fix it."""


@dataclass(frozen=True)
class ServedEndpoint:
    """Where one simulated module listens."""

    tag: str
    type: str
    protocol: str
    address: str
    """``host:port (unit n)``, an ``opc.tcp://`` URL, or a pty path."""
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The same for programs: ``host``/``port``/``unit`` (Modbus TCP), ``device``/``unit``
    (Modbus RTU), ``device`` (serial), ``url`` (OPC UA), and ``security`` for every module
    (``none``, or the OPC UA policy and mode)."""

    def as_dict(self) -> dict[str, Any]:
        """One JSON object: ``tag``, ``type``, ``protocol`` and :attr:`fields`."""
        return {"tag": self.tag, "type": self.type, "protocol": self.protocol, **self.fields}


class PlantServer:
    """Protocol servers for a :class:`SimulatedPlant` (and the task stepping it)."""

    def __init__(self, plant: SimulatedPlant, *, port_offset: int = 0,
                 ports: Mapping[str, int] | None = None, free_ports: bool = False,
                 allow_remote: bool = False, pki: str | Path | None = None,
                 publish_interval: float = 0.1, audit_db: str | Path | None = None,
                 insecure: bool = False) -> None:
        self.plant = plant
        self.port_offset = port_offset
        self.ports = dict(ports or {})
        self.free_ports = free_ports
        self.allow_remote = allow_remote
        self.pki = Path(pki) if pki is not None else None
        """Folder of the generated credentials; None: a temporary folder for this server's
        lifetime (a library user or a test leaves nothing behind)."""
        self.insecure = insecure
        """Serve OPC UA without security (``--insecure``): anonymous sessions read only."""
        self._tmp_pki: str | None = None
        self.publish_interval = publish_interval
        self.endpoints: dict[str, Endpoint] = {}
        """Tag -> the endpoint the module is really served on."""
        self.modbus: dict[tuple[str, int], ModbusTcpSlave] = {}
        self.peas: dict[str, tuple[PeaServer, PeaRuntime]] = {}
        self.serial: dict[str, SyringeSerialEmulator] = {}
        self.rtu: dict[str, ModbusRtuSlave] = {}
        """Plant serial port of a Modbus RTU line -> its pty server."""
        self._publisher: asyncio.Task[None] | None = None
        self.audit_db = Path(audit_db) if audit_db is not None else None
        """Records database whose audit trail receives refused logins and writes."""
        self._audit: Any = None
        plant.faults.on_record(self._on_fault)

    # -- helpers ----------------------------------------------------------------------------
    def _host(self, tag: str, host: str) -> str:
        if host not in _LOOPBACK and not self.allow_remote:
            raise ServeError(
                f"{tag}: refusing to serve a simulator on {host}; simulated modules listen on "
                "127.0.0.1 unless you pass allow_remote=True (--allow-remote)")
        return "127.0.0.1" if host == "localhost" else host

    def _port(self, tag: str, port: int) -> int:
        """The port ``tag`` is served on; 0 under :attr:`free_ports` (the server binds a
        port of the OS's choice, or, if it must be told one, tries free ones)."""
        if tag in self.ports:
            return self.ports[tag]
        if self.free_ports:
            return 0
        new = port + self.port_offset
        if not 1 <= new <= 65535:
            raise ServeError(f"{tag}: port {port} + offset {self.port_offset} is out of range")
        return new

    def _on_refused(self, refusal: Refusal) -> None:
        """Record a refused login or write in the audit trail (synchronously: a refusal is
        rare, and an entry must be committed before the client hears the answer)."""
        _log.warning("%s: %s by %s: %s", refusal.object, refusal.action, refusal.user,
                     refusal.reason)
        if self.audit_db is None:
            return
        if self._audit is None:
            from modulecontrol.records import AuditTrail

            self._audit = AuditTrail(self.audit_db)
        value = refusal.value if isinstance(refusal.value, bool | int | float | str) else None
        self._audit.append(refusal.user, refusal.action, refusal.object, new_value=value,
                           reason=refusal.reason)

    def _on_fault(self, rec: FaultRecord) -> None:
        emu = self.serial.get(rec.module)
        if emu is not None:
            sync_faults(self.plant.view(rec.module).transport, emu.faults)
        if rec.module in self.peas:
            _, runtime = self.peas[rec.module]
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(runtime.publish_values())

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every server, then the plant's stepping task; on any failure, stop what was
        started and raise."""
        # the models' first-step work (compiling the reactors' kernels: seconds, once per
        # machine) before anyone can connect, and off the event loop
        await asyncio.to_thread(self.plant.flowsheet.prepare)
        try:
            await self._start_servers()
        except BaseException:
            await self.stop()
            raise
        self.plant.start()
        self._publisher = asyncio.get_running_loop().create_task(self._publish(),
                                                                 name="sim-publish")

    def _credentials(self) -> Credentials:
        if self.pki is None and self._tmp_pki is None:
            self._tmp_pki = tempfile.mkdtemp(prefix="modulecontrol-pki-")
        return Credentials(self.pki if self.pki is not None else Path(str(self._tmp_pki)))

    def _client_endpoint(self, tag: str, ep: OpcUaEndpoint, url: str) -> OpcUaEndpoint:
        """The endpoint a driver uses to reach the served PEA ``tag``: the real URL, and the
        client's credentials wherever the plant left them open (the plant's own win)."""
        creds = self._credentials()
        user, login = next(iter(pea_logins(tag, ep, creds).items()))  # the controller
        update: dict[str, Any] = {"url": url, "username": user}
        if login.password_file is not None:
            update["password_file"] = str(login.password_file)
        if self.insecure:
            update.update(security_policy="None", security_mode="None")
        else:
            if ep.certificate is None or ep.private_key is None:
                cert, key = creds.client_certificate()
                update.update(certificate=str(cert), private_key=str(key))
            if ep.server_certificate is None and not ep.trust_list:
                update["server_certificate"] = str(creds.server_certificate(tag)[0])
        return ep.model_copy(update=update)

    async def _start_servers(self) -> None:
        cfg = self.plant.config
        modbus_units: dict[tuple[str, int, bool], dict[int, ModuleView]] = {}
        """(host, port, free) -> unit id -> module. A free port (free_ports, no port given)
        binds 0 and the key's port is the plant's: modules sharing a port keep sharing one
        server."""
        rtu_units: dict[str, dict[int, tuple[str, ModuleView]]] = {}
        for tag, view in self.plant.views.items():
            ep = cfg.instance(tag).endpoint
            if ep is None:
                continue
            if isinstance(ep, ModbusTcpEndpoint):
                host = self._host(tag, ep.host)
                port = self._port(tag, ep.port)
                units = modbus_units.setdefault((host, port or ep.port, not port), {})
                if ep.unit_id in units:
                    raise ServeError(f"{tag}: unit id {ep.unit_id} on {host}:"
                                     f"{port or ep.port} is already used by "
                                     f"{units[ep.unit_id].tag}")
                units[ep.unit_id] = view
                # the port is known once its server listens (below); the entry keeps the
                # plant's order of modules in endpoints
                self.endpoints[tag] = ep.model_copy(update={"host": host, "port": port})
            elif isinstance(ep, ModbusRtuEndpoint):
                line = rtu_units.setdefault(ep.port, {})
                if ep.unit_id in line:
                    raise ServeError(f"{tag}: unit id {ep.unit_id} on {ep.port} is already "
                                     f"used by {line[ep.unit_id][0]}")
                if line:  # the pty is opened 8N1 for all: check the plant's line here
                    other, _ = next(iter(line.values()))
                    first_ep = cfg.instance(other).endpoint
                    for f in _LINE_SETTINGS:
                        if getattr(ep, f) != getattr(first_ep, f):
                            raise ServeError(
                                f"{tag}: {f} {getattr(ep, f)} on {ep.port} differs from "
                                f"{getattr(first_ep, f)} of {other}; devices on one line "
                                "share its settings")
                line[ep.unit_id] = (tag, view)
            elif isinstance(ep, OpcUaEndpoint):
                m = re.match(r"^opc\.tcp://([^/:\s]+)(?::(\d+))?(/.*)?$", ep.url)
                assert m is not None  # the endpoint model validated the URL
                host = self._host(tag, m.group(1))
                port = self._port(tag, int(m.group(2) or 4840))
                path = m.group(3) or ""

                async def serve(port: int, view: ModuleView = view, ep: OpcUaEndpoint = ep,
                                host: str = host, path: str = path
                                ) -> tuple[PeaServer, PeaRuntime]:
                    return await serve_pea(view, ep, host, port, path,
                                           self._credentials().folder,
                                           on_refused=self._on_refused,
                                           insecure=self.insecure)

                # asyncua must be told its port before it binds: a free one, retried if taken
                pea, runtime = await (serve(port) if port else
                                      astart_on_free_port(serve, host))
                self.peas[tag] = (pea, runtime)
                self.endpoints[tag] = self._client_endpoint(tag, ep, pea.url)
            elif isinstance(ep, SerialEndpoint):
                emu = serial_emulator(view)
                if ep.address is not None:
                    emu.pumps = {ep.address: emu.pumps[0]}
                emu.checksum = ep.checksum
                emu.request_terminator = ep.write_terminator.encode()
                emu.reply_terminator = ep.read_terminator.encode()
                await emu.start()
                self.serial[tag] = emu
                self.endpoints[tag] = ep.model_copy(update={"port": emu.port, **_PTY_LINE})
            else:
                raise ServeError(f"{tag}: serving {ep.protocol} is not supported; simulate it "
                                 "over modbus-tcp, modbus-rtu, opcua or serial")
        for (host, port, free), units in modbus_units.items():
            server = ModbusTcpSlave(ViewStore(units), host, 0 if free else port)
            await server.start()  # binding 0: the port the OS picked is server.port
            self.modbus[(host, server.port)] = server
            for view in units.values():
                self.endpoints[view.tag] = self.endpoints[view.tag].model_copy(
                    update={"port": server.port})
        for plant_port, line in rtu_units.items():
            rtu = ModbusRtuSlave(ViewStore({uid: v for uid, (_, v) in line.items()}))
            await rtu.start()
            self.rtu[plant_port] = rtu
            for tag, _ in line.values():
                ep = cfg.instance(tag).endpoint
                assert ep is not None
                self.endpoints[tag] = ep.model_copy(update={"port": rtu.port, **_PTY_LINE})

    async def _publish(self) -> None:
        while True:
            for _, runtime in self.peas.values():
                await runtime.publish_values()
            await asyncio.sleep(self.publish_interval)

    async def stop(self) -> None:
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
            self._publisher = None
        await self.plant.stop()
        for server in self.modbus.values():
            with contextlib.suppress(Exception):
                await server.stop()
        self.modbus.clear()
        for rtu in self.rtu.values():
            with contextlib.suppress(Exception):
                await rtu.stop()
        self.rtu.clear()
        for pea, runtime in self.peas.values():
            with contextlib.suppress(Exception):
                await runtime.close()
            with contextlib.suppress(Exception):
                await pea.stop()
        self.peas.clear()
        for emu in self.serial.values():
            with contextlib.suppress(Exception):
                await emu.stop()
        self.serial.clear()
        if self._audit is not None:
            self._audit.close()
            self._audit = None
        if self._tmp_pki is not None:
            shutil.rmtree(self._tmp_pki, ignore_errors=True)
            self._tmp_pki = None

    async def __aenter__(self) -> PlantServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- where things are -------------------------------------------------------------------
    def served_config(self) -> PlantConfig:
        """The plant configuration with every served module's real endpoint."""
        cfg = self.plant.config
        modules = [m.model_copy(update={"endpoint": self.endpoints[m.tag]})
                   if m.tag in self.endpoints else m for m in cfg.plant.modules]
        plant = cfg.plant.model_copy(update={"modules": modules})
        return dataclasses.replace(cfg, plant=plant)

    def table(self) -> list[ServedEndpoint]:
        out: list[ServedEndpoint] = []
        for tag, ep in self.endpoints.items():
            typ = self.plant.config.instance(tag).type
            fields: dict[str, Any]
            if isinstance(ep, ModbusTcpEndpoint):
                addr = f"{ep.host}:{ep.port} (unit {ep.unit_id})"
                fields = {"host": ep.host, "port": ep.port, "unit": ep.unit_id}
            elif isinstance(ep, OpcUaEndpoint):
                sec = "no security" if ep.security_policy == "None" else (
                    f"{ep.security_policy} {ep.security_mode}")
                addr = f"{ep.url} ({sec})"
                # what a client needs to log in; paths, never a password
                fields = {"url": ep.url, "username": ep.username}
                if ep.security_policy != "None":
                    fields["security"] = f"{ep.security_policy} {ep.security_mode}"
                    fields.update(server_certificate=ep.server_certificate,
                                  client_certificate=ep.certificate,
                                  client_private_key=ep.private_key)
                fields.update({k: v for k, v in (("password_file", ep.password_file),
                                                 ("password_env", ep.password_env)) if v})
            elif isinstance(ep, ModbusRtuEndpoint):
                addr = f"{ep.port} (unit {ep.unit_id})"
                fields = {"device": ep.port, "unit": ep.unit_id}
            elif isinstance(ep, SerialEndpoint):
                addr = ep.port
                fields = {"device": ep.port}
            else:
                addr = ep.protocol
                fields = {}
            fields.setdefault("security", "none")
            out.append(ServedEndpoint(tag, typ, ep.protocol, addr, fields))
        return out


class ServedPlant:
    """A simulated plant served on loopback for one run; ``config`` is what drivers use."""

    def __init__(self, server: PlantServer) -> None:
        self.server = server
        self.plant = server.plant
        self.config = server.served_config()
        self._scenario: asyncio.Task[None] | None = None

    @property
    def faults(self) -> FaultInjector:
        """The plant's fault injector (as :class:`PlantProcess` offers its remote one)."""
        return self.plant.faults

    def play(self, scenario: Any) -> None:
        self._scenario = self.plant.faults.start_scenario(scenario)

    async def stop(self) -> None:
        if self._scenario is not None:
            self._scenario.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scenario
        await self.server.stop()


async def serve_plant(config: PlantConfig, clock: Clock, *, dt: float | None = None,
                      free_ports: bool = True, scenario: Any = None,
                      pki: str | Path | None = None, insecure: bool = False) -> ServedPlant:
    """Build the plant's simulators, serve them and start stepping; for ``run --simulate``.

    Free ports by default, so a run never collides with another program on the plant's
    fixed ports; the drivers get the served configuration. ``dt`` defaults to a step that
    keeps the flowsheet ahead of a fast clock (1 s at real time, up to 5 s at 500x).
    ``pki`` and ``insecure`` as for :class:`PlantServer`.
    """
    step = dt if dt is not None else min(5.0, max(1.0, clock.scale / 100.0))
    plant = SimulatedPlant.from_config(config, clock, dt=step)
    server = PlantServer(plant, free_ports=free_ports, pki=pki, insecure=insecure)
    await server.start()
    served = ServedPlant(server)
    if scenario is not None:
        served.play(scenario)
    return served

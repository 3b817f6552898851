"""Modbus RTU modules served on a pseudo-terminal (one RS-485 line, several unit ids).

Why a test of its own: a plant's RTU line keeps the Modbus default 8E1, and a pty refuses
parity (``tcsetattr`` EINVAL on Linux), so the served endpoint must say how the pty can be
opened; before, no driver could connect to a simulated RTU module with default settings.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from modulecontrol.clock import Clock
from modulecontrol.descriptors import ModbusRtuEndpoint, PlantConfig, load_plant
from modulecontrol.drivers import DriverTimeout
from modulecontrol.drivers.modbus import ModbusDriver
from modulecontrol.simulators import PlantServer, SimulatedPlant
from modulecontrol.simulators._serve import ServeError


def _plant(tmp_path: Path, p2_line: str = "") -> PlantConfig:
    """Two HPLC pumps on one RTU line (the endpoint's default line settings, 8E1)."""
    line = "{protocol: modbus-rtu, port: /dev/ttyRS485, timeout: 0.2"
    text = f"""\
kind: Plant
name: rtu-line
modules:
  - tag: P1
    type: HPLCPump
    simulated: true
    endpoint: {line}, unit_id: 1}}
    overrides: {{simulator: {{feed: {{THF: 12.33 mol/L}}}}}}
  - tag: P2
    type: HPLCPump
    simulated: true
    endpoint: {line}, unit_id: 2{p2_line}}}
    overrides: {{simulator: {{feed: {{THF: 12.33 mol/L}}}}}}
  - {{tag: W1, type: DivertValve, simulated: true,
     endpoint: {{protocol: modbus-tcp, port: 15029, unit_id: 2}}}}
  - {{tag: W2, type: DivertValve, simulated: true,
     endpoint: {{protocol: modbus-tcp, port: 15029, unit_id: 3}}}}
connections:
  - {{from: P1.outlet, to: W1.inlet, volume: 1 mL}}
  - {{from: P2.outlet, to: W2.inlet, volume: 1 mL}}
"""
    path = tmp_path / "plant.yaml"
    path.write_text(text)
    return load_plant(path)


def _driver(server: PlantServer, tag: str) -> ModbusDriver:
    cfg = server.served_config()
    return ModbusDriver(cfg.type_of(tag), cfg.instance(tag))


async def test_default_8e1_line_is_served_and_readable(tmp_path: Path) -> None:
    cfg = _plant(tmp_path)
    assert cfg.instance("P1").endpoint.parity == "E"  # type: ignore[union-attr]
    plant = SimulatedPlant.from_config(cfg, Clock.scaled(50), dt=1.0)
    async with PlantServer(plant, free_ports=True) as server:
        p1, p2 = _driver(server, "P1"), _driver(server, "P2")
        ep = server.endpoints["P1"]
        assert isinstance(ep, ModbusRtuEndpoint)
        other = server.endpoints["P2"]
        assert isinstance(other, ModbusRtuEndpoint) and ep.port == other.port
        assert (ep.parity, ep.bytesize) == ("N", 8)
        try:
            await p1.connect()
            await p2.connect()
            await p1.write("FlowSetpoint.VMan", 2.5)
            values = await p1.read(["FlowSetpoint.VRbk", "Pressure.V"])
            assert values["FlowSetpoint.VRbk"].value == pytest.approx(2.5)
            # P2's own registers (still at the model's 0): unit ids are not mixed up
            assert (await p2.read(["FlowSetpoint.VRbk"]))["FlowSetpoint.VRbk"].value == 0.0
        finally:
            await p1.close()
            await p2.close()


async def test_a_silent_unit_does_not_close_the_line(tmp_path: Path) -> None:
    """On RS-485, a unit id that times out must not close the port for the other units,
    even after more consecutive timeouts than pymodbus tolerates before it gives a TCP
    connection up (retries + 3)."""
    plant = SimulatedPlant.from_config(_plant(tmp_path), Clock.scaled(50), dt=1.0)
    async with PlantServer(plant, free_ports=True) as server:
        p1, p2 = _driver(server, "P1"), _driver(server, "P2")
        try:
            await p1.connect()
            await p2.connect()
            plant.faults.inject("P2", "silent")
            for _ in range(3):  # 6 wire requests without an answer (one retry each)
                with pytest.raises(DriverTimeout):
                    await p2.read(["Pressure.V"])
            values, timed_out = await asyncio.gather(
                p1.read(["Pressure.V", "Run.VRbk"]), p2.read(["Pressure.V"]),
                return_exceptions=True)
            assert isinstance(timed_out, DriverTimeout)
            assert isinstance(values, dict) and values["Run.VRbk"].value is False
            assert p1.health().connected and p1.health().reconnects == 0
            plant.faults.clear("P2", "silent")
            assert (await p2.read(["Run.VRbk"]))["Run.VRbk"].value is False
            assert p2.health().reconnects == 0
        finally:
            await p1.close()
            await p2.close()


async def test_modules_on_one_line_must_agree(tmp_path: Path) -> None:
    plant = SimulatedPlant.from_config(_plant(tmp_path, ", baudrate: 9600"), Clock.scaled(50),
                                       dt=1.0)
    server = PlantServer(plant, free_ports=True)
    with pytest.raises(ServeError, match="P2: baudrate 9600 on /dev/ttyRS485 differs"):
        await server.start()

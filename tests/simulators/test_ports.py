"""Servers on ports chosen free cannot lose their port to another process between choosing
and binding: the Modbus TCP slave binds port 0, and what must be told its port (asyncua's
PEA, Mosquitto) starts again on a new one when the chosen port turns out taken.

The race is forced, not waited for: ``free_port`` is made to return a port a socket of the
test holds, once (the ``first_port_taken`` fixture of ``tests/conftest.py``)."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from modulecontrol.clock import Clock
from modulecontrol.descriptors import ModbusTcpEndpoint, OpcUaEndpoint, load_plant
from modulecontrol.simulators import (
    PORT_ATTEMPTS,
    ModbusTcpSlave,
    PlantServer,
    SimulatedPlant,
    start_on_free_port,
)
from modulecontrol.testing.modbus import RecordingStore, TcpDevice
from modulecontrol.testing.servers import Mosquitto, missing

PLANT = Path(__file__).resolve().parents[2] / "recipes" / "lomustine" / "plant.yaml"
HC30 = Path(__file__).resolve().parents[1] / "mtp" / "data" / "HC30_Stirring_V8.aml"


def test_a_taken_port_is_tried_again_on_another_and_other_errors_are_raised() -> None:
    tried: list[int] = []

    def start(port: int) -> int:
        tried.append(port)
        if len(tried) < 3:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        return port

    assert start_on_free_port(start) == tried[-1] and len(tried) == 3

    def always_taken(port: int) -> None:
        tried.append(port)
        raise OSError(errno.EADDRINUSE, "Address already in use")

    tried.clear()
    with pytest.raises(OSError, match="in use"):
        start_on_free_port(always_taken)
    assert len(tried) == PORT_ATTEMPTS

    def refused(port: int) -> None:
        tried.append(port)
        raise OSError(errno.EACCES, "Permission denied")

    tried.clear()
    with pytest.raises(OSError, match="Permission"):
        start_on_free_port(refused)
    assert len(tried) == 1


async def test_a_modbus_slave_on_port_0_reports_its_port_and_keeps_it_on_restart() -> None:
    dev = TcpDevice(RecordingStore())
    await dev.start()
    try:
        port = dev.port
        assert port > 0
        with socket.create_connection(("127.0.0.1", port), 5):
            pass
        await dev.stop()
        await dev.start()
        assert dev.port == port
    finally:
        await dev.stop()
    assert isinstance(dev, ModbusTcpSlave)


async def test_a_plant_on_free_ports_survives_a_port_taken_before_its_bind(
        first_port_taken: int) -> None:
    cfg = load_plant(PLANT)
    async with PlantServer(SimulatedPlant.from_config(cfg, Clock.scaled(50)),
                           free_ports=True, insecure=True) as server:
        ports = [ep.port for ep in server.endpoints.values()
                 if isinstance(ep, ModbusTcpEndpoint)]
        urls = [ep.url for ep in server.endpoints.values() if isinstance(ep, OpcUaEndpoint)]
        assert ports and urls
        assert first_port_taken not in ports and 0 not in ports
        assert not [u for u in urls if f":{first_port_taken}/" in u]
        for port in ports:  # every module is where its endpoint says
            with socket.create_connection(("127.0.0.1", port), 5):
                pass


@pytest.mark.skipif(bool(missing("mosquitto")), reason="mosquitto is not installed")
def test_mosquitto_starts_on_another_port_when_its_first_was_taken(
        first_port_taken: int, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mq")
    broker.start()
    try:
        assert broker.port not in (0, first_port_taken)
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        with socket.create_connection(("127.0.0.1", broker.port), 5):
            pass
    finally:
        broker.stop()


async def test_a_virtual_pea_without_a_port_survives_a_port_taken_before_its_bind(
        first_port_taken: int) -> None:
    from modulecontrol.mtp import serve_manifest

    async with await serve_manifest(HC30, insecure=True) as pea:
        assert f":{first_port_taken}/" not in pea.url
        host, port = pea.url.split("/")[2].rsplit(":", 1)
        with socket.create_connection((host, int(port)), 5):
            pass

"""The lomustine plant served over real protocols on 127.0.0.1, driven through proxies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from modulecontrol.clock import Clock
from modulecontrol.descriptors import PlantConfig, SerialEndpoint, load_plant
from modulecontrol.drivers import DriverError
from modulecontrol.proxy import ModuleProxy, ProxyOptions
from modulecontrol.simulators._plant import SimulatedPlant
from modulecontrol.simulators._serve import PlantServer
from modulecontrol.statemachine import Command, State

PLANT = Path(__file__).resolve().parents[2] / "recipes" / "lomustine" / "plant.yaml"
OPTS = ProxyOptions(poll_interval=0.05, complete_poll=0.02)

# One served plant for the whole file: serving the plant costs more than most of its tests.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def config() -> PlantConfig:
    return load_plant(PLANT)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(config: PlantConfig) -> AsyncIterator[PlantServer]:
    plant = SimulatedPlant.from_config(config, Clock.scaled(50), dt=1.0)
    server = PlantServer(plant, free_ports=True, publish_interval=0.05)
    async with server:
        yield server
        plant.faults.clear_all()


def proxy(server: PlantServer, tag: str) -> ModuleProxy:
    cfg = server.served_config()
    return ModuleProxy(cfg.type_of(tag), cfg.instance(tag), options=OPTS)


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a model condition (the model lives in this process; nothing to wait on)."""
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_modbus_pump_dosing_and_stall(served: PlantServer) -> None:
    plant = served.plant
    p1 = proxy(served, "P1")
    await p1.start()
    try:
        dosing = p1.services["Dosing"]
        await dosing.command(Command.START, parameters={"FlowSP": 2.0})
        await dosing.wait_for(State.EXECUTE, timeout=3)
        model = plant.view("P1").model
        await until(lambda: abs(model.state()["flow"] - 2.0 / 6e7) < 1e-12)
        # the flow reaches the reactor outlet through the mixer
        await until(lambda: plant.flowsheet.stream("M1", "out").flow > 1.9 / 6e7)
        await p1.refresh()
        assert p1.value("Flow") == pytest.approx(2.0, rel=1e-6)
        assert p1.value("Pressure") > 1.0  # bar: ambient plus the line's back-pressure
        assert p1.value("Fault") is False
        plant.faults.inject("P1", "stall")
        await p1.refresh()
        assert p1.value("Fault") is True
        await until(lambda: model.state()["flow"] == 0.0)
        plant.faults.clear("P1", "stall")
        await p1.refresh()
        assert p1.value("Fault") is False
        assert [(r.fault, r.event) for r in plant.faults.records] == [
            ("stall", "start"), ("stall", "end")]
        await dosing.command(Command.STOP)
        await dosing.wait_for(State.STOPPED, timeout=3)
        assert plant.view("P1").read_var("running") == 0.0
    finally:
        await p1.close()


async def test_modbus_pump_inlet_channel(served: PlantServer) -> None:
    """The inlet selection over Modbus: a Dosing parameter and a direct write; a channel
    without a feed is refused by the device, the selection stays."""
    p2 = proxy(served, "P2")
    model = served.plant.view("P2").model
    await p2.start()
    try:
        dosing = p2.services["Dosing"]
        await dosing.command(Command.START, parameters={"FlowSP": 0.5, "InletSP": 2})
        await dosing.wait_for(State.EXECUTE, timeout=3)
        assert model.state()["inlet"] == 2.0
        await until(lambda: served.plant.flowsheet.stream("P2", "out").flow > 0)
        out = served.plant.flowsheet.stream("P2", "out")
        assert out.concentration("chloroethyl_isocyanate") == 0.0
        await p2.set("Inlet", 1)
        assert model.state()["inlet"] == 1.0
        await p2.refresh()
        assert p2.value("Inlet") == pytest.approx(1.0)
        with pytest.raises(DriverError):
            await p2.set("Inlet", 4)  # P2 has channels 1 and 2 only
        assert model.state()["inlet"] == 1.0
        await dosing.command(Command.STOP)
        await dosing.wait_for(State.STOPPED, timeout=3)
    finally:
        await p2.close()


async def test_analyzer_method_switch_while_measuring(served: PlantServer) -> None:
    """PAT1's Method over OPC UA: a parameter of Measure; written while Execute, it switches
    the chemometric model at once (no restart of the service)."""
    pat = proxy(served, "PAT1")
    model = served.plant.view("PAT1").model
    await pat.start()
    try:
        measure = pat.services["Measure"]
        await measure.command(Command.START, parameters={"Interval": 10, "Method": 1})
        await measure.wait_for(State.EXECUTE, timeout=5)
        assert model.state()["method"] == 1.0
        await pat.set("Method", 2)
        await until(lambda: model.state()["method"] == 2.0)
        assert measure.state is State.EXECUTE
        await measure.command(Command.STOP)
        await measure.wait_for(State.STOPPED, timeout=5)
    finally:
        await pat.close()


async def test_modbus_silent_times_out(served: PlantServer) -> None:
    bpr = proxy(served, "BPR1")
    assert bpr.driver is not None
    await bpr.driver.connect()
    try:
        await bpr.set("Setpoint", 7.0)
        assert served.plant.view("BPR1").read_var("pressure_setpoint") == pytest.approx(7e5)
        served.plant.faults.inject("BPR1", "silent")
        with pytest.raises(DriverError):
            await bpr.driver.read(["Pressure.V"])
        served.plant.faults.clear("BPR1", "silent")
        values = await bpr.driver.read(["Setpoint.VRbk"])
        assert values["Setpoint.VRbk"].value == pytest.approx(7.0)
    finally:
        await bpr.driver.close()


async def test_divert_valve_switches(served: PlantServer) -> None:
    v1 = proxy(served, "V1")
    await v1.start()
    try:
        view = served.plant.view("V1")
        assert view.read_var("to_waste") == 1.0
        await v1.set("Valve", True)
        assert view.read_var("to_waste") == 0.0
        await v1.refresh()
        assert v1.value("Valve.OpenFbk") is True
        assert v1.value("Valve.CloseFbk") is False
        await v1.set("Valve", False)
        assert view.read_var("to_waste") == 1.0
    finally:
        await v1.close()


async def test_syringe_pump_over_serial(served: PlantServer) -> None:
    p3 = proxy(served, "P3")
    ep = served.endpoints["P3"]
    assert isinstance(ep, SerialEndpoint) and ep.port.startswith("/dev/pts")
    await p3.start()
    try:
        dosing = p3.services["Dosing"]
        await dosing.command(Command.START, parameters={"FlowSP": 0.5})
        await dosing.wait_for(State.EXECUTE, timeout=3)
        p3view = served.plant.view("P3")
        assert p3view.read_var("running") == 1.0
        assert p3view.read_var("flow_setpoint") == pytest.approx(0.5 / 6e7)
        await until(lambda: p3view.read_var("delivered_volume") > 0)
        await p3.refresh()
        assert p3.value("Dispensed") > 0
        served.plant.faults.inject("P3", "stall")
        await p3.refresh()
        assert p3.value("Stalled") is True
        served.plant.faults.clear("P3", "stall")
        await dosing.command(Command.STOP)
        await dosing.wait_for(State.STOPPED, timeout=3)
    finally:
        await p3.close()


async def test_coil_reactor_tempering_over_opcua(served: PlantServer) -> None:
    r1 = proxy(served, "R1")
    await r1.start()
    try:
        tempering = r1.services["Tempering"]
        await tempering.command(Command.START, parameters={"TempSP": 60.0})
        await tempering.wait_for(State.EXECUTE, timeout=3)
        view = served.plant.view("R1")
        assert view.read("TempSP") == pytest.approx(60.0)
        # the thermostat (tau 60 s) brings the jacket and the coil toward 60 degC
        await until(lambda: view.read("T") > 55.0, timeout=10)
        await r1.refresh()
        assert r1.value("T") > 50.0
        served.plant.faults.inject("R1", "bad_status")
        await served.peas["R1"][1].publish_values()
        values = await r1.driver.read(["T.V"])  # type: ignore[union-attr]
        assert values["T.V"].quality.name == "BAD"
        served.plant.faults.clear("R1", "bad_status")
        await served.peas["R1"][1].publish_values()
        values = await r1.driver.read(["T.V"])  # type: ignore[union-attr]
        assert values["T.V"].quality.name == "GOOD"
        await tempering.command(Command.STOP)
        await tempering.wait_for(State.STOPPED, timeout=3)
        assert view.read("TempSP") == pytest.approx(20.0)
    finally:
        await r1.close()

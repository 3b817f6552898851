"""Simulated devices refuse what real ones refuse, and the drivers say so in words.

A simulated Modbus pump used to take FlowSetpoint = 200 mL/min on a 0-10 mL/min setting
(read back 200, flow clamped at 10) and answered reads of registers it does not have with
zeros. Now the served device answers exception 3 (illegal data value) outside the data
assembly's limits and exception 2 (illegal data address) outside its register map, and the
served syringe pump answers ``?OOR`` outside its descriptor's limits. The drivers turn these
into errors naming the setting, the value and the limits, and never send the write again.

Real servers on 127.0.0.1 (pymodbus client and driver against the served plant) and a real
pseudo-terminal for the serial pump.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from modulecontrol.clock import Clock
from modulecontrol.descriptors import (
    DataAssembly,
    ModbusBinding,
    ModbusTcpEndpoint,
    ModuleType,
    PlantConfig,
    builtin_types,
    load_plant,
)
from modulecontrol.drivers import DeviceRejected, TagInfo, ValueRefused
from modulecontrol.drivers.modbus import ModbusDriver
from modulecontrol.drivers.modbus_codec import decode_registers, encode_registers, to_raw
from modulecontrol.drivers.serial import SerialDriver
from modulecontrol.simulators import PlantServer, SimulatedPlant
from modulecontrol.simulators._modbus_server import Refused, _within_limits

in_module_loop = pytest.mark.asyncio(loop_scope="module")
"""The served plant is shared by the file's async tests (serving it costs more than they do)."""

PLANT = """\
kind: Plant
name: refusals
modules:
  - tag: P1
    type: HPLCPump
    simulated: true
    endpoint: {protocol: modbus-tcp, port: 15031, unit_id: 1, timeout: 0.5}
    overrides:
      assemblies:
        FlowSetpoint: {max: 5}     # this pump's head does 0-5 mL/min, the type says 0-10
      simulator: {feed: {THF: 12.33 mol/L}}
  - tag: P2
    type: HPLCPump
    simulated: true
    endpoint: {protocol: modbus-tcp, port: 15031, unit_id: 2, timeout: 0.5}
    overrides: {simulator: {feed: {THF: 12.33 mol/L}}}
  - tag: S1
    type: SyringePump
    simulated: true
    endpoint: {protocol: serial, port: /dev/ttyUSB0, timeout: 0.5}
    overrides:
      assemblies:
        Rate: {max: 20}            # a smaller drive than the type's 50 mL/min
      simulator: {feed: {THF: 12.33 mol/L}}
  - {tag: W1, type: DivertValve, simulated: true,
     endpoint: {protocol: modbus-tcp, port: 15031, unit_id: 3}}
  - {tag: W2, type: DivertValve, simulated: true,
     endpoint: {protocol: modbus-tcp, port: 15031, unit_id: 4}}
  - {tag: W3, type: DivertValve, simulated: true,
     endpoint: {protocol: modbus-tcp, port: 15031, unit_id: 5}}
connections:
  - {from: P1.outlet, to: W1.inlet, volume: 1 mL}
  - {from: P2.outlet, to: W2.inlet, volume: 1 mL}
  - {from: S1.outlet, to: W3.inlet, volume: 1 mL}
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> PlantConfig:
    path = tmp_path_factory.mktemp("plant") / "plant.yaml"
    path.write_text(PLANT)
    return load_plant(path)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(config: PlantConfig) -> AsyncIterator[PlantServer]:
    plant = SimulatedPlant.from_config(config, Clock.scaled(50), dt=1.0)
    async with PlantServer(plant, free_ports=True) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module")
async def client(served: PlantServer) -> AsyncIterator[AsyncModbusTcpClient]:
    ep = served.endpoints["P2"]
    assert isinstance(ep, ModbusTcpEndpoint)
    c = AsyncModbusTcpClient(ep.host, port=ep.port, timeout=1, retries=0)
    assert await c.connect()
    yield c
    c.close()


def _f32(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


def _read_f32(regs: Sequence[int]) -> float:
    value: float = struct.unpack(">f", struct.pack(">HH", *regs))[0]
    return value


# -- the simulated Modbus device, seen by a plain pymodbus client ------------------------------

@in_module_loop
async def test_out_of_range_write_is_exception_3_and_changes_nothing(
        client: AsyncModbusTcpClient) -> None:
    assert not (await client.write_registers(0, _f32(2.5), device_id=2)).isError()
    rsp = await client.write_registers(0, _f32(200.0), device_id=2)  # FlowSetpoint 0..10
    assert rsp.isError() and rsp.exception_code == 3
    rsp = await client.write_registers(0, _f32(-1.0), device_id=2)
    assert rsp.isError() and rsp.exception_code == 3
    rsp = await client.write_registers(0, _f32(float("nan")), device_id=2)
    assert rsp.isError() and rsp.exception_code == 3
    back = await client.read_holding_registers(0, count=2, device_id=2)
    assert _read_f32(back.registers) == 2.5  # the refused writes left the set point alone
    assert not (await client.write_registers(0, _f32(10.0), device_id=2)).isError()  # the limit
    back = await client.read_holding_registers(0, count=2, device_id=2)
    assert _read_f32(back.registers) == 10.0


@in_module_loop
async def test_a_refused_value_in_a_multi_value_write_changes_nothing(
        client: AsyncModbusTcpClient) -> None:
    """FlowSetpoint (0..10) and PressureLimit (1..400) in one request: all or nothing."""
    assert not (await client.write_registers(0, _f32(1.0) + _f32(50.0), device_id=2)).isError()
    rsp = await client.write_registers(0, _f32(3.0) + _f32(999.0), device_id=2)
    assert rsp.isError() and rsp.exception_code == 3
    back = await client.read_holding_registers(0, count=4, device_id=2)
    assert _read_f32(back.registers[:2]) == 1.0
    assert _read_f32(back.registers[2:]) == 50.0


@in_module_loop
async def test_unmapped_addresses_are_exception_2(client: AsyncModbusTcpClient) -> None:
    # HPLCPump: holding 0..4, input 0..5, coils 0..1, discrete input 0
    for rsp in (
        await client.read_holding_registers(10, count=1, device_id=2),
        await client.read_holding_registers(0, count=6, device_id=2),  # runs past the map
        await client.read_input_registers(6, count=2, device_id=2),
        await client.read_coils(2, count=1, device_id=2),
        await client.read_discrete_inputs(1, count=1, device_id=2),
        await client.write_register(10, 1, device_id=2),
        await client.write_coil(7, True, device_id=2),
        await client.write_register(1, 0, device_id=2),  # half of the float at 0..1
    ):
        assert rsp.isError() and rsp.exception_code == 2, rsp
    ok = await client.read_holding_registers(0, count=5, device_id=2)
    assert not ok.isError() and len(ok.registers) == 5


@in_module_loop
async def test_instance_limits_are_the_devices(client: AsyncModbusTcpClient,
                                                served: PlantServer) -> None:
    """P1's instance narrows FlowSetpoint to 0..5: its served device refuses 8."""
    rsp = await client.write_registers(0, _f32(8.0), device_id=1)
    assert rsp.isError() and rsp.exception_code == 3
    assert served.plant.view("P1").read("FlowSetpoint") != pytest.approx(8.0)


# -- the drivers ------------------------------------------------------------------------------

def _modbus_driver(served: PlantServer, tag: str, mt: ModuleType | None = None) -> ModbusDriver:
    cfg = served.served_config()
    return ModbusDriver(mt or builtin_types().get("HPLCPump"), cfg.instance(tag))


@in_module_loop
async def test_modbus_driver_names_the_setting_and_does_not_retry(served: PlantServer) -> None:
    """The plain type says 0..10, P1's device takes 0..5: a write of 8 passes the driver's
    own check and is refused by the device once (FlowSetpoint is idempotent, yet a refusal
    is no lost reply: sending it again would be refused again)."""
    store = next(iter(served.modbus.values())).store
    writes: list[int] = []
    real = store.async_setValues

    async def counted(device_id: int, func_code: int, address: int, values: Any) -> Any:
        writes.append(address)
        return await real(device_id, func_code, address, values)

    store.async_setValues = counted  # type: ignore[method-assign]
    drv = _modbus_driver(served, "P1")
    try:
        await drv.connect()
        await drv.write("FlowSetpoint.VMan", 2.0)
        writes.clear()
        with pytest.raises(ValueRefused) as info:
            await drv.write("FlowSetpoint.VMan", 8.0)
        assert writes == [0]
        exc = info.value
        assert exc.code == 3 and exc.tag == "FlowSetpoint.VMan" and exc.module == "P1"
        assert str(exc).startswith("P1.FlowSetpoint = 8 mL/min refused by the device "
                                   "(Modbus exception 3)")
        assert "descriptor allows 0..10 mL/min" in str(exc)
        assert isinstance(exc, DeviceRejected)
        values = await drv.read(["FlowSetpoint.VRbk"])
        assert values["FlowSetpoint.VRbk"].value == pytest.approx(2.0)
    finally:
        store.async_setValues = real  # type: ignore[method-assign]
        await drv.close()


def _with_extra(name: str, binding: dict[str, Any]) -> ModuleType:
    """HPLCPump plus an assembly the served device does not have (a map that is wrong)."""
    data = builtin_types().get("HPLCPump").model_dump(by_alias=True, exclude_none=True)
    data["data_assemblies"].append({"name": name, "class": "AnaMan", "unit": "bar",
                                    "bindings": {"VMan": {"modbus": binding},
                                                 "VRbk": {"modbus": binding}}})
    return ModuleType.model_validate(data)


@in_module_loop
async def test_modbus_driver_on_a_register_the_device_lacks(served: PlantServer) -> None:
    mt = _with_extra("Purge", {"table": "holding", "address": 8, "type": "float32"})
    drv = _modbus_driver(served, "P2", mt)
    try:
        await drv.connect()
        with pytest.raises(DeviceRejected) as info:  # one block 0..9 over the hole 5..7
            await drv.read(["FlowSetpoint.VRbk", "Purge.VRbk"])
        assert info.value.code == 2
        assert "max_gap: 0" in str(info.value) and "Purge.VRbk" in str(info.value)
        with pytest.raises(DeviceRejected) as info:
            await drv.write("Purge.VMan", 1.0)
        assert info.value.code == 2 and not isinstance(info.value, ValueRefused)
        assert "holding 8..9" in str(info.value) and "register map" in str(info.value)
    finally:
        await drv.close()


@in_module_loop
async def test_served_syringe_refuses_outside_its_descriptor(served: PlantServer) -> None:
    """S1's instance limits Rate to 0..20 mL/min and the type Diameter to 1..40 mm: the
    served pump answers ?OOR outside them (it took anything up to 50 before), and the
    serial driver names the setting and its limits."""
    cfg = served.served_config()
    drv = SerialDriver(builtin_types().get("SyringePump"), cfg.instance("S1"))
    try:
        await drv.connect()
        with pytest.raises(DeviceRejected) as raw:
            await drv.request("DIA 45")
        assert raw.value.code == "?OOR"
        with pytest.raises(DeviceRejected) as raw:
            await drv.request("DIA 0.5")
        assert raw.value.code == "?OOR"
        await drv.write("Rate.VMan", 5.0)
        with pytest.raises(ValueRefused) as info:
            await drv.write("Rate.VMan", 30.0)
        exc = info.value
        assert exc.code == "?OOR" and exc.tag == "Rate.VMan"
        assert str(exc).startswith("S1.Rate = 30 mL/min refused by the device (reply '?OOR' "
                                   "to 'RAT 30.0000 MM')")
        assert "descriptor allows 0..50 mL/min" in str(exc)
        assert (await drv.read(["Rate.VRbk"]))["Rate.VRbk"].value == pytest.approx(5.0)
    finally:
        await drv.close()


@in_module_loop
async def test_serial_codes_other_than_range_errors_stay_device_rejected(
        served: PlantServer) -> None:
    cfg = served.served_config()
    drv = SerialDriver(builtin_types().get("SyringePump"), cfg.instance("S1"))
    emu = served.serial["S1"]
    try:
        await drv.connect()
        emu.faults.error = "?NA"
        with pytest.raises(DeviceRejected) as info:
            await drv.write("Rate.VMan", 5.0)
        assert info.value.code == "?NA" and not isinstance(info.value, ValueRefused)
    finally:
        emu.faults.error = None
        await drv.close()


# -- the device's check at the register's resolution ------------------------------------------

@given(scale=st.sampled_from([0.1, 0.01, 0.5, 0.25, 3.0]),
       offset=st.sampled_from([0.0, -40.0, 273.15]),
       kind=st.sampled_from(["int16", "int32", "float32"]),
       lo=st.integers(-100, 0), span=st.integers(1, 300))
def test_limits_written_exactly_are_accepted_and_one_step_out_refused(
        scale: float, offset: float, kind: str, lo: int, span: int) -> None:
    hi = lo + span
    da = DataAssembly.model_validate({"name": "SP", "class": "AnaMan", "unit": "degC",
                                      "min": lo, "max": hi})
    b = ModbusBinding(table="holding", address=0, type=kind,  # type: ignore[arg-type]
                      scale=scale, offset=offset)
    info = TagInfo("SP.VMan", da, "VMan", b)

    def on_wire(value: float) -> float:
        raw = decode_registers(b, encode_registers(b, to_raw(b, value)))
        return float(raw) * scale + offset

    for limit in (lo, hi):
        if kind != "float32" and abs(round((limit - offset) / scale) * scale + offset
                                     - limit) > 1e-9:
            continue  # the limit is no raw step of this register: nothing writes it exactly
        try:
            wire = on_wire(limit)
        except ValueError:
            continue  # beyond what the register holds: the driver refuses it before sending
        accepted = _within_limits(info, b, wire)  # not refused
        assert isinstance(accepted, float) and lo <= accepted <= hi
        assert accepted == pytest.approx(limit, rel=1e-6, abs=1e-6 * (1 + abs(offset)))
    step = abs(scale) if kind != "float32" else 1e-3 * max(1.0, abs(hi))
    with pytest.raises(Refused) as out:
        _within_limits(info, b, hi + 1.5 * step)
    assert out.value.code == 3
    with pytest.raises(Refused):
        _within_limits(info, b, lo - 1.5 * step)

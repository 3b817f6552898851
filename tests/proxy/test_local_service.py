"""A plain Modbus pump behind a proxy: the proxy runs the MTP state machine and writes the
descriptor's actions to a real pymodbus server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest

from modulecontrol.descriptors import ModbusTcpEndpoint, ModuleInstance, builtin_types
from modulecontrol.proxy import LocalService, ModuleProxy, ProxyOptions
from modulecontrol.statemachine import Channel, Command, State, StateChange
from modulecontrol.testing.modbus import TcpDevice


def _f32(regs: list[int]) -> float:
    return float(struct.unpack(">f", struct.pack(">HH", *regs))[0])


def _regs(value: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


def _proxy(port: int) -> ModuleProxy:
    inst = ModuleInstance(
        tag="P1",
        type="HPLCPump",
        endpoint=ModbusTcpEndpoint(
            protocol="modbus-tcp", port=port, timeout=0.3, reconnect_max_delay=0.2
        ),
    )
    return ModuleProxy(
        builtin_types().get("HPLCPump"),
        inst,
        options=ProxyOptions(poll_interval=0.05, complete_poll=0.02),
    )


async def test_dosing_continuous_writes_actions(device: TcpDevice) -> None:
    proxy = _proxy(device.port)
    await proxy.start()
    try:
        dosing = proxy.services["Dosing"]
        assert dosing.state is State.IDLE
        await dosing.command(
            Command.START, procedure="Continuous", parameters={"FlowSP": "750 uL/min"}
        )
        await dosing.wait_for(State.EXECUTE, timeout=2)
        store = device.store
        assert _f32(store.get(1, "holding", 0, 2)) == pytest.approx(0.75)
        assert store.get(1, "coil", 0) == [1]
        assert store.get(1, "coil", 1) == [1]  # delivered-volume counter reset
        await dosing.command(Command.STOP)
        await dosing.wait_for(State.STOPPED, timeout=2)
        assert store.get(1, "coil", 0) == [0]
    finally:
        await proxy.close()


async def test_parameter_limits_refused_before_anything_moves(device: TcpDevice) -> None:
    proxy = _proxy(device.port)
    await proxy.start()
    try:
        with pytest.raises(ValueError, match="outside its limits"):
            await proxy.services["Dosing"].command(
                Command.START, parameters={"FlowSP": "50 mL/min"}
            )
        assert proxy.services["Dosing"].state is State.IDLE
        assert device.store.count("write") == 0
    finally:
        await proxy.close()


async def test_volume_procedure_completes_by_itself(device: TcpDevice) -> None:
    proxy = _proxy(device.port)
    await proxy.start()
    try:
        dosing = proxy.services["Dosing"]
        await dosing.command(
            Command.START, procedure="Volume", parameters={"FlowSP": 2, "VolumeSP": "3 mL"}
        )
        await dosing.wait_for(State.EXECUTE, timeout=2)
        await asyncio.sleep(0.1)
        assert dosing.state is State.EXECUTE
        device.store.set(1, "input", 4, _regs(3.2))  # the pump has delivered 3.2 mL
        await dosing.wait_for(State.COMPLETED, timeout=3)
        assert device.store.get(1, "coil", 0) == [0]  # Completing action stopped the pump
    finally:
        await proxy.close()


async def test_abort_as_a_reply_lands_reaches_aborted(device: TcpDevice) -> None:
    """An Abort given in the loop iteration in which the reply to the Volume procedure's
    completion poll arrives: Python 3.11's ``wait_for`` (pymodbus' wait for the reply) then
    returns the reply and drops the cancel of the Execute work. The work must still end, so
    that Aborting's writes run and the service reaches Aborted (it stayed in Aborting, the
    pump on, in the service's tests on a loaded machine)."""
    proxy = ModuleProxy(  # polls far apart: only the Volume procedure's own reads go out
        builtin_types().get("HPLCPump"), _proxy(device.port).instance,
        options=ProxyOptions(poll_interval=60.0, complete_poll=0.02))
    await proxy.start()
    try:
        dosing = proxy.services["Dosing"]
        assert isinstance(dosing, LocalService)
        await dosing.command(
            Command.START, procedure="Volume", parameters={"FlowSP": 2, "VolumeSP": "3 mL"})
        await dosing.wait_for(State.EXECUTE, timeout=2)
        assert device.store.get(1, "coil", 0) == [1]
        driver: Any = proxy.driver
        transactions = driver._link.client.ctx
        real = transactions.callback_data
        aborted: list[State] = []

        def reply_then_abort(data: bytes, addr: tuple[str, int] | None = None) -> int:
            used = int(real(data, addr))  # sets the reply the completion poll waits for
            if not aborted:
                aborted.append(dosing.machine.command(Command.ABORT, Channel.EXTERNAL))
            return used

        transactions.callback_data = reply_then_abort
        await dosing.wait_for(State.ABORTED, timeout=5)
        assert aborted == [State.ABORTING]
        assert device.store.get(1, "coil", 0) == [0]  # Aborting's writes went out
    finally:
        await proxy.close()


async def test_values_follow_the_device(device: TcpDevice) -> None:
    proxy = _proxy(device.port)
    seen: list[float] = []
    proxy.on_values(lambda tag, v: seen.append(v["Pressure"].value) if "Pressure" in v else None)
    await proxy.start()
    try:
        device.store.set(1, "input", 2, _regs(12.5))
        for _ in range(100):
            if proxy.value("Pressure") == pytest.approx(12.5):
                break
            await asyncio.sleep(0.02)
        assert proxy.value("Pressure") == pytest.approx(12.5)
        si = proxy.si_values()
        assert si["P1.Pressure"] == pytest.approx(12.5e5)
        assert si["P1.Dosing.state"] == "Idle"
        assert seen
    finally:
        await proxy.close()


async def test_comm_loss_faults_and_safe_state_on_return(device: TcpDevice) -> None:
    proxy = _proxy(device.port)
    faults: list[str | None] = []
    proxy.on_fault(lambda tag, f: faults.append(f))
    await proxy.start()
    try:
        dosing = proxy.services["Dosing"]
        await dosing.command(Command.START, parameters={"FlowSP": 1})
        await dosing.wait_for(State.EXECUTE, timeout=2)
        assert device.store.get(1, "coil", 0) == [1]
        await device.stop()
        for _ in range(200):
            if proxy.faulted:
                break
            await asyncio.sleep(0.02)
        assert proxy.faulted and faults == ["communication lost"]
        changes: list[StateChange] = []
        proxy.on_state(lambda tag, change: changes.append(change))
        await device.start()
        await dosing.wait_for(State.ABORTED, timeout=5)
        assert faults[-1] is None
        aborted = next(c for c in changes if c.new is State.ABORTING)
        assert "link came back" in aborted.reason  # the records say why, not only a log
        assert device.store.get(1, "coil", 0) == [0]
        assert _f32(device.store.get(1, "holding", 0, 2)) == 0.0
    finally:
        await proxy.close()


async def test_module_local_for_condition_follows_the_run_clock(device: TcpDevice) -> None:
    """``complete_when ... for 30 s`` of a local service counts the run's (injected) seconds,
    not wall seconds: at 600x a 30 s hold must not take 30 s of wall time."""
    from modulecontrol.descriptors import builtin_type_files, module_type_from_text

    (path,) = [p for p in builtin_type_files() if p.name == "hplc_pump.yaml"]
    text = path.read_text().replace(
        'complete_when: "this.DeliveredVolume >= this.VolumeSP"',
        'complete_when: "this.DeliveredVolume >= this.VolumeSP for 30 s"')
    assert "for 30 s" in text
    now = [0.0]
    inst = ModuleInstance(
        tag="P1", type="HPLCPump",
        endpoint=ModbusTcpEndpoint(protocol="modbus-tcp", port=device.port, timeout=0.3,
                                   reconnect_max_delay=0.2),
    )
    proxy = ModuleProxy(module_type_from_text(text, str(path)), inst, options=ProxyOptions(
        poll_interval=0.05, complete_poll=0.02, clock=lambda: now[0]))
    device.store.set(1, "input", 4, _regs(5.0))  # 5 mL delivered: the volume is reached
    await proxy.start()
    try:
        dosing = proxy.services["Dosing"]
        await dosing.command(Command.START, procedure="Volume",
                             parameters={"FlowSP": "1 mL/min", "VolumeSP": "1 mL"})
        await dosing.wait_for(State.EXECUTE, timeout=2)
        await asyncio.sleep(0.2)  # several completion checks at simulated t = 0
        now[0] = 29.0
        await asyncio.sleep(0.2)
        assert dosing.state is State.EXECUTE  # true for 29 simulated seconds: not yet
        now[0] = 31.0
        assert await dosing.wait_for(State.COMPLETED, timeout=5) is State.COMPLETED
    finally:
        await proxy.close()

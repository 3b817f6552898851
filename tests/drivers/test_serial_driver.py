"""The serial driver against the SYR-1 emulator on a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modulecontrol.descriptors import ModuleInstance, ModuleType, builtin_types
from modulecontrol.drivers import (
    DeviceRejected,
    Disconnected,
    DriverTimeout,
    NotWritable,
    OutOfRange,
    load_driver,
)
from modulecontrol.drivers.ascii_codec import MAX_LINE
from modulecontrol.drivers.serial import BadReply, SerialDriver
from modulecontrol.simulators.syringe_serial import (
    BuiltinSyringe,
    SyringeModel,
    SyringeSerialEmulator,
)

TIMEOUT = 0.3


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def pump_type() -> ModuleType:
    return builtin_types().get("SyringePump")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def emu(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SyringeSerialEmulator]:
    e = SyringeSerialEmulator(pumps={0: BuiltinSyringe(clock=clock)}, link=tmp_path / "ttyPUMP")
    await e.start()
    yield e
    await e.stop()


MakeDriver = Callable[..., SerialDriver]


@pytest.fixture
async def make_driver(
    pump_type: ModuleType, emu: SyringeSerialEmulator
) -> AsyncIterator[MakeDriver]:
    made: list[SerialDriver] = []

    def make(tag: str = "P1", **endpoint: Any) -> SerialDriver:
        ep = {"protocol": "serial", "port": emu.port, "timeout": TIMEOUT, **endpoint}
        inst = _instance(tag=tag, type="SyringePump", endpoint=ep)
        drv = SerialDriver(pump_type, inst)
        made.append(drv)
        return drv

    yield make
    for d in made:
        await d.close()


@pytest.fixture
async def drv(make_driver: MakeDriver) -> SerialDriver:
    d = make_driver()
    await d.connect()
    return d


def _instance(**fields: Any) -> ModuleInstance:
    return ModuleInstance.model_validate(fields)


def test_entry_point_loads_the_driver() -> None:
    assert load_driver("serial") is SerialDriver


async def test_every_readable_tag(drv: SerialDriver, emu: SyringeSerialEmulator) -> None:
    readable = sorted(n for n, i in drv.tags.items() if i.readable)
    assert readable == ["Diameter.VRbk", "Dispensed.V", "Pressure.V", "Rate.VRbk", "Run.VRbk",
                        "Stalled.V", "VolumeLeft.V"]
    values = await drv.read(readable)
    assert {k: v.value for k, v in values.items()} == {
        "Diameter.VRbk": 14.5, "Dispensed.V": 0.0, "Pressure.V": 0.0, "Rate.VRbk": 0.0,
        "Run.VRbk": False, "Stalled.V": False, "VolumeLeft.V": 50.0,
    }
    assert all(v.good for v in values.values())
    assert values["Dispensed.V"].raw == "SI0.000W0.000ML"
    assert emu.log == [b"DIA", b"DIS", b"PRS", b"RAT", b"RUN?", b"STA", b"VLF"]


async def test_write_and_read_back(drv: SerialDriver, emu: SyringeSerialEmulator,
                                   clock: FakeClock) -> None:
    await drv.write("Diameter.VMan", 12.06)
    await drv.write("Rate.VMan", 3)
    await drv.write("Run.VMan", True)
    assert emu.log == [b"DIA 12.06", b"RAT 3.0000 MM", b"RUN"]
    clock.t += 60.0  # one minute at 3 mL/min
    v = await drv.read(["Diameter.VRbk", "Rate.VRbk", "Run.VRbk", "Dispensed.V",
                        "VolumeLeft.V", "Pressure.V"])
    assert v["Diameter.VRbk"].value == 12.06
    assert v["Rate.VRbk"].value == 3.0
    assert v["Run.VRbk"].value is True and v["Run.VRbk"].raw == "I1"
    assert v["Dispensed.V"].value == pytest.approx(3.0)
    assert v["VolumeLeft.V"].value == pytest.approx(47.0)
    assert v["Pressure.V"].value == pytest.approx(0.6)
    await drv.write("Run.VMan", False)
    assert emu.log[-1] == b"STP"
    assert (await drv.read(["Run.VRbk"]))["Run.VRbk"].value is False


async def test_syringe_runs_empty_and_stops(drv: SerialDriver, clock: FakeClock) -> None:
    await drv.write("Rate.VMan", 50)
    await drv.write("Run.VMan", True)
    clock.t += 120.0
    v = await drv.read(["VolumeLeft.V", "Run.VRbk", "Dispensed.V"])
    assert v["VolumeLeft.V"].value == 0.0
    assert v["Dispensed.V"].value == pytest.approx(50.0)
    assert v["Run.VRbk"].value is False
    with pytest.raises(DeviceRejected) as info:
        await drv.write("Run.VMan", True)
    assert info.value.code == "?NA"


async def test_stall_raises_alarm_prompt(tmp_path: Path, pump_type: ModuleType) -> None:
    model = BuiltinSyringe(resistance=100.0)  # 1 mL/min -> 100 bar -> 1650 N on 14.5 mm
    async with SyringeSerialEmulator(pumps={0: model}, link=tmp_path / "tty") as e:
        inst = _instance(tag="P9", type="SyringePump",
                              endpoint={"protocol": "serial", "port": e.port, "timeout": TIMEOUT})
        async with SerialDriver(pump_type, inst) as d:
            await d.write("Rate.VMan", 1.0)
            await d.write("Run.VMan", True)
            v = await d.read(["Stalled.V", "Run.VRbk"])
            assert v["Stalled.V"].value is True and v["Stalled.V"].raw == "A1"
            assert v["Run.VRbk"].value is False
            await d.write("Run.VMan", False)
            assert (await d.read(["Stalled.V"]))["Stalled.V"].raw == "S0"


async def test_device_errors_are_rejections(drv: SerialDriver) -> None:
    await drv.write("Run.VMan", True)
    with pytest.raises(DeviceRejected) as info:
        await drv.write("Diameter.VMan", 10.0)  # not while pumping
    assert info.value.code == "?NA" and info.value.tag == "Diameter.VMan"
    with pytest.raises(DeviceRejected) as info:
        await drv.request("RAT 60 MM")  # beyond the pump, though the text is well formed
    assert info.value.code == "?OOR"
    with pytest.raises(DeviceRejected) as info:
        await drv.request("XYZ")
    assert info.value.code == "?"
    assert await drv.request("VER") == "ISYR-1 V1.0"
    assert drv.health().errors == 3


@pytest.mark.parametrize("code", ["?", "?NA", "?OOR", "?COM"])
async def test_injected_error_codes(drv: SerialDriver, emu: SyringeSerialEmulator,
                                    code: str) -> None:
    emu.faults.error = code
    with pytest.raises(DeviceRejected) as info:
        await drv.read(["Pressure.V"])
    assert info.value.code == code


async def test_limits_checked_before_sending(drv: SerialDriver,
                                             emu: SyringeSerialEmulator) -> None:
    with pytest.raises(OutOfRange):
        await drv.write("Rate.VMan", 51)
    with pytest.raises(NotWritable):
        await drv.write("Dispensed.V", 1)
    assert emu.log == []


async def test_no_reply_times_out(drv: SerialDriver, emu: SyringeSerialEmulator) -> None:
    emu.faults.silent = True
    t0 = time.monotonic()
    with pytest.raises(DriverTimeout):
        await drv.read(["Diameter.VRbk"])
    elapsed = time.monotonic() - t0
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 0.5
    emu.faults.silent = False
    assert (await drv.read(["Diameter.VRbk"]))["Diameter.VRbk"].value == 14.5


async def test_slow_reply_within_timeout(drv: SerialDriver, emu: SyringeSerialEmulator) -> None:
    emu.faults.delay = TIMEOUT / 3
    assert (await drv.read(["Diameter.VRbk"]))["Diameter.VRbk"].value == 14.5


async def test_per_command_timeout(tmp_path: Path, emu: SyringeSerialEmulator) -> None:
    # A slow command declares its own timeout, longer than the endpoint's.
    text = (builtin_types().get("SyringePump").model_dump(by_alias=True, exclude_none=True))
    for da in text["data_assemblies"]:
        if da["name"] == "Pressure":
            da["bindings"]["V"]["serial"]["read"]["timeout"] = "600 ms"
    slow_type = ModuleType.model_validate(text)
    inst = _instance(tag="P2", type="SyringePump",
                          endpoint={"protocol": "serial", "port": emu.port, "timeout": 0.15})
    emu.faults.delay = 0.3
    async with SerialDriver(slow_type, inst) as d:
        assert (await d.read(["Pressure.V"]))["Pressure.V"].value == 0.0
        with pytest.raises(DriverTimeout):
            await d.read(["Diameter.VRbk"])


async def test_stale_reply_is_flushed(drv: SerialDriver, emu: SyringeSerialEmulator) -> None:
    emu.faults.delay = TIMEOUT * 1.5
    with pytest.raises(DriverTimeout):
        await drv.read(["Diameter.VRbk"])
    await asyncio.sleep(TIMEOUT)  # the late "S14.50" lands in the input buffer
    emu.faults.delay = 0.0
    assert (await drv.read(["Rate.VRbk"]))["Rate.VRbk"].raw == "S0.0000MM"


async def test_late_reply_does_not_confirm_a_write(
        drv: SerialDriver, emu: SyringeSerialEmulator) -> None:
    # The pressure's "S0.00" comes after its request timed out, while RUN waits for its
    # answer. It is no confirmation of RUN (which is answered by a bare prompt): it is
    # skipped as the late reply it is, and RUN's own answer is later still.
    emu.faults.delay = TIMEOUT * 1.5
    with pytest.raises(DriverTimeout):
        await drv.read(["Pressure.V"])
    with pytest.raises(DriverTimeout):
        await drv.write("Run.VMan", True)
    emu.faults.delay = 0.0
    await asyncio.sleep(TIMEOUT * 3)  # the device works off what it was sent
    assert (await drv.read(["Run.VRbk"]))["Run.VRbk"].value is True
    assert [line for line in emu.log if line == b"RUN"] == [b"RUN"]  # executed once


class _StallOnce:
    """The pump stalls on the next request and then catches up: no answer to it within its
    timeout, then its late reply and the reply to the request after it, in order (as a
    device that answers requests in the order it got them does). Set up by replacing the
    emulator's ``handle``, so the order is certain and no delay has to be guessed."""

    def __init__(self, emu: SyringeSerialEmulator) -> None:
        self._handle = emu.handle
        self.held: bytes | None = None
        self.armed = True
        emu.handle = self.handle  # type: ignore[method-assign]

    def handle(self, line: bytes) -> bytes | None:
        reply = self._handle(line)
        if self.armed:
            self.armed, self.held = False, reply
            return None
        if self.held is not None and reply is not None:
            reply, self.held = self.held + reply, None
        return reply


async def test_a_late_reply_is_skipped_and_the_write_confirmed(
        drv: SerialDriver, emu: SyringeSerialEmulator) -> None:
    # The bench's stuck start (SP1.Dosing went to Aborting): a poll's read timed out while
    # the plant was slow; its reply "S14.50" came just after the service's Starting write
    # was sent and failed the write as "not confirmed", which aborted the service.
    stall = _StallOnce(emu)
    with pytest.raises(DriverTimeout):
        await drv.read(["Diameter.VRbk"])
    await drv.write("Run.VMan", True)  # "S14.50" skipped, then RUN's own "I"
    assert stall.held is None  # the late reply did come, before RUN's
    assert [line for line in emu.log if line == b"RUN"] == [b"RUN"]  # sent once
    assert (await drv.read(["Run.VRbk"]))["Run.VRbk"].value is True


async def test_a_late_reply_is_not_read_as_another_value(
        drv: SerialDriver, emu: SyringeSerialEmulator) -> None:
    stall = _StallOnce(emu)
    with pytest.raises(DriverTimeout):
        await drv.read(["Diameter.VRbk"])
    got = await drv.read(["Rate.VRbk"])  # "S14.50" is not a rate ("...MM"): skipped
    assert got["Rate.VRbk"].raw == "S0.0000MM"
    assert stall.held is None


async def test_only_an_owed_reply_is_skipped(drv: SerialDriver,
                                             emu: SyringeSerialEmulator) -> None:
    # Nothing timed out: a reply of the wrong shape fails at once (a BadReply, not a wait
    # for more lines ending in a DriverTimeout), as before.
    emu.faults.garbage = b"S14.50\r"
    with pytest.raises(BadReply, match="not confirmed"):
        await drv.write("Run.VMan", True)


@pytest.mark.parametrize("garbage", [b"\x00\xff\xfe\r", b"#%&!junk\r", b"S14.5.0.1\r",
                                     b"\x1b[2J\r", b"\r"])
async def test_garbage_is_bad_reply(drv: SerialDriver, emu: SyringeSerialEmulator,
                                    garbage: bytes) -> None:
    emu.faults.garbage = garbage
    t0 = time.monotonic()
    with pytest.raises(BadReply):
        await drv.read(["Diameter.VRbk"])
    assert time.monotonic() - t0 < TIMEOUT  # rejected at once, not by waiting
    emu.faults.garbage = None
    assert (await drv.read(["Diameter.VRbk"]))["Diameter.VRbk"].value == 14.5


async def test_garbage_without_terminator(drv: SerialDriver, emu: SyringeSerialEmulator) -> None:
    emu.faults.garbage = b"~~~~"
    with pytest.raises(DriverTimeout):
        await drv.read(["Diameter.VRbk"])
    emu.faults.garbage = b"x" * (MAX_LINE + 10)
    with pytest.raises(BadReply, match="no line terminator"):
        await drv.read(["Diameter.VRbk"])


@pytest.mark.parametrize("kind", ["sum8", "xor", "crc16-modbus"])
async def test_checksums(make_driver: MakeDriver, emu: SyringeSerialEmulator, kind: str) -> None:
    emu.checksum = kind  # type: ignore[assignment]
    d = make_driver(checksum=kind)
    await d.connect()
    await d.write("Diameter.VMan", 9.5)
    assert (await d.read(["Diameter.VRbk"]))["Diameter.VRbk"].value == 9.5
    assert emu.log[0].startswith(b"DIA 9.50") and len(emu.log[0]) > len(b"DIA 9.50")
    emu.faults.garbage = b"S9.50" + b"0" * (4 if kind == "crc16-modbus" else 2) + b"\r"
    with pytest.raises(BadReply, match="checksum mismatch"):
        await d.read(["Diameter.VRbk"])


async def test_checksum_mismatch_on_request(make_driver: MakeDriver,
                                            emu: SyringeSerialEmulator) -> None:
    emu.checksum = "crc16-modbus"
    d = make_driver(checksum="sum8")
    await d.connect()
    with pytest.raises((BadReply, DeviceRejected)):
        await d.read(["Diameter.VRbk"])


async def test_port_vanishes_and_comes_back(drv: SerialDriver,
                                            emu: SyringeSerialEmulator) -> None:
    await drv.write("Rate.VMan", 2.5)
    emu.vanish()
    await asyncio.sleep(0.05)
    with pytest.raises(Disconnected):
        await drv.read(["Rate.VRbk"])
    assert not drv.health().connected
    emu.reappear()
    assert (await drv.read(["Rate.VRbk"]))["Rate.VRbk"].value == 2.5
    h = drv.health()
    assert h.connected and h.reconnects == 1


async def test_port_vanishes_during_a_request(drv: SerialDriver,
                                              emu: SyringeSerialEmulator) -> None:
    emu.faults.silent = True
    task = asyncio.create_task(drv.read(["Rate.VRbk"]))
    await asyncio.sleep(0.05)
    emu.vanish()
    t0 = time.monotonic()
    with pytest.raises(Disconnected):
        await task
    assert time.monotonic() - t0 < TIMEOUT  # noticed at once, not by timing out
    emu.faults.silent = False
    emu.reappear()
    assert (await drv.read(["Rate.VRbk"]))["Rate.VRbk"].value == 0.0


async def test_missing_port(pump_type: ModuleType, tmp_path: Path) -> None:
    inst = _instance(tag="PX", type="SyringePump",
                          endpoint={"protocol": "serial", "port": str(tmp_path / "nope")})
    d = SerialDriver(pump_type, inst)
    with pytest.raises(Disconnected, match="cannot open serial port"):
        await d.connect()
    with pytest.raises(Disconnected, match="not connected"):
        await d.read(["Rate.VRbk"])


async def test_concurrent_requests_do_not_interleave(drv: SerialDriver,
                                                     emu: SyringeSerialEmulator) -> None:
    emu.faults.delay = 0.005
    await drv.write("Diameter.VMan", 20.0)
    results = await asyncio.gather(
        *(drv.read([t]) for t in ["Diameter.VRbk", "Rate.VRbk", "VolumeLeft.V"] * 4)
    )
    got = {k: v.value for r in results for k, v in r.items()}
    assert got == {"Diameter.VRbk": 20.0, "Rate.VRbk": 0.0, "VolumeLeft.V": 50.0}


async def test_daisy_chain(tmp_path: Path, pump_type: ModuleType) -> None:
    a, b = BuiltinSyringe(diameter="4.78 mm"), BuiltinSyringe(diameter="26.7 mm")
    async with SyringeSerialEmulator(pumps={1: a, 2: b}, link=tmp_path / "chain") as e:
        drivers = [
            SerialDriver(pump_type, _instance(
                tag=f"P{n}", type="SyringePump",
                endpoint={"protocol": "serial", "port": e.port, "address": n,
                          "timeout": TIMEOUT}))
            for n in (1, 2)
        ]
        for d in drivers:
            await d.connect()
        try:
            r1, r2 = await asyncio.gather(*(d.read(["Diameter.VRbk"] * 1) for d in drivers))
            assert r1["Diameter.VRbk"].value == 4.78 and r2["Diameter.VRbk"].value == 26.7
            await drivers[1].write("Rate.VMan", 7)
            assert b.flow_setpoint == 7.0 and a.flow_setpoint == 0.0
            assert b"02RAT 7.0000 MM" in e.log
            ghost = SerialDriver(pump_type, _instance(
                tag="P3", type="SyringePump",
                endpoint={"protocol": "serial", "port": e.port, "address": 3, "timeout": 0.1}))
            await ghost.connect()
            with pytest.raises(DriverTimeout):  # nobody at address 3 answers
                await ghost.read(["Rate.VRbk"])
            await ghost.close()
            # The shared port survives one driver closing.
            assert (await drivers[0].read(["Rate.VRbk"]))["Rate.VRbk"].value == 0.0
        finally:
            for d in drivers:
                await d.close()


async def test_port_settings_must_agree(make_driver: MakeDriver) -> None:
    d1 = make_driver(address=1)
    await d1.connect()
    d2 = make_driver(tag="P2", address=2, baudrate=19200)
    with pytest.raises(ValueError, match="every device on one port must agree"):
        await d2.connect()


@dataclass
class PlainPump:
    """The smallest model a process-model package could plug in."""

    diameter: float = 10.0
    flow_setpoint: float = 0.0
    running: bool = False
    dispensed: float = 1.25
    volume_left: float = 8.0
    pressure: float = 3.5
    stalled: bool = False


async def test_plug_in_model(tmp_path: Path, pump_type: ModuleType) -> None:
    model = PlainPump()
    assert isinstance(model, SyringeModel)
    async with SyringeSerialEmulator(pumps={0: model}, link=tmp_path / "plain") as e:
        inst = _instance(tag="P4", type="SyringePump",
                              endpoint={"protocol": "serial", "port": e.port, "timeout": TIMEOUT})
        async with SerialDriver(pump_type, inst) as d:
            await d.write("Run.VMan", True)
            assert model.running
            v = await d.read(["Dispensed.V", "Pressure.V", "VolumeLeft.V"])
            assert [x.value for x in v.values()] == [1.25, 3.5, 8.0]

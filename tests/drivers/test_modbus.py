"""Modbus driver against a real pymodbus server on 127.0.0.1 (and an RTU line on a pty)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from modulecontrol.descriptors import ModbusBinding
from modulecontrol.drivers import (
    DeviceRejected,
    Disconnected,
    DriverError,
    DriverTimeout,
    NotWritable,
    OutOfRange,
    UnknownTag,
)
from modulecontrol.testing.modbus import RecordingStore, RtuResponder, TcpDevice
from tests.drivers._modbus_fixtures import (
    ALL_TYPES,
    ORDERS,
    TYPES,
    expected_registers,
    rtu_driver,
    tcp_driver,
)

SAMPLES: dict[str, list[float]] = {
    "int16": [-32768, -1, 0, 12345, 32767],
    "uint16": [0, 1, 40000, 65535],
    "int32": [-(2**31), -70000, 0, 2**31 - 1],
    "uint32": [0, 70000, 2**32 - 1],
    "float32": [-1.5, 0.0, 3.25, 1e20],
    "float64": [-1e-300, 0.1, 123456.789, 1e300],
}


@pytest.fixture
async def device() -> AsyncIterator[TcpDevice]:
    async with TcpDevice(RecordingStore(units=(1, 2))) as dev:
        yield dev


def _name(kind: str, wo: str, bo: str) -> str:
    return f"{kind}_{wo}_{bo}".replace("int", "I").replace("float", "F")


async def test_round_trip_every_type_and_order(device: TcpDevice) -> None:
    async with tcp_driver(device.port) as drv:
        for kind in TYPES:
            for wo, bo in ORDERS:
                tag = f"{_name(kind, wo, bo)}.VMan"
                binding = drv.tags[tag].binding
                assert isinstance(binding, ModbusBinding)
                addr = binding.address
                for v in SAMPLES[kind]:
                    await drv.write(tag, v)
                    regs = device.store.get(1, "holding", addr, len(expected_registers(
                        kind, wo, bo, v)))
                    assert regs == expected_registers(kind, wo, bo, v), (tag, v)
                    got = (await drv.read([tag]))[tag]
                    assert got.good
                    assert got.value == pytest.approx(v, rel=1e-6), (tag, v)


async def test_scale_offset_and_raw_range(device: TcpDevice) -> None:
    async with tcp_driver(device.port) as drv:
        await drv.write("Scaled.VMan", 21.5)  # raw = (21.5 + 50) / 0.1 = 715
        assert device.store.get(1, "holding", 200) == [715]
        got = (await drv.read(["Scaled.VRbk"]))["Scaled.VRbk"]
        assert got.raw == 715
        assert got.value == pytest.approx(21.5)
        with pytest.raises(OutOfRange):  # assembly limit
            await drv.write("Scaled.VMan", 250)
        with pytest.raises(OutOfRange, match="int16"):  # 400 / 0.01 does not fit an int16
            await drv.write("Wide.VMan", 400)
        device.store.set(1, "holding", 200, [(-100) & 0xFFFF])  # negative raw, int16
        assert (await drv.read(["Scaled.VRbk"]))["Scaled.VRbk"].value == pytest.approx(-60)


async def test_bits_coils_and_discrete_inputs(device: TcpDevice) -> None:
    async with tcp_driver(device.port) as drv:
        device.store.set(1, "holding", 210, [0b1000000000])  # bit 9 set by someone else
        await drv.write("Packed.VMan", True)
        assert device.store.get(1, "holding", 210) == [0b1000001000]
        values = await drv.read(["Packed.VMan", "Other.VMan"])
        assert values["Packed.VMan"].value is True and values["Other.VMan"].value is True
        await drv.write("Packed.VMan", False)
        assert device.store.get(1, "holding", 210) == [0b1000000000]
        await drv.write("Pump.VMan", True)
        assert device.store.get(1, "coil", 5) == [1]
        device.store.set(1, "discrete_input", 3, [1])
        assert (await drv.read(["Alarm.V"]))["Alarm.V"].value is True
        with pytest.raises(NotWritable):
            await drv.write("Alarm.V", False)


async def test_reads_are_coalesced(device: TcpDevice) -> None:
    async with tcp_driver(device.port, max_gap=8) as drv:
        device.store.log.clear()
        names = [n for n in drv.tags if n not in ("Far.V",)]
        await drv.read(names)
        reads = device.store.reads()
        # holding 0..95 (holes of <= 3) + 200..210 (hole of 8) -> 2 blocks; coils 5..6 -> 1;
        # input 10 -> 1; discrete 3 -> 1
        assert reads[(1, "holding")] == 2
        assert reads[(1, "coil")] == 1
        assert reads[(1, "input")] == 1
        assert reads[(1, "discrete_input")] == 1
        device.store.log.clear()
        async with tcp_driver(device.port, max_gap=3) as strict:
            await strict.read(names)
        assert device.store.reads()[(1, "holding")] == 3


async def test_exception_response_is_device_rejected(device: TcpDevice) -> None:
    device.store.size = 992  # Far.V (input 990, 4 registers) now runs past the end
    async with tcp_driver(device.port) as drv:
        with pytest.raises(DeviceRejected) as err:
            await drv.read(["Far.V"])
        assert err.value.code == 2
        assert "illegal data address" in str(err.value)
        assert device.store.count("read", table="input") == 1  # rejections are not retried


async def test_unknown_tag_suggests(device: TcpDevice) -> None:
    async with tcp_driver(device.port) as drv:
        with pytest.raises(UnknownTag, match=r"Pump\.VMan"):
            await drv.read(["Pump.VMn"])


async def test_slow_reply_times_out_and_read_is_retried(device: TcpDevice) -> None:
    device.store.delay = 0.5
    async with tcp_driver(device.port, read_retries=2) as drv:
        t0 = time.monotonic()
        with pytest.raises(DriverTimeout):
            await drv.read(["Level.V"])
        assert time.monotonic() - t0 < 3 * 0.3 + 1.0
        assert device.store.count("read", table="input") == 3
        assert drv.health().last_error is not None


async def test_non_idempotent_write_runs_once(device: TcpDevice) -> None:
    device.store.delay = 0.5
    async with tcp_driver(device.port, read_retries=1) as drv:
        with pytest.raises(DriverTimeout):
            await drv.write("Reset.VMan", True)
        await asyncio.sleep(0.6)  # let the late reply arrive, so nothing is still in flight
        assert device.store.count("write", table="coil") == 1
        device.store.log.clear()
        with pytest.raises(DriverTimeout):
            await drv.write("Pump.VMan", True)  # idempotent: retried like a read
        await asyncio.sleep(0.6)
        assert device.store.count("write", table="coil") == 2


async def test_no_reply_at_all_times_out(device: TcpDevice) -> None:
    device.store.silent.add(1)
    async with tcp_driver(device.port, read_retries=0) as drv:
        with pytest.raises(DriverTimeout):
            await asyncio.wait_for(drv.read(["Level.V"]), 5)
    device.store.silent.clear()


async def test_garbage_frames_give_typed_error() -> None:
    """A server that answers every request with junk must not hang the driver."""

    async def junk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while await reader.read(256):
                writer.write(b"\x00\x01\xff\xff\x00\x03garbage!!\x13\x37")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(junk, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with tcp_driver(port, read_retries=1) as drv:
            t0 = time.monotonic()
            for _ in range(3):
                with pytest.raises(DriverError):
                    await asyncio.wait_for(drv.read(["Level.V"]), 5)
            assert time.monotonic() - t0 < 5
    finally:
        server.close()
        await server.wait_closed()


async def test_reconnect_after_server_restart() -> None:
    store = RecordingStore()
    store.set(1, "input", 10, expected_registers("float32", "big", "big", 7.5))
    dev = TcpDevice(store)  # binds a port of the OS's choice, kept across the restart
    await dev.start()
    async with tcp_driver(dev.port) as drv:
        assert (await drv.read(["Level.V"]))["Level.V"].value == 7.5
        await dev.stop()
        with pytest.raises((Disconnected, DriverTimeout)):
            await drv.read(["Level.V"])
        assert not drv.health().connected
        with pytest.raises(Disconnected):  # backing off: fails fast, no hang
            await asyncio.wait_for(drv.read(["Level.V"]), 2)
        await dev.start()
        deadline = time.monotonic() + 3
        while True:
            try:
                value = (await drv.read(["Level.V"]))["Level.V"]
                break
            except Disconnected:
                assert time.monotonic() < deadline, "no reconnect within 3 s"
                await asyncio.sleep(0.05)
        assert value.value == 7.5
        h = drv.health()
        assert h.connected and h.reconnects == 1
    await dev.stop()


async def test_connect_refused_is_disconnected(taken: int) -> None:
    drv = tcp_driver(taken)  # held by the test, never listening: refused, whoever else runs
    with pytest.raises(Disconnected, match="cannot connect"):
        await drv.connect()
    await drv.close()


async def test_rtu_line_with_a_dead_unit() -> None:
    store = RecordingStore(units=(1, 2, 3))
    store.silent.add(2)
    store.set(1, "input", 10, expected_registers("float32", "big", "big", 1.25))
    store.set(3, "input", 10, expected_registers("float32", "big", "big", 3.5))
    line = RtuResponder(store)
    await line.start()
    good, dead, other = (rtu_driver(line.port, u, f"U{u}") for u in (1, 2, 3))
    try:
        await good.connect()
        await dead.connect()
        await other.connect()

        async def poll_good() -> list[float]:
            out = []
            for _ in range(5):
                out.append((await good.read(["Level.V"]))["Level.V"].value)
                await good.write("I16_big_big.VMan", len(out))
            return out

        async def poll_dead() -> int:
            failures = 0
            for _ in range(3):
                with contextlib.suppress(DriverTimeout):
                    await dead.read(["Level.V"])
                    continue
                failures += 1
            return failures

        good_values, dead_failures = await asyncio.gather(poll_good(), poll_dead())
        assert good_values == [1.25] * 5
        assert dead_failures == 3
        assert store.get(1, "holding", 0) == [5]
        assert (await other.read(["Level.V"]))["Level.V"].value == 3.5
        assert good.health().connected and dead.health().connected  # the port stays open
    finally:
        for d in (good, dead, other):
            await d.close()
        await line.stop()


async def test_rtu_line_settings_must_agree() -> None:
    line = RtuResponder(RecordingStore())
    await line.start()
    a = rtu_driver(line.port, 1, "A")
    b = rtu_driver(line.port, 2, "B", baudrate=9600)
    try:
        await a.connect()
        with pytest.raises(ValueError, match="baudrate"):
            await b.connect()
    finally:
        await a.close()
        await line.stop()


async def test_rtu_late_reply_is_not_taken_for_the_next_request() -> None:
    """RTU has no transaction id: the late reply to a read that timed out arrives while the
    next request (a write) waits. It must not count as the write's answer (the write's
    outcome is unknown: DriverTimeout), and the write is still sent only once."""
    store = RecordingStore()
    line = RtuResponder(store)
    await line.start()
    drv = rtu_driver(line.port, 1, "A", read_retries=0)  # timeout 0.2 s
    try:
        await drv.connect()
        store.delay = 0.3
        with pytest.raises(DriverTimeout, match="did not answer read"):
            await drv.read(["Level.V"])
        with pytest.raises(DriverTimeout,
                           match=r"belongs to another request \(function 4, not 6\)"):
            await drv.write("I16_big_big.VMan", 7)
        store.delay = 0.0
        await asyncio.sleep(0.3)  # let the write's own late reply go by
        assert store.count("write") == 1
        assert store.get(1, "holding", 0) == [7]
        assert (await drv.read(["I16_big_big.VMan"]))["I16_big_big.VMan"].value == 7
    finally:
        await drv.close()
        await line.stop()


async def test_rtu_port_refusing_line_settings_is_disconnected(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A port that opens but refuses the line settings (pyserial raises ``termios.error``,
    which is no OSError: a pty asked for parity, an adapter for a baud rate it cannot do) is
    a failed connect naming the settings, not a bare ``(22, 'Invalid argument')``."""
    termios = pytest.importorskip("termios")
    from pymodbus.client import AsyncModbusSerialClient

    async def refuse(self: AsyncModbusSerialClient) -> bool:
        raise termios.error(22, "Invalid argument")

    monkeypatch.setattr(AsyncModbusSerialClient, "connect", refuse)
    drv = rtu_driver("/dev/ttyRS485", 1, "A", parity="E", baudrate=19200)
    try:
        with pytest.raises(Disconnected, match=r"/dev/ttyRS485 refused the line settings "
                                               r"19200 baud 8E1 \(\(22, 'Invalid argument'"):
            await drv.connect()
        assert not drv.health().connected
    finally:
        await drv.close()


def test_descriptor_type_has_all_kinds() -> None:
    names = {d.name for d in ALL_TYPES.data_assemblies}
    assert {_name(k, wo, bo) for k in TYPES for wo, bo in ORDERS} <= names

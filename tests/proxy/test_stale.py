"""The stale-value watchdog: the rule on made-up times (with hypothesis), then in the proxy
against a real Modbus TCP device and against a changes-only driver with source timestamps."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.descriptors import (
    ModbusTcpEndpoint,
    ModuleInstance,
    ModuleType,
    builtin_types,
)
from modulecontrol.drivers import DriverError, Health, Quality, TagValue
from modulecontrol.drivers._base import TagInfo, tag_table
from modulecontrol.proxy import ModuleProxy, ProxyOptions
from modulecontrol.proxy._stale import StaleWatch
from modulecontrol.testing.modbus import TcpDevice
from tests._poll import until

# -- the rule --------------------------------------------------------------------------------

finite = st.floats(-1e6, 1e6, allow_nan=False)
steps = st.lists(st.tuples(st.floats(0.0, 50.0), finite), min_size=1, max_size=60)


def test_constant_value_goes_stale_at_stale_after_and_clears_on_movement() -> None:
    w = StaleWatch(30.0)
    assert w.observe(0.0, 5.0) is None
    assert w.observe(29.9, 5.0) is None
    assert w.observe(30.0, 5.0) == "unchanged for 30 s"
    assert w.observe(31.0, 5.000001) is None  # any movement counts with no deadband
    assert w.observe(60.9, 5.000001) is None
    assert w.observe(61.0, 5.000001) == "unchanged for 30 s"


def test_deadband_ignores_flicker_but_counts_accumulated_drift() -> None:
    w = StaleWatch(10.0, deadband=0.1)
    w.observe(0.0, 1.0)
    for k in range(1, 11):  # flicker of one last digit around a frozen reading
        reason = w.observe(float(k), 1.0 + (0.05 if k % 2 else -0.05))
    assert reason == "unchanged for 10 s"
    w = StaleWatch(10.0, deadband=0.1)
    for k in range(0, 40):  # a slow real drift of 0.04 per s: never stale
        assert w.observe(float(k), 1.0 + 0.04 * k) is None


def test_source_timestamp_that_stops_advancing_is_stale_even_if_the_value_moves() -> None:
    w = StaleWatch(5.0)
    assert w.observe(0.0, 1.0, source_time=1000.0) is None
    assert w.observe(4.0, 2.0, source_time=1000.0) is None
    assert w.observe(5.0, 3.0, source_time=1000.0) == "source timestamp unchanged for 5 s"
    assert w.observe(6.0, 4.0, source_time=1001.0) is None


def test_reset_restarts_the_timing() -> None:
    w = StaleWatch(5.0)
    w.observe(0.0, 1.0)
    w.reset()
    assert w.observe(100.0, 1.0) is None  # the outage before does not count
    assert w.observe(105.0, 1.0) is not None


@pytest.mark.parametrize("kw", [{"stale_after": 0.0}, {"stale_after": -1.0},
                                {"stale_after": float("nan")},
                                {"stale_after": 1.0, "deadband": -0.1}])
def test_bad_settings_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        StaleWatch(**kw)


def _oracle(samples: list[tuple[float, float]], stale_after: float, deadband: float) -> bool:
    """Stale at the last sample, computed the slow way: time since the last sample that left
    the band around the reference in force before it."""
    ref, ref_t = samples[0][1], samples[0][0]
    for t, v in samples[1:]:
        if abs(v - ref) > deadband:
            ref, ref_t = v, t
    return samples[-1][0] - ref_t >= stale_after


@settings(max_examples=300, deadline=None)
@given(steps, st.floats(0.1, 100.0), st.floats(0.0, 10.0))
def test_rule_matches_a_direct_computation(raw: list[tuple[float, float]], stale_after: float,
                                           deadband: float) -> None:
    t = 0.0
    samples = []
    for dt, v in raw:
        t += dt
        samples.append((t, v))
    w = StaleWatch(stale_after, deadband)
    results = [w.observe(t, v) for t, v in samples]
    for i in range(len(samples)):
        assert (results[i] is not None) == _oracle(samples[: i + 1], stale_after, deadband)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=2, max_size=50, unique=True), st.floats(0.1, 100.0))
def test_a_value_that_moves_at_every_sample_is_never_stale(values: list[float],
                                                           stale_after: float) -> None:
    w = StaleWatch(stale_after)
    for k, v in enumerate(values):
        assert w.observe(k * stale_after * 10, v) is None


@settings(max_examples=200, deadline=None)
@given(finite, st.floats(0.1, 100.0), st.floats(0.0, 10.0), st.integers(2, 40))
def test_a_frozen_value_is_stale_once_stale_after_has_passed(v: float, stale_after: float,
                                                             deadband: float, n: int) -> None:
    w = StaleWatch(stale_after, deadband)
    times = [stale_after * k / n for k in range(n)]  # all before stale_after
    assert all(w.observe(t, v) is None for t in times)
    assert w.observe(stale_after, v) == f"unchanged for {stale_after:g} s"


# -- in the proxy, over Modbus TCP ------------------------------------------------------------


class ManualClock:
    """Simulated seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _regs(value: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


def _watched_pump(stale_after: str = "30 s", deadband: str | None = None) -> ModuleType:
    data = builtin_types().get("HPLCPump").model_dump(by_alias=True, exclude_none=True)
    for da in data["data_assemblies"]:
        if da["name"] == "Pressure":
            da["stale_after"] = stale_after
            if deadband is not None:
                da["deadband"] = deadband
    return ModuleType.model_validate(data)


def _fault(proxy: ModuleProxy) -> str | None:
    """The proxy's fault, read through a call (it changes behind the test's back)."""
    return proxy.fault


async def _polls(proxy: ModuleProxy, n: int = 3) -> None:
    """Wait until the proxy has taken ``n`` more batches of values from its driver."""
    seen: list[int] = []
    proxy.on_values(lambda tag, v: seen.append(1))
    assert await until(lambda: len(seen) >= n, 3) is not None


async def test_frozen_pressure_faults_the_module_and_clears_when_it_moves(
        device: TcpDevice) -> None:
    clock = ManualClock()
    inst = ModuleInstance(tag="P1", type="HPLCPump", endpoint=ModbusTcpEndpoint(
        protocol="modbus-tcp", port=device.port, timeout=0.3, reconnect_max_delay=0.2))
    proxy = ModuleProxy(_watched_pump(), inst,
                        options=ProxyOptions(poll_interval=0.02, clock=clock))
    faults: list[str | None] = []
    proxy.on_fault(lambda tag, f: faults.append(f))
    device.store.set(1, "input", 2, _regs(12.5))
    await proxy.start()
    try:
        await _polls(proxy)
        clock.t = 29.0
        await _polls(proxy)
        assert _fault(proxy) is None and proxy.value("Pressure") == pytest.approx(12.5)
        clock.t = 30.0
        assert await until(lambda: proxy.fault is not None, 3) is not None
        assert _fault(proxy) == "stale value: P1.Pressure unchanged for 30 s"
        assert proxy.values["Pressure"].quality is Quality.BAD
        assert proxy.value("Pressure") is None  # conditions see no value
        assert proxy.si_values()["P1.Pressure"] is None
        device.store.set(1, "input", 2, _regs(12.6))
        assert await until(lambda: proxy.fault is None, 3) is not None
        assert proxy.value("Pressure") == pytest.approx(12.6)
        assert faults == ["stale value: P1.Pressure unchanged for 30 s", None]
        # unwatched values are never stale: Flow has been 0 all along
        assert proxy.value("Flow") == 0.0
    finally:
        await proxy.close()


async def test_deadband_and_link_loss_do_not_count_as_movement_or_staleness(
        device: TcpDevice) -> None:
    clock = ManualClock()
    inst = ModuleInstance(tag="P1", type="HPLCPump", endpoint=ModbusTcpEndpoint(
        protocol="modbus-tcp", port=device.port, timeout=0.2, reconnect_max_delay=0.2))
    proxy = ModuleProxy(_watched_pump("10 s", "50 kPa"), inst,  # deadband 0.5 bar
                        options=ProxyOptions(poll_interval=0.02, clock=clock))
    device.store.set(1, "input", 2, _regs(12.5))
    await proxy.start()
    try:
        await _polls(proxy)
        device.store.set(1, "input", 2, _regs(12.9))  # within the deadband
        await _polls(proxy)
        clock.t = 10.0
        assert await until(lambda: proxy.fault is not None, 3) is not None
        assert proxy.fault is not None and proxy.fault.startswith("stale value")
        device.store.set(1, "input", 2, _regs(13.5))  # out of the band: live again
        assert await until(lambda: proxy.fault is None, 3) is not None
        # a silent device: the fault is the link, never a stale value, however long it lasts
        await device.stop()
        assert await until(lambda: proxy.fault == "communication lost", 3) is not None
        clock.t = 1000.0
        await asyncio.sleep(0.3)
        assert proxy.fault == "communication lost"
        await device.start()
        assert await until(lambda: proxy.fault is None, 5) is not None  # timing restarted on return
    finally:
        await proxy.close()


# -- in the proxy, with a driver that reports changes only (as OPC UA does) --------------------


class ChangesOnlyDriver:
    """A fake OPC UA-like driver: subscriptions call back on changes only (here: never, as a
    frozen server would), reads return the value with its source timestamp."""

    transport: ClassVar[str] = "opcua"
    source_timestamps: ClassVar[bool] = True
    reports_changes_only: ClassVar[bool] = True

    def __init__(self, module_type: ModuleType) -> None:
        self._tags: dict[str, TagInfo] = {}
        for name, info in tag_table(module_type, "modbus").items():
            self._tags[name] = info
        self.value = 40.0
        self.source_time = 1000.0
        self.fail = False
        self.reads: list[list[str]] = []

    @property
    def tags(self) -> Mapping[str, TagInfo]:
        return self._tags

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def read(self, tags: Sequence[str]) -> dict[str, TagValue]:
        self.reads.append(list(tags))
        if self.fail:
            raise DriverError("no answer")
        out = {}
        for t in tags:
            v = self.value if t == "Pressure.V" else 0.0
            out[t] = TagValue(v, Quality.GOOD, self.source_time)
        return out

    async def write(self, tag: str, value: Any) -> None:
        return None

    async def subscribe(self, tags: Sequence[str], interval: float,
                        callback: Callable[[Mapping[str, TagValue]], None]) -> Any:
        class _Sub:
            async def cancel(self) -> None:
                return None
        return _Sub()

    def health(self) -> Health:
        return Health(connected=True)


async def test_changes_only_driver_read_quiet_values_and_source_timestamps() -> None:
    clock = ManualClock()
    mt = _watched_pump("5 s")
    drv = ChangesOnlyDriver(mt)
    inst = ModuleInstance(tag="R1", type="HPLCPump")
    proxy = ModuleProxy(mt, inst, drv, ProxyOptions(poll_interval=0.02, clock=clock))
    await proxy.start()
    try:
        # no notification ever comes: the proxy reads the quiet watched tag itself
        assert await until(lambda: ["Pressure.V"] in drv.reads, 3) is not None
        clock.t = 5.0
        assert await until(lambda: proxy.fault is not None, 3) is not None
        assert proxy.fault == "stale value: R1.Pressure unchanged for 5 s"
        drv.value = 41.0  # the value moves, but the source timestamp stays: still stale
        assert await until(lambda: proxy.fault is not None
                           and "source timestamp" in proxy.fault, 3) is not None
        drv.source_time = 1001.0
        assert await until(lambda: proxy.fault is None, 3) is not None
        # a failed watchdog read is not a fault of its own (the subscription reports links)
        drv.fail = True
        clock.t = 100.0
        await asyncio.sleep(0.1)
        assert proxy.fault is None
    finally:
        await proxy.close()


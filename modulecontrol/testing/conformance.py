"""A conformance suite every driver should pass, whatever its transport.

Subclass :class:`DriverConformance` in a test module, override the fixtures that describe
your device (at least ``driver_factory``, ``writable_tag`` and ``readonly_tag``) and pytest
collects the inherited tests. Fixtures you leave at their default ``None`` skip the tests that
need them, with a message saying which fixture to provide. Nothing here knows about Modbus,
OPC UA or serial: the suite talks only through the :class:`~modulecontrol.drivers.Driver`
protocol and its typed errors.

Example::

    class TestMyDriver(DriverConformance):
        @pytest.fixture
        def driver_factory(self, my_simulator) -> DriverFactory:
            return lambda: MyDriver(module_type, instance_for(my_simulator))

        @pytest.fixture
        def writable_tag(self) -> WritableCase:
            return WritableCase("FlowSetpoint.VMan", 2.5, 4.0)

        @pytest.fixture
        def readonly_tag(self) -> str:
            return "Flow.V"
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import pytest

from modulecontrol.drivers import (
    Disconnected,
    Driver,
    DriverError,
    DriverTimeout,
    NotWritable,
    OutOfRange,
    TagValue,
    UnknownTag,
)

DriverFactory = Callable[[], Driver]
"""Makes a fresh, unconnected driver for the device under test."""
Outage = Callable[[], AbstractAsyncContextManager[None]]
"""Inside the context the device is unreachable (killed, unplugged); after it, back."""


@dataclass(frozen=True)
class WritableCase:
    """A tag that can be written and read back, with two distinct legal values."""

    tag: str
    value: Any
    other: Any
    readback: str | None = None
    """Tag to read the value back from (default: ``tag`` itself)."""
    tolerance: float = 1e-6
    """Relative tolerance for numbers (float32 registers round)."""


@dataclass(frozen=True)
class Misspelling:
    """An unknown tag name and the suggestion the error should make."""

    tag: str
    suggestion: str


def same(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    return bool(a == b)


class DriverConformance:
    """Transport-neutral driver tests; override the fixtures below in a subclass."""

    # -- fixtures to override -----------------------------------------------------------
    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        pytest.fail("override the 'driver_factory' fixture: it returns a callable that makes "
                    "a fresh driver for the device under test")

    @pytest.fixture
    def writable_tag(self) -> WritableCase:
        pytest.fail("override 'writable_tag' with a WritableCase (tag, value, other value)")

    @pytest.fixture
    def readonly_tag(self) -> str:
        pytest.fail("override 'readonly_tag' with the name of a tag that cannot be written")

    @pytest.fixture
    def out_of_range(self) -> tuple[str, Any] | None:
        """A writable tag and a value beyond its limits, or None to skip."""
        return None

    @pytest.fixture
    def misspelled_tag(self) -> Misspelling | None:
        """An unknown tag close to a real one, or None to skip."""
        return None

    @pytest.fixture
    def stall(self) -> Outage | None:
        """A context in which the device is reachable but does not answer, or None."""
        return None

    @pytest.fixture
    def outage(self) -> Outage | None:
        """A context in which the device is gone (for reconnect), or None to skip."""
        return None

    @pytest.fixture
    def safe_state(self) -> list[tuple[str, Any]]:
        """The (tag, value) writes that put the module in its safe state; empty skips."""
        return []

    @pytest.fixture
    def readbacks(self) -> dict[str, str]:
        """Write-only tag -> the tag that reads its effect back (``Run.VMan`` -> ``Run.VRbk``).

        Transports differ in whether a set point can be read where it was written (a Modbus
        holding register can, a serial command or an OPC UA write-only node cannot); the
        safe-state test reads each write back through this map, or through the tag itself.
        """
        return {}

    @pytest.fixture
    def reconnect_within(self) -> float:
        """Seconds the driver may take to be usable again after an outage ends."""
        return 5.0

    @pytest.fixture
    async def driver(self, driver_factory: DriverFactory) -> AsyncIterator[Driver]:
        drv = driver_factory()
        await drv.connect()
        try:
            yield drv
        finally:
            await drv.close()

    # -- the suite ------------------------------------------------------------------------
    async def test_connect_and_close(self, driver_factory: DriverFactory) -> None:
        drv = driver_factory()
        assert isinstance(drv, Driver)
        await drv.connect()
        assert drv.health().connected
        await drv.close()
        assert not drv.health().connected

    async def test_round_trip(self, driver: Driver, writable_tag: WritableCase) -> None:
        case = writable_tag
        back = case.readback or case.tag
        for value in (case.value, case.other):
            before = time.time()
            await driver.write(case.tag, value)
            got = (await driver.read([back]))[back]
            assert isinstance(got, TagValue)
            assert got.good, f"{back} read back with quality {got.quality}"
            assert same(got.value, value, case.tolerance), f"wrote {value!r}, read {got.value!r}"
            assert got.timestamp >= before - 1.0

    async def test_read_many_in_one_call(self, driver: Driver, readonly_tag: str,
                                         writable_tag: WritableCase) -> None:
        names = [readonly_tag, writable_tag.readback or writable_tag.tag]
        values = await driver.read(names)
        assert set(values) == set(names)

    async def test_concurrent_reads_are_consistent(self, driver: Driver,
                                                   writable_tag: WritableCase) -> None:
        case = writable_tag
        back = case.readback or case.tag
        await driver.write(case.tag, case.value)
        results = await asyncio.gather(*(driver.read([back]) for _ in range(8)))
        assert all(same(r[back].value, case.value, case.tolerance) for r in results)

    async def test_out_of_range(self, driver: Driver, out_of_range: tuple[str, Any] | None,
                                writable_tag: WritableCase) -> None:
        if out_of_range is None:
            pytest.skip("provide the 'out_of_range' fixture (tag, value beyond its limits)")
        tag, bad = out_of_range
        with pytest.raises(OutOfRange):
            await driver.write(tag, bad)

    async def test_readonly_refused(self, driver: Driver, readonly_tag: str) -> None:
        current = (await driver.read([readonly_tag]))[readonly_tag]
        with pytest.raises(NotWritable):
            await driver.write(readonly_tag, current.value)

    async def test_unknown_tag(self, driver: Driver, misspelled_tag: Misspelling | None) -> None:
        name = misspelled_tag.tag if misspelled_tag else "NoSuchAssembly.V"
        with pytest.raises(UnknownTag) as read_err:
            await driver.read([name])
        with pytest.raises(UnknownTag):
            await driver.write(name, 1)
        if misspelled_tag is not None:
            assert misspelled_tag.suggestion in str(read_err.value), (
                f"the error should suggest {misspelled_tag.suggestion}: {read_err.value}"
            )

    async def test_timeout(self, driver: Driver, stall: Outage | None, readonly_tag: str,
                           driver_factory: DriverFactory) -> None:
        if stall is None:
            pytest.skip("provide the 'stall' fixture (device stops answering inside it)")
        async with stall():
            t0 = time.monotonic()
            with pytest.raises(DriverTimeout):
                await asyncio.wait_for(driver.read([readonly_tag]), 60)
            assert time.monotonic() - t0 < 60
            assert driver.health().last_error

    async def test_reconnect(self, driver: Driver, outage: Outage | None, readonly_tag: str,
                             reconnect_within: float) -> None:
        if outage is None:
            pytest.skip("provide the 'outage' fixture (device unreachable inside it)")
        await driver.read([readonly_tag])
        async with outage():
            with pytest.raises((Disconnected, DriverTimeout)):
                await driver.read([readonly_tag])
        deadline = time.monotonic() + reconnect_within
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = (await driver.read([readonly_tag]))[readonly_tag]
            except DriverError as exc:
                last = exc
                await asyncio.sleep(0.05)
                continue
            assert value.good
            assert driver.health().connected
            assert driver.health().reconnects >= 1
            return
        pytest.fail(f"no successful read within {reconnect_within} s after the outage: {last}")

    async def test_safe_state(self, driver: Driver, safe_state: list[tuple[str, Any]],
                              readbacks: dict[str, str]) -> None:
        if not safe_state:
            pytest.skip("provide the 'safe_state' fixture ((tag, value) writes)")
        for tag, value in safe_state:
            await driver.write(tag, value)
        check = {tag: readbacks.get(tag, tag) for tag, _ in safe_state}
        check = {t: back for t, back in check.items()
                 if back in driver.tags and driver.tags[back].readable}
        if not check:
            pytest.skip("the safe-state writes went through but none can be read back: map "
                        "each written tag to its read-back tag in the 'readbacks' fixture")
        values = await driver.read(sorted(set(check.values())))
        for tag, value in safe_state:
            if tag in check:
                got = values[check[tag]].value
                assert same(got, value, 1e-6), f"{tag} did not reach {value!r} (read {got!r})"

    async def test_subscription_delivers(self, driver: Driver, readonly_tag: str) -> None:
        """Three good deliveries within 5 s. A polling driver delivers every interval; a
        transport that reports changes only (OPC UA) needs ``readonly_tag`` to move."""
        got: list[dict[str, TagValue]] = []
        done = asyncio.Event()

        def on_values(values: Any) -> None:
            got.append(dict(values))
            if len(got) >= 3:
                done.set()

        sub = await driver.subscribe([readonly_tag], 0.02, on_values)
        try:
            await asyncio.wait_for(done.wait(), 5)
        finally:
            await sub.cancel()
        assert all(v[readonly_tag].good for v in got)


def safe_state_writes(module_type: Any, tags: Any) -> list[tuple[str, Any]]:
    """The module type's ``safe_state`` as (tag, value) pairs for the ``safe_state`` fixture.

    ``Write: Run`` names an assembly; its setpoint attribute (``VMan`` of a BinMan) is the tag.
    Writes whose tag the transport does not bind are left out.
    """
    from modulecontrol.mtpcore import SETPOINT_ATTRIBUTE

    out: list[tuple[str, Any]] = []
    for w in module_type.safe_state:
        da = module_type.assembly(w.assembly)
        tag = f"{da.name}.{w.attribute or SETPOINT_ATTRIBUTE[da.class_]}"
        if tag in tags:
            out.append((tag, da.coerce(w.value)))
    return out

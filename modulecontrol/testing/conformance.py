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
from pathlib import Path
from typing import Any

import pytest

try:
    import pytest_asyncio
except ImportError as exc:  # modulecontrol installed without its testing extra
    raise ImportError(
        "modulecontrol.testing needs pytest-asyncio: install the kit with "
        "pip install 'modulecontrol[testing]'") from exc

from modulecontrol.descriptors import ModuleType
from modulecontrol.drivers import (
    Disconnected,
    Driver,
    DriverError,
    DriverTimeout,
    NotWritable,
    OutOfRange,
    TagInfo,
    TagValue,
    UnknownTag,
)
from modulecontrol.testing.devices import ServedModule, SimulatedDevice

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
    """Transport-neutral driver tests; override the fixtures below in a subclass.

    The kit runs its coroutines itself: its tests carry pytest-asyncio's ``asyncio`` mark
    (inherited by every subclass) and its async fixtures are pytest-asyncio fixtures, so a
    suite needs no ``asyncio_mode = auto``. A subclass's own fixtures stay plain functions:
    a simulator is returned unstarted by ``device`` and started by the kit on the test's
    event loop (``running_device``).
    """

    pytestmark = pytest.mark.asyncio

    # -- fixtures to override -----------------------------------------------------------
    @pytest.fixture
    def device(self) -> SimulatedDevice | None:
        """The device under test, not started (anything with ``async start()`` and
        ``async stop()``), or None when ``driver_factory`` reaches a device of its own."""
        return None

    @pytest_asyncio.fixture(loop_scope="function")
    async def running_device(self, device: SimulatedDevice | None
                             ) -> AsyncIterator[SimulatedDevice | None]:
        """``device`` started for the test and stopped after it (request this one in
        ``driver_factory`` to learn its port)."""
        if device is None:
            yield None
            return
        await device.start()
        try:
            yield device
        finally:
            await device.stop()

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

    @pytest_asyncio.fixture(loop_scope="function")
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
                async with asyncio.timeout(60):
                    await driver.read([readonly_tag])
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
            async with asyncio.timeout(5):
                await done.wait()
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


class ModuleTypeConformance(DriverConformance):
    """The conformance suite for a module type spoken through an installed driver: a
    descriptor-only device (a register map in YAML, no code) or any type of a plug-in.

    Override two fixtures: ``module_type`` (the type, its YAML file, or an installed type's
    name) and ``endpoint`` (what a plant writes, e.g. ``{"protocol": "modbus-tcp", "port":
    502, "unit_id": 1}``; the port is replaced by a free one). The kit serves the type with
    the model of its ``simulator:`` section, as ``modulecontrol sim serve`` would, connects
    the installed driver of that protocol, and derives the rest from the descriptor: a
    writable tag and two values inside its limits, a read-only tag, a value beyond the
    limits, a misspelling, the safe state with its read-backs, and (over TCP) a stall and an
    outage of the link. Any of them can still be overridden. One test is added: every
    attribute the type binds answers a read, so a register the device does not serve is
    found before a plant is.
    """

    @pytest.fixture
    def module_type(self) -> ModuleType | str | Path:
        pytest.fail("override 'module_type' with the module type under test (the type, its "
                    "YAML file, or the name of an installed type)")

    @pytest.fixture
    def endpoint(self) -> dict[str, Any]:
        pytest.fail("override 'endpoint' with the endpoint a plant would write for it, e.g. "
                    "{'protocol': 'modbus-tcp', 'port': 502, 'unit_id': 1}")

    @pytest.fixture
    def device(self, module_type: ModuleType | str | Path, endpoint: dict[str, Any],
               modulecontrol_wiring: Any, tmp_path: Path) -> SimulatedDevice | None:
        return ServedModule(module_type, endpoint, pki=tmp_path / "pki")

    @pytest.fixture
    def served(self, running_device: SimulatedDevice | None) -> ServedModule:
        assert isinstance(running_device, ServedModule), (
            "ModuleTypeConformance serves the module type itself: override 'module_type' and "
            "'endpoint', not 'device'")
        return running_device

    @pytest.fixture
    def driver_factory(self, served: ServedModule) -> DriverFactory:
        return served.driver

    @pytest.fixture
    def tag_table(self, served: ServedModule) -> dict[str, TagInfo]:
        return dict(served.driver().tags)

    @pytest.fixture
    def writable_tag(self, tag_table: dict[str, TagInfo]) -> WritableCase:
        case = _writable_case(tag_table)
        if case is None:
            pytest.fail("the type binds no writable tag with limits that can be read back: "
                        "override 'writable_tag'")
        return case

    @pytest.fixture
    def readonly_tag(self, tag_table: dict[str, TagInfo]) -> str:
        for name, info in sorted(tag_table.items()):
            if info.readable and not info.writable and info.service is None:
                return name
        pytest.fail("the type binds no read-only tag: override 'readonly_tag'")

    @pytest.fixture
    def out_of_range(self, tag_table: dict[str, TagInfo]) -> tuple[str, Any] | None:
        for name, info in sorted(tag_table.items()):
            da = info.assembly
            if info.writable and da.kind == "number" and da.max is not None:
                span = (da.max - da.min) if da.min is not None else abs(da.max) or 1.0
                return name, da.max + max(span, 1.0)
        return None

    @pytest.fixture
    def misspelled_tag(self, writable_tag: WritableCase) -> Misspelling:
        assembly, _, attribute = writable_tag.tag.partition(".")
        return Misspelling(f"{assembly}.{attribute[:-1]}", writable_tag.tag)

    @pytest.fixture
    def safe_state(self, served: ServedModule, tag_table: dict[str, TagInfo]
                   ) -> list[tuple[str, Any]]:
        return safe_state_writes(served.module_type, set(tag_table))

    @pytest.fixture
    def readbacks(self, tag_table: dict[str, TagInfo]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, info in tag_table.items():
            back = f"{info.assembly.name}.VRbk"
            if info.attribute == "VMan" and back in tag_table and tag_table[back].readable:
                out[name] = back
        return out

    @pytest.fixture
    def stall(self, served: ServedModule) -> Outage | None:
        return served.relay.stall if served.relay is not None else None

    @pytest.fixture
    def outage(self, served: ServedModule) -> Outage | None:
        return served.relay.outage if served.relay is not None else None

    async def test_every_bound_attribute_answers(self, driver: Driver,
                                                 tag_table: dict[str, TagInfo]) -> None:
        names = sorted(n for n, info in tag_table.items()
                       if info.readable and info.service is None)
        assert names, "the type binds no readable attribute"
        values = await driver.read(names)
        bad = {n: v.quality for n, v in values.items() if not v.good}
        assert not bad, f"read with bad quality: {bad}"


def _writable_case(tags: dict[str, TagInfo]) -> WritableCase | None:
    """A writable number with limits and a read-back (a quarter and three quarters of its
    range), else a writable boolean with one; None if the type has neither."""
    def back_of(name: str, info: TagInfo) -> str | None:
        vrbk = f"{info.assembly.name}.VRbk"
        if vrbk in tags and tags[vrbk].readable:
            return vrbk
        return name if info.readable else None

    fallback: WritableCase | None = None
    for name, info in sorted(tags.items()):
        da = info.assembly
        back = back_of(name, info)
        if not info.writable or info.service is not None or back is None:
            continue
        if da.kind == "number" and da.min is not None and da.max is not None:
            lo, hi = float(da.min), float(da.max)
            a, b = lo + (hi - lo) / 4, lo + 3 * (hi - lo) / 4
            if da.class_.startswith("DInt"):
                a, b = float(round(a)), float(round(b))
            return WritableCase(name, a, b, readback=back, tolerance=1e-3)
        if da.kind == "bool" and fallback is None:
            fallback = WritableCase(name, True, False, readback=back)
    return fallback

"""Module proxies: what the orchestrator holds for each module instance.

A proxy joins a descriptor and a driver. It keeps the latest value of every tag, offers the
module's services with their MTP state machines, writes set points with limit checks, and
owns the module's fault reaction:

* **PEA services** (a module with its own state machine, e.g. over OPC UA) are followed: the
  proxy reads ``StateCur`` and commands through the MTP core's
  :class:`~modulecontrol.mtpcore.ServiceClient`, over whatever driver reaches the module.
* **Local services** (a plain Modbus or serial device) run the MTP state machine in the
  proxy; entering a state performs the descriptor's ``actions`` as device writes.

On communication loss the module is reported faulted; when the link returns, the proxy
drives the descriptor's safe state before anything else and aborts its local services, so a
pump that lost its controller is never left running unobserved. A measured value that is
bad (NaN, out of its scale) or stale (frozen for its ``stale_after`` although the module
answers, see :mod:`modulecontrol.proxy._stale`) also reports the module faulted, until the
value is plausible and moving again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from modulecontrol.descriptors import DataAssembly, ModuleInstance, ModuleType, Service, Write
from modulecontrol.drivers import (
    Driver,
    DriverError,
    NotWritable,
    Quality,
    ScanStats,
    TagValue,
    load_driver,
)
from modulecontrol.expr import SignalInfo, compile_condition
from modulecontrol.mtpcore import (
    PA,
    PARAM_CLASSES,
    RESTING_STATES,
    SCA,
    HandshakePolicy,
    MtpError,
    ServiceClient,
    carries_value,
    mode_attribute,
)
from modulecontrol.proxy._signals import read_attribute, write_attribute
from modulecontrol.proxy._stale import StaleWatch
from modulecontrol.statemachine import (
    Channel,
    Command,
    CommandRefused,
    OperationMode,
    Procedure,
    ServiceStateMachine,
    SourceMode,
    State,
    StateChange,
    WorkContext,
)
from modulecontrol.units import to_si

_log = logging.getLogger(__name__)

ValueListener = Callable[[str, Mapping[str, TagValue]], None]
StateListener = Callable[[str, StateChange], None]
FaultListener = Callable[[str, str | None], None]
ListenerErrorListener = Callable[[str, str, str, Exception], None]
NoticeListener = Callable[[str, str], None]
"""(module tag, message): a tolerance of the module's declared handshake policy was used."""
"""(module tag, which listeners: values/state/fault, the failing listener's name, error)."""


class ServiceProxy(Protocol):
    """A service as the orchestrator sees it, whether it runs in the module or the proxy."""

    name: str

    @property
    def state(self) -> State: ...

    async def command(
        self,
        command: Command,
        *,
        procedure: int | str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> State: ...

    async def wait_for(self, *states: State, timeout: float | None = None) -> State: ...

    def modes(self, obj: str | None = None) -> Modes:
        """The operation mode and source of the service (``obj`` None) or of one of its
        module's parameters, as last read; None where the module has no such attribute."""
        ...

    async def switch_mode(self, mode: OperationMode | SourceMode, obj: str | None = None
                          ) -> bool:
        """Request ``mode`` for the service or parameter ``obj`` and wait until it is active
        (MtpError when the module does not confirm); False if it has no such mode."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Modes:
    """Who operates a service or parameter (MTP ``State*Act``) and whose values it takes
    (``Src*Act``); None where the module does not have the attribute."""

    operation: OperationMode | None = None
    source: SourceMode | None = None


@dataclass
class ProxyOptions:
    poll_interval: float = 0.2
    """Seconds between reads of the module's tags."""
    complete_poll: float = 0.05
    """Seconds between checks of a self-completing procedure's completion condition."""
    safe_state_on_reconnect: bool = True
    check_values: bool = True
    """Treat measured numbers that are NaN/infinite or outside the assembly's
    ``scale_min``..``scale_max`` as bad values that fault the module (see ``_checked``)."""
    clock: Callable[[], float] = time.monotonic
    """The run's time in seconds (a run passes its ``Clock.now``): the stale-value watchdog
    (``stale_after: 30 s``), a local service's ``complete_when ... for 30 s`` and the times
    of state changes all follow it, so they mean simulated seconds at any speed. The poll
    intervals above stay wall seconds: they pace I/O, not the process."""
    adopt_running: bool = False
    """Reconnecting to a plant left running (the control service reattaching after a
    restart): a service of a device without its own state machine that reads as running is
    taken as in Execute (``LocalService.adopt_read_state``), not Idle. Off for a fresh
    connection, whose recipe starts every service it uses itself."""
    link_clock: Callable[[], float] = time.monotonic
    link_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """The time base of the MTP handshake's bounds (a PEA confirming a mode, procedure,
    parameter or state). They bound round trips over a link, which do not speed up in a
    scaled run, so they are wall seconds by default; a test injects its own."""


class ModuleProxy:
    """One module instance: values, services, set points and fault reaction."""

    def __init__(
        self,
        module_type: ModuleType,
        instance: ModuleInstance,
        driver: Driver | None = None,
        options: ProxyOptions | None = None,
    ) -> None:
        self.tag = instance.tag
        self.type = module_type
        self.instance = instance
        self.options = options or ProxyOptions()
        if driver is None and instance.endpoint is not None:
            driver = load_driver(instance.transport or "")(module_type, instance)
        self.driver = driver
        self.values: dict[str, TagValue] = {}
        self.parameters: dict[str, Any] = {}
        """Service parameters held by the proxy (ServParams the device does not bind)."""
        self.fault: str | None = None
        self.services: dict[str, ServiceProxy] = {}
        self._value_listeners: list[ValueListener] = []
        self._state_listeners: list[StateListener] = []
        self._fault_listeners: list[FaultListener] = []
        self._error_listeners: list[ListenerErrorListener] = []
        self._notice_listeners: list[NoticeListener] = []
        self._failing: set[tuple[str, int]] = set()
        """Listeners whose failure was reported and that have not succeeded since."""
        self._subscription: Any = None
        self._recovery: asyncio.Task[None] | None = None
        self._read_names: dict[str, str] = {}
        self._assemblies = {da.name: da for da in module_type.data_assemblies}
        self._comm_lost = False
        self._bad_values: dict[str, str] = {}
        self._watches = {da.name: StaleWatch(da.stale_after, float(da.deadband or 0.0))
                         for da in module_type.data_assemblies if da.stale_after is not None}
        """Stale-value watchdogs of the assemblies that configure ``stale_after``."""
        self._stale: dict[str, str] = {}
        self._heard: set[str] = set()
        self._quiet_reader: asyncio.Task[None] | None = None
        self._raw_bad: set[str] = set()
        """Tags whose latest reading arrived with BAD quality (before ``_checked``)."""
        self._subscribed: frozenset[str] = frozenset()
        """The tags the proxy subscribed to: all BAD together means the link is lost."""
        for da in module_type.data_assemblies:
            if da.default is not None and da.class_ in PARAM_CLASSES:
                self.parameters[da.name] = da.default

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def passive(self) -> bool:
        return self.driver is None

    @property
    def faulted(self) -> bool:
        return self.fault is not None

    @property
    def scan_stats(self) -> ScanStats | None:
        """Timing of the module's subscription (None before :meth:`start` or if passive):
        scans done, missed and late for a polled module; update ages for an OPC UA one."""
        stats = getattr(self._subscription, "stats", None)
        return stats if isinstance(stats, ScanStats) else None

    async def start(self) -> None:
        """Connect, read everything once, subscribe, and create the services."""
        for svc in self.type.services:
            self.services[svc.name] = self._make_service(svc)
        if self.driver is None:
            return
        await self.driver.connect()
        tags = self._readable_tags()
        self._subscribed = frozenset(tags)
        for da in self.type.data_assemblies:
            attr = read_attribute(da, self.driver.tags)
            if attr is not None:
                self._read_names[f"{da.name}.{attr}"] = da.name
        if tags:
            self._on_values(await self.driver.read(tags))
            for service in self.services.values():
                if isinstance(service, LocalService) and self.options.adopt_running:
                    service.adopt_read_state()
            self._subscription = await self.driver.subscribe(
                tags, self.options.poll_interval, self._on_values
            )
        watched = [t for t, a in self._read_names.items() if a in self._watches]
        if watched and getattr(self.driver, "reports_changes_only", False):
            self._quiet_reader = asyncio.get_running_loop().create_task(
                self._read_quiet(watched), name=f"stale watchdog {self.tag}")

    def _make_service(self, svc: Service) -> ServiceProxy:
        """A PEA's own state machine is followed; otherwise the proxy runs one."""
        if self.driver is not None and f"{svc.name}.{SCA.STATE_CUR}" in self.driver.tags:
            return RemoteService(self, svc)
        return LocalService(self, svc)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop following the module and close its link; every part is bounded, so a peer
        that does not answer cannot keep a run (or a test) from ending."""
        for task in (self._recovery, self._quiet_reader):
            if task is not None:
                task.cancel()
                # waited for, not awaited: its CancelledError is its own, and a cancel of
                # this close must not be swallowed with it
                await asyncio.wait({task}, timeout=timeout)
        for svc in self.services.values():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    await svc.close()
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    await self._subscription.cancel()
        if self.driver is not None:
            try:
                async with asyncio.timeout(timeout):
                    await self.driver.close()
            except Exception as exc:
                _log.warning("%s: closing the link failed: %r", self.tag, exc)

    def _readable_tags(self) -> list[str]:
        if self.driver is None:
            return []
        return [name for name, info in self.driver.tags.items() if info.readable]

    # -- listeners --------------------------------------------------------------------------
    # Each returns the call that removes the listener again: a long-running line outlives
    # the orchestrators that listen to it, and a finished run must stop hearing it.
    def on_values(self, listener: ValueListener) -> Callable[[], None]:
        self._value_listeners.append(listener)
        return lambda: _discard(self._value_listeners, listener)

    def on_state(self, listener: StateListener) -> Callable[[], None]:
        self._state_listeners.append(listener)
        return lambda: _discard(self._state_listeners, listener)

    def on_fault(self, listener: FaultListener) -> Callable[[], None]:
        self._fault_listeners.append(listener)
        return lambda: _discard(self._fault_listeners, listener)

    def on_notice(self, listener: NoticeListener) -> Callable[[], None]:
        """Be told when a service drove the PEA by a tolerance of the plant's ``handshake:``
        policy (a command CommandEn did not enable, parameters taken over at Start, a
        non-standard state code), so the run records it as a warning event."""
        self._notice_listeners.append(listener)
        return lambda: _discard(self._notice_listeners, listener)

    def notify_notice(self, message: str) -> None:
        _log.warning("%s: %s", self.tag, message)
        for listener in list(self._notice_listeners):
            self._call("notice", listener, self.tag, message)

    def on_listener_error(self, listener: ListenerErrorListener) -> Callable[[], None]:
        """Be told when a value, state or fault listener raises (the orchestrator makes it a
        ``listener_failed`` event): a listener on the record path that fails must not be a
        log line only. Told once per streak of failures, not at every poll."""
        self._error_listeners.append(listener)
        return lambda: _discard(self._error_listeners, listener)

    def _call(self, what: str, listener: Callable[..., None], *args: Any) -> None:
        key = (what, id(listener))
        try:
            listener(*args)
        except Exception as exc:
            _log.exception("%s: %s listener failed", self.tag, what)
            if key in self._failing:
                return
            self._failing.add(key)
            name = getattr(listener, "__qualname__", None) or repr(listener)
            for report in list(self._error_listeners):
                try:
                    report(self.tag, what, name, exc)
                except Exception:  # the last resort: nobody is left to tell
                    _log.exception("%s: listener-error listener failed", self.tag)
        else:
            self._failing.discard(key)

    def notify_state(self, change: StateChange) -> None:
        for listener in list(self._state_listeners):
            self._call("state", listener, self.tag, change)

    # -- values -----------------------------------------------------------------------------
    def _on_values(self, values: Mapping[str, TagValue], *, judge_link: bool = True) -> None:
        """Take a batch of answers. ``judge_link``: an all-BAD batch means the link is lost
        (False for the watchdog's own reads of a few tags, which must not decide that)."""
        named: dict[str, TagValue] = {}
        all_bad = self._all_bad(values) and judge_link  # _all_bad also tracks raw qualities
        if all_bad:  # an outage is not time without movement: watchdogs restart afterwards
            for watch in self._watches.values():
                watch.reset()
            self._stale.clear()
        for tag, tv in values.items():
            primary = self._read_names.get(tag)
            if primary is not None and not all_bad:
                if self.options.check_values:
                    tv = self._checked(primary, tv)
                if primary in self._watches:
                    tv = self._watched(primary, tv)
            self.values[tag] = tv
            named[tag] = tv
            if primary is not None:
                self.values[primary] = tv
                named[primary] = tv
        was_lost = self._comm_lost
        if judge_link:
            self._comm_lost = all_bad
        self._update_fault()
        if (judge_link and was_lost and not all_bad and self.options.safe_state_on_reconnect
                and self._recovery is None):
                self._recovery = asyncio.get_running_loop().create_task(self._recover())
        for listener in list(self._value_listeners):
            self._call("values", listener, self.tag, named)

    def _all_bad(self, values: Mapping[str, TagValue]) -> bool:
        """Whether every watched tag now reads BAD: the link is lost, not a sensor.

        Judged on the latest reading of *every* watched tag, not on this batch alone: a
        subscription (OPC UA) delivers only what changed, so a batch holding just the
        process values that went to a Bad status (a sensor failure) would otherwise look
        like a lost link, and the next batch with a good state value would clear the fault
        again before the recipe could hold. A batch outside the watched set (before
        ``start`` subscribes, or a driver given values by hand) is judged on its own.
        """
        for tag, tv in values.items():
            if tv.quality is Quality.BAD:
                self._raw_bad.add(tag)
            else:
                self._raw_bad.discard(tag)
        if self._subscribed and self._subscribed.issuperset(values):
            return self._raw_bad.issuperset(self._subscribed)
        return bool(values) and all(v.quality is Quality.BAD for v in values.values())

    def _checked(self, assembly: str, tv: TagValue) -> TagValue:
        """A value of BAD quality while the rest of the module reads fine, or a measured
        number that is NaN, infinite or outside its assembly's scale range, is a sensor or
        wire fault, not a value: mark it BAD (conditions then see no value) and remember it,
        so the module is reported faulted until the value is plausible again.

        Why here: an interlock such as ``P1.Pressure > 50 bar`` is silently defeated by a NaN
        (every comparison is false); a faulted module makes the orchestrator hold instead.
        """
        da = self._assemblies.get(assembly)
        if da is None:
            return tv
        v = tv.value
        reason: str | None = None
        if tv.quality is Quality.BAD:
            # e.g. an OPC UA Bad status while the link is fine; ``raw`` names the status
            reason = f"bad quality ({tv.raw})" if isinstance(tv.raw, str) else "bad quality"
        elif da.kind != "number":
            reason = None
        elif isinstance(v, bool) or not isinstance(v, int | float):
            reason = None if v is None else f"not a number ({v!r})"
        elif not math.isfinite(float(v)):
            reason = f"{v}"
        elif da.scale_min is not None and da.scale_max is not None and not (
            float(da.scale_min) <= float(v) <= float(da.scale_max)
        ):
            reason = f"{v:g} outside {da.scale_min:g}..{da.scale_max:g} {da.unit}".rstrip()
        if reason is None:
            self._bad_values.pop(assembly, None)
            return tv
        self._bad_values[assembly] = reason
        return TagValue(tv.value, Quality.BAD, tv.timestamp, tv.raw)

    def _watched(self, assembly: str, tv: TagValue) -> TagValue:
        """The stale-value watchdog on a fresh answer of the module: a value that has not
        moved for its ``stale_after`` is marked BAD (conditions then see no value: a reading
        that may no longer follow the process must not divert product or declare a steady
        state) and faults the module until it moves again. Only answers count, so a silent
        link is reported as lost communication, never as a stale value."""
        watch = self._watches[assembly]
        self._heard.add(assembly)
        v = tv.value
        if (tv.quality is Quality.BAD or isinstance(v, bool) or not isinstance(v, int | float)
                or not math.isfinite(float(v))):
            watch.reset()  # a bad value is reported as such; timing restarts when it is good
            self._stale.pop(assembly, None)
            return tv
        source = tv.timestamp if getattr(self.driver, "source_timestamps", False) else None
        reason = watch.observe(self.options.clock(), float(v), source)
        if reason is None:
            self._stale.pop(assembly, None)
            return tv
        self._stale[assembly] = reason
        return TagValue(tv.value, Quality.BAD, tv.timestamp, tv.raw)

    async def _read_quiet(self, tags: Sequence[str]) -> None:
        """For drivers that report changes only (OPC UA subscriptions), a frozen value sends
        nothing at all: read the watched tags that stayed quiet for a poll interval, so the
        watchdog sees the module answer with the same value (and source timestamp)."""
        assert self.driver is not None
        while True:
            await asyncio.sleep(self.options.poll_interval)
            quiet = [t for t in tags if self._read_names[t] not in self._heard]
            self._heard.clear()
            if not quiet or self._comm_lost:
                continue
            try:
                values = await self.driver.read(quiet)
            except DriverError:
                continue  # the subscription reports a lost link; a failed read is not stale
            self._on_values(values, judge_link=False)
            self._heard.difference_update(self._read_names[t] for t in quiet)

    def _update_fault(self) -> None:
        if self._comm_lost:
            fault: str | None = "communication lost"
        else:
            parts = []
            if self._bad_values:
                parts.append("bad value: " + "; ".join(
                    f"{self.tag}.{a} = {r}" for a, r in sorted(self._bad_values.items())))
            if self._stale:
                parts.append("stale value: " + "; ".join(
                    f"{self.tag}.{a} {r}" for a, r in sorted(self._stale.items())))
            fault = "; ".join(parts) or None
        if fault != self.fault and (fault is None or self.fault is None
                                    or fault.split(":")[0] != self.fault.split(":")[0]):
            self._set_fault(fault)
        else:
            self.fault = fault

    def _set_fault(self, fault: str | None) -> None:
        self.fault = fault
        for listener in list(self._fault_listeners):
            self._call("fault", listener, self.tag, fault)

    async def recovered(self) -> None:
        """Until the recovery of a link that came back (:meth:`_recover`) is over, if one
        runs: a command given meanwhile would race its safe state and be aborted by it."""
        while (task := self._recovery) is not None and not task.done():
            await asyncio.wait({task})  # a cancel of the waiter leaves the recovery be

    async def _recover(self) -> None:
        """The link is back: safe state first, then abort what the proxy was running.
        Commands on the proxy's services wait for it (:meth:`recovered`)."""
        try:
            if self.type.safe_state or any(
                d.safe_value is not None for d in self.type.data_assemblies
            ):
                await self.apply_safe_state()
            for svc in self.services.values():
                if isinstance(svc, LocalService) and svc.state not in RESTING_STATES:
                    with contextlib.suppress(CommandRefused):
                        svc.machine.command(
                            Command.ABORT, Channel.PEA,
                            reason="the link came back: safe state written, what was not at "
                                   "rest is aborted")
        finally:
            self._recovery = None

    def value(self, name: str) -> Any:
        """Latest engineering value of ``Assembly`` or ``Assembly.Attribute`` (None if unknown)."""
        tv = self.values.get(name)
        if tv is not None and tv.quality is not Quality.BAD:
            return tv.value
        if name in self.parameters:
            return self.parameters[name]
        return None

    def si_values(self) -> dict[str, Any]:
        """``TAG.Assembly`` -> value in SI (numbers) or as is (bool/str), for conditions."""
        out: dict[str, Any] = {}
        for da in self.type.data_assemblies:
            v = self.value(da.name)
            out[f"{self.tag}.{da.name}"] = _si(da, v)
        for name, svc in self.services.items():
            out[f"{self.tag}.{name}.state"] = svc.state.label
        return out

    async def refresh(self, names: Sequence[str] | None = None) -> None:
        """Read now instead of waiting for the next poll."""
        if self.driver is None:
            return
        tags = list(names) if names is not None else self._readable_tags()
        if tags:
            self._on_values(await self.driver.read(tags))

    # -- writes -----------------------------------------------------------------------------
    async def set(self, assembly: str, value: Any) -> Any:
        """Set an assembly to ``value`` (limits and units checked); returns the coerced value.

        Service parameters the device does not bind are kept by the proxy and take effect
        through the service's actions; bound ones are written (with the MTP Apply handshake
        when the module has one).
        """
        da = self.type.assembly(assembly)
        coerced = da.coerce(value)
        bound = self.driver.tags if self.driver is not None else {}
        attr = write_attribute(da, bound)
        if attr is None:
            if da.class_ in PARAM_CLASSES:
                self.parameters[assembly] = coerced
                return coerced
            raise NotWritable("no writable attribute bound", tag=assembly, module=self.tag)
        assert self.driver is not None
        await self.driver.write(f"{assembly}.{attr}", coerced)
        if da.class_ in PARAM_CLASSES:
            self.parameters[assembly] = coerced
            if f"{assembly}.{PA.APPLY_EXT}" in bound:
                await self.driver.write(f"{assembly}.{PA.APPLY_EXT}", True)
        return coerced

    async def perform(self, writes: Sequence[Write], params: Mapping[str, Any]) -> None:
        for w in writes:
            value = params.get(w.param, self.parameters.get(w.param)) if w.param else w.value
            if w.attribute is None:
                await self.set(w.assembly, value)
            else:
                assert self.driver is not None
                da = self.type.assembly(w.assembly)
                value_attr = carries_value(da.class_, w.attribute)
                await self.driver.write(w.write, da.coerce(value) if value_attr else value)

    async def apply_safe_state(self) -> list[str]:
        """Write the safe state (every write attempted); returns the errors, empty if none."""
        errors: list[str] = []
        if self.driver is None:
            return errors
        done: set[str] = set()
        for w in self.type.safe_state:
            try:
                await self.perform([w], {})
                done.add(w.assembly)
            except (DriverError, ValueError) as exc:
                errors.append(f"{w.write}: {exc}")
        for da in self.type.data_assemblies:
            if da.safe_value is None or da.name in done:
                continue
            try:
                await self.set(da.name, da.safe_value)
            except (DriverError, ValueError) as exc:
                errors.append(f"{da.name}: {exc}")
        return errors


def _si(da: DataAssembly, v: Any) -> Any:
    if v is None or isinstance(v, bool | str) or da.kind != "number":
        return v
    try:
        return to_si(float(v), da.unit)
    except (TypeError, ValueError):
        return None


class LocalService:
    """An MTP service run by the proxy for a device without its own state machine."""

    def __init__(self, proxy: ModuleProxy, service: Service) -> None:
        self.proxy = proxy
        self.service = service
        self.name = service.name
        self.machine = ServiceStateMachine(
            f"{proxy.tag}.{service.name}",
            procedures=[
                Procedure(p.id, p.name, self_completing=p.self_completing, is_default=p.default)
                for p in service.procedures
            ],
            operation_mode=OperationMode.AUTOMATIC,
            source_mode=SourceMode.EXTERNAL,
            clock=proxy.options.clock,
        )
        self._params: dict[str, Any] = {}
        states = {State.from_label(label) for label in service.actions}
        for proc in service.procedures:
            states |= {State.from_label(label) for label in proc.actions}
        if any(p.self_completing for p in service.procedures):
            states.add(State.EXECUTE)
        for state in states:
            self.machine.set_work(state, self._work)
        self.machine.subscribe(proxy.notify_state)

    @property
    def state(self) -> State:
        return self.machine.state

    def running_indicators(self, procedure: int) -> dict[str, Any]:
        """The outputs that say this procedure runs: assemblies its Starting writes with a
        constant that Stopping writes with another (a pump's ``Run``). Empty when none
        tells (a valve whose Starting and Stopping write the same position)."""
        proc = self.service.procedure(procedure)
        start, stop = State.STARTING.label, State.STOPPING.label
        starting = proc.actions.get(start, self.service.actions.get(start, []))
        stopping = proc.actions.get(stop, self.service.actions.get(stop, []))
        stopped = {w.write: w.value for w in stopping if w.value is not None}
        return {w.write: w.value for w in starting
                if w.value is not None and w.write in stopped and stopped[w.write] != w.value}

    def adopt_read_state(self) -> State:
        """At connect, a device without a state machine of its own that reads as running
        (every running indicator of a procedure at its Starting value: a pump found
        pumping, left so by an earlier life of the controller) is taken as in Execute of
        that procedure (the default first), without writing anything; otherwise it stays
        Idle. Why: a service shown Idle while its pump runs would take a Start, and its
        Starting writes (a totaliser reset), on a running pump."""
        if self.machine.state is not State.IDLE:
            return self.machine.state
        procs = sorted(self.service.procedures, key=lambda p: not p.default)
        for proc in procs:
            if proc.self_completing:
                continue  # its completion watch is Execute's work, which adopting skips
            marks = self.running_indicators(proc.id)
            if marks and all(self.proxy.value(name) == value for name, value in marks.items()):
                self.machine.adopt(State.EXECUTE, proc.id,
                                   f"read from the module at connect: {', '.join(marks)} "
                                   f"as {proc.name} starts it")
                break
        return self.machine.state

    def adopt(self, state: State, procedure: int | None, reason: str) -> None:
        """Take ``state`` as the service's present state, written nowhere (a resumed run's
        record of a service whose device cannot report its state)."""
        self.machine.adopt(state, procedure, reason)

    async def _work(self, ctx: WorkContext) -> None:
        """Entering a state: the procedure's writes for it, else the service's; then, in
        Execute, wait for a self-completing procedure's completion condition."""
        label: Any = ctx.state.label
        writes: Sequence[Write] = self.service.actions.get(label, [])
        if ctx.procedure is not None:
            proc = self.service.procedure(ctx.procedure.id)
            writes = proc.actions.get(label, writes)
        await self.proxy.perform(writes, self._params)
        if ctx.state is State.EXECUTE:
            await self._execute(ctx)

    async def _execute(self, ctx: WorkContext) -> None:
        """Self-completing procedures end when their ``complete_when`` condition holds."""
        proc = ctx.procedure
        if proc is None or not proc.self_completing:
            await asyncio.Event().wait()  # continuous: runs until commanded away
            return
        spec = self.service.procedure(proc.id)
        if spec.complete_when is None:
            return
        cond = _module_condition(self.proxy, spec.complete_when, self._params)
        while True:
            await self.proxy.refresh()
            if cond.update(self.proxy.options.clock(), self.proxy_values()):
                return
            await asyncio.sleep(self.proxy.options.complete_poll)

    def proxy_values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for da in self.proxy.type.data_assemblies:
            v = self._params.get(da.name, self.proxy.value(da.name))
            out[f"this.{da.name}"] = _si(da, v)
        return out

    def modes(self, obj: str | None = None) -> Modes:
        if obj is not None:  # the proxy keeps this device's parameters: no modes of their own
            return Modes()
        return Modes(self.machine.operation_mode, self.machine.source_mode)

    async def switch_mode(self, mode: OperationMode | SourceMode, obj: str | None = None
                          ) -> bool:
        if obj is not None:
            return False
        try:
            if isinstance(mode, OperationMode):
                self.machine.set_operation_mode(mode)
            else:
                if self.machine.operation_mode is not OperationMode.AUTOMATIC:
                    raise MtpError(f"{self.name}: the source is chosen in Automatic only "
                                   f"(it is {self.machine.operation_mode.value})",
                                   module=self.proxy.tag)
                self.machine.set_source_mode(mode)
        except CommandRefused as exc:
            raise MtpError(str(exc), module=self.proxy.tag) from None
        return True

    async def command(
        self,
        command: Command,
        *,
        procedure: int | str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> State:
        # A link that came back is recovered first (safe state, then Abort of what was not
        # at rest): a Start taken meanwhile had its Starting writes interleaved with the
        # safe state's and was aborted by the recovery a moment later (the service bench
        # stuck in Held at "SP1.Dosing start": SP1.Dosing went to Aborting).
        await self.proxy.recovered()
        # the POL's handshake, as with a PEA: Automatic, then External, before commanding
        if self.machine.operation_mode is not OperationMode.AUTOMATIC:
            self.machine.set_operation_mode(OperationMode.AUTOMATIC)
        if self.machine.source_mode is not SourceMode.EXTERNAL:
            self.machine.set_source_mode(SourceMode.EXTERNAL)
        if parameters:
            self._set_parameters(procedure, parameters)
        if procedure is not None:
            pid = self.service.procedure(procedure).id
            self.machine.request_procedure(pid, Channel.EXTERNAL)
        if command in (Command.START, Command.RESTART):
            proc = self.service.procedure(self.machine.procedure_req)
            self._params = {
                name: self.proxy.parameters.get(name) for name in self.service.parameters(proc)
            }
        return self.machine.command(command, Channel.EXTERNAL)

    def _set_parameters(self, procedure: int | str | None, params: Mapping[str, Any]) -> None:
        proc = (
            self.service.procedure(procedure)
            if procedure is not None
            else self.service.procedure(self.machine.procedure_req)
        )
        for name, raw in params.items():
            wrong = self.service.not_a_parameter(name, proc, self.proxy.tag)
            if wrong:
                raise ValueError(wrong)
            self.proxy.parameters[name] = self.proxy.type.assembly(name).coerce(raw)

    async def wait_for(self, *states: State, timeout: float | None = None) -> State:
        async with asyncio.timeout(timeout):
            return await self.machine.wait_for(*states)

    async def close(self) -> None:
        await self.machine.aclose()


class RemoteService:
    """A service whose state machine runs in the module (an MTP PEA, e.g. over OPC UA).

    Commands go through the MTP core's :class:`~modulecontrol.mtpcore.ServiceClient` (mode,
    procedure, parameters with Apply, CommandExt checked against CommandEn) over the
    proxy's driver; the state is the PEA's ``StateCur`` as read. Waits run on the proxy's
    link clock (``ProxyOptions.link_clock``/``link_sleep``).
    """

    def __init__(self, proxy: ModuleProxy, service: Service) -> None:
        assert proxy.driver is not None, "a remote service needs the module's driver"
        self.proxy = proxy
        self.service = service
        self.name = service.name
        self._tag = f"{service.name}.{SCA.STATE_CUR}"
        self._last: State | None = None
        timeout = float(getattr(proxy.driver, "timeout", 1.0))
        self.client = ServiceClient(
            proxy.driver,
            service.name,
            now=proxy.options.link_clock,
            sleep=proxy.options.link_sleep,
            timeout=max(10.0, 10 * timeout),
            poll=proxy.options.complete_poll,
            procedures={p.name: p.id for p in service.procedures},
            default_procedure=service.default_procedure.id,
            module=proxy.tag,
            policy=(HandshakePolicy() if proxy.instance.handshake is None
                    else proxy.instance.handshake.policy()),
            on_deviation=proxy.notify_notice,
        )
        proxy.on_values(self._on_values)

    @property
    def state(self) -> State:
        return State.from_code(self.proxy.value(self._tag)) or self._last or State.IDLE

    def _on_values(self, tag: str, values: Mapping[str, TagValue]) -> None:
        tv = values.get(self._tag)
        new = None if tv is None else State.from_code(tv.value)
        if new is None:
            return
        old, self._last = self._last, new
        if old is not None and old is not new:
            proc = self.proxy.value(f"{self.name}.{SCA.PROCEDURE_CUR}")
            self.proxy.notify_state(
                StateChange(
                    service=f"{self.proxy.tag}.{self.name}",
                    old=old,
                    new=new,
                    command=None,
                    channel=None,
                    time=self.proxy.options.clock(),
                    procedure=int(proc or 0),
                )
            )

    def modes(self, obj: str | None = None) -> Modes:
        target = obj or self.name

        def active(kind: str, members: Any) -> Any:
            for m in members:
                if self.proxy.value(f"{target}.{mode_attribute(kind, m.abbrev, 'Act')}") is True:
                    return m
            return None

        return Modes(active("State", OperationMode), active("Src", SourceMode))

    async def switch_mode(self, mode: OperationMode | SourceMode, obj: str | None = None
                          ) -> bool:
        switched = await self.client.switch_mode(mode, obj=obj)
        target = obj or self.name
        acts = [f"{target}.{mode_attribute('State', m.abbrev, 'Act')}" for m in OperationMode]
        acts += [f"{target}.{mode_attribute('Src', m.abbrev, 'Act')}" for m in SourceMode]
        assert self.proxy.driver is not None
        tags = [t for t in acts if t in self.proxy.driver.tags]
        if tags:
            await self.proxy.refresh(tags)  # what the station shows next is what was confirmed
        return switched.bound

    async def command(
        self,
        command: Command,
        *,
        procedure: int | str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> State:
        proc = None
        if procedure is not None:
            try:
                proc = self.service.procedure(procedure)
            except KeyError as exc:
                raise MtpError(str(exc.args[0]), module=self.proxy.tag) from None
        coerced: dict[str, Any] = {}
        if parameters:
            allowed = set(self.service.config_parameters)
            for p in [proc] if proc is not None else self.service.procedures:
                allowed.update(p.parameters)
            for name, raw in parameters.items():
                if name not in allowed:
                    where = f" procedure {proc.name}" if proc is not None else ""
                    raise MtpError(
                        f"'{name}' is not a parameter of {self.name}{where} "
                        f"(parameters: {', '.join(sorted(allowed)) or 'none'})",
                        module=self.proxy.tag)
                coerced[name] = self.proxy.type.assembly(name).coerce(raw)
        await self.client.command(command, procedure=None if proc is None else proc.id,
                                  parameters=coerced)
        self.proxy.parameters.update(coerced)
        await self.proxy.refresh([self._tag])
        return self.state

    async def wait_for(self, *states: State, timeout: float | None = None) -> State:
        async with asyncio.timeout(timeout):
            while True:
                await self.proxy.refresh([self._tag])
                current = self.state
                if current in states:
                    return current
                await self.proxy.options.link_sleep(self.proxy.options.complete_poll)

    async def close(self) -> None:
        return None


def _module_condition(proxy: ModuleProxy, text: str, params: Mapping[str, Any]) -> Any:
    """Compile a module-local condition (``this.DeliveredVolume >= this.VolumeSP``)."""
    signals: dict[str, SignalInfo] = {}
    for da in proxy.type.data_assemblies:
        signals[f"this.{da.name}"] = SignalInfo(da.unit if da.kind == "number" else "", da.kind)
    return compile_condition(text, signals)


def proxies_for(
    config: Any, drivers: Mapping[str, Driver] | None = None, options: ProxyOptions | None = None
) -> dict[str, ModuleProxy]:
    """A proxy per module of a plant (``PlantConfig``)."""
    out: dict[str, ModuleProxy] = {}
    for inst in config.plant.modules:
        drv = (drivers or {}).get(inst.tag)
        out[inst.tag] = ModuleProxy(config.type_of(inst.tag), inst, drv, options)
    return out


def _discard(listeners: list[Any], listener: Any) -> None:
    with contextlib.suppress(ValueError):
        listeners.remove(listener)

"""The driver interface every transport implements, its typed errors and shared machinery.

A driver speaks one protocol to one module instance. It knows the module's tags (the
``Assembly.Attribute`` pairs its descriptor binds for that transport) and nothing about
services or recipes: that is the proxy's job. Values cross this interface in the engineering
unit of their data assembly (``DataAssembly.unit``); the driver applies register scaling.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from modulecontrol.descriptors import (
    Binding,
    DataAssembly,
    EndpointBase,
    ModuleInstance,
    ModuleType,
    Service,
)
from modulecontrol.drivers._scan import ScanStats
from modulecontrol.errors import did_you_mean
from modulecontrol.mtpcore import (
    DA_ATTRIBUTES,
    SERVICE_CONTROL,
    SERVICE_CONTROL_ATTRIBUTES,
    carries_value,
    writable,
)


class DriverError(Exception):
    """Base of every error a driver raises; ``tag`` names the tag when one is involved."""

    def __init__(self, message: str, *, tag: str | None = None, module: str | None = None):
        self.tag = tag
        self.module = module
        where = " ".join(x for x in (module, tag) if x)
        super().__init__(f"{where}: {message}" if where else message)


class DriverTimeout(DriverError):
    """The device did not answer within the endpoint's timeout."""


class Disconnected(DriverError):
    """No link to the device (never connected, lost, or closed)."""


class DeviceRejected(DriverError):
    """The device answered with an error (Modbus exception code, OPC UA bad status, ``?``)."""

    def __init__(self, message: str, *, code: int | str | None = None, **kw: Any) -> None:
        self.code = code
        super().__init__(message, **kw)


class OutOfRange(DriverError):
    """A value to write is outside the assembly's limits or the register's range."""


class ValueRefused(DeviceRejected, OutOfRange):
    """The device refused a value it takes to be out of range (Modbus exception 3, a serial
    device's range error such as ``?OOR``): nothing changed, and sending it again would be
    refused again, so it is never retried. The message names the setting, the value and the
    limits the descriptor gives (:func:`refusal`)."""

    def __init__(self, message: str, *, code: int | str | None = None, tag: str | None = None,
                 module: str | None = None) -> None:
        super().__init__(message, code=code)  # the message names the setting itself
        self.tag = tag
        self.module = module


def refusal(module: str, info: TagInfo, value: Any, how: str) -> str:
    """Why-message of a value the device refused: ``P1.FlowSetpoint = 200 mL/min refused by
    the device: out of range 0..10 mL/min (Modbus exception 3)``.

    Why a shared wording: the operator needs the setting, the value and its limits, whatever
    the transport. When the value is inside the descriptor's limits the device's own range is
    narrower (or the value is refused in the device's present state), and the message says to
    make the descriptor match the device rather than retry.
    """
    da = info.assembly
    unit = f" {da.unit}" if da.unit else ""
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    what = f"{module}.{da.name} = {shown}{unit} refused by the device"
    lo, hi = da.min, da.max
    if lo is None and hi is None:
        return f"{what} ({how}); the descriptor gives no limits for it: check the device's range"
    limits = f"{_lim(lo)}..{_lim(hi)}{unit}"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        return f"{what}: out of range {limits} ({how})"
    return (f"{what} ({how}), although the descriptor allows {limits}: the device's range is "
            "narrower or it refuses the value in its present state; make the descriptor's "
            "min/max match the device")


def _lim(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


class NotWritable(DriverError):
    """The tag is read-only (an input register, a view, a read-only node)."""


class UnknownTag(DriverError):
    """The tag is not bound for this transport in the module's descriptor."""


class BadReply(DriverError):
    """The device answered, but not as its descriptor says it does: garbage, a wrong checksum
    or address, a pattern that does not match, a value that does not convert. ``reply`` keeps
    the text so the user can compare it with the descriptor."""

    def __init__(self, message: str, *, reply: str | None = None, **kw: Any) -> None:
        self.reply = reply
        super().__init__(message, **kw)


class BadRequest(DriverError):
    """The value cannot be put into the request (a command template: wrong type, not ASCII);
    nothing was sent."""


class Quality(enum.Enum):
    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


@dataclass(frozen=True, slots=True)
class TagValue:
    """A value as read: engineering value, raw device value, quality and time (UNIX s)."""

    value: Any
    quality: Quality = Quality.GOOD
    timestamp: float = field(default_factory=time.time)
    raw: Any = None

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD


@dataclass
class Health:
    """What an operator screen shows about a link."""

    connected: bool = False
    last_error: str | None = None
    last_error_time: float | None = None
    round_trip: float | None = None
    """Seconds of the last successful request."""
    reconnects: int = 0
    requests: int = 0
    errors: int = 0


@dataclass(frozen=True)
class TagInfo:
    """One tag of a module as a transport sees it.

    ``Service.Attribute`` tags (ServiceControl attributes such as ``Tempering.StateCur``)
    carry the ``service``; ServiceControl is not a data-assembly class, so their
    ``assembly`` is a stand-in ``DIntView`` named after the service (no unit, no limits)
    that keeps code reading ``info.assembly`` working. Check ``service`` first.
    """

    name: str
    assembly: DataAssembly
    attribute: str
    binding: Binding
    """The transport's own binding model; its driver narrows it to its class."""
    service: Service | None = None

    @property
    def writable(self) -> bool:
        return self.binding.writable

    @property
    def readable(self) -> bool:
        return self.binding.readable


Callback = Callable[[Mapping[str, TagValue]], None]


class Subscription(Protocol):
    async def cancel(self) -> None: ...


@runtime_checkable
class Driver(Protocol):
    """What the proxies use. Every I/O method honours the endpoint's timeout."""

    transport: ClassVar[str]

    @property
    def tags(self) -> Mapping[str, TagInfo]: ...

    async def connect(self) -> None: ...
    async def close(self) -> None: ...
    async def read(self, tags: Sequence[str]) -> dict[str, TagValue]: ...
    async def write(self, tag: str, value: Any) -> None: ...
    async def subscribe(
        self, tags: Sequence[str], interval: float, callback: Callback
    ) -> Subscription: ...
    def health(self) -> Health: ...


def tag_table(module_type: ModuleType, transport: str) -> dict[str, TagInfo]:
    """Every ``Assembly.Attribute`` of the type that has a binding for ``transport``.

    For OPC UA, a type with ``opcua`` defaults gets a binding for every attribute of every
    assembly and service (the PEA publishes them all); explicit bindings win. Services
    contribute ``Service.Attribute`` tags for their ServiceControl attributes (explicit
    ``bindings`` of the service, or the type's OPC UA defaults).
    """
    out: dict[str, TagInfo] = {}
    for da in module_type.data_assemblies:
        for attr, ab in da.bindings.items():
            b = ab.for_transport(transport)
            if b is not None:
                out[f"{da.name}.{attr}"] = TagInfo(f"{da.name}.{attr}", da, attr, b)
        if transport == "opcua" and module_type.opcua is not None:
            for attr in DA_ATTRIBUTES[da.class_]:
                name = f"{da.name}.{attr}"
                if name not in out:
                    out[name] = TagInfo(name, da, attr, module_type.opcua.binding(
                        da.name, attr, writable(da.class_, attr)))
    for svc in module_type.services:
        stand_in = DataAssembly.model_validate(
            {"name": svc.name, "class": "DIntView", "description": f"ServiceControl {svc.name}"}
        )
        for attr, ab in svc.bindings.items():
            b = ab.for_transport(transport)
            if b is not None:
                name = f"{svc.name}.{attr}"
                out[name] = TagInfo(name, stand_in, attr, b, service=svc)
        if transport == "opcua" and module_type.opcua is not None:
            for attr in SERVICE_CONTROL_ATTRIBUTES:
                name = f"{svc.name}.{attr}"
                if name not in out:
                    b = module_type.opcua.binding(
                        svc.name, attr, writable(SERVICE_CONTROL, attr))
                    out[name] = TagInfo(name, stand_in, attr, b, service=svc)
    return out


def cancels_asked() -> int:
    """How many cancels the running task has been asked (0 outside a task): the mark a
    transport call takes before it awaits, for :func:`cancel_asked_since`."""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def cancel_asked_since(mark: int) -> bool:
    """Whether the running task was asked to cancel after ``mark`` (:func:`cancels_asked`).

    Why a transport needs it: a ``CancelledError`` out of a protocol library is the task's
    own cancel only if one was asked; asyncua also cancels a request's future itself when
    its connection resets, which is a lost link. And Python 3.11's ``asyncio.wait_for``
    (pymodbus' and asyncua's wait for a reply) returns a reply that lands in the same loop
    iteration as a cancel and drops the cancel, which only this count still shows.
    """
    return cancels_asked() > mark


class _Default(enum.Enum):
    TIMEOUT = 0


_MAX_PREPARED = 256
"""Distinct tag lists a driver keeps prepared reads for."""


class BaseDriver:
    """Shared machinery: tag lookup, write checks, health bookkeeping, polling subscriptions.

    Transports subclass it and implement ``_connect``, ``_close``, ``_read`` and ``_write``.
    """

    transport: ClassVar[str] = ""
    """The binding key in module types (``modbus:``) and the driver's entry-point name."""
    binding_model: ClassVar[type[Binding]] = Binding
    """The model of this transport's attribute bindings; registered under ``transport``."""
    endpoint_models: ClassVar[tuple[type[EndpointBase], ...]] = ()
    """The endpoint models a plant may name (``protocol: modbus-tcp``), one per protocol."""
    source_timestamps: ClassVar[bool] = False
    """Whether ``TagValue.timestamp`` is the device's time of the value (OPC UA
    SourceTimestamp) rather than the time of the read; the proxy's stale-value watchdog
    then also treats a timestamp that stops advancing as stale."""
    reports_changes_only: ClassVar[bool] = False
    """Whether ``subscribe`` calls back only when a value changes (OPC UA data changes)
    instead of with every poll; the watchdog then reads quiet watched tags itself."""

    def __init__(self, module_type: ModuleType, instance: ModuleInstance) -> None:
        if instance.endpoint is None:
            raise ValueError(f"module {instance.tag} has no endpoint")
        self.module_type = module_type
        self.instance = instance
        self.tag_name = instance.tag
        self.timeout = float(instance.endpoint.timeout)
        self.tags: dict[str, TagInfo] = tag_table(module_type, self.transport)
        self._health = Health()
        self._subs: set[asyncio.Task[None]] = set()
        self._prepared: dict[tuple[str, ...], tuple[Any, float | None]] = {}

    # -- to implement -------------------------------------------------------------------
    async def _connect(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def _read(self, infos: Sequence[TagInfo]) -> dict[str, TagValue]:
        raise NotImplementedError

    async def _write(self, info: TagInfo, value: Any) -> None:
        raise NotImplementedError

    # -- public -------------------------------------------------------------------------
    async def connect(self) -> None:
        mark = cancels_asked()
        try:
            async with asyncio.timeout(self.timeout * 5):
                await self._connect()
        except TimeoutError:
            self._fail("connect timed out")
            raise DriverTimeout("connect timed out", module=self.tag_name) from None
        except asyncio.CancelledError:
            if cancel_asked_since(mark):
                raise
            raise self._dropped("the connect") from None
        self._health.connected = True

    async def close(self) -> None:
        for task in list(self._subs):
            task.cancel()
        for task in list(self._subs):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._subs.clear()
        await self._close()
        self._health.connected = False

    async def __aenter__(self) -> BaseDriver:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def info(self, tag: str) -> TagInfo:
        try:
            return self.tags[tag]
        except KeyError:
            raise UnknownTag(
                f"not bound for {self.transport}{did_you_mean(tag, self.tags)}",
                tag=tag, module=self.tag_name,
            ) from None

    async def read(self, tags: Sequence[str]) -> dict[str, TagValue]:
        key = tags if type(tags) is tuple else tuple(tags)
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepare_read(key)
        plan, budget = prepared
        values: dict[str, TagValue] = await self._timed(self._read_prepared(plan), budget)
        return values

    def _prepare_read(self, key: tuple[str, ...]) -> tuple[Any, float | None]:
        """Check a tag list once and keep what reading it needs, keyed by the names.

        Why: a subscription or a proxy polls the same list again and again; resolving and
        checking 40 names (and, for Modbus, planning and compiling decoders) on every poll
        costs more than decoding the reply.
        """
        infos = [self.info(t) for t in key]
        for i in infos:
            if not i.readable:
                raise NotWritable("tag is write-only", tag=i.name, module=self.tag_name)
        prepared = (self._compile_read(infos), self._budget("read", len(infos)))
        if len(self._prepared) >= _MAX_PREPARED:
            self._prepared.clear()  # a caller inventing lists: keep memory bounded
        self._prepared[key] = prepared
        return prepared

    def _compile_read(self, infos: Sequence[TagInfo]) -> Any:
        """What :meth:`_read_prepared` gets for these tags (default: the infos themselves)."""
        return infos

    async def _read_prepared(self, plan: Any) -> dict[str, TagValue]:
        """Read a list compiled by :meth:`_compile_read` (default: ``_read(infos)``)."""
        values: dict[str, TagValue] = await self._read(plan)
        return values

    async def write(self, tag: str, value: Any) -> None:
        info = self.info(tag)
        if not info.writable:
            raise NotWritable("tag is read-only", tag=tag, module=self.tag_name)
        try:
            checked = check_value(info, value)
        except ValueError as exc:
            raise OutOfRange(str(exc), tag=tag, module=self.tag_name) from None
        await self._timed(self._write(info, checked), self._budget("write", 1))

    async def subscribe(self, tags: Sequence[str], interval: float, callback: Callback
                        ) -> Subscription:
        """Poll ``tags`` every ``interval`` s; the callback must not block (hand off to a queue).

        Scans keep to a fixed schedule (start + k x interval). A scan that overruns makes
        the next one start at once, late; slots passed entirely during an overrun are
        skipped and counted as missed, not caught up with a burst of reads that would only
        load a slow device further. Timing goes to ``subscription.stats``
        (:class:`ScanStats`).
        """
        infos = [self.info(t) for t in tags]
        names = [i.name for i in infos]
        stats = ScanStats(interval)

        async def poll() -> None:
            clock = time.monotonic
            next_t = clock()
            stats.started = next_t
            while True:
                t0 = clock()
                if t0 - next_t >= interval:  # whole slots passed while the last scan ran
                    skipped = int((t0 - next_t) / interval)
                    stats.missed += skipped
                    next_t += skipped * interval
                ok = True
                try:
                    values = await self.read(names)
                except DriverError:
                    values = {n: TagValue(None, Quality.BAD) for n in names}
                    ok = False
                callback(values)
                t1 = clock()
                stats.record(t0 - next_t, t1 - t0, ok=ok)
                stats.last, stats.last_slot = t1, next_t
                next_t += interval
                await asyncio.sleep(max(0.0, next_t - clock()))

        task = asyncio.get_running_loop().create_task(poll(), name=f"poll {self.tag_name}")
        self._subs.add(task)
        return _TaskSubscription(task, self._subs, stats)

    def health(self) -> Health:
        return self._health

    # -- helpers for transports ----------------------------------------------------------
    def _budget(self, op: str, count: int) -> float | None:
        """Seconds one ``read``/``write`` call may take in all (``op`` names which).

        The default is one endpoint timeout. A transport that retries or splits a call into
        several wire requests bounds each request itself and returns ``None`` here, so the
        outer deadline cannot cut its retries short.
        """
        return self.timeout

    async def _timed(self, coro: Awaitable[Any],
                     budget: float | _Default | None = _Default.TIMEOUT) -> Any:
        """Await ``coro`` within ``budget`` s (default: the endpoint timeout; None: unbounded).

        A cancellation of the caller is never lost here (:func:`cancel_asked_since`): one
        the library's ``wait_for`` dropped as the reply landed is raised after the reply
        (it left a cancelled service's work polling, and the next state's work, which waits
        for it, never began: a pump left in Aborting with its Run on). A ``CancelledError``
        the caller was not asked is the library dropping its request: ``Disconnected``.
        """
        if budget is _Default.TIMEOUT:
            budget = self.timeout
        health = self._health
        health.requests += 1
        mark = cancels_asked()
        t0 = time.perf_counter()
        try:
            if budget is None:
                result = await coro
            else:
                async with asyncio.timeout(budget):
                    result = await coro
        except TimeoutError:
            self._fail("timeout")
            raise DriverTimeout(f"no answer within {self.timeout:g} s",
                                module=self.tag_name) from None
        except DriverError as exc:
            self._fail(str(exc))
            raise
        except asyncio.CancelledError:
            if cancel_asked_since(mark):
                raise
            raise self._dropped("the request") from None
        health.round_trip = time.perf_counter() - t0
        if cancel_asked_since(mark):
            raise asyncio.CancelledError
        return result

    def _dropped(self, what: str) -> Disconnected:
        """The error for a ``CancelledError`` the caller was not asked: the protocol library
        cancelled its own request (asyncua does when its connection closes or resets), a lost
        link. Raised as a cancel, it ended a poll loop or a service's work without a word,
        and failed a module's connect at start with an empty message."""
        self._fail(f"{what} was dropped by the client library")
        return Disconnected(f"{what} was dropped by the {self.transport} client library "
                            "(its connection closed or was reset)", module=self.tag_name)

    def _fail(self, message: str) -> None:
        self._health.errors += 1
        self._health.last_error = message
        self._health.last_error_time = time.time()


class _TaskSubscription:
    def __init__(self, task: asyncio.Task[None], owner: set[asyncio.Task[None]],
                 stats: ScanStats) -> None:
        self._task = task
        self._owner = owner
        self.stats = stats
        """Scan timing of this poll loop (read it any time; it stays bounded in size)."""

    async def cancel(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._owner.discard(self._task)


def check_value(info: TagInfo, value: Any) -> Any:
    """Coerce to the assembly's kind and check its limits (for the attributes that carry the
    assembly's value, :func:`modulecontrol.mtpcore.carries_value`)."""
    da = info.assembly
    if info.service is None and carries_value(da.class_, info.attribute):
        return da.coerce(value)
    if isinstance(value, bool | int | float | str):
        return value
    raise ValueError(f"cannot write {type(value).__name__} to {info.name}")

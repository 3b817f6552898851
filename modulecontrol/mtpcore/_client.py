"""The PEA service handshake, once, over any transport that reads and writes tags.

Why here and not in the OPC UA driver: the handshake is MTP (VDI/VDE/NAMUR 2658-4), not
OPC UA. A PEA reached over Modbus, through a gateway or through a plug-in transport runs the
same sequence, and the proxy, ``mtp check`` and the tests must all run the one copy. The client
therefore knows only tag names (``Service.Attribute``, ``Param.Attribute``) and a tiny
:class:`TagIO` protocol that every driver (``BaseDriver``) already satisfies.

Every wait is bounded by ``timeout`` and measured on the injected ``now``/``sleep``, never on
the process's own clocks, so a simulated run waits in simulated time.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from modulecontrol.errors import did_you_mean
from modulecontrol.mtpcore._attributes import PA, SCA, mode_attribute
from modulecontrol.mtpcore._states import (
    FAILED_STATES,
    Command,
    OperationMode,
    SourceMode,
    State,
    commands_in,
    expected_states,
    on_the_way,
)

__all__ = [
    "CommandNotEnabled",
    "HandshakePolicy",
    "ModeRefused",
    "ModeSwitch",
    "MtpError",
    "Reading",
    "ServiceClient",
    "ServiceStateError",
    "ServiceStatus",
    "ServiceTimeout",
    "TagIO",
    "values_match",
]


# -- the transport it needs --------------------------------------------------------------------
class Reading(Protocol):
    """A value as read (``TagValue`` of the drivers): only ``value`` is used."""

    @property
    def value(self) -> Any: ...


class TagIO(Protocol):
    """What the client needs of a driver: its bound tag names, batched reads, single writes.

    ``BaseDriver`` satisfies it; so does a dictionary-backed fake in a test.
    """

    @property
    def tags(self) -> Container[str]: ...

    async def read(self, tags: Sequence[str]) -> Mapping[str, Reading]: ...

    async def write(self, tag: str, value: Any) -> None: ...


# -- errors ----------------------------------------------------------------------------------
class MtpError(Exception):
    """A step of the MTP handshake failed; the message names the module and the PEA's state."""

    def __init__(self, message: str, *, module: str | None = None) -> None:
        self.module = module
        super().__init__(f"{module}: {message}" if module else message)


class CommandNotEnabled(MtpError):
    """The command's bit is not set in CommandEn, so the PEA would ignore it."""

    def __init__(self, message: str, *, state: State | None, enabled: Sequence[Command],
                 module: str | None = None) -> None:
        self.state = state
        self.enabled = list(enabled)
        super().__init__(message, module=module)


class ModeRefused(MtpError):
    """The PEA did not switch operation mode, source, procedure or parameter as asked."""


class ServiceStateError(MtpError):
    """The service went to a failed state (Aborted, Stopped, ...) while we waited."""

    def __init__(self, message: str, *, state: State, module: str | None = None) -> None:
        self.state = state
        super().__init__(message, module=module)


class ServiceTimeout(MtpError, TimeoutError):
    """The expected state or confirmation did not arrive within the timeout."""


# -- policies --------------------------------------------------------------------------------
@dataclass(frozen=True)
class HandshakePolicy:
    """How to drive a PEA that bends the 2658-4 handshake; the defaults are the standard.

    Why declared per PEA and never guessed at run time: each tolerance gives up a check
    the standard makes (a command sent although CommandEn does not enable it may be
    ignored; a parameter confirmed only after Start starts the procedure first), so the
    plant says which PEA needs which, and every use is reported through ``on_deviation``.

    * ``command_en``: ``strict`` refuses a command whose bit is not in CommandEn
      (:class:`CommandNotEnabled`); ``advisory`` sends it anyway, reports it, and lets the
      wait for the target state decide (a PEA that reports CommandEn 0 until its first
      transition);
    * ``parameters``: ``apply`` writes VExt and ApplyExt and waits for VFbk before the
      command; ``at_start`` writes VExt (confirmed by VReq where bound) and confirms VFbk
      only after Start or Restart, for a PEA that takes parameters over at Start. A
      parameter without a bound ApplyExt is always taken at Start (the manifest says so);
    * ``state_codes``: StateCur codes outside the standard read as a state (``32678`` as
      Resetting), each reported once;
    * ``procedure``: ``level`` writes ProcedureExt once; ``edge`` first writes 0 (no
      procedure), for a PEA that reacts only to a *change* of ProcedureExt and so misses a
      request equal to its initial value (MTPPy starts with the default procedure there);
    * ``command``: ``level`` writes CommandExt once; ``edge`` first writes 0 when CommandExt
      still holds the same command, for a PEA that reacts only to a *change* of CommandExt
      and never clears it (MTPPy), so a second Start after a cycle would be lost;
    * ``timeout``/``poll``: seconds per wait and between reads, for a slow PEA.
    """

    command_en: Literal["strict", "advisory"] = "strict"
    parameters: Literal["apply", "at_start"] = "apply"
    procedure: Literal["level", "edge"] = "level"
    command: Literal["level", "edge"] = "level"
    state_codes: Mapping[int, State] = field(default_factory=dict)
    timeout: float | None = None
    poll: float | None = None

    def state_of(self, code: object) -> State | None:
        """The state of a StateCur value: a standard code, else a declared deviation."""
        state = State.from_code(code)
        if state is None and isinstance(code, int) and not isinstance(code, bool):
            return self.state_codes.get(code)
        return state


STANDARD = HandshakePolicy()


# -- snapshots -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServiceStatus:
    """A snapshot of a service's ServiceControl, read in one request."""

    service: str
    state: State | None
    """None when StateCur is not one known state bit (see ``state_code``)."""
    state_code: int
    command_en: int
    procedure_cur: int | None
    procedure_req: int | None
    automatic: bool | None
    external: bool | None

    @property
    def enabled(self) -> list[Command]:
        return commands_in(self.command_en)

    @property
    def state_label(self) -> str:
        return self.state.label if self.state is not None else f"unknown state {self.state_code}"

    def describe(self) -> str:
        mode = "" if self.automatic is None else (
            f", mode {'Automatic' if self.automatic else 'not Automatic'}"
            f"/{'External' if self.external else 'not External'}"
        )
        return (f"{self.service} is in {self.state_label}{mode}, enabled commands: "
                f"{', '.join(c.label for c in self.enabled) or 'none'}")


@dataclass(frozen=True)
class ModeSwitch:
    """The outcome of a mode request that did not fail.

    ``bound`` is False when the object has no confirmation flag (``*Act``) on this transport,
    so nothing could be requested or checked; ``request`` names the attribute written (None
    when the mode was already active).
    """

    bound: bool
    request: str | None = None

    @property
    def already(self) -> bool:
        return self.bound and self.request is None


def values_match(value: Any, want: Any, tolerance: float | None = None) -> bool:
    """Whether a feedback value confirms ``want``: numbers within ``tolerance`` (absolute;
    default 1e-6 relative); a Boolean only by the same Boolean (a 1 where true was written
    means the node has the wrong type); everything else by equality."""
    if isinstance(want, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(want, bool) and value == want
    if isinstance(want, int | float):
        if not isinstance(value, int | float) or not math.isfinite(float(value)):
            return False
        tol = tolerance if tolerance is not None else 1e-6 * max(1.0, abs(float(want)))
        return abs(float(value) - float(want)) <= tol
    return bool(value == want)


def _confirms(want: Any, tolerance: float | None) -> Callable[[Any], bool]:
    return lambda value: values_match(value, want, tolerance)


# -- the client ------------------------------------------------------------------------------
class ServiceClient:
    """Runs the PEA handshake for one service of one module over a :class:`TagIO`.

    ``procedures`` maps procedure names to ids (for messages); ``default_procedure`` is
    selected for Start/Restart when none is named. ``now``/``sleep`` are the run's clock
    (``Clock.now``/``Clock.sleep``, or ``time.monotonic``/``asyncio.sleep`` outside a run);
    ``timeout`` bounds each wait, ``poll`` is the pause between two reads while waiting.
    ``policy`` is how this PEA bends the standard (:class:`HandshakePolicy`, its timeout
    and poll win); ``on_deviation(message)`` hears of every tolerance the policy used.
    """

    def __init__(
        self,
        io: TagIO,
        service: str,
        *,
        now: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        timeout: float = 10.0,
        poll: float = 0.05,
        procedures: Mapping[str, int] | None = None,
        default_procedure: int | None = None,
        module: str | None = None,
        policy: HandshakePolicy = STANDARD,
        on_deviation: Callable[[str], None] | None = None,
    ) -> None:
        timeout = policy.timeout if policy.timeout is not None else timeout
        poll = policy.poll if policy.poll is not None else poll
        if not (timeout > 0 and poll > 0):
            raise ValueError("timeout and poll must be positive (seconds)")
        self.io = io
        self.service = service
        self.timeout = float(timeout)
        self.poll = float(poll)
        self.policy = policy
        self._on_deviation = on_deviation
        self._reported: set[str] = set()
        self._at_start: dict[str, Any] = {}
        self.procedures = dict(procedures or {})
        self.default_procedure = default_procedure
        self.module = module
        self._now = now
        self._sleep = sleep

    def _deviation(self, message: str, *, once: str | None = None) -> None:
        if once is not None:
            if once in self._reported:
                return
            self._reported.add(once)
        if self._on_deviation is not None:
            self._on_deviation(f"{self.service}: {message}")

    def _state_of(self, code: Any) -> State | None:
        state = self.policy.state_of(code)
        if state is not None and State.from_code(code) is None:
            self._deviation(f"StateCur {code} is no 2658-4 state code; read as {state.label} "
                            "(declared in the handshake policy's state_codes)",
                            once=f"code {code}")
        return state

    # -- reading ---------------------------------------------------------------------------
    def tag(self, attribute: str, obj: str | None = None) -> str:
        """The tag of ``attribute`` of the service (or of ``obj``, e.g. a parameter)."""
        return f"{obj or self.service}.{attribute}"

    def has(self, attribute: str, obj: str | None = None) -> bool:
        return self.tag(attribute, obj) in self.io.tags

    async def get(self, attribute: str, obj: str | None = None) -> Any:
        tag = self.tag(attribute, obj)
        return (await self.io.read([tag]))[tag].value

    async def status(self) -> ServiceStatus:
        """StateCur, CommandEn, procedure and mode of the service, in one read."""
        attrs = (SCA.STATE_CUR, SCA.COMMAND_EN, SCA.PROCEDURE_CUR, SCA.PROCEDURE_REQ,
                 mode_attribute("State", OperationMode.AUTOMATIC.abbrev, "Act"),
                 mode_attribute("Src", SourceMode.EXTERNAL.abbrev, "Act"))
        tags = [self.tag(a) for a in attrs if self.has(a)]
        values = await self.io.read(tags) if tags else {}

        def get(attr: str) -> Any:
            tv = values.get(self.tag(attr))
            return None if tv is None else tv.value

        code = int(get(SCA.STATE_CUR) or 0)
        return ServiceStatus(
            service=self.service, state=self._state_of(code), state_code=code,
            command_en=int(get(SCA.COMMAND_EN) or 0),
            procedure_cur=get(SCA.PROCEDURE_CUR), procedure_req=get(SCA.PROCEDURE_REQ),
            automatic=get(attrs[4]), external=get(attrs[5]),
        )

    async def state(self) -> State | None:
        return self._state_of(await self.get(SCA.STATE_CUR))

    async def until(self, attribute: str, ok: Callable[[Any], bool], *,
                    obj: str | None = None, timeout: float | None = None) -> tuple[bool, Any]:
        """Read ``attribute`` until ``ok(value)`` or the timeout; (reached, last value)."""
        deadline = self._now() + (self.timeout if timeout is None else timeout)
        while True:
            value = await self.get(attribute, obj)
            if ok(value):
                return True, value
            if self._now() >= deadline:
                return False, value
            await self._sleep(self.poll)

    # -- modes -----------------------------------------------------------------------------
    async def switch_mode(self, mode: OperationMode | SourceMode, *,
                          obj: str | None = None) -> ModeSwitch:
        """Bring the service (or parameter ``obj``) into ``mode`` and wait for its ``*Act``.

        2658-4 switches with edge-triggered ``*Op`` requests when ``StateChannel`` /
        ``SrcChannel`` is false (the operator channel; the PEA resets the request) and with
        level ``*Aut`` signals when it is true. Raises :class:`ModeRefused` when the PEA does
        not confirm within the timeout.
        """
        kind = "State" if isinstance(mode, OperationMode) else "Src"
        act = mode_attribute(kind, mode.abbrev, "Act")
        if not self.has(act, obj):
            return ModeSwitch(bound=False)
        channel = SCA.STATE_CHANNEL if kind == "State" else SCA.SRC_CHANNEL
        if await self.get(act, obj) is True:
            return ModeSwitch(bound=True)
        level = self.has(channel, obj) and await self.get(channel, obj) is True
        request = mode_attribute(kind, mode.abbrev, "Aut" if level else "Op")
        await self.io.write(self.tag(request, obj), True)
        ok, _ = await self.until(act, lambda v: v is True, obj=obj)
        if not ok:
            raise ModeRefused(
                f"{obj or self.service} did not switch to {mode.value} within "
                f"{self.timeout:g} s after {request}=true ({await self._mode_text(obj)})",
                module=self.module)
        return ModeSwitch(bound=True, request=request)

    async def ensure_automatic_external(self, obj: str | None = None) -> None:
        """Operation mode Automatic, then source External (each only where it is bound)."""
        await self.switch_mode(OperationMode.AUTOMATIC, obj=obj)
        await self.switch_mode(SourceMode.EXTERNAL, obj=obj)

    async def _mode_text(self, obj: str | None) -> str:
        attrs = [*(mode_attribute("State", m.abbrev, "Act") for m in OperationMode),
                 SCA.STATE_CHANNEL,
                 *(mode_attribute("Src", m.abbrev, "Act") for m in SourceMode),
                 SCA.SRC_CHANNEL]
        tags = [self.tag(a, obj) for a in attrs if self.has(a, obj)]
        values = await self.io.read(tags) if tags else {}
        return ", ".join(f"{t.split('.', 1)[1]}={values[t].value}" for t in tags)

    # -- procedure and parameters ----------------------------------------------------------
    def _procedure_text(self, proc_id: int) -> str:
        names = {v: k for k, v in self.procedures.items()}
        return f"{names[proc_id]} (id {proc_id})" if proc_id in names else f"id {proc_id}"

    async def select_procedure(self, proc_id: int) -> int:
        """Write ProcedureExt and wait until ProcedureReq confirms it; returns the id."""
        if self.procedures and proc_id not in self.procedures.values():
            known = ", ".join(f"{n} ({i})" for n, i in self.procedures.items())
            raise MtpError(f"{self.service} has no procedure id {proc_id} (procedures: {known})",
                           module=self.module)
        if await self.get(SCA.PROCEDURE_REQ) == proc_id:
            return proc_id
        if self.policy.procedure == "edge" and await self.get(SCA.PROCEDURE_EXT) == proc_id:
            await self.io.write(self.tag(SCA.PROCEDURE_EXT), 0)
            self._deviation(f"ProcedureExt written 0, then {proc_id}, so the PEA sees a "
                            "change (procedure: edge)", once="procedure edge")
        await self.io.write(self.tag(SCA.PROCEDURE_EXT), proc_id)
        ok, got = await self.until(SCA.PROCEDURE_REQ, lambda v: v == proc_id)
        if not ok:
            status = await self.status()
            hint = "" if self.policy.procedure == "edge" else (
                "; if this PEA reacts only to a change of ProcedureExt, declare handshake: "
                f"{{procedure: edge}}{f' for module {self.module}' if self.module else ''} "
                "in the plant")
            raise ModeRefused(
                f"{self.service} did not accept procedure {self._procedure_text(proc_id)} "
                f"within {self.timeout:g} s: ProcedureReq is {got}; {status.describe()}{hint}",
                module=self.module)
        return proc_id

    async def apply_parameters(self, values: Mapping[str, Any], *,
                               tolerance: float | None = None) -> None:
        """Write each parameter's VExt (in Automatic/External), then ApplyExt, and wait until
        VFbk confirms the value (numbers within ``tolerance``, see :func:`values_match`).

        A parameter taken over at Start (policy ``parameters: at_start``, or no ApplyExt
        bound) gets only its VExt, confirmed by VReq where bound; its VFbk is confirmed by
        :meth:`confirm_taken_over` after Start. Which parameters belong to the procedure is
        the caller's rule (the descriptor's); the client checks only that each one has a
        VExt to write.
        """
        for name in values:
            if not self.has(PA.V_EXT, name):
                raise MtpError(f"parameter {name} has no {PA.V_EXT} on this transport; bind "
                               f"{name}.{PA.V_EXT} in the module type", module=self.module)
        at_start = {n: v for n, v in values.items()
                    if self.policy.parameters == "at_start" or not self.has(PA.APPLY_EXT, n)}
        for name, value in values.items():
            await self.ensure_automatic_external(name)
            await self.io.write(self.tag(PA.V_EXT, name), value)
        for name in values:
            if name not in at_start:
                await self.io.write(self.tag(PA.APPLY_EXT, name), True)
        for name, want in values.items():
            if name in at_start:
                await self._confirm(name, PA.V_REQ, want, tolerance,
                                    "was not accepted (out of the PEA's range, or its source "
                                    "is not External)")
            else:
                await self._confirm(name, PA.V_FBK, want, tolerance, "was not applied")
        if at_start:
            self._at_start.update(at_start)
            why = ("parameters: at_start" if self.policy.parameters == "at_start"
                   else "no ApplyExt bound")
            self._deviation(f"{', '.join(at_start)} taken over at Start, confirmed after it "
                            f"({why})", once=f"at start {sorted(at_start)}")

    async def _confirm(self, name: str, attribute: str, want: Any,
                       tolerance: float | None, what: str) -> None:
        if not self.has(attribute, name):
            return
        ok, got = await self.until(attribute, _confirms(want, tolerance), obj=name)
        if not ok:
            status = await self.status()
            raise ModeRefused(
                f"parameter {name} {what} within {self.timeout:g} s: "
                f"{attribute} is {got!r}, wanted {want!r}; {status.describe()}",
                module=self.module)

    async def confirm_taken_over(self, *, tolerance: float | None = None) -> None:
        """After Start/Restart: VFbk of the parameters the PEA takes over at Start."""
        pending, self._at_start = self._at_start, {}
        for name, want in pending.items():
            await self._confirm(name, PA.V_FBK, want, tolerance,
                                "was not taken over at Start")

    # -- commands --------------------------------------------------------------------------
    async def send_command(self, command: Command) -> ServiceStatus:
        """Write CommandExt if the command's bit is set in CommandEn; returns the prior status.

        Non-idempotent, so it is sent once: a failed write is raised, never retried here.
        """
        status = await self.status()
        if not status.command_en & int(command):
            if self.policy.command_en != "advisory":
                where = f" for module {self.module}" if self.module else ""
                raise CommandNotEnabled(
                    f"{command.label} is not enabled: {status.describe()}; if this PEA "
                    "enables commands late (CommandEn 0 until its first transition), declare "
                    f"handshake: {{command_en: advisory}}{where} in the plant",
                    state=status.state, enabled=status.enabled, module=self.module)
            self._deviation(f"{command.label} sent although CommandEn ({status.command_en}) "
                            f"does not enable it in {status.state_label} (command_en: advisory)")
        ext = self.tag(SCA.COMMAND_EXT)
        if self.policy.command == "edge" and await self.get(SCA.COMMAND_EXT) == int(command):
            await self.io.write(ext, 0)
            self._deviation(f"CommandExt still held {command.label}: written 0 first, so the "
                            "PEA sees a change (command: edge)", once="command edge")
        await self.io.write(ext, int(command))
        return status

    async def wait_for_state(self, states: Iterable[State], *,
                             start_state: State | None = None,
                             timeout: float | None = None) -> State:
        """Read StateCur until it is one of ``states``; returns the state reached.

        A move into a failed state (Stopping, Stopped, Aborting, Aborted) that was not asked
        for, is not on the way to a wanted state and is not where the service started fails
        at once with :class:`ServiceStateError` rather than after the timeout.
        """
        wanted = tuple(states)
        passing = set(wanted).union(*(on_the_way(s) for s in wanted))
        limit = self.timeout if timeout is None else timeout
        deadline = self._now() + limit
        seen: State | None = start_state
        while True:
            state = await self.state()
            if state in wanted:
                assert state is not None
                return state
            if state in FAILED_STATES and state is not start_state and state not in passing:
                status = await self.status()
                raise ServiceStateError(
                    f"{self.service} went to {state.label} while waiting for "
                    f"{' or '.join(s.label for s in wanted)}; {status.describe()}",
                    state=state, module=self.module)
            seen = state if state is not None else seen
            if self._now() >= deadline:
                status = await self.status()
                raise ServiceTimeout(
                    f"{self.service} did not reach {' or '.join(s.label for s in wanted)} "
                    f"within {limit:g} s; last seen {seen.label if seen else 'nothing'}; "
                    f"{status.describe()}", module=self.module)
            await self._sleep(self.poll)

    async def run(self, command: Command, *, procedure: int | None = None,
                  parameters: Mapping[str, Any] | None = None,
                  wait_for: Iterable[State] | None = None,
                  tolerance: float | None = None) -> State:
        """The whole handshake for one command; returns the state reached.

        1. operation mode Automatic, source External (service);
        2. for Start/Restart, or when ``procedure`` is given: procedure selection (the
           default procedure when none is named);
        3. ``parameters``: VExt + ApplyExt, confirmed by VFbk (taken over at Start: VExt,
           confirmed by VReq, and VFbk after the command);
        4. CommandExt, only if enabled in CommandEn (else :class:`CommandNotEnabled`,
           unless the policy's ``command_en`` is advisory);
        5. wait for ``wait_for`` (default: :func:`expected_states` of the command).
        """
        before = await self.command(command, procedure=procedure, parameters=parameters,
                                    tolerance=tolerance)
        targets = expected_states(command) if wait_for is None else tuple(wait_for)
        return await self.wait_for_state(targets, start_state=before.state)

    async def command(self, command: Command, *, procedure: int | None = None,
                      parameters: Mapping[str, Any] | None = None,
                      tolerance: float | None = None) -> ServiceStatus:
        """Steps 1-4 of :meth:`run` without waiting; returns the status before the command."""
        await self.ensure_automatic_external()
        if procedure is None and command in (Command.START, Command.RESTART):
            procedure = self.default_procedure
        if procedure is not None:
            await self.select_procedure(procedure)
        if parameters:
            await self.apply_parameters(parameters, tolerance=tolerance)
        if self._at_start and command not in (Command.START, Command.RESTART):
            pending, self._at_start = sorted(self._at_start), {}
            raise MtpError(
                f"{self.service} takes parameters over only at Start, so {', '.join(pending)} "
                f"cannot be changed with {command.label}; set them before Start",
                module=self.module)
        before = await self.send_command(command)
        if self._at_start:
            await self.confirm_taken_over(tolerance=tolerance)
        return before

    def procedure_id(self, name_or_id: str | int) -> int:
        """A procedure id from its name or id (MtpError naming the known ones)."""
        if isinstance(name_or_id, int) and (
                not self.procedures or name_or_id in self.procedures.values()):
            return name_or_id
        if isinstance(name_or_id, str) and name_or_id in self.procedures:
            return self.procedures[name_or_id]
        raise MtpError(
            f"unknown procedure {name_or_id!r} of {self.service}"
            f"{did_you_mean(str(name_or_id), self.procedures)} "
            f"(procedures: {', '.join(self.procedures) or 'none'})", module=self.module)

"""Live conformance checks: a running PEA against its manifest, over OPC UA.

Listed in :data:`LIVE_CHECKS` (selected by name like the static ones); they run only when
an endpoint is given (``mtp check module.aml --endpoint opc.tcp://...``). One connection
(the OPC UA driver, so namespaces are resolved by URI and writes are typed by the node's
DataType) serves every check, in this order:

``live-connect``
    the session opens and every namespace of the manifest is on the server;
``live-nodes``
    every OPC UA item exists, with the access the manifest declares and a data type that fits
    the attribute (integers for ServiceControl words, Boolean for mode switches);
``live-operation-mode`` / ``live-source-mode``
    Operator, Offline, Operator, Automatic and Internal, External through the channel the PEA
    offers (``*Op`` edges, or ``*Aut`` levels when ``StateChannel``/``SrcChannel`` is set),
    each confirmed by its ``*Act`` flag; CommandExt is ignored in Operator and in Internal;
``live-procedures``
    every procedure id is accepted by ProcedureExt -> ProcedureReq and becomes ProcedureCur at
    Start; an unknown id is not accepted;
``live-parameters``
    each procedure and configuration parameter takes a value within its limits through
    VExt + ApplyExt, confirmed by VFbk (the previous value is restored afterwards);
``live-commands``
    from every state the PEA can be brought to (Idle, Execute, Paused, Held, Completed,
    Stopped, Aborted), CommandEn lies within what 2658-4 allows there; every enabled command
    is accepted and leads to its state; every other command is ignored (no state change)
    and CommandExt is cleared;
``live-parameter-handshake``
    for each parameter, what a POL written only from 2658-4 relies on: ApplyEn is true
    while an apply is possible, VReq follows VExt on write, the value is not applied before
    ApplyExt, and a VExt outside VMin..VMax is refused with a bad status or at least never
    applied (VReq, VOut and VFbk keep the last good value);
``live-transients``
    a Start, Complete (or Stop) and Reset cycle of each service, watched by a subscription
    with a queue so no published value is lost: the transient states (Starting, Completing
    or Stopping, Resetting) are published between the stable ones.

A PEA that bends the handshake is driven with the same :class:`HandshakePolicy` the plant
would declare for it (``LiveOptions.handshake``, ``mtp check --handshake FILE``): each
tolerance the policy uses is reported as a ``live-handshake`` warning, and a CommandEn that
the policy declares advisory is a warning instead of a failure, so the report still says
where the PEA departs from the standard.

The checks change the PEA's state: run them against a PEA that is not producing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds

from modulecontrol.descriptors import (
    DataAssembly,
    ModuleInstance,
    ModuleType,
    OpcUaBinding,
    OpcUaEndpoint,
    Service,
)
from modulecontrol.drivers import DriverError
from modulecontrol.drivers.opcua import OpcUaDriver
from modulecontrol.mtp._results import CheckResult, Status
from modulecontrol.mtpcore import (
    ACTING_STATES,
    INTEGER_ATTRIBUTES,
    PA,
    SCA,
    Command,
    CommandNotEnabled,
    HandshakePolicy,
    ModeRefused,
    MtpError,
    OperationMode,
    ServiceClient,
    SourceMode,
    State,
    StateMachineOptions,
    carries_value,
    commands_in,
    enabled_commands,
    expected_states,
    is_boolean_attribute,
    mode_attribute,
    values_match,
)

__all__ = ["LIVE_CHECKS", "LiveOptions", "LiveSession", "run_live_checks"]

_INT_TYPES = frozenset({2, 3, 4, 5, 6, 7, 8, 9})  # SByte .. UInt64
_NUM_TYPES = _INT_TYPES | {10, 11}  # + Float, Double
_WIDEST = StateMachineOptions(stop_in_idle=True, abort_in_idle=True,
                              complete_outside_execute=True)
_NARROWEST = StateMachineOptions(stop_in_idle=False, abort_in_idle=False,
                                 complete_outside_execute=False)

# How each stable state is reached from Idle (alternatives in order of preference).
_PATHS: dict[State, list[list[Command]]] = {
    State.IDLE: [[]],
    State.EXECUTE: [[Command.START]],
    State.PAUSED: [[Command.START, Command.PAUSE]],
    State.HELD: [[Command.START, Command.HOLD]],
    State.COMPLETED: [[Command.START, Command.COMPLETE]],
    State.STOPPED: [[Command.STOP], [Command.START, Command.STOP]],
    State.ABORTED: [[Command.ABORT], [Command.START, Command.ABORT]],
}


@dataclass
class LiveOptions:
    """How to reach the PEA under test and how patient to be with it."""

    endpoint: str
    username: str | None = None
    password_env: str | None = None
    """Name of the environment variable with the password (never the password itself)."""
    insecure: bool = False
    """Connect without security (the None policy); otherwise Basic256Sha256 SignAndEncrypt."""
    server_certificate: str | Path | None = None
    """Pin the server's certificate; without it a secured server is not verified (warned)."""
    pki: str | Path | None = None
    """Where the client certificate is generated (default ``runs/pki``)."""
    timeout: float = 5.0
    """Seconds a PEA may take to confirm a request (mode, procedure, parameter, state)."""
    settle: float = 1.0
    """Seconds a refused command is given to show (no) effect if CommandExt is not readable."""
    poll: float = 0.02
    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """The time base of every wait: a live PEA runs in wall time; a test may inject its own."""
    handshake: HandshakePolicy = field(default_factory=HandshakePolicy)
    """How this PEA bends the standard, as the plant declares it (``handshake:`` of a module);
    the default is the standard's handshake."""


@dataclass
class LiveSession:
    """An open connection to the PEA under test, with the helpers the checks share."""

    driver: OpcUaDriver
    module_type: ModuleType
    options: LiveOptions
    notes: list[str] = field(default_factory=list)

    clients: dict[str, ServiceClient] = field(default_factory=dict)
    last_refusal: str = ""
    """Why the last :meth:`run` failed (the service client's message)."""
    deviations: list[str] = field(default_factory=list)
    """Each tolerance of the handshake policy that was used, once (reported as warnings)."""

    def _deviation(self, message: str) -> None:
        if message not in self.deviations:
            self.deviations.append(message)

    # -- plain access ----------------------------------------------------------------------
    def client(self, obj: str) -> ServiceClient:
        """The handshake client of a service or parameter object (no procedure check, so
        the check can also send ids the PEA must refuse)."""
        if obj not in self.clients:
            o = self.options
            self.clients[obj] = ServiceClient(self.driver, obj, now=o.now, sleep=o.sleep,
                                              timeout=o.timeout, poll=o.poll,
                                              module=self.driver.tag_name,
                                              policy=o.handshake,
                                              on_deviation=self._deviation)
        return self.clients[obj]

    def has(self, tag: str, *, write: bool = False) -> bool:
        info = self.driver.tags.get(tag)
        if info is None:
            return False
        return info.writable if write else info.readable

    async def get(self, tag: str) -> Any:
        return (await self.driver.read([tag]))[tag].value

    async def put(self, tag: str, value: Any) -> None:
        await self.driver.write(tag, value)

    async def put_unchecked(self, tag: str, value: Any) -> None:
        """Write without the driver's own limit check (which refuses a value outside the
        manifest's limits before it is sent), so the PEA's answer to it is what is tested."""
        await self.driver._write(self.driver.info(tag), value)

    async def until(self, tag: str, ok: Callable[[Any], bool],
                    timeout: float | None = None) -> tuple[bool, Any]:
        """Poll ``tag`` until ``ok(value)``; returns (reached, last value)."""
        obj, attr = tag.split(".", 1)
        return await self.client(obj).until(attr, ok, timeout=timeout)

    # -- services ----------------------------------------------------------------------------
    async def state(self, svc: str) -> State | None:
        return await self.client(svc).state()

    @property
    def advisory(self) -> bool:
        """CommandEn declared advisory: a command it does not enable may still be executed."""
        return self.options.handshake.command_en == "advisory"

    async def enabled(self, svc: str) -> int:
        return (await self.client(svc).status()).command_en

    async def settle_in(self, svc: str, targets: Iterable[State]) -> State | None:
        """Wait until the service is in one of ``targets``; returns the state last seen."""
        wanted = set(targets)
        state_of = self.options.handshake.state_of
        _, code = await self.until(f"{svc}.{SCA.STATE_CUR}", lambda v: state_of(v) in wanted)
        return state_of(code)

    async def command(self, svc: str, cmd: Command) -> None:
        """Write CommandExt without looking at CommandEn: the check also sends commands the
        PEA must ignore (the handshake proper is :meth:`run`). With ``command: edge`` a 0 is
        written first, as the service client would."""
        tag = f"{svc}.{SCA.COMMAND_EXT}"
        if self.options.handshake.command == "edge" and await self.get(tag) == int(cmd):
            await self.put(tag, 0)
        await self.put(tag, int(cmd))

    def clears_command(self, svc: str) -> bool:
        """Whether the PEA's clearing of CommandExt can be watched: it is readable and the
        policy does not say the PEA leaves it set (``command: edge``)."""
        return self.has(f"{svc}.{SCA.COMMAND_EXT}") and self.options.handshake.command != "edge"

    async def command_cleared(self, svc: str) -> bool | None:
        """Wait until the PEA has cleared CommandExt (None: not :meth:`clears_command`;
        waited ``settle``, the time a refused command is given to show an effect)."""
        tag = f"{svc}.{SCA.COMMAND_EXT}"
        if not self.clears_command(svc):
            await self.options.sleep(self.options.settle)
            return None
        ok, _ = await self.until(tag, lambda v: not v, self.options.settle)
        return ok

    async def run(self, svc: str, cmd: Command) -> tuple[bool, State | None]:
        """Send an enabled command and wait for its usual target; (reached, state)."""
        client = self.client(svc)
        try:
            before = await client.send_command(cmd)
            return True, await client.wait_for_state(expected_states(cmd),
                                                     start_state=before.state)
        except (CommandNotEnabled, MtpError) as exc:
            self.last_refusal = str(exc)
            return False, await self.state(svc)

    # -- modes -------------------------------------------------------------------------------
    async def mode(self, obj: str, mode: OperationMode | SourceMode) -> tuple[bool | None, str]:
        """Request an operation mode or source through the channel the PEA offers;
        (confirmed or None if untestable, detail)."""
        try:
            switch = await self.client(obj).switch_mode(mode, obj=obj)
        except ModeRefused as exc:
            return False, str(exc)
        except DriverError as exc:
            return None, f"{mode.value}: {exc}"
        if not switch.bound:
            kind = "State" if isinstance(mode, OperationMode) else "Src"
            return None, f"{mode_attribute(kind, mode.abbrev, 'Act')} not bound"
        if switch.request is None:
            return True, f"{mode.abbrev} already active"
        note = ""
        if switch.request.endswith("Op") and self.has(f"{obj}.{switch.request}"):
            reset, _ = await self.until(f"{obj}.{switch.request}", lambda v: v is False,
                                        self.options.settle)
            if not reset:
                note = f"; {switch.request} was not reset by the PEA"
        return True, f"{mode.abbrev} via {switch.request}{note}"

    async def exclusive(self, obj: str, mode: OperationMode | SourceMode) -> str:
        """'' if only ``mode`` of its kind is active, else what is wrong."""
        kind = "State" if isinstance(mode, OperationMode) else "Src"
        bad = []
        for other in type(mode):
            tag = f"{obj}.{mode_attribute(kind, other.abbrev, 'Act')}"
            if other is not mode and self.has(tag) and await self.get(tag) is True:
                bad.append(tag.split(".", 1)[1])
        return f"also active: {', '.join(bad)}" if bad else ""

    async def automatic_external(self, obj: str) -> bool:
        ok1, _ = await self.mode(obj, OperationMode.AUTOMATIC)
        ok2, _ = await self.mode(obj, SourceMode.EXTERNAL)
        return ok1 is not False and ok2 is not False

    async def to_idle(self, svc: str) -> bool:
        """Bring a service to Idle (Reset, or Stop/Abort then Reset)."""
        await self.automatic_external(svc)
        for _ in range(6):
            state = await self.state(svc)
            if state is State.IDLE:
                return True
            if state in ACTING_STATES:
                await self.settle_in(svc, set(State) - ACTING_STATES)
                continue
            en = await self.enabled(svc)
            for cmd in (Command.RESET, Command.STOP, Command.ABORT):
                if en & int(cmd):
                    await self.run(svc, cmd)
                    break
            else:
                return False
        return await self.state(svc) is State.IDLE

    async def refused(self, svc: str, cmd: Command, before: State) -> str:
        """Send a command that must be ignored: '' if it was, else what went wrong."""
        await self.command(svc, cmd)
        cleared = await self.command_cleared(svc)
        after = await self.state(svc)
        if after is not before:
            return f"{cmd.label} changed {before.label} -> {_label(after)}"
        if cleared is False:
            return f"{cmd.label}: CommandExt not cleared"
        return ""


def _label(state: State | None) -> str:
    return state.label if state is not None else "an unknown state"


LiveFn = Callable[[LiveSession], Awaitable[list[CheckResult]]]
LIVE_CHECKS: list[tuple[str, str, LiveFn]] = []


def live(name: str, description: str) -> Callable[[LiveFn], LiveFn]:
    """Register a live check (run in order, after ``live-connect``)."""

    def deco(fn: LiveFn) -> LiveFn:
        LIVE_CHECKS.append((name, description, fn))
        return fn

    return deco


def _r(check: str, subject: str, ok: bool | None, detail: str) -> CheckResult:
    status: Status = "skip" if ok is None else ("pass" if ok else "fail")
    return CheckResult(check, subject, status, detail)


# -- nodes ------------------------------------------------------------------------------------
def _type_problem(attr: str, da: DataAssembly | None, dtype: int) -> str:
    if attr in INTEGER_ATTRIBUTES and dtype not in _INT_TYPES:
        return f"{attr} is type i={dtype}, not an integer"
    if is_boolean_attribute(attr) and dtype != 1:
        return f"{attr} is type i={dtype}, not Boolean"
    if da is not None and carries_value(da.class_, attr):
        if da.kind == "number" and dtype not in _NUM_TYPES:
            return f"{attr} is type i={dtype}, not a number"
        if da.kind == "bool" and dtype != 1:
            return f"{attr} is type i={dtype}, not Boolean"
    return ""


@live("live-nodes", "every OPC UA item exists with its declared access and a fitting type")
async def _nodes(s: LiveSession) -> list[CheckResult]:
    d = s.driver
    client = d._client  # the check reads node attributes, which the driver API does not offer
    if client is None:
        return [_r("live-nodes", "file", False, "not connected")]
    owners: dict[str, list[str]] = {}
    for tag in d.tags:
        owners.setdefault(tag.split(".", 1)[0], []).append(tag)
    node_ids = d._node_ids
    reads: list[tuple[str, int]] = []
    for tags in owners.values():
        for t in tags:
            reads.extend((t, a) for a in (AttributeIds.AccessLevel, AttributeIds.DataType))
    values: dict[tuple[str, int], ua.DataValue] = {}
    for i in range(0, len(reads), 500):
        chunk = reads[i:i + 500]
        params = ua.ReadParameters()
        params.NodesToRead = [ua.ReadValueId(NodeId=node_ids[t], AttributeId=a)
                              for t, a in chunk]
        results = await client.uaclient.read(params)
        values.update(zip(chunk, results, strict=True))
    out: list[CheckResult] = []
    das = {da.name: da for da in s.module_type.data_assemblies}
    for owner, tags in owners.items():
        faults: list[str] = []
        warns: list[str] = []
        for t in tags:
            attr = t.split(".", 1)[1]
            b = d.tags[t].binding
            assert isinstance(b, OpcUaBinding)
            level_dv = values[(t, AttributeIds.AccessLevel)]
            code = level_dv.StatusCode
            if (code is not None and not code.is_good()) or level_dv.Value is None:
                faults.append(f"{attr} ({b.identifier}): "
                              f"{code.name if code is not None else 'no value'}")
                continue
            level = int(level_dv.Value.Value or 0)
            want_r = b.access in ("read", "readwrite")
            want_w = b.access in ("write", "readwrite")
            has_r = bool(level & ua.AccessLevel.CurrentRead.mask)
            has_w = bool(level & ua.AccessLevel.CurrentWrite.mask)
            if (want_r and not has_r) or (want_w and not has_w):
                faults.append(f"{attr} access {'r' if has_r else ''}{'w' if has_w else ''} "
                              f"(declared {b.access})")
            elif has_w and not want_w:
                warns.append(f"{attr} writable (declared {b.access})")
            dt = values[(t, AttributeIds.DataType)]
            good = dt.StatusCode is None or dt.StatusCode.is_good()
            dtype_id = dt.Value.Value if good and dt.Value is not None else None
            if isinstance(dtype_id, ua.NodeId) and dtype_id.NamespaceIndex == 0:
                problem = _type_problem(attr, das.get(owner), int(dtype_id.Identifier))
                if problem:
                    faults.append(problem)
        if faults:
            out.append(_r("live-nodes", owner, False, "; ".join(faults[:6]) + (
                f" (+{len(faults) - 6} more)" if len(faults) > 6 else "")))
        elif warns:
            out.append(CheckResult("live-nodes", owner, "warn", "; ".join(warns[:6])))
        else:
            out.append(_r("live-nodes", owner, True, f"{len(tags)} nodes"))
    return out


# -- modes ------------------------------------------------------------------------------------
async def _any_enabled(s: LiveSession, svc: str) -> Command | None:
    en = await s.enabled(svc)
    for cmd in (Command.START, Command.ABORT, Command.STOP, Command.RESET):
        if en & int(cmd):
            return cmd
    return None


@live("live-operation-mode", "Offline/Operator/Automatic handshakes; CommandExt ignored in "
      "Operator")
async def _operation_modes(s: LiveSession) -> list[CheckResult]:
    out = []
    for svc in s.module_type.services:
        name = svc.name
        op_act = mode_attribute("State", OperationMode.OPERATOR.abbrev, "Act")
        if not s.has(f"{name}.{op_act}"):
            out.append(_r("live-operation-mode", name, None, f"no {op_act} bound"))
            continue
        if not await s.to_idle(name):
            out.append(_r("live-operation-mode", name, False,
                          f"cannot bring the service to Idle (state "
                          f"{_label(await s.state(name))})"))
            continue
        steps: list[str] = []
        faults: list[str] = []
        for mode in (OperationMode.OPERATOR, OperationMode.OFFLINE, OperationMode.OPERATOR,
                     OperationMode.AUTOMATIC):
            ok, detail = await s.mode(name, mode)
            steps.append(detail)
            if ok is False:
                faults.append(detail)
                break
            wrong = await s.exclusive(name, mode)
            if wrong:
                faults.append(f"{mode.abbrev}: {wrong}")
            if mode is OperationMode.OPERATOR and len(steps) == 1:
                cmd = await _any_enabled(s, name)
                if cmd is not None and s.has(f"{name}.{SCA.COMMAND_EXT}", write=True):
                    problem = await s.refused(name, cmd, State.IDLE)
                    if problem:
                        faults.append(f"in Operator, CommandExt {problem}")
                        await s.to_idle(name)
                        await s.mode(name, OperationMode.OPERATOR)
                    else:
                        steps.append(f"CommandExt {cmd.label} ignored in Operator")
        out.append(_r("live-operation-mode", name, not faults,
                      "; ".join(faults) if faults else "; ".join(steps)))
    return out


@live("live-source-mode", "Internal/External handshakes in Automatic; CommandExt ignored in "
      "Internal")
async def _source_modes(s: LiveSession) -> list[CheckResult]:
    out = []
    for svc in s.module_type.services:
        name = svc.name
        ext_act = mode_attribute("Src", SourceMode.EXTERNAL.abbrev, "Act")
        if not s.has(f"{name}.{ext_act}"):
            out.append(_r("live-source-mode", name, None, f"no {ext_act} bound"))
            continue
        ok, detail = await s.mode(name, OperationMode.AUTOMATIC)
        if not ok:
            out.append(_r("live-source-mode", name, ok, f"not in Automatic: {detail}"))
            continue
        await s.to_idle(name)
        steps: list[str] = []
        faults: list[str] = []
        for source in (SourceMode.INTERNAL, SourceMode.EXTERNAL):
            ok, detail = await s.mode(name, source)
            steps.append(detail)
            if ok is False:
                faults.append(detail)
                break
            wrong = await s.exclusive(name, source)
            if wrong:
                faults.append(f"{source.abbrev}: {wrong}")
            if source is SourceMode.INTERNAL:
                cmd = await _any_enabled(s, name)
                if cmd is not None and s.has(f"{name}.{SCA.COMMAND_EXT}", write=True):
                    problem = await s.refused(name, cmd, State.IDLE)
                    if problem:
                        faults.append(f"in Internal, CommandExt {problem}")
                    else:
                        steps.append(f"CommandExt {cmd.label} ignored in Internal")
        out.append(_r("live-source-mode", name, not faults,
                      "; ".join(faults) if faults else "; ".join(steps)))
    return out


def _equals(want: Any) -> Callable[[Any], bool]:
    return lambda v: bool(v == want)


# -- procedures ---------------------------------------------------------------------------------
@live("live-procedures", "every procedure id is selectable and started; unknown ids refused")
async def _procedures(s: LiveSession) -> list[CheckResult]:
    out = []
    for svc in s.module_type.services:
        name = svc.name
        req = f"{name}.{SCA.PROCEDURE_REQ}"
        ext = f"{name}.{SCA.PROCEDURE_EXT}"
        if not (s.has(ext, write=True) and s.has(req)):
            out.append(_r("live-procedures", name, None, "ProcedureExt/ProcedureReq not bound"))
            continue
        for proc in svc.procedures:
            subject = f"{name}.{proc.name}"
            if not await s.to_idle(name):
                out.append(_r("live-procedures", subject, False, "cannot bring to Idle"))
                continue
            try:
                await s.client(name).select_procedure(proc.id)
            except ModeRefused as exc:
                out.append(_r("live-procedures", subject, False,
                              f"ProcedureExt={proc.id}: {exc}"))
                continue
            started, state = await s.run(name, Command.START)
            detail = f"id {proc.id} selected"
            good = True
            if not started:
                good = False
                detail += (f"; Start did not lead to Execute (state {_label(state)}: "
                           f"{s.last_refusal})")
            elif s.has(f"{name}.{SCA.PROCEDURE_CUR}"):
                cur = await s.get(f"{name}.{SCA.PROCEDURE_CUR}")
                if cur != proc.id:
                    good = False
                    detail += f"; ProcedureCur is {cur} after Start"
                else:
                    detail += f", started ({_label(state)}), ProcedureCur {cur}"
            await s.to_idle(name)
            out.append(_r("live-procedures", subject, good, detail))
        unknown = max(p.id for p in svc.procedures) + 1
        before = await s.get(req)
        await s.put(ext, unknown)
        await s.options.sleep(s.options.poll * 5)
        ok, got = await s.until(req, _equals(unknown), s.options.settle)
        out.append(_r("live-procedures", f"{name} id {unknown}", not ok,
                      f"unknown id {unknown} accepted" if ok else
                      f"unknown id {unknown} not accepted (ProcedureReq {got})"))
        if ok and before is not None:
            await s.put(ext, before)
    return out


# -- parameters ---------------------------------------------------------------------------------
def _parameters(svc: Service) -> list[str]:
    seen: list[str] = []
    for p in [*svc.config_parameters, *(x for pr in svc.procedures for x in pr.parameters)]:
        if p not in seen:
            seen.append(p)
    return seen


async def _limits(s: LiveSession, da: DataAssembly
                  ) -> tuple[float | None, float | None, str]:
    """Limits a test value must respect: the PEA's VMin/VMax and the manifest's, both.
    The third item says how they contradict each other ('' if they do not)."""
    server: dict[str, float] = {}
    for attr in (PA.V_MIN, PA.V_MAX):
        tag = f"{da.name}.{attr}"
        if s.has(tag):
            v = await s.get(tag)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                server[attr] = float(v)
    lows = [x for x in (da.min, server.get(PA.V_MIN)) if x is not None]
    highs = [x for x in (da.max, server.get(PA.V_MAX)) if x is not None]
    lo = max(lows) if lows else None
    hi = min(highs) if highs else None
    if lo is not None and hi is not None and lo > hi:
        return None, None, (f"limits contradict: PEA VMin..VMax "
                            f"{server.get(PA.V_MIN)}..{server.get(PA.V_MAX)}, manifest "
                            f"{da.min}..{da.max}")
    return lo, hi, ""


def _choose(da: DataAssembly, current: Any, lo: float | None, hi: float | None) -> Any:
    if da.kind == "bool":
        return not bool(current)
    if da.kind == "str":
        return "mtp-check" if current != "mtp-check" else "mtp-check-2"
    integer = da.class_ == "DIntServParam"
    if lo is not None and hi is not None:
        cands = [lo + (hi - lo) * f for f in (0.25, 0.75, 0.0, 1.0)]
    elif lo is not None:
        cands = [lo + 1.0, lo + 2.0]
    elif hi is not None:
        cands = [hi - 1.0, hi - 2.0]
    else:
        cands = [1.0, 2.0]
    for c in cands:
        v: float | int = round(c) if integer else round(c, 3)
        if (lo is None or v >= lo) and (hi is None or v <= hi) and v != current:
            return v
    return cands[0]


def _tolerance(value: Any) -> float | None:
    """A REAL on the PEA keeps about 7 digits: compare numbers to 1e-5 relative."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 1e-5 * max(1.0, abs(float(value)))
    return None


def _same(a: Any, b: Any) -> bool:
    return values_match(a, b, _tolerance(b))


async def _apply(s: LiveSession, name: str, value: Any) -> tuple[bool, str]:
    """The parameter handshake of the service client, plus the check that ApplyExt is reset."""
    try:
        await s.client(name).apply_parameters({name: value}, tolerance=_tolerance(value))
    except ModeRefused as exc:
        return False, f"VExt={value!r} + ApplyExt: {exc}"
    if s.options.handshake.parameters == "at_start" or not s.has(f"{name}.{PA.APPLY_EXT}"):
        return True, f"VExt={value!r} taken (VReq), to be confirmed by VFbk after Start"
    if not s.has(f"{name}.{PA.V_FBK}"):
        return True, "no VFbk to confirm"
    note = ""
    apply = f"{name}.{PA.APPLY_EXT}"
    if s.has(apply):
        reset, _ = await s.until(apply, lambda v: v is False, s.options.settle)
        if not reset:
            note = "; ApplyExt not reset by the PEA"
    return True, f"VExt={value!r} applied, VFbk {value!r}{note}"


@live("live-parameters", "every procedure/configuration parameter is applied through "
      "VExt/ApplyExt/VFbk within its limits")
async def _parameters_check(s: LiveSession) -> list[CheckResult]:
    out = []
    for svc in s.module_type.services:
        await s.to_idle(svc.name)
        for pname in _parameters(svc):
            subject = f"{svc.name}.{pname}"
            da = s.module_type.assembly(pname)
            if not s.has(f"{pname}.{PA.V_EXT}", write=True):
                out.append(_r("live-parameters", subject, None, "VExt not writable"))
                continue
            if not await s.automatic_external(pname):
                out.append(_r("live-parameters", subject, False,
                              "the parameter does not switch to Automatic/External"))
                continue
            fbk = f"{pname}.{PA.V_FBK}"
            current = await s.get(fbk) if s.has(fbk) else None
            lo, hi, contradiction = await _limits(s, da)
            if contradiction:
                out.append(_r("live-parameters", subject, False, contradiction))
                continue
            value = _choose(da, current, lo, hi)
            try:
                ok, detail = await _apply(s, pname, value)
            except DriverError as exc:
                ok, detail = False, f"VExt={value!r}: {exc}"
            limits = f" (limits {lo:g}..{hi:g})" if lo is not None and hi is not None else ""
            out.append(_r("live-parameters", subject, ok, detail + limits))
            if ok and current is not None and not _same(current, value):
                with contextlib.suppress(DriverError):
                    await _apply(s, pname, current)
    return out


# -- commands -----------------------------------------------------------------------------------
def _names(mask: int) -> list[str]:
    return [c.label for c in commands_in(mask)]


def _allowed(state: State, has_proc: bool) -> tuple[int, int]:
    """(least, most) CommandEn 2658-4 allows in ``state`` (implementations differ in a few)."""
    most = sum(int(c) for c in enabled_commands(state, _WIDEST))
    least = sum(int(c) for c in enabled_commands(state, _NARROWEST))
    if not has_proc:
        least &= ~(int(Command.START) | int(Command.RESTART))
    return least, most


async def _reach(s: LiveSession, svc: str, target: State) -> tuple[bool, str]:
    """Bring ``svc`` from Idle to ``target``; (reached, how or why not)."""
    why = ""
    for path in _PATHS[target]:
        how = " -> ".join(c.label for c in path)
        if not await s.to_idle(svc):
            return False, f"cannot bring to Idle (state {_label(await s.state(svc))})"
        for cmd in path:
            ok, state = await s.run(svc, cmd)
            if not ok:
                why = f"{how}: {cmd.label} not accepted in {_label(state)}"
                break
        else:
            state = await s.state(svc)
            if state is target:
                return True, how or State.IDLE.label
            why = f"{how} ends in {_label(state)}"
    return False, why


@live("live-commands", "every command from every reachable state against CommandEn")
async def _commands(s: LiveSession) -> list[CheckResult]:
    out = []
    for svc in s.module_type.services:
        name = svc.name
        if not (s.has(f"{name}.{SCA.COMMAND_EXT}", write=True)
                and s.has(f"{name}.{SCA.STATE_CUR}") and s.has(f"{name}.{SCA.COMMAND_EN}")):
            out.append(_r("live-commands", name, None, "CommandExt/StateCur/CommandEn not bound"))
            continue
        procs = [p for p in svc.procedures if not p.self_completing] or list(svc.procedures)
        proc = procs[0]
        if await s.to_idle(name) and s.has(f"{name}.{SCA.PROCEDURE_EXT}", write=True):
            await s.put(f"{name}.{SCA.PROCEDURE_EXT}", proc.id)
            if s.has(f"{name}.{SCA.PROCEDURE_REQ}"):
                await s.until(f"{name}.{SCA.PROCEDURE_REQ}", _equals(proc.id))
        for target in _PATHS:
            subject = f"{name} in {target.label}"
            if target is not State.IDLE and proc.self_completing and target not in (
                    State.STOPPED, State.ABORTED):
                out.append(_r("live-commands", subject, None,
                              "every procedure is self-completing; Execute is not held"))
                continue
            reached, how = await _reach(s, name, target)
            if not reached:
                out.append(_r("live-commands", subject, False, f"not reachable: {how}"))
                continue
            en = await s.enabled(name)
            least, most = _allowed(target, True)
            faults: list[str] = []
            warns: list[str] = []
            if en & ~most:
                faults.append(f"CommandEn enables {', '.join(_names(en & ~most))}")
            if least & ~en:
                lacking = f"CommandEn lacks {', '.join(_names(least & ~en))}"
                if s.advisory:  # the policy says: send them anyway; test what the PEA does
                    warns.append(f"{lacking} (tolerated: command_en advisory)")
                    en |= least
                else:
                    faults.append(lacking)
            refused = [c for c in Command if not en & int(c)]
            for cmd in refused:
                problem = await s.refused(name, cmd, target)
                if problem:
                    faults.append(problem)
                    again, _ = await _reach(s, name, target)
                    if not again:
                        break
            accepted = commands_in(en)
            first = True
            for cmd in accepted:
                if not first:
                    again, why = await _reach(s, name, target)
                    if not again:
                        faults.append(f"{target.label} not reachable again: {why}")
                        break
                first = False
                await s.command(name, cmd)
                wanted = expected_states(cmd)
                state = await s.settle_in(name, wanted)
                if state not in wanted:
                    faults.append(f"{cmd.label} led to {_label(state)}, not "
                                  f"{'/'.join(w.label for w in wanted)}")
                # an accepted command has shown its effect (the state above); waiting
                # ``settle`` for a clearing that cannot be watched would tell nothing
                if s.clears_command(name) and await s.command_cleared(name) is False:
                    faults.append(f"{cmd.label}: CommandExt not cleared")
            detail = (f"via {how}; enabled {', '.join(c.label for c in accepted) or 'none'} "
                      "accepted; "
                      f"{len(refused)} others ignored")
            if faults:
                out.append(_r("live-commands", subject, False, "; ".join(faults)))
            elif warns:
                out.append(CheckResult("live-commands", subject, "warn",
                                       "; ".join([*warns, detail])))
            else:
                out.append(_r("live-commands", subject, True, detail))
        await s.to_idle(name)
    return out


# -- the parameter handshake as 2658-4 describes it ------------------------------------------
def _outside(da: DataAssembly, lo: float | None, hi: float | None) -> float | int | None:
    """A value beyond the parameter's upper limit (or below its lower one), or None when a
    number outside cannot be formed (no limits, not a number)."""
    if da.kind != "number" or (lo is None and hi is None):
        return None
    span = (hi - lo) if lo is not None and hi is not None else 0.0
    step = max(1.0, abs(span))
    bad = hi + step if hi is not None else lo - step  # type: ignore[operator]
    return round(bad) if da.class_ == "DIntServParam" else bad


async def _values(s: LiveSession, pname: str, attrs: Iterable[str]) -> dict[str, Any]:
    return {a: await s.get(f"{pname}.{a}") for a in attrs if s.has(f"{pname}.{a}")}


async def _restore(s: LiveSession, pname: str, value: Any) -> None:
    """Put VExt back to the last good value, so a later apply by anyone takes that."""
    if value is not None:
        with contextlib.suppress(DriverError):
            await s.put(f"{pname}.{PA.V_EXT}", value)


@live("live-parameter-handshake", "ApplyEn, VReq following VExt, no apply before ApplyExt, "
      "out-of-range VExt refused and never applied")
async def _parameter_handshake(s: LiveSession) -> list[CheckResult]:
    out = []
    at_start = s.options.handshake.parameters == "at_start"
    glance = max(s.options.poll * 5, s.options.settle / 4)  # a publishing interval or so
    for svc in s.module_type.services:
        await s.to_idle(svc.name)
        for pname in _parameters(svc):
            subject = f"{svc.name}.{pname}"
            da = s.module_type.assembly(pname)
            vext = f"{pname}.{PA.V_EXT}"
            apply = f"{pname}.{PA.APPLY_EXT}"
            if not s.has(vext, write=True):
                out.append(_r("live-parameter-handshake", subject, None, "VExt not writable"))
                continue
            if not await s.automatic_external(pname):
                out.append(_r("live-parameter-handshake", subject, False,
                              "the parameter does not switch to Automatic/External"))
                continue
            faults: list[str] = []
            steps: list[str] = []
            if s.has(f"{pname}.{PA.APPLY_EN}"):
                en = await s.get(f"{pname}.{PA.APPLY_EN}")
                if en is True:
                    steps.append("ApplyEn true")
                else:
                    faults.append(f"ApplyEn is {en!r} in Automatic/External with "
                                  f"{svc.name} Idle (an apply is possible)")
            good = await _values(s, pname, (PA.V_FBK, PA.V_OUT, PA.V_REQ))
            current = good.get(PA.V_FBK, good.get(PA.V_REQ))
            lo, hi, contradiction = await _limits(s, da)
            if contradiction:
                out.append(_r("live-parameter-handshake", subject, False, contradiction))
                continue
            value = _choose(da, current, lo, hi)
            try:
                await s.put(vext, value)
            except DriverError as exc:
                faults.append(f"VExt={value!r} within the limits refused: {exc}")
            else:
                if PA.V_REQ in good:
                    ok, got = await s.until(f"{pname}.{PA.V_REQ}", _equal_to(value))
                    if ok:
                        steps.append(f"VReq follows VExt={value!r}")
                    else:
                        faults.append(f"VReq stays {got!r} after VExt={value!r} (it must "
                                      "follow VExt on write, before any apply)")
                if not at_start and s.has(apply) and not _same(current, value):
                    await s.options.sleep(glance)
                    early = [a for a, v in (await _values(
                        s, pname, (PA.V_OUT, PA.V_FBK))).items() if _same(v, value)]
                    if early:
                        faults.append(f"{', '.join(early)} took VExt={value!r} without "
                                      "ApplyExt")
                    elif PA.V_FBK in good or PA.V_OUT in good:
                        steps.append("not applied before ApplyExt")
            await _restore(s, pname, current)
            bad = _outside(da, lo, hi)
            if bad is None:
                steps.append("no limits, out-of-range not tested")
            else:
                refusal = ""
                try:
                    await s.put_unchecked(vext, bad)
                except DriverError as exc:
                    refusal = str(exc)
                if not refusal and s.has(apply, write=True):
                    with contextlib.suppress(DriverError):
                        await s.put(apply, True)
                await s.options.sleep(glance)
                taken = [a for a, v in (await _values(
                    s, pname, (PA.V_REQ, PA.V_OUT, PA.V_FBK))).items() if _same(v, bad)]
                limits = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
                if taken:
                    faults.append(f"VExt={bad!r} outside {limits} taken: "
                                  f"{', '.join(f'{a} = {bad!r}' for a in taken)}")
                elif refusal:
                    steps.append(f"VExt={bad!r} outside {limits} refused")
                else:
                    out.append(CheckResult(
                        "live-parameter-handshake", f"{subject} out of range", "warn",
                        f"VExt={bad!r} outside {limits} accepted with a good status (not "
                        "applied); 2658-4 PEAs answer a bad status"))
                await _restore(s, pname, current)
            out.append(_r("live-parameter-handshake", subject, not faults,
                          "; ".join(faults) if faults else "; ".join(steps)))
    return out


# -- transient states ---------------------------------------------------------------------------
class _StateLog:
    """Every StateCur value the server publishes (queued on its side, so none is lost)."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        if not self.seen or self.seen[-1] != val:
            self.seen.append(val)


# The transient state each transition of the cycle must pass through (2658-4).
_TRANSIENT: dict[tuple[State, State], State] = {
    (State.IDLE, State.EXECUTE): State.STARTING,
    (State.EXECUTE, State.COMPLETED): State.COMPLETING,
    (State.EXECUTE, State.STOPPED): State.STOPPING,
    (State.COMPLETED, State.IDLE): State.RESETTING,
    (State.STOPPED, State.IDLE): State.RESETTING,
}


@live("live-transients", "a Start / Complete (or Stop) / Reset cycle publishes the transient "
      "states between the stable ones")
async def _transients(s: LiveSession) -> list[CheckResult]:
    client = s.driver._client  # a queued subscription: the driver's API keeps no history
    out = []
    if client is None:
        return [_r("live-transients", "file", False, "not connected")]
    for svc in s.module_type.services:
        name = svc.name
        tag = f"{name}.{SCA.STATE_CUR}"
        if not (s.has(tag) and s.has(f"{name}.{SCA.COMMAND_EXT}", write=True)):
            out.append(_r("live-transients", name, None, "StateCur/CommandExt not bound"))
            continue
        if not await s.to_idle(name):
            out.append(_r("live-transients", name, False,
                          f"cannot bring to Idle (state {_label(await s.state(name))})"))
            continue
        procs = [p for p in svc.procedures if not p.self_completing] or list(svc.procedures)
        if procs and s.has(f"{name}.{SCA.PROCEDURE_EXT}", write=True):
            with contextlib.suppress(MtpError):
                await s.client(name).select_procedure(procs[0].id)
        log = _StateLog()
        interval_ms = max(10.0, s.options.poll * 1000)
        sub = await client.create_subscription(interval_ms, log)
        path: list[State] = []
        s.last_refusal = ""
        try:
            await sub.subscribe_data_change(client.get_node(s.driver._node_ids[tag]),
                                            queuesize=50)
            path.append(State.IDLE)
            started, state = await s.run(name, Command.START)
            if started and state is State.EXECUTE:
                path.append(State.EXECUTE)
                en = await s.enabled(name)
                end = Command.COMPLETE if en & int(Command.COMPLETE) else Command.STOP
                done, state = await s.run(name, end)
                if done and state is not None:
                    path.append(state)
            elif started and state is not None:
                path.append(state)  # a self-completing procedure
            if path[-1] in (State.COMPLETED, State.STOPPED):
                reset, state = await s.run(name, Command.RESET)
                if reset and state is State.IDLE:
                    path.append(State.IDLE)
            await s.options.sleep(max(0.2, 4 * interval_ms / 1000))  # the last notifications
        finally:
            with contextlib.suppress(Exception):
                await sub.delete()
        seen = [st for st in (s.options.handshake.state_of(v) for v in log.seen)
                if st is not None]
        pairs = list(itertools.pairwise(path))
        if len(path) < 3:
            why = f": {s.last_refusal}" if s.last_refusal else ""
            out.append(_r("live-transients", name, False,
                          f"the cycle stopped at {_label(state)} (path "
                          f"{' -> '.join(p.label for p in path)}){why}"))
            await s.to_idle(name)
            continue
        missing = []
        for a, b in pairs:
            want = _TRANSIENT.get((a, b))
            if want is not None and not _passes(seen, a, want, b):
                missing.append(f"{want.label} ({a.label} -> {b.label})")
        shown = " -> ".join(st.label for st in seen)
        out.append(_r("live-transients", name, not missing,
                      f"not published: {', '.join(missing)}; seen {shown}" if missing
                      else f"seen {shown}"))
        await s.to_idle(name)
    return out


def _equal_to(value: Any) -> Callable[[Any], bool]:
    return lambda v: _same(v, value)


def _passes(seen: list[State], a: State, via: State, b: State) -> bool:
    """Whether the published sequence shows ``a``, then ``via``, then ``b``."""
    for i, st in enumerate(seen):
        if st is a:
            rest = seen[i + 1:]
            if via in rest and b in rest[rest.index(via) + 1:]:
                return True
    return False


# -- running ------------------------------------------------------------------------------------
def _endpoint(opts: LiveOptions) -> OpcUaEndpoint:
    if opts.insecure:
        return OpcUaEndpoint(protocol="opcua", url=opts.endpoint, security_policy="None",
                             security_mode="None", username=opts.username,
                             password_env=opts.password_env, sampling_interval=opts.poll,
                             timeout=opts.timeout)
    from modulecontrol.simulators import Credentials

    cert, key = Credentials(opts.pki).certificate("mtp-check-client",
                                                  "urn:modulecontrol:mtp-check", server=False)
    return OpcUaEndpoint(
        protocol="opcua", url=opts.endpoint, certificate=str(cert), private_key=str(key),
        server_certificate=None if opts.server_certificate is None
        else str(opts.server_certificate),
        verify_server=opts.server_certificate is not None, username=opts.username,
        password_env=opts.password_env, sampling_interval=opts.poll, timeout=opts.timeout)


async def run_live_checks(module_type: ModuleType, opts: LiveOptions,
                          names: Iterable[str] | None = None) -> list[CheckResult]:
    """Connect to ``opts.endpoint`` and run the live checks (all, or those named)."""
    wanted = None if names is None else set(names)
    if wanted is not None and not wanted & {"live-connect", *(n for n, _, _ in LIVE_CHECKS)}:
        return []
    try:
        ep = _endpoint(opts)
    except ValueError as exc:
        return [_r("live-connect", opts.endpoint, False, str(exc))]
    driver = OpcUaDriver(module_type, ModuleInstance(tag="PEA", type=module_type.name,
                                                     endpoint=ep))
    try:
        await driver.connect()
    except DriverError as exc:
        return [_r("live-connect", opts.endpoint, False, str(exc))]
    out = [_r("live-connect", opts.endpoint, True,
              f"{'no security' if opts.insecure else 'Basic256Sha256 SignAndEncrypt'}, "
              f"{len(driver.tags)} nodes resolved")]
    if not opts.insecure and opts.server_certificate is None:
        out.append(CheckResult("live-connect", "server certificate", "warn",
                               "not verified; pass --server-cert to pin it"))
    session = LiveSession(driver, module_type, opts)
    try:
        for name, _, fn in LIVE_CHECKS:
            if wanted is not None and name not in wanted:
                continue
            try:
                out.extend(await fn(session))
            except DriverError as exc:
                out.append(_r(name, "file", False, f"aborted: {exc}"))
        out.extend(CheckResult("live-handshake", "policy", "warn", d)
                   for d in session.deviations)
    finally:
        await driver.close()
    return out

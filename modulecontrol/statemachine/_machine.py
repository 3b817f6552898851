"""The running service state machine: modes, channels, procedures, state work and observers.

Why a thin wrapper around a synchronous ``transitions.Machine`` instead of ``AsyncMachine``:
in 2658-4 the *work* of a state (ramping a pump during Starting, dosing during Execute) lives
as long as the state, not as long as the transition. ``AsyncMachine`` runs callbacks inside
the awaited trigger and cancels them by its own rules when another trigger arrives, so a long
``on_enter`` either blocks the caller or is cancelled in ways the owner cannot see. Here the
transition itself is synchronous and instant (the table, CommandEn and observers update in one
step on the event-loop thread, so no interleaving is possible), and each state's work is one
asyncio task that this class owns: leaving the state cancels it, the next state's work first
waits until the cancelled work has finished its cleanup, and SC is fired only by the work of
the state that is still current. ``aclose()`` cancels and awaits everything, so no task leaks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from transitions import Machine

from modulecontrol.mtpcore import (
    ACTING_STATES,
    SC,
    Command,
    OperationMode,
    SourceMode,
    State,
    StateMachineOptions,
    Trigger,
    command_target,
    enabled_commands,
    transitions_for,
)

_log = logging.getLogger("modulecontrol.statemachine")


class Channel(Enum):
    """Where a command or procedure request comes from.

    ``PEA`` is the module's own logic (interlocks, fault reactions, simulators): it is obeyed
    in every operation mode except Offline, because a safety reaction must not depend on who
    currently operates the service.
    """

    OPERATOR = "Op"
    INTERNAL = "Int"
    EXTERNAL = "Ext"
    PEA = "PEA"


@dataclass(frozen=True, slots=True)
class Procedure:
    """A procedure of the service as declared in the MTP (id > 0)."""

    id: int
    name: str
    self_completing: bool = False
    is_default: bool = False

    def __post_init__(self) -> None:
        if self.id <= 0:
            raise ValueError(f"procedure '{self.name}': id must be a positive integer (0 = none)")


DEFAULT_PROCEDURE = Procedure(1, "Default", self_completing=False, is_default=True)

ABORT_DRAIN = 10.0
"""Seconds Aborting's work waits at most for earlier work, cancelled by the Abort, to end.
Every other state's work waits for it without a bound, so that writes never interleave; but
Aborting must write its safe outputs even when earlier work ignores its cancel (Python
3.11's ``wait_for`` drops a cancel that comes as a reply lands): a service left in Aborting
with its pump on is the worse fault."""
_ADOPTABLE = frozenset({State.IDLE, State.EXECUTE, State.HELD, State.PAUSED, State.STOPPED,
                        State.COMPLETED, State.ABORTED})
"""The states :meth:`ServiceStateMachine.adopt` takes: stable ones, whose entry does no work."""


class CommandRefused(Exception):
    """A command, procedure request or mode change was refused; nothing was changed.

    ``reason`` says why in words meant for the operator or the log.
    """

    def __init__(
        self,
        reason: str,
        *,
        command: Command | None = None,
        channel: Channel | None = None,
        state: State | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.command = command
        self.channel = channel
        self.state = state


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition, as told to observers (proxies, OPC UA servers, the historian).

    ``command`` is None for SC (work finished); ``channel`` is None when the machine moved
    by itself (SC, or Abort after a failed work).
    """

    service: str
    old: State
    new: State
    command: Command | None
    channel: Channel | None
    time: float
    procedure: int
    reason: str = ""

    @property
    def summary(self) -> str:
        """``Old -> New``, with the reason when the machine gave one (``Starting -> Aborting
        (work of Starting failed: ...)``): the one wording of the records and the stream."""
        moved = f"{self.old.label} -> {self.new.label}"
        return f"{moved} ({self.reason})" if self.reason else moved


@dataclass(frozen=True, slots=True)
class WorkContext:
    """What a state's work needs to know about why it runs."""

    service: str
    state: State
    previous: State
    procedure: Procedure | None
    command: Command | None


Work = Callable[[WorkContext], Awaitable[None]]
Listener = Callable[[StateChange], None]


class _Model:
    """The object ``transitions`` attaches its state and trigger methods to."""

    state: State
    trigger: Callable[..., bool]


def _running_task() -> asyncio.Task[object] | None:
    """The task we run in, or None when called outside an event loop (sync use, no work)."""
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _trigger_name(trigger: Trigger) -> str:
    return "sc" if trigger == SC else Command(trigger).name.lower()


class ServiceStateMachine:
    """One MTP service: state, CommandEn, modes, procedure selection and state work.

    Call :meth:`command` from the event-loop thread. It either changes the state at once and
    returns the new state, or raises :class:`CommandRefused` and changes nothing.
    """

    def __init__(
        self,
        name: str = "service",
        *,
        procedures: Iterable[Procedure] = (DEFAULT_PROCEDURE,),
        options: StateMachineOptions | None = None,
        operation_mode: OperationMode = OperationMode.OFFLINE,
        source_mode: SourceMode = SourceMode.INTERNAL,
        clock: Callable[[], float] = time.time,
        abort_drain: float = ABORT_DRAIN,
    ) -> None:
        self.name = name
        self.abort_drain = abort_drain
        """Seconds Aborting's work waits for cancelled earlier work to end (see
        :data:`ABORT_DRAIN`)."""
        self.options = options or StateMachineOptions()
        self._procedures: dict[int, Procedure] = {}
        for proc in procedures:
            if proc.id in self._procedures:
                raise ValueError(f"service '{name}': procedure id {proc.id} is used twice")
            self._procedures[proc.id] = proc
        defaults = [p for p in self._procedures.values() if p.is_default]
        if len(defaults) > 1:
            raise ValueError(f"service '{name}': more than one default procedure: {defaults}")
        self._procedure_req = defaults[0].id if defaults else 0
        self._procedure_cur = 0
        self._operation_mode = operation_mode
        self._source_mode = source_mode
        self._clock = clock
        self._work: dict[State, Work] = {}
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._current_task: asyncio.Task[None] | None = None
        self._generation = 0
        self._notifying = False
        self._closed = False
        self.last_error: BaseException | None = None

        self._model = _Model()
        self._machine = Machine(
            model=self._model,
            states=list(State),
            initial=State.IDLE,
            transitions=[
                {
                    "trigger": _trigger_name(row.trigger),
                    "source": row.source,
                    "dest": row.dest,
                    **(
                        {"conditions": [self._self_completing]}
                        if row.trigger == SC and row.source is State.EXECUTE
                        else {}
                    ),
                }
                for row in transitions_for(self.options)
            ],
            auto_transitions=False,
            ignore_invalid_triggers=False,
            send_event=False,
        )

    # ----------------------------------------------------------------- read-only views
    @property
    def state(self) -> State:
        return State(self._model.state)

    @property
    def state_cur(self) -> int:
        """StateCur as published over MTP."""
        return int(self.state)

    @property
    def enabled(self) -> frozenset[Command]:
        """Commands enabled now: the table for this state, minus Start/Restart without a
        valid ProcedureReq (a start could only be refused, so it is not offered)."""
        cmds = enabled_commands(self.state, self.options)
        if self._procedure_req not in self._procedures:
            cmds -= {Command.START, Command.RESTART}
        return cmds

    @property
    def command_en(self) -> int:
        """CommandEn as published over MTP: the OR of the codes in :attr:`enabled`."""
        value = 0
        for cmd in self.enabled:
            value |= int(cmd)
        return value

    @property
    def operation_mode(self) -> OperationMode:
        return self._operation_mode

    @property
    def source_mode(self) -> SourceMode:
        return self._source_mode

    @property
    def procedures(self) -> dict[int, Procedure]:
        return dict(self._procedures)

    @property
    def procedure_req(self) -> int:
        return self._procedure_req

    @property
    def procedure_cur(self) -> int:
        return self._procedure_cur

    @property
    def pending_work(self) -> int:
        """Work tasks not yet finished (running, or cleaning up after cancellation)."""
        return sum(1 for t in self._tasks if not t.done())

    # ----------------------------------------------------------------- configuration
    def set_work(self, state: State, work: Work | None) -> None:
        """Register ``async def work(ctx)`` for ``state`` (None removes it).

        The work runs as a task while the machine is in ``state``. For acting states (and
        Execute with a self-completing procedure) its return fires SC; leaving the state by a
        command cancels it. An exception in work aborts the service (see docs).
        """
        if work is None:
            self._work.pop(state, None)
        else:
            self._work[state] = work

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(change)`` after every transition; returns an unsubscribe function.

        Listeners run synchronously inside the transition and must not command the machine
        (schedule that with ``loop.call_soon``); their exceptions are logged, never raised.
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def adopt(self, state: State, procedure: int | None = None, reason: str = "") -> None:
        """Take ``state`` (and ``procedure``) as the service's present state without a
        command and without running any state's work: what a controller does that
        reconnects to a device already running (its outputs were set by an earlier life of
        the controller, and nothing is written again). Only a stable state may be adopted;
        listeners hear the change with ``command`` and ``channel`` None and the reason."""
        self._check_not_notifying()
        if state not in _ADOPTABLE:
            raise ValueError(f"service '{self.name}': cannot adopt {state.label}, only a "
                             f"stable state ({', '.join(s.label for s in _ADOPTABLE)})")
        if procedure is not None:
            if procedure not in self._procedures:
                raise ValueError(f"service '{self.name}': no procedure {procedure}")
            self._procedure_req = procedure
        old = self.state
        if old is state:
            return
        self._procedure_cur = (procedure or self._procedure_req) if state in (
            State.EXECUTE, State.HELD, State.PAUSED) else 0
        self._machine.set_state(state, model=self._model)
        self._generation += 1
        self._notify(StateChange(service=self.name, old=old, new=state, command=None,
                                 channel=None, time=self._clock(),
                                 procedure=self._procedure_cur, reason=reason))

    # ----------------------------------------------------------------- modes
    def set_operation_mode(self, mode: OperationMode) -> None:
        """Switch Offline/Operator/Automatic. Offline is allowed only while the service is Idle,
        so that an offline service never has a procedure running."""
        self._check_not_notifying()
        if mode is OperationMode.OFFLINE and self.state is not State.IDLE:
            raise CommandRefused(
                f"service '{self.name}': cannot switch to Offline in state {self.state.label}; "
                "bring the service to Idle first (Stop/Abort, then Reset)",
                state=self.state,
            )
        self._operation_mode = mode

    def set_source_mode(self, mode: SourceMode) -> None:
        """Choose which automatic channel is obeyed (CommandInt or CommandExt)."""
        self._source_mode = mode

    def channel_allowed(self, channel: Channel) -> str | None:
        """None if ``channel`` may command in the current modes, otherwise the reason why not."""
        mode = self._operation_mode
        if mode is OperationMode.OFFLINE:
            return f"service '{self.name}' is Offline; switch it to Operator or Automatic first"
        if channel is Channel.PEA:
            return None
        if channel is Channel.OPERATOR:
            if mode is OperationMode.OPERATOR:
                return None
            return f"service '{self.name}' is in Automatic; CommandOp is honoured only in Operator"
        if mode is not OperationMode.AUTOMATIC:
            return (
                f"service '{self.name}' is in Operator; Command{channel.value} is honoured only "
                "in Automatic"
            )
        wanted = Channel.INTERNAL if self._source_mode is SourceMode.INTERNAL else Channel.EXTERNAL
        if channel is wanted:
            return None
        return (
            f"service '{self.name}' source is {self._source_mode.value}; "
            f"Command{channel.value} is ignored (use Command{wanted.value} or switch source)"
        )

    # ----------------------------------------------------------------- procedures
    def request_procedure(self, procedure_id: int, channel: Channel = Channel.OPERATOR) -> None:
        """Set ProcedureReq; it becomes ProcedureCur at the next Start or Restart."""
        self._check_not_notifying()
        why = self.channel_allowed(channel)
        if why is not None:
            raise CommandRefused(why, channel=channel, state=self.state)
        if procedure_id not in self._procedures:
            known = ", ".join(f"{p.id} ({p.name})" for p in self._procedures.values())
            raise CommandRefused(
                f"service '{self.name}': unknown procedure id {procedure_id} (known: {known})",
                channel=channel,
                state=self.state,
            )
        self._procedure_req = procedure_id

    def _self_completing(self) -> bool:
        proc = self._procedures.get(self._procedure_cur)
        return proc is not None and proc.self_completing

    # ----------------------------------------------------------------- commands
    def check(self, command: Command | int, channel: Channel = Channel.OPERATOR) -> str | None:
        """None if :meth:`command` would accept this now, otherwise the reason it would not."""
        try:
            cmd = Command(command)
        except ValueError:
            codes = ", ".join(f"{c.label}={int(c)}" for c in Command)
            return f"unknown command code {command!r} (known: {codes})"
        why = self.channel_allowed(channel)
        if why is not None:
            return why
        if cmd not in enabled_commands(self.state, self.options):
            allowed = ", ".join(c.label for c in sorted(self.enabled)) or "none"
            return (
                f"service '{self.name}': {cmd.label} is not enabled in state {self.state.label} "
                f"(enabled: {allowed})"
            )
        if cmd in (Command.START, Command.RESTART) and self._procedure_req not in self._procedures:
            return f"service '{self.name}': no procedure requested; call request_procedure first"
        return None

    def command(self, command: Command | int, channel: Channel = Channel.OPERATOR, *,
                reason: str = "") -> State:
        """Apply ``command`` from ``channel``; returns the state reached (after any immediate
        SC of acting states without work). Raises :class:`CommandRefused` and changes nothing
        if the channel, the state or the procedure selection does not allow it. ``reason``
        goes with the state change (:attr:`StateChange.reason`)."""
        self._check_not_notifying()
        if self._closed:
            raise RuntimeError(f"service '{self.name}' was closed (aclose); create a new one")
        why = self.check(command, channel)
        if why is not None:
            known = command if isinstance(command, Command) else None
            if known is None and command in {int(c) for c in Command}:
                known = Command(command)
            raise CommandRefused(why, command=known, channel=channel, state=self.state)
        cmd = Command(command)
        if self._work:
            asyncio.get_running_loop()  # fail before changing anything when work cannot run
        if cmd in (Command.START, Command.RESTART):
            self._procedure_cur = self._procedure_req
        self._apply(cmd, channel, reason)
        return self.state

    async def wait_for(self, *states: State) -> State:
        """Wait until the machine is in one of ``states`` and return it; bound it with
        ``async with asyncio.timeout(...)``."""
        if self.state in states:
            return self.state
        fut: asyncio.Future[State] = asyncio.get_running_loop().create_future()

        def on_change(change: StateChange) -> None:
            if change.new in states and not fut.done():
                fut.set_result(change.new)

        unsubscribe = self.subscribe(on_change)
        try:
            return await fut
        finally:
            unsubscribe()

    async def aclose(self) -> None:
        """Cancel all work and wait for it to finish; the machine keeps its state."""
        self._closed = True
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._current_task = None

    async def __aenter__(self) -> ServiceStateMachine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ----------------------------------------------------------------- internals
    def _check_not_notifying(self) -> None:
        if self._notifying:
            raise RuntimeError(
                f"service '{self.name}': do not command the machine from a state-change "
                "listener; schedule it with loop.call_soon instead"
            )

    def _needs_sc(self, state: State) -> bool:
        return state in ACTING_STATES or (state is State.EXECUTE and self._self_completing())

    def _apply(self, trigger: Trigger, channel: Channel | None, reason: str) -> None:
        """Fire ``trigger`` and then every SC that is due at once (acting states without work
        and without cleanup of earlier work to wait for)."""
        while True:
            entered = self._transition(trigger, channel, reason)
            if entered is None:
                return
            trigger, channel, reason = SC, None, ""

    def _transition(self, trigger: Trigger, channel: Channel | None, reason: str) -> State | None:
        """One transition; returns the new state if an immediate SC is due from it."""
        old = self.state
        me = _running_task()
        current = self._current_task
        if current is not None and not current.done() and current is not me:
            current.cancel()
        self._current_task = None
        self._model.trigger(_trigger_name(trigger))
        new = self.state
        self._generation += 1
        self._notify(
            StateChange(
                service=self.name,
                old=old,
                new=new,
                command=None if trigger == SC else Command(trigger),
                channel=channel,
                time=self._clock(),
                procedure=self._procedure_cur,
                reason=reason,
            )
        )
        work = self._work.get(new)
        draining = {t for t in self._tasks if not t.done() and t is not me}
        if work is None and not self._needs_sc(new):
            return None
        if work is None and not draining:
            return new
        ctx = WorkContext(
            service=self.name,
            state=new,
            previous=old,
            procedure=self._procedures.get(self._procedure_cur),
            command=None if trigger == SC else Command(trigger),
        )
        task = asyncio.get_running_loop().create_task(
            self._run(self._generation, ctx, work, draining),
            name=f"{self.name}:{new.label}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._current_task = task
        return None

    async def _run(
        self,
        generation: int,
        ctx: WorkContext,
        work: Work | None,
        draining: set[asyncio.Task[None]],
    ) -> None:
        stuck_note = ""
        try:
            if draining:
                # asyncio.wait never cancels what it waits for, so a second cancellation of
                # this task cannot cut short the cleanup of earlier work.
                if ctx.state is State.ABORTING:
                    _, stuck = await asyncio.wait(draining, timeout=self.abort_drain)
                    if stuck:
                        stuck_note = self._stuck(ctx.state, stuck)
                else:
                    await asyncio.wait(draining)
            if work is not None:
                await work(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._work_failed(generation, ctx.state, exc, stuck_note)
            return
        if generation == self._generation and not self._closed and self._needs_sc(ctx.state):
            self._current_task = None
            self._apply(SC, None, stuck_note)

    def _stuck(self, state: State, stuck: set[asyncio.Task[None]]) -> str:
        """Earlier work still runs ``abort_drain`` s after its cancel: Aborting writes its
        outputs anyway. The fault is kept in :attr:`last_error`, logged, and returned as the
        reason of the state change that leaves Aborting, so listeners (a run's events) get
        it too."""
        names = ", ".join(sorted(t.get_name() for t in stuck))
        note = (f"work {names} did not end within {self.abort_drain:g} s of its cancel; "
                f"{state.label} went on without it")
        self.last_error = RuntimeError(f"service '{self.name}': {note}")
        _log.error("%s", self.last_error)
        return note

    def _work_failed(self, generation: int, state: State, exc: Exception,
                     note: str = "") -> None:
        self.last_error = exc
        current = generation == self._generation and not self._closed
        _log.error(
            "service '%s': work of state %s failed%s: %r",
            self.name,
            state.label,
            "" if current else " (state already left)",
            exc,
            exc_info=exc,
        )
        if not current:
            return
        self._current_task = None
        reason = "; ".join(filter(None, (note, f"work of {state.label} failed: {exc!r}")))
        if state is State.ABORTING:
            self._apply(SC, None, reason)  # aborting must end, even if its cleanup failed
        elif command_target(state, Command.ABORT, self.options) is not None:
            self._apply(Command.ABORT, None, reason)

    def _notify(self, change: StateChange) -> None:
        self._notifying = True
        try:
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception:
                    _log.exception("service '%s': state-change listener failed", self.name)
        finally:
            self._notifying = False

    def __repr__(self) -> str:
        return (
            f"<ServiceStateMachine {self.name!r} {self.state.label} "
            f"CommandEn={self.command_en} {self._operation_mode.value}>"
        )

"""Run events: one kind enum, its payload schema, and the ordered log that emits them.

Why a bottom-layer module: the orchestrator emits these events, and the session, the
historian, the report and the CLI read them. Records must not import the orchestrator, so the
vocabulary they share lives below both. Every kind is declared once here, with the payload
keys it carries; :meth:`EventLog.emit` refuses a payload that does not match its kind, so a
reader can rely on the schema instead of guessing keys.

The values are the strings stored in the ``events`` table of a run database: they never
change, so existing databases still read. Some orchestrator kinds are stored under a broader
historian kind (:attr:`Payload.stored_as`), e.g. both ``recipe_state`` and ``service_state``
are stored as ``state_change``, which is what the report draws its Gantt chart from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

__all__ = ["PAYLOADS", "Event", "EventKind", "EventLog", "Listener", "Payload", "kind_of"]

_log = logging.getLogger(__name__)


class EventKind(StrEnum):
    """Every kind of run event; see :data:`PAYLOADS` for what each carries."""

    # the recipe as a whole
    RUN_QUEUED = "run_queued"
    RUN_CANCELLED = "run_cancelled"
    RUN_STARTED = "run_started"
    RUN_ENDED = "run_ended"
    RUN_RESUMED = "run_resumed"
    RUN_POSITION = "run_position"
    RECIPE_STATE = "recipe_state"
    COMMAND = "command"
    COMMAND_REFUSED = "command_refused"
    COMMAND_TIMEOUT = "command_timeout"
    SHUTDOWN_REQUESTED = "shutdown_requested"
    # the procedure
    BLOCK_STARTED = "block_started"
    BLOCK_FINISHED = "block_finished"
    STEP_STARTED = "step_started"
    STEP_FINISHED = "step_finished"
    STEP_FAILED = "step_failed"
    STEP_TIMEOUT = "step_timeout"
    ITERATION = "iteration"
    GOTO = "goto"
    PARAMETER_WRITE = "parameter_write"
    OPERATOR_PROMPT = "operator_prompt"
    OPERATOR_ACTION = "operator_action"
    # modules
    SERVICE_STATE = "service_state"
    MODULE_FAULT = "module_fault"
    MODULE_RECOVERED = "module_recovered"
    SAFE_STATE = "safe_state"
    SIM_FAULT = "sim_fault"
    PLANT_REATTACHED = "plant_reattached"
    VALUE_CHANGED = "value_changed"
    MODE_CHANGED = "mode_changed"
    HANDSHAKE_DEVIATION = "handshake_deviation"
    # supervision
    INTERLOCK_TRIPPED = "interlock_tripped"
    INTERLOCK_CLEARED = "interlock_cleared"
    INTERLOCK_BYPASS = "interlock_bypass"
    INTERLOCK_BYPASSED = "interlock_bypassed"
    ALARM_RAISED = "alarm_raised"
    ALARM_CLEARED = "alarm_cleared"
    ALARM_ACKED = "alarm_acked"
    ALARM_ENABLED = "alarm_enabled"
    ALARM_DISABLED = "alarm_disabled"
    ALARM_STATE = "alarm_state"
    STEADY_STATE = "steady_state"
    DIVERT = "divert"
    DIVERT_ENABLED = "divert_enabled"
    DIVERT_DISABLED = "divert_disabled"
    DIVERT_FAILED = "divert_failed"
    DIVERT_OVERRIDE = "divert_override"
    OPTIMIZE_EXPERIMENT = "optimize_experiment"
    OPTIMIZE_BEST = "optimize_best"
    SUPERVISION_FAILED = "supervision_failed"
    SUPERVISION_RESTORED = "supervision_restored"
    LISTENER_FAILED = "listener_failed"
    # the kinds the historian stores (some orchestrator kinds are stored under these)
    STATE_CHANGE = "state_change"
    STEP_TRANSITION = "step_transition"
    FAULT = "fault"
    DEVIATION = "deviation"
    MESSAGE = "message"
    RUN_START = "run_start"
    RUN_END = "run_end"
    OVERFLOW = "historian_overflow"
    DATA_LOSS = "data_loss"


@dataclass(frozen=True, slots=True)
class Payload:
    """What an event of one kind carries in ``data`` (beyond seq, time, source, message)."""

    doc: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    stored_as: EventKind | None = None
    """The historian kind this event is recorded under, if not its own."""

    def problems(self, data: Mapping[str, Any]) -> list[str]:
        missing = [k for k in self.required if k not in data]
        unknown = [k for k in data if k not in self.required and k not in self.optional]
        out = []
        if missing:
            out.append(f"missing {', '.join(missing)}")
        if unknown:
            out.append(f"undeclared {', '.join(unknown)}")
        return out


K = EventKind
PAYLOADS: Final[Mapping[EventKind, Payload]] = {
    K.RUN_QUEUED: Payload("the control service queued a run (queue id, recipe, user)",
                          ("run", "recipe", "user")),
    K.RUN_CANCELLED: Payload("a queued run was taken off the queue before it started",
                             ("run", "user")),
    K.PLANT_REATTACHED: Payload(
        "the control service restarted and reattached to the running plant without writing "
        "to it; gap_from/gap_to (epoch s): the span with no record (the last committed "
        "sample, the reattach); interrupted: the runs that were running and cannot be "
        "resumed, resumed: the runs taken up where they were",
        ("gap_from", "gap_to", "modules"), ("interrupted", "resumed")),
    K.RUN_STARTED: Payload("the recipe was started; source 'recipe'",
                           ("recipe", "version", "parameters", "file")),
    K.RUN_RESUMED: Payload(
        "a restarted control service resumed a run its previous life left running: gap "
        "(simulated s without control), gap_from/gap_to (epoch s), step (where it resumed), "
        "held (why it resumes held for an operator decision, '' if it does not)",
        ("gap", "step"), ("gap_from", "gap_to", "held", "recipe_hash")),
    K.RUN_POSITION: Payload(
        "where the run is, written at every step transition and periodically: what a "
        "restart resumes from (docs/operations.md); position is the orchestrator's snapshot",
        ("position",), ("recipe_hash", "parameters")),
    K.RUN_ENDED: Payload("the recipe reached a final state; result: completed/stopped/aborted",
                         ("result",)),
    K.RECIPE_STATE: Payload("the recipe's own MTP state changed (old/new state labels)",
                            ("old", "new", "reason"), stored_as=K.STATE_CHANGE),
    K.COMMAND: Payload("a command on the recipe (reason) or a module service (module, "
                       "service, or procedure and parameters of a service step)",
                       ("command",), ("reason", "module", "service", "procedure",
                                      "parameters")),
    K.COMMAND_REFUSED: Payload("a module service refused a command of a fan-out; message says"
                               " why"),
    K.COMMAND_TIMEOUT: Payload("a module service did not reach a fan-out command's target in"
                               " time"),
    K.SHUTDOWN_REQUESTED: Payload("the process was asked to end (signal: SIGTERM, SIGHUP, "
                                  "or SIGINT without a terminal); action: stop or abort",
                                  ("signal", "action")),
    K.BLOCK_STARTED: Payload("a unit procedure started; source is its name"),
    K.BLOCK_FINISHED: Payload("a unit procedure finished; source is its name",
                              stored_as=K.STEP_TRANSITION),
    K.STEP_STARTED: Payload("a step started; source is its label, at its file:line:col",
                            ("step_kind", "block", "at", "path"), stored_as=K.STEP_TRANSITION),
    K.STEP_FINISHED: Payload("a step finished", ("step_kind",)),
    K.STEP_FAILED: Payload("a step failed; handler is the on_error handler applied",
                           ("handler",)),
    K.STEP_TIMEOUT: Payload("a step timed out; handler is the on_timeout handler applied",
                            ("handler",)),
    K.ITERATION: Payload("a repeat step began iteration index (from 1)", ("index",)),
    K.GOTO: Payload("an error handler jumped to a cleanup block (target)", ("target",)),
    K.PARAMETER_WRITE: Payload("a set step wrote value (coerced) from given (as written)",
                               ("value", "given")),
    K.OPERATOR_PROMPT: Payload("the operator was asked (prompt id, choices)",
                               ("prompt",), ("choices",)),
    K.OPERATOR_ACTION: Payload("a prompt was answered: by the operator (user), or, with "
                               "automatic (the option that said so: --yes, no terminal), by "
                               "the program as user 'auto'", ("user", "answer"),
                               ("automatic",)),
    K.SERVICE_STATE: Payload("a module service's state changed; source is module.service; "
                             "reason says why when it moved by itself (the work of a state "
                             "failed: Abort)", ("old", "new", "module"), ("reason",),
                             stored_as=K.STATE_CHANGE),
    K.MODULE_FAULT: Payload("a module faulted (communication, bad or stale values); message"
                            " says what", stored_as=K.FAULT),
    K.MODULE_RECOVERED: Payload("a module's fault cleared; was is the fault text", ("was",)),
    K.SAFE_STATE: Payload("a module's safe state was applied; errors lists what failed",
                          ("errors",)),
    K.SIM_FAULT: Payload("a simulated fault began or ended (phase) at sim_time",
                         ("fault", "phase", "sim_time")),
    K.VALUE_CHANGED: Payload("a module's value moved beyond its deadband or changed quality"
                             " (control service stream only, not stored: the historian has "
                             "the samples); source is module.assembly",
                             ("module", "assembly", "value", "unit", "quality")),
    K.MODE_CHANGED: Payload("an operator switched the operation mode or source of a module's "
                            "service or service parameter (control service stream only; the "
                            "audit trail has the action); source is module.object",
                            ("module", "object", "operation", "source")),
    K.HANDSHAKE_DEVIATION: Payload("a PEA was driven by a tolerance of its declared handshake "
                                   "policy (plant handshake:); message says which",
                                   ("module",)),
    K.INTERLOCK_TRIPPED: Payload("an interlock's condition became true, or cannot be evaluated"
                                 " (reason says why: a value missing, bad, stale or NaN)",
                                 ("action", "condition"), ("reason",)),
    K.INTERLOCK_CLEARED: Payload("an interlock's condition evaluates false again"),
    K.INTERLOCK_BYPASS: Payload("a signed interlock bypass began, or ended (unbypassed, "
                                "expired on the line clock, or the run ended); user and "
                                "reason say whose and why", ("bypassed", "user", "reason"),
                                ("since", "until")),
    K.INTERLOCK_BYPASSED: Payload("a bypassed interlock's condition became true (or cannot be"
                                  " evaluated): its action was not taken",
                                  ("action", "condition", "bypassed_by"), ("reason",)),
    K.DIVERT_OVERRIDE: Payload("a signed manual divert override began or ended (released, "
                               "expired, overridden by an interlock, or the run ended)",
                               ("overridden", "user", "reason"),
                               ("to_product", "since", "until")),
    K.ALARM_RAISED: Payload("an alarm was raised: out of limits, or its signal cannot be"
                            " evaluated (reason says why)", ("priority", "signal", "value"),
                            ("reason",)),
    K.ALARM_CLEARED: Payload("an alarm cleared", ("priority",)),
    K.ALARM_ACKED: Payload("an alarm was acknowledged (historian)", ("user",)),
    K.ALARM_ENABLED: Payload("an alarm is evaluated from this step on"),
    K.ALARM_DISABLED: Payload("an alarm is no longer evaluated from this step on"),
    K.ALARM_STATE: Payload("an alarm moved in its ISA-18.2 life cycle (docs/alarms.md): "
                           "trigger by user (a person, 'auto' for the program, 'process' for "
                           "the plant); active is the process condition",
                           ("state", "previous", "trigger", "user", "active", "priority"),
                           ("reason", "until", "first_out", "chattering")),
    K.STEADY_STATE: Payload("steady state reached or lost", ("steady", "residence_time")),
    K.DIVERT: Payload("the divert valve switched", ("to_product",)),
    K.DIVERT_ENABLED: Payload("divert control is active from this step on"),
    K.DIVERT_DISABLED: Payload("divert control ends at this step"),
    K.DIVERT_FAILED: Payload("the divert valve could not be switched; message says why"),
    K.OPTIMIZE_EXPERIMENT: Payload(
        "an optimisation campaign's experiment finished (source: the campaign); what a "
        "restarted campaign replays; units and unit_factors: how people read the SI KPIs and "
        "objective ({name: unit}, {name: factor from SI})",
        ("index", "x", "setpoints", "means", "kpis", "objective", "margins", "feasible",
         "error"), ("units", "unit_factors")),
    K.OPTIMIZE_BEST: Payload(
        "an optimisation campaign ended and the line runs on at its best feasible experiment "
        "(source: the campaign; recorded once its set points are written: the parameter_write "
        "events just before it)",
        ("index", "setpoints", "objective", "experiments")),
    K.SUPERVISION_FAILED: Payload("a part of the supervision tick raised; the recipe is held"
                                  " until a whole tick succeeds again", ("error",)),
    K.SUPERVISION_RESTORED: Payload("a whole supervision tick succeeded again; was is the"
                                    " error", ("was",)),
    K.LISTENER_FAILED: Payload("a listener raised on event (an event kind and its seq, or a"
                               " module's values/state/fault); the other listeners still got"
                               " it", ("listener", "event", "error"), ("seq",)),
    K.STATE_CHANGE: Payload("(stored) a state changed: state, previous", (),
                            ("state", "previous")),
    K.STEP_TRANSITION: Payload("(stored) a Gantt row of a unit procedure moved to step",
                               (), ("step",)),
    K.FAULT: Payload("(stored) a module fault"),
    K.DEVIATION: Payload("(stored) a recorded deviation"),
    K.MESSAGE: Payload("(stored) a free note"),
    K.RUN_START: Payload("(stored) the historian opened a run"),
    K.RUN_END: Payload("(stored) the historian closed a run"),
    K.OVERFLOW: Payload("(stored) the historian's queue overflowed; dropped samples",
                        ("dropped",)),
    K.DATA_LOSS: Payload("(stored) a batch of records could not be written within the retry"
                         " budget: samples lost, tags, t_first..t_last, other records lost, error",
                         ("samples", "tags", "t_first", "t_last", "error"), ("records",)),
}
del K


def kind_of(text: str) -> EventKind | None:
    """The kind a stored string names, or None for a free-text kind (the historian accepts
    those too, and a report skips what it does not understand)."""
    try:
        return EventKind(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Event:
    """One run event: sequence number, simulated time, kind, source, message, payload."""

    seq: int
    t: float
    kind: EventKind
    source: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def brief(self) -> tuple[str, str, str]:
        """What determinism is judged on: kind, source and message (not times)."""
        return (self.kind.value, self.source, self.message)


Listener = Callable[[Event], None]


class EventLog:
    """The ordered events of a run, with listeners (historian, live view, tests)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.events: list[Event] = []
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, kind: EventKind, source: str, message: str, **data: Any) -> Event:
        """Append and publish an event; a payload that does not match the kind's declared
        schema is a programming error and raises (it would corrupt the record)."""
        ev = self._append(kind, source, message, data)
        self._publish(ev, ())
        return ev

    def _append(self, kind: EventKind, source: str, message: str, data: dict[str, Any]) -> Event:
        problems = PAYLOADS[kind].problems(data)
        if problems:
            raise TypeError(f"event {kind.value}: payload {'; '.join(problems)}")
        ev = Event(len(self.events) + 1, self._now(), kind, source, message, data)
        self.events.append(ev)
        return ev

    def _publish(self, ev: Event, failed: tuple[Listener, ...]) -> None:
        """Give ``ev`` to every listener; a listener that raises does not stop the others,
        and its failure becomes a ``listener_failed`` event, published after ``ev`` to every
        listener that has not failed in this chain (so two failing listeners cannot recurse).

        Why an event and not only a log line: a listener is the historian, the live view or
        an operator station; one that silently misses events leaves a record or a screen
        wrong while the run looks fine.
        """
        failures: list[tuple[Listener, Event]] = []
        for listener in list(self._listeners):
            if listener in failed:
                continue
            try:
                listener(ev)
            except Exception as exc:
                _log.exception("event listener failed on %s", ev.kind.value)
                name = getattr(listener, "__qualname__", None) or repr(listener)
                error = f"{type(exc).__name__}: {exc}"
                failures.append((listener, self._append(
                    EventKind.LISTENER_FAILED, name,
                    f"listener {name} failed on {ev.kind.value} #{ev.seq}: {error}",
                    {"listener": name, "event": ev.kind.value, "seq": ev.seq, "error": error})))
        skip = failed + tuple(listener for listener, _ in failures)
        for _listener, failure in failures:
            self._publish(failure, skip)

    def of_kind(self, *kinds: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind in kinds]

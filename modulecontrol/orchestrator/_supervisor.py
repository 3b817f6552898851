"""The supervisor: interlocks, alarms, steady state, divert control and module faults.

It runs beside the procedure on its own tick and judges one snapshot of the plant's values
(SI) per tick, so its decisions are consistent with each other and deterministic under the
virtual clock. It acts on the recipe only through commands and hold requests (the hold
arbiter), never by reaching into the procedure; the procedure tells it which step it entered
(:meth:`Supervisor.step_entered`), because alarms and divert control start and end at steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from modulecontrol.alarms import AUTO, PROCESS, AlarmBoard, AlarmChange, AlarmSpec
from modulecontrol.clock import Clock
from modulecontrol.descriptors import feeds, residence_time
from modulecontrol.drivers import DriverError
from modulecontrol.events import EventKind, EventLog
from modulecontrol.expr import Condition, SignalInfo
from modulecontrol.orchestrator._holds import HoldArbiter
from modulecontrol.orchestrator._monitor import (
    AlarmState,
    Bypass,
    DivertControl,
    InterlockState,
    SteadyStateDetector,
    si_number,
)
from modulecontrol.orchestrator._operator import OperatorChannel, Prompt
from modulecontrol.orchestrator._plantalarms import (
    PlantAlarms,
    alarm_event,
    feed_board,
    plant_alarm_specs,
    suppression,
    why_value,
)
from modulecontrol.orchestrator._twin import TwinMonitor
from modulecontrol.proxy import ModuleProxy, ServiceProxy
from modulecontrol.recipe import ValidatedRecipe
from modulecontrol.statemachine import Command, CommandRefused, State
from modulecontrol.units import to_si

_log = logging.getLogger(__name__)

CommLoss = Literal["hold", "abort", "ignore"]
ServiceKey = tuple[str, str]


class Supervisor:
    """Plant-wide supervision of one running recipe."""

    def __init__(
        self,
        recipe: ValidatedRecipe,
        proxies: Mapping[str, ModuleProxy],
        *,
        clock: Clock,
        log: EventLog,
        holds: HoldArbiter,
        operator: OperatorChannel,
        command: Callable[[Command, str], bool],
        recipe_state: Callable[[], State],
        used: Mapping[ServiceKey, ServiceProxy],
        tick: float,
        on_comm_loss: CommLoss,
        alarms: AlarmBoard | None = None,
        plant_alarms: PlantAlarms | None = None,
    ) -> None:
        self.validated = recipe
        self.proxies = proxies
        self.clock = clock
        self.log = log
        self.holds = holds
        self.operator = operator
        self._command = command
        self._recipe_state = recipe_state
        self._used = used
        """The module services the recipe has started (interlocks stop/abort those)."""
        self.tick = tick
        self.on_comm_loss = on_comm_loss
        self.signals: dict[str, SignalInfo] = dict(recipe.signals)
        self.derived: dict[str, Any] = {}
        """Signals the supervisor computes (``steady.NAME``, ``divert.product``, ``twin.*``)."""
        self._failure: str | None = None
        """The error of the failing supervision tick, while it fails (the hold's cause)."""
        self._module_faults: dict[str, str] = {}
        """Each faulted module's fault text, so its recovery can say what cleared."""
        r = recipe.recipe
        self.interlocks = [InterlockState(i, recipe.compile(i.when)) for i in r.interlocks]
        self.alarms = [AlarmState.build(a, self._unit(a.signal), recipe.resolve)
                       for a in r.alarms]
        self.plant_alarms = plant_alarms
        """The line's detectors of the plant file's alarms, taken over for the run and given
        back at its end (the line evaluates them between runs); None: this run's own."""
        if plant_alarms is not None:
            self.alarms.extend(plant_alarms.states.values())
        else:
            self.alarms.extend(AlarmState.build(a, self._unit(a.signal), lambda v: v)
                               for a in plant_alarm_specs(recipe.plant))
        self.board = alarms or AlarmBoard(recipe.plant.plant.alarm_philosophy)
        """The line's alarm board: the life cycle of every alarm and interlock this
        supervisor detects (docs/alarms.md)."""
        self._step: str | None = None
        """The step last entered (suppression by design)."""
        self.twin: TwinMonitor | None = None
        """The recipe's twin (``twin.*`` signals and the mismatch alarms), if it has one."""
        if r.twin is not None:
            self.twin = TwinMonitor(r.twin, recipe, proxies, clock.now())
            self.alarms.extend(self.twin.alarms)
        self._declare()  # every alarm on the board, the twin's mismatch alarms too
        self.steady = [
            SteadyStateDetector(
                s, self._band(s.band, self._unit(s.signal)), si_number(recipe, s.residence_times)
            )
            for s in r.steady_state
        ]
        self.divert: DivertControl | None = None
        if r.divert is not None:
            self.divert = DivertControl(r.divert.valve, recipe.compile(r.divert.product_when))
            self.divert.active = r.divert.enabled_from is None

    def _declare(self) -> None:
        plant_names = {a.name for m in self.validated.plant.plant.modules for a in m.alarms}
        for al in self.alarms:
            spec = al.spec
            after = self.validated.resolve(spec.realarm_after)
            self.board.declare(AlarmSpec(
                spec.name, spec.priority, spec.message or f"{spec.signal} out of limits",
                group=spec.group,
                realarm_after=None if after is None else (
                    float(after) if isinstance(after, int | float) else to_si(after, "s")),
                kind="plant" if spec.name in plant_names else "alarm", source=spec.signal))
        for il in self.interlocks:
            self.board.declare(AlarmSpec(
                il.spec.name, "high", f"{il.spec.when} -> {il.spec.action}",
                group=il.spec.group, kind="interlock", source=il.spec.when))

    def alarm_changed(self, change: AlarmChange) -> None:
        """A move of the life cycle, as an ``alarm_state`` event of the run (recorded with
        its audit entry by the session, streamed by the service)."""
        why = f": {change.reason}" if change.reason else ""
        self.log.emit(EventKind.ALARM_STATE, change.name,
                      f"{change.previous.value} -> {change.state.value} ({change.trigger.value}"
                      f" by {change.user}){why}", **change.data())

    def release_alarms(self) -> None:
        """The run ends: its alarms and interlocks are no longer evaluated, so none stays in
        alarm on the board (an unacknowledged one still waits for its acknowledgement). The
        plant file's alarms go back to the line, which goes on evaluating them, unchanged."""
        now = self.clock.now()
        kept = self.plant_alarms.states if self.plant_alarms is not None else {}
        for name in [a.spec.name for a in self.alarms if a.spec.name not in kept] + [
                i.spec.name for i in self.interlocks]:
            self.board.process(name, False, now, reason="no longer evaluated: the run ended")

    def _suppression(self, now: float) -> None:
        """Suppression by design: in a declared step, or while a module service is in a
        declared state."""
        for al in self.alarms:
            why = suppression(al.spec, self._step, self.proxies)
            self.board.suppress(al.spec.name, bool(why), why or "suppressing condition ended",
                                now)

    def _unit(self, signal: str) -> str:
        info = self.signals.get(signal)
        return info.unit if info is not None else ""

    def _band(self, raw: Any, unit: str) -> float:
        band = self.validated.resolve(raw)
        if isinstance(band, int | float):
            return float(band) * (to_si(1.0, unit) - to_si(0.0, unit))
        return to_si(str(band))

    # ------------------------------------------------------------------ restart
    def snapshot(self) -> dict[str, Any]:
        """What a restart needs of the supervision (JSON): each alarm's enablement and
        whether it is raised, each steady-state detector's verdict, divert control's state.
        Interlocks are not restored: they judge the plant afresh at the first tick, and one
        whose condition still holds trips again."""
        d = self.divert
        return {
            "alarms": {a.spec.name: {"enabled": a.enabled, "active": a.active,
                                     "unknown": a.unknown, "acknowledged": a.acknowledged}
                       for a in self.alarms},
            "steady": {s.spec.name: {"steady": s.steady, "first_steady_at": s.first_steady_at,
                                     "signal": s.spec.signal,
                                     "point_since": (s.point_since if math.isfinite(
                                         s.point_since) else None),
                                     "point_tau": (s.point_tau if s.point_tau is not None
                                                   and math.isfinite(s.point_tau) else None)}
                       for s in self.steady},
            "divert": None if d is None else {"active": d.active, "to_product": d.to_product,
                                              "switches": d.switches},
        }

    def restore(self, snap: Mapping[str, Any],
                history: Mapping[str, Sequence[tuple[float, float]]]) -> None:
        """Take up :meth:`snapshot` after a restart. ``history``: the recorded samples
        (simulated time, value in the signal's unit) of each steady-state signal, so a
        detector judges its window on what the plant did before and during the gap rather
        than starting an empty window (which would divert a steady product to waste for
        three residence times)."""
        alarms = snap.get("alarms") or {}
        for al in self.alarms:
            a = alarms.get(al.spec.name)
            if a:
                al.enabled, al.active = bool(a["enabled"]), bool(a["active"])
                al.unknown, al.acknowledged = bool(a["unknown"]), bool(a["acknowledged"])
        steady = snap.get("steady") or {}
        for ss in self.steady:
            st = steady.get(ss.spec.name)
            unit = self._unit(ss.spec.signal)
            for t, v in history.get(ss.spec.signal, ()):
                ss.history.record(t, {"x": to_si(float(v), unit) if unit else float(v)})
            if st:
                ss.steady = bool(st["steady"])
                first = st.get("first_steady_at")
                ss.first_steady_at = None if first is None else float(first)
                # the operating point it was at (a record from before it was kept: since
                # before the window, as then judged), so a restart does not start it again
                since, tau = st.get("point_since"), st.get("point_tau")
                ss.point_since = -math.inf if since is None else float(since)
                ss.point_tau = None if tau is None else float(tau)
            self.derived[f"steady.{ss.spec.name}"] = ss.steady
        div = snap.get("divert")
        if self.divert is not None and div:
            self.divert.active = bool(div["active"])
            self.divert.to_product = bool(div["to_product"])
            self.divert.switches = int(div["switches"])
            self.derived["divert.product"] = self.divert.to_product

    # ------------------------------------------------------------------ values
    def values(self) -> dict[str, Any]:
        """Every module's values in SI, plus the derived signals."""
        out: dict[str, Any] = {}
        for proxy in self.proxies.values():
            out.update(proxy.si_values())
        out.update(self.derived)
        return out

    def evaluate(self, cond: Condition) -> bool | None:
        """The condition now; None when it cannot be evaluated (a value missing or bad)."""
        return self.judge(cond, self.clock.now(), self.values())[0]

    def judge(
        self, cond: Condition, now: float, values: Mapping[str, Any]
    ) -> tuple[bool | None, str]:
        """The condition on one snapshot, and why it is unknown when it is (else "").

        The one place supervision evaluates a condition: interlocks, divert control and the
        procedure's waits all come here, so "cannot be evaluated" means the same to each.
        A value of the wrong type or a condition that raises is unknown too, with the error
        as the reason: the caller decides what unknown means (an interlock trips).
        """
        try:
            result = cond.update(now, {k: v for k, v in values.items() if k in cond.signals})
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if result is not None:
            return result, ""
        return None, self._why_unknown(cond, values)

    def _why_unknown(self, cond: Condition, values: Mapping[str, Any]) -> str:
        """Name the signals without a good value, with their module's fault text."""
        parts = []
        for name in sorted(cond.signals):
            if name not in values:
                parts.append(f"{name} missing")
                continue
            v = values[name]
            if isinstance(v, float) and not math.isfinite(v):
                parts.append(f"{name} is {v}")
            elif v is None:
                proxy = self.proxies.get(name.split(".", 1)[0])
                fault = f" ({proxy.fault})" if proxy is not None and proxy.fault else ""
                parts.append(f"{name} bad quality or stale{fault}")
        if parts:
            return "; ".join(parts)
        return "a window not yet full or holding a bad sample, or a division by zero"

    def feed_flows(self) -> dict[str, float]:
        """The plant's feed flows in SI (for residence times)."""
        out: dict[str, float] = {}
        for tag, assembly in feeds(self.validated.plant).items():
            proxy = self.proxies.get(tag)
            if proxy is None:
                continue
            v = proxy.value(assembly)
            da = proxy.type.assembly(assembly)
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[tag] = max(0.0, to_si(float(v), da.unit))
        return out

    # ------------------------------------------------------------------ the tick
    async def run(self) -> None:
        """Supervise every ``tick`` simulated seconds until cancelled."""
        self.take_up_faults()
        while True:
            await self.supervise()
            await self.clock.sleep(self.tick)

    async def supervise(self) -> None:
        """One tick: interlocks, alarms, steady state and divert, each on the same snapshot.

        A part that raises does not skip the others, and is never only logged: the recipe
        is held (cause ``supervision``) with a ``supervision_failed`` event naming the error,
        because a plant whose interlocks were not judged is not supervised. The hold is
        released, with ``supervision_restored``, at the first tick in which every part
        succeeds again; from then on the interlocks themselves guard the plant.
        """
        now = self.clock.now()
        errors: list[str] = []
        try:
            values = self.values()
        except Exception as exc:
            self._tick_failed([f"values: {type(exc).__name__}: {exc}"])
            return
        if self.twin is not None:
            # first: the predictions are part of this tick's snapshot for every other part
            try:
                predicted = await self.twin.tick(now, values, self.clock)
                self.derived.update(predicted)
                values.update(predicted)
            except Exception as exc:
                _log.exception("supervision of the twin failed")
                errors.append(f"twin: {type(exc).__name__}: {exc}")
        for part, step in (
            ("interlocks", self._interlocks),
            ("alarms", self._alarms),
            ("alarm life cycle", self._life_cycle),
            ("steady state", self._steady_state),
            ("divert", self._divert),
        ):
            try:
                await step(now, values)
            except Exception as exc:
                _log.exception("supervision of %s failed", part)
                errors.append(f"{part}: {type(exc).__name__}: {exc}")
        if errors:
            self._tick_failed(errors)
        elif self._failure is not None:
            was, self._failure = self._failure, None
            self.log.emit(EventKind.SUPERVISION_RESTORED, "supervisor",
                          "supervision restored", was=was)
            self.holds.release("supervision", auto=True)

    def _tick_failed(self, errors: list[str]) -> None:
        error = "; ".join(errors)
        if error == self._failure:
            return  # the same failure again: the hold stands, the event is already there
        self._failure = error
        self.log.emit(EventKind.SUPERVISION_FAILED, "supervisor",
                      f"supervision failed, recipe held: {error}", error=error)
        self.holds.request("supervision", f"supervision failed: {error}")

    async def _interlocks(self, now: float, values: Mapping[str, Any]) -> None:
        for il in self.interlocks:
            if il.bypass is not None and now >= il.bypass.until:
                self._end_bypass(il, AUTO, "expired")
            hit, why = self.judge(il.condition, now, values)
            await self._interlock(il, hit, why)

    async def _alarms(self, now: float, values: Mapping[str, Any]) -> None:
        for al in self.alarms:
            if al.enabled:
                value = values.get(al.spec.signal)
                self._alarm(al, al.step(now, value), value)

    async def _life_cycle(self, now: float, values: Mapping[str, Any]) -> None:
        self._suppression(now)
        self.board.tick(now)

    async def _steady_state(self, now: float, values: Mapping[str, Any]) -> None:
        flows = self.feed_flows()
        for ss in self.steady:
            tau = residence_time(self.validated.plant, ss.spec.path, flows)
            flag = ss.step(now, values.get(ss.spec.signal), tau)
            self.derived[f"steady.{ss.spec.name}"] = ss.steady
            if flag is not None:
                self.log.emit(
                    EventKind.STEADY_STATE,
                    ss.spec.name,
                    "steady state reached" if flag else "steady state lost",
                    steady=flag,
                    residence_time=tau,
                )

    def _alarm(self, al: AlarmState, change: str | None, value: Any) -> None:
        reason = self._why_value(al.spec.signal, value) if change == "unknown" else ""
        event = alarm_event(al, change, value, reason)
        if event is not None:
            self.log.emit(event[0], al.spec.name, event[1], **event[2])
        feed_board(self.board, al, change, value, self.clock.now(), reason)

    def _why_value(self, signal: str, value: Any) -> str:
        return why_value(signal, value, self.proxies)

    async def _interlock(self, il: InterlockState, hit: bool | None, why: str = "") -> None:
        """Trip when the condition is true *or cannot be evaluated* (``hit`` None, ``why``
        says which value); clear only when it evaluates false again. Why: a missing, bad,
        stale or NaN value would otherwise defeat the interlock that guards against it.

        While bypassed (and not already tripped) the condition is still judged and put on
        the alarm board, but the action is skipped, never silently: an
        ``interlock_bypassed`` event each time the interlock would have tripped."""
        spec = il.spec
        if il.bypass is not None and not il.active:
            self._bypassed(il, hit, why)
            return
        if hit is not False and not il.active:
            il.active = True
            il.trips += 1
            extra = {} if hit else {"reason": why}
            self.log.emit(
                EventKind.INTERLOCK_TRIPPED,
                spec.name,
                f"{spec.when} -> {spec.action}" if hit
                else f"cannot evaluate: {why} -> {spec.action}",
                action=spec.action,
                condition=spec.when,
                **extra,
            )
            self.board.process(spec.name, True, self.clock.now(), message=(
                f"{spec.when} -> {spec.action}" if hit else f"cannot evaluate: {why}"))
            why = f"interlock {spec.name}"
            if spec.action == "hold":
                self.holds.request(f"interlock:{spec.name}", why)
            elif spec.action in ("stop", "abort"):
                cmd = Command[spec.action.upper()]
                if spec.modules:
                    for tag in spec.modules:
                        await self._module_command(tag, cmd, why)
                else:
                    self._command(cmd, why)
            elif spec.action == "safe_state":
                for tag in spec.modules or list(self.proxies):
                    errors = await self.proxies[tag].apply_safe_state()
                    self.log.emit(EventKind.SAFE_STATE, tag, why, errors=errors)
        elif hit is False and il.active:
            il.active = False
            self.log.emit(EventKind.INTERLOCK_CLEARED, spec.name, f"{spec.when} no longer true")
            self.board.process(spec.name, False, self.clock.now())
            if spec.action != "hold":
                return
            if spec.resume == "auto":
                self.holds.release(f"interlock:{spec.name}", auto=True)
                return
            il.awaiting_ack = True
            self.holds.release(f"interlock:{spec.name}", auto=False)
            prompt = self.operator.ask(
                spec.name,
                f"Interlock {spec.name} cleared: resume the recipe?",
                ["resume", "stop", "abort"],
            )
            self.log.emit(
                EventKind.OPERATOR_PROMPT, spec.name, "resume after interlock?", prompt=prompt.id
            )
            asyncio.get_running_loop().create_task(self._after_ack(il, prompt))

    def _bypassed(self, il: InterlockState, hit: bool | None, why: str) -> None:
        spec, b = il.spec, il.bypass
        assert b is not None
        if hit is not False and not il.bypassed_hit:
            il.bypassed_hit = True
            what = spec.when if hit else f"cannot evaluate: {why}"
            extra = {} if hit else {"reason": why}
            self.log.emit(EventKind.INTERLOCK_BYPASSED, spec.name,
                          f"{what} -> {spec.action} not taken: bypassed by {b.user}",
                          action=spec.action, condition=spec.when, bypassed_by=b.user,
                          **extra)
            self.board.process(spec.name, True, self.clock.now(),
                               message=f"BYPASSED by {b.user}: {what}")
        elif hit is False and il.bypassed_hit:
            il.bypassed_hit = False
            self.board.process(spec.name, False, self.clock.now())

    # ------------------------------------------------------------------ bypass, override
    def interlock_named(self, name: str) -> InterlockState:
        """The recipe's interlock ``name``; KeyError naming the others when there is none."""
        for il in self.interlocks:
            if il.spec.name == name:
                return il
        raise KeyError(f"the recipe has no interlock '{name}' (interlocks: "
                       f"{', '.join(i.spec.name for i in self.interlocks) or 'none'})")

    def tripped(self) -> list[str]:
        """The interlocks whose action is in force (tripped, not bypassed)."""
        return [il.spec.name for il in self.interlocks if il.active]

    def bypass(self, name: str, user: str, reason: str, seconds: float) -> Bypass:
        """Bypass interlock ``name`` for ``seconds`` of line time (the caller has checked
        the signature and the declared maximum). A trip already in force stays: a bypass
        does not clear a trip, it skips the next ones."""
        il = self.interlock_named(name)
        if seconds <= 0:
            raise ValueError(f"a bypass needs a positive duration, got {seconds:g} s")
        now = self.clock.now()
        il.bypass = Bypass(user, reason, now, now + seconds)
        il.bypassed_hit = False
        self.log.emit(EventKind.INTERLOCK_BYPASS, name,
                      f"bypassed by {user} for {seconds:g} s: {reason}", bypassed=True,
                      **il.bypass.data())
        return il.bypass

    def unbypass(self, name: str, user: str, reason: str = "withdrawn") -> None:
        """End the bypass of ``name`` now; ValueError when it is not bypassed."""
        il = self.interlock_named(name)
        if il.bypass is None:
            raise ValueError(f"interlock '{name}' is not bypassed")
        self._end_bypass(il, user, reason)

    def _end_bypass(self, il: InterlockState, user: str, why: str) -> None:
        """The interlock acts again from this tick: a condition still true trips it now."""
        b, il.bypass = il.bypass, None
        assert b is not None
        if il.bypassed_hit:
            # judged afresh: the normal path raises it again (and acts) while it holds
            il.bypassed_hit = False
            self.board.process(il.spec.name, False, self.clock.now(),
                               reason=f"bypass ended ({why})")
        self.log.emit(EventKind.INTERLOCK_BYPASS, il.spec.name,
                      f"bypass ended ({why}, by {user}): the interlock acts again",
                      bypassed=False, user=user, reason=why, until=b.until)

    async def override_divert(self, to_product: bool, user: str, reason: str,
                              seconds: float) -> Bypass:
        """Hold the divert valve at product or waste for ``seconds`` of line time, then
        automatic divert control again. Refused (ValueError) without divert control, or to
        product while an interlock's action is in force (safe state first)."""
        d = self.divert
        if d is None:
            raise ValueError("the recipe has no divert: nothing to override")
        if seconds <= 0:
            raise ValueError(f"an override needs a positive duration, got {seconds:g} s")
        if to_product and (tripped := self.tripped()):
            raise ValueError(f"interlock {', '.join(tripped)} is tripped: the stream goes to "
                             f"waste until it clears (safe state first)")
        now = self.clock.now()
        d.override = Bypass(user, reason, now, now + seconds, to_product)
        where = "product" if to_product else "waste"
        self.log.emit(EventKind.DIVERT_OVERRIDE, d.valve,
                      f"held at {where} by {user} for {seconds:g} s: {reason}",
                      overridden=True, to_product=to_product, **d.override.data())
        self.derived["divert.product"] = to_product
        if d.to_product != to_product:
            await self._switch(d, to_product)
        return d.override

    def release_divert(self, user: str, reason: str = "released") -> None:
        """Back to automatic divert control from the next tick; ValueError when not
        overridden (or no divert)."""
        d = self.divert
        if d is None or d.override is None:
            raise ValueError("the divert valve is not overridden")
        self._end_override(d, user, reason)

    def _end_override(self, d: DivertControl, user: str, why: str) -> None:
        o, d.override = d.override, None
        assert o is not None
        self.log.emit(EventKind.DIVERT_OVERRIDE, d.valve,
                      f"override ended ({why}, by {user}): automatic divert control again",
                      overridden=False, user=user, reason=why, to_product=o.to_product,
                      until=o.until)

    def end_exceptions(self, why: str = "the run ended") -> None:
        """Every bypass and override ends with the run (events of their own)."""
        for il in self.interlocks:
            if il.bypass is not None:
                self._end_bypass(il, AUTO, why)
        if self.divert is not None and self.divert.override is not None:
            self._end_override(self.divert, AUTO, why)

    def exceptions(self) -> dict[str, Any]:
        """The interlocks (tripped, bypassed) and the divert override, for the run view.
        An interlock's ``when`` is its condition with this run's parameter values in place
        (``R1.T > 60 degC + 15 K``, not ``${t_r1}``): what it trips on in this run."""
        d = self.divert
        return {
            "interlocks": [{"name": il.spec.name, "when": str(self.validated.resolve(il.spec.when)),
                            "action": il.spec.action, "tripped": il.active,
                            "condition_true": il.active or il.bypassed_hit,
                            "bypass": None if il.bypass is None else il.bypass.data()}
                           for il in self.interlocks],
            "divert_control": None if d is None else {
                "valve": d.valve, "to_product": d.to_product, "active": d.active,
                "override": None if d.override is None else {
                    **d.override.data(), "to_product": d.override.to_product}},
        }

    async def _after_ack(self, il: InterlockState, prompt: Prompt) -> None:
        answer = await prompt.future
        il.awaiting_ack = False
        self.log.emit(
            EventKind.OPERATOR_ACTION,
            il.spec.name,
            f"answered '{answer}'",
            answer=answer,
            **prompt.answer_data(),
        )
        cmd = {"resume": Command.UNHOLD, "stop": Command.STOP, "abort": Command.ABORT}[answer]
        if cmd is Command.UNHOLD and (self.holds.held or self.holds.decision is not None):
            return  # another cause holds it still, or a step awaits its own decision
        self._command(cmd, f"operator after interlock {il.spec.name}")

    async def _module_command(self, tag: str, cmd: Command, why: str) -> None:
        for (mtag, sname), svc in self._used.items():
            if mtag == tag:
                with contextlib.suppress(CommandRefused, DriverError, ValueError):
                    await svc.command(cmd)
                    emit_service_command(self.log, (mtag, sname), cmd, why)

    # ------------------------------------------------------------------ module faults
    def take_up_faults(self) -> bool:
        """Faults the modules had before this run listened (a link lost between runs, or
        while the service started): recorded and reacted to as if they came now. True if
        one was new. A run started on a lost module otherwise commanded it unheld, and the
        link's recovery aborted what the run had started. :meth:`run` does it first."""
        new = False
        for tag, proxy in self.proxies.items():
            fault = proxy.fault
            if fault and tag not in self._module_faults:
                self.on_fault(tag, fault)
                new = True
        return new

    def on_fault(self, tag: str, fault: str | None) -> None:
        """A module faulted (or recovered): record it and react as ``on_comm_loss`` says."""
        if fault is None:
            was = self._module_faults.pop(tag, "")
            what = ("communication restored" if not was or was.startswith("communication")
                    else f"cleared: {was}")
            self.log.emit(EventKind.MODULE_RECOVERED, tag, what, was=was)
            if self.on_comm_loss == "hold":
                self.holds.release(f"module:{tag}", auto=True)
            return
        self._module_faults[tag] = fault
        self.log.emit(EventKind.MODULE_FAULT, tag, fault)
        if self.on_comm_loss == "hold":
            self.holds.request(f"module:{tag}", f"{tag}: {fault}")
        elif self.on_comm_loss == "abort":
            self._command(Command.ABORT, f"{tag}: {fault}")

    # ------------------------------------------------------------------ divert and phases
    async def _divert(self, now: float, values: Mapping[str, Any]) -> None:
        """Product only while the condition is true: unknown sends the stream to waste.

        A manual override holds the valve where the operator put it until it runs out;
        an interlock in force ends an override to product (to waste: safe state first)."""
        d = self.divert
        if d is None:
            return
        if d.override is not None:
            o, tripped = d.override, self.tripped()
            if now >= o.until:
                self._end_override(d, AUTO, "expired")
            elif o.to_product and tripped:
                self._end_override(d, PROCESS, f"interlock {', '.join(tripped)} tripped: "
                                   f"safe state first")
                self.derived["divert.product"] = False
                if d.to_product:
                    await self._switch(d, False)
                return
            else:
                self.derived["divert.product"] = o.to_product
                if o.to_product != d.to_product:
                    await self._switch(d, o.to_product)
                return
            if not d.active and d.to_product:
                # the override ended where divert control does not decide: the valve goes
                # where control leaves it at its end, to waste
                await self._switch(d, False)
        if not d.active:
            return
        if self._recipe_state() in (State.IDLE, State.STARTING):
            # only a resumed run starts with divert control active: the valve stays where
            # the run left it until the recipe is back in Execute (no switch and back)
            return
        ok, _why = self.judge(d.condition, now, {**values, **self.derived})
        want = ok is True and self._recipe_state() is State.EXECUTE
        self.derived["divert.product"] = want
        if want != d.to_product:
            await self._switch(d, want)

    async def _switch(self, d: DivertControl, to_product: bool) -> None:
        proxy = self.proxies[d.valve]
        try:
            await proxy.set(_valve_assembly(proxy), to_product)
        except (DriverError, ValueError) as exc:
            self.log.emit(EventKind.DIVERT_FAILED, d.valve, str(exc))
            return
        d.to_product = to_product
        d.switches += 1  # counts every switch, the one at the end of divert control too
        self.derived["divert.product"] = to_product
        self.log.emit(
            EventKind.DIVERT, d.valve, "to product" if to_product else "to waste",
            to_product=to_product,
        )  # fmt: skip

    def step_entered(self, step_name: str | None) -> None:
        """Alarms and divert control start and end at the steps the recipe names."""
        if step_name is None:
            return
        self._step = step_name
        for al in self.alarms:
            if step_name == al.spec.enabled_from and not al.enabled:
                al.enabled = True
                self.log.emit(EventKind.ALARM_ENABLED, al.spec.name, f"evaluated from {step_name}")
            elif step_name == al.spec.disabled_from and al.enabled:
                al.enabled = False
                if al.active:
                    al.active = al.unknown = False
                    self.log.emit(EventKind.ALARM_CLEARED, al.spec.name,
                                  f"no longer evaluated from {step_name}",
                                  priority=al.spec.priority)
                    self.board.process(al.spec.name, False, self.clock.now(),
                                       reason=f"no longer evaluated from {step_name}")
                self.log.emit(
                    EventKind.ALARM_DISABLED, al.spec.name, f"not evaluated from {step_name}"
                )
        spec, d = self.validated.recipe.divert, self.divert
        if spec is None or d is None:
            return
        if step_name == spec.enabled_from and not d.active:
            d.active = True
            self.log.emit(
                EventKind.DIVERT_ENABLED, d.valve, f"divert control active from {step_name}"
            )
        elif step_name == spec.disabled_from and d.active:
            d.active = False
            if d.override is not None:
                self._end_override(d, AUTO, f"divert control ends at {step_name}")
            self.log.emit(EventKind.DIVERT_DISABLED, d.valve, f"divert control ends at {step_name}")
            if d.to_product:
                asyncio.get_running_loop().create_task(self._switch(d, False))


def emit_service_command(log: EventLog, key: ServiceKey, cmd: Command, why: str) -> None:
    """The event of a command the recipe's supervision sent to a module service."""
    log.emit(
        EventKind.COMMAND, f"{key[0]}.{key[1]}", f"{cmd.label} ({why})",
        command=cmd.label, module=key[0], service=key[1],
    )  # fmt: skip


def _valve_assembly(proxy: ModuleProxy) -> str:
    for da in proxy.type.data_assemblies:
        if da.class_ in ("BinVlv", "MonBinVlv"):
            return da.name
    raise ValueError(f"{proxy.tag} has no valve assembly (BinVlv) to divert with")

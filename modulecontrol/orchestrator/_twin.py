"""The twin beside a run: quality predicted ahead of the analyzer, and its mismatch.

The recipe's ``twin`` block names an analyzer; its :class:`~modulecontrol.twin.QualityPredictor`
(the plant's simulator models upstream of it, without its dead time) is fed each supervision
tick with the plant's measured inputs, as the proxies read them, and stepped up to the run's
time. Its predictions become the derived signals ``twin.ANALYZER.SIGNAL``; the analyzer's
reading minus the prediction made one dead time earlier becomes ``twin.ANALYZER.SIGNAL.mismatch``
(SI, a difference), on which the block's mismatch alarms are ordinary limit alarms (the
supervisor's :class:`AlarmState`: delay, priority, events, step phases), so a mismatch is
raised, recorded and acknowledged as every alarm is. A reading that cannot be compared (bad
quality, stale, NaN) makes the mismatch unknown, which the alarm treats as it treats every
unknown value: it raises after the hold, never clears.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modulecontrol.clock import Clock, ClockMode
from modulecontrol.orchestrator._monitor import AlarmState, delta_scale, delta_si, si_number
from modulecontrol.proxy import ModuleProxy
from modulecontrol.recipe import Alarm, Twin, ValidatedRecipe
from modulecontrol.records import RunSamples
from modulecontrol.twin import QualityPredictor
from modulecontrol.units import to_si

_log = logging.getLogger(__name__)

MAX_STEPS_PER_TICK = 100_000
"""Bound on the twin's catch-up in one tick (a tick far late must not stall supervision)."""


class TwinMonitor:
    """One run's twin: predictions and mismatches as derived signals, in SI."""

    def __init__(self, spec: Twin, recipe: ValidatedRecipe,
                 proxies: Mapping[str, ModuleProxy], start: float) -> None:
        self.spec = spec
        self.proxies = proxies
        self.start = start
        self.dt = si_number(recipe, spec.dt)
        self.predictor = QualityPredictor(recipe.plant, dict.fromkeys(spec.predict, math.inf),
                                          hold=0.0, analyzer=spec.analyzer, dt=self.dt,
                                          steady_start=False)
        self.units = {name: recipe.plant.type_of(spec.analyzer).assembly(name).unit
                      for name in spec.predict}
        self.inputs = [s for s in self.predictor.inputs if s.partition(".")[0] in proxies]
        """The measured inputs fed to the twin (those of modules the run has a proxy of)."""
        self.values: dict[str, Any] = {}
        """The derived signals after the last tick."""
        self._listeners: list[Callable[[float, Mapping[str, float]], None]] = []
        self._work: asyncio.Future[list[_Step]] | None = None
        """The step in a worker thread, if one is under way (:meth:`tick`)."""
        self.alarms: list[AlarmState] = []
        for m in spec.mismatch:
            signal = f"twin.{spec.analyzer}.{m.signal}.mismatch"
            unit = self.units[m.signal]
            band_raw = recipe.resolve(m.band)
            band = (float(band_raw) * delta_scale(unit) if isinstance(band_raw, int | float)
                    else delta_si(str(band_raw)))
            hold = si_number(recipe, m.hold)
            alarm = Alarm(name=m.alarm_name(), signal=signal, high=m.band,
                          priority=m.priority, on_delay=m.hold,
                          message=m.message or f"model-plant mismatch on {spec.analyzer}."
                          f"{m.signal}: reading and twin differ by more than {m.band}",
                          enabled_from=spec.enabled_from, disabled_from=spec.disabled_from)
            state = AlarmState(alarm, unit, band, -band, 0.0, hold)
            state.enabled = spec.enabled_from is None
            self.alarms.append(state)

    def resume(self, record: RunSamples, elapsed: float, now: Callable[[], float]) -> str:
        """After a restart in the middle of the run: replay its ``record`` up to ``elapsed``
        s after its start (:meth:`QualityPredictor.catch_up`), and go on from ``now()`` (the
        clock's time once the replay is done: the line ran on meanwhile) as if the twin had
        run beside it all along. Returns how. May run in a worker thread before the twin's
        first :meth:`step` (nothing else touches the twin then)."""
        how = self.predictor.catch_up(record, elapsed)
        self.start = now() - self.predictor.time
        return how

    def on_values(self, listener: Callable[[float, Mapping[str, float]], None]) -> None:
        """Call ``listener(t, values)`` after each twin step (t: the run's clock; values:
        the derived signals in the analyzer's units, a mismatch only when it could be
        compared), e.g. the historian."""
        self._listeners.append(listener)

    def _measured_inputs(self) -> dict[str, float]:
        out = {}
        for s in self.inputs:
            tag, _, assembly = s.partition(".")
            v = self.proxies[tag].value(assembly)
            if isinstance(v, bool | int | float) and math.isfinite(float(v)):
                out[s] = float(v)
        return out

    def step(self, now: float, snapshot: Mapping[str, Any]) -> dict[str, Any]:
        """Step the twin up to ``now`` with the measured inputs; the derived signals. On
        the calling thread: what :meth:`tick` does without a worker thread."""
        self._publish(self._advance(now, self._measured_inputs(), self._readings(snapshot)))
        return self.values

    async def tick(self, now: float, snapshot: Mapping[str, Any], clock: Clock) -> dict[
            str, Any]:
        """The supervision's tick: the twin stepped up to ``now`` in a worker thread; the
        derived signals as far as it has got.

        Why a thread: at a simulated line's speed the twin's steps are seconds of CPU a
        wall second (600x: 60 steps of the whole line's models; at start-up, 5 to 20 ms
        each on a slow machine), and on the event loop they stalled the drivers until
        their links timed out (the station's browser test saw every OPC UA link of the
        lomustine line lost, and a run held on them). With a real-time clock the tick
        does not wait for the step: the interlocks are judged every tick on the twin's
        last values (a tick late at most), and the step's result (or its error) is taken
        at the next tick. On the fast clock, whose time stands still while the tick waits
        (:meth:`Clock.hold`), it waits, so a run on it is the same every time."""
        work = self._work
        if work is not None and work.done():
            self._work = None
            self._publish(work.result())  # the thread's error raises here, into the tick
        if self._work is None:
            work = asyncio.ensure_future(asyncio.to_thread(
                self._advance, now, self._measured_inputs(), self._readings(snapshot)))
            # taken at the next tick, or dropped with the run (its error then too)
            work.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._work = work
            if clock.mode is ClockMode.FAST:
                async with clock.hold():
                    await asyncio.wait({work})
                self._work = None
                self._publish(work.result())
        return self.values

    def _readings(self, snapshot: Mapping[str, Any]) -> dict[str, float]:
        """The analyzer's readings to compare with (NaN: bad quality, stale, missing)."""
        a = self.spec.analyzer
        measured = {}
        for name in self.spec.predict:
            good = snapshot.get(f"{a}.{name}")  # None: bad quality or stale
            raw = self.proxies[a].value(name) if a in self.proxies else None
            readable = isinstance(good, float | int) and math.isfinite(float(good))
            measured[name] = (float(raw) if readable and isinstance(raw, float | int)
                              else math.nan)
        return measured

    def _advance(self, now: float, inputs: Mapping[str, float],
                 measured: Mapping[str, float]) -> list[_Step]:
        """The predictor stepped up to ``now``: each step's predictions and differences.
        Touches nothing but the predictor (it may run in a worker thread)."""
        out: list[_Step] = []
        while self.predictor.time + self.dt <= now - self.start + 1e-9:
            if len(out) >= MAX_STEPS_PER_TICK:
                _log.warning("twin: %d steps behind the run; catching up next tick",
                             round((now - self.start - self.predictor.time) / self.dt))
                break
            predicted = self.predictor.step(dict(inputs))
            diff = self.predictor.compare(measured).differences
            out.append(_Step(self.start + self.predictor.time, dict(predicted), diff))
        return out

    def _publish(self, steps: list[_Step]) -> None:
        """The steps' derived signals into :attr:`values` and to the listeners."""
        a = self.spec.analyzer
        for st in steps:
            raw_values: dict[str, float] = {}
            for name in self.spec.predict:
                unit = self.units[name]
                self.values[f"twin.{a}.{name}"] = to_si(st.predicted[name], unit)
                raw_values[f"twin.{a}.{name}"] = st.predicted[name]
                d = st.differences.get(name, math.nan)
                ok = math.isfinite(d)
                self.values[f"twin.{a}.{name}.mismatch"] = d * delta_scale(unit) if ok else None
                if ok:
                    raw_values[f"twin.{a}.{name}.mismatch"] = d
            for listener in list(self._listeners):
                listener(st.t, raw_values)


@dataclass(frozen=True)
class _Step:
    """One step of the twin: when (the run's clock), its predictions (the analyzer's
    units) and the differences of the readings from them."""

    t: float
    predicted: dict[str, float]
    differences: Mapping[str, float]

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

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

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
        """Step the twin up to ``now`` with the measured inputs; the derived signals."""
        a = self.spec.analyzer
        steps = 0
        while self.predictor.time + self.dt <= now - self.start + 1e-9:
            if steps >= MAX_STEPS_PER_TICK:
                _log.warning("twin: %d steps behind the run; catching up next tick",
                             round((now - self.start - self.predictor.time) / self.dt))
                break
            predicted = self.predictor.step(self._measured_inputs())
            steps += 1
            measured = {}
            for name in self.spec.predict:
                good = snapshot.get(f"{a}.{name}")  # None: bad quality or stale
                raw = self.proxies[a].value(name) if a in self.proxies else None
                readable = isinstance(good, float | int) and math.isfinite(float(good))
                measured[name] = (float(raw) if readable and isinstance(raw, float | int)
                                  else math.nan)
            diff = self.predictor.compare(measured).differences
            raw_values: dict[str, float] = {}
            for name in self.spec.predict:
                unit = self.units[name]
                self.values[f"twin.{a}.{name}"] = to_si(predicted[name], unit)
                raw_values[f"twin.{a}.{name}"] = predicted[name]
                d = diff.get(name, math.nan)
                ok = math.isfinite(d)
                self.values[f"twin.{a}.{name}.mismatch"] = d * delta_scale(unit) if ok else None
                if ok:
                    raw_values[f"twin.{a}.{name}.mismatch"] = d
            for listener in list(self._listeners):
                listener(self.start + self.predictor.time, raw_values)
        return self.values

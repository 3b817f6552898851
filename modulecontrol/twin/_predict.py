"""Real-time quality prediction: the twin runs alongside the plant, fed by its inputs.

The twin's models are the plant's, upstream of the analyzer, without the analyzer's dead
time: what they read now is what the analyzer will read ``dead_time`` later. Each step the
caller passes the plant's measured inputs (set points as replayed by the fit) and, when it
has them, the analyzer's measured values; the predictor compares each measurement with its
own prediction made ``dead_time`` earlier and reports a model-plant mismatch once the
difference has stayed beyond the declared band for the declared time. A value that cannot
be compared (NaN, an analyzer not yet valid after its first dead time excepted) counts as
beyond the band: what cannot be evaluated trips, never clears.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from modulecontrol.clock import Clock
from modulecontrol.descriptors import PlantConfig
from modulecontrol.records import RunSamples
from modulecontrol.simulators import SimulatedPlant, build_models
from modulecontrol.twin._model import (
    START_WINDOW,
    ParamRef,
    TwinError,
    held_at,
    is_input,
    recorded_inputs,
    upstream,
    with_parameters,
)
from modulecontrol.units import parse_quantity

__all__ = ["Mismatch", "QualityPredictor"]


@dataclass(frozen=True)
class Mismatch:
    """The state of the model-plant comparison after one step."""

    active: bool
    """Beyond the band for at least the declared time (the alarm condition)."""
    since: float | None
    """When the current excursion began (s of predictor time), None inside the band."""
    differences: dict[str, float]
    """measured - predicted (dead time earlier) per signal; NaN when not comparable."""


class QualityPredictor:
    """The analyzer's signals ``dead_time`` ahead, from the plant's models and inputs."""

    def __init__(self, config: PlantConfig, band: Mapping[str, float], hold: float,
                 analyzer: str = "PAT1", dt: float = 10.0, steady_start: bool = True) -> None:
        """``band``: assembly -> largest |measured - predicted| that is no mismatch (in the
        assembly's unit, e.g. ``{"Purity": 1.0}`` percentage point); ``hold``: s beyond it
        before :attr:`Mismatch.active`. ``steady_start``: start from the plant's steady state
        at its operating point (a line already running), else from rest (a run's start)."""
        if hold < 0 or dt <= 0 or not band:
            raise TwinError("predictor: give a band per signal, hold >= 0 and dt > 0")
        ref = ParamRef.resolve(config, f"{analyzer}.dead_time")
        q = parse_quantity(f"{ref.value} {ref.unit}" if ref.unit else str(ref.value))
        self.dead_time = float(q) if isinstance(q, int | float) else float(q.to("s").magnitude)
        twin = with_parameters(upstream(config, [analyzer]), {ref: 0.0})
        self.plant = SimulatedPlant(twin, *build_models(twin), Clock(), dt)
        for view in self.plant.views.values():
            view.noise = {}
        self.plant.start_services()
        if steady_start:
            self.plant.steady_state()
        self.analyzer = self.plant.view(analyzer)
        for name in band:
            if self.analyzer.link(name) is None:
                raise TwinError(f"predictor: {analyzer} has no signal '{name}'")
        self.inputs = sorted(f"{tag}.{da.name}" for tag in self.plant.views
                             for da in twin.type_of(tag).data_assemblies
                             if is_input(self.plant.views, f"{tag}.{da.name}"))
        """The signals :meth:`step` takes (``TAG.Assembly``, in the assembly's unit): the
        linked, writable ones of the modules upstream of the analyzer, as a fit replays."""
        self.band = dict(band)
        self.hold = hold
        self.dt = dt
        self.config = twin
        self._past: deque[tuple[float, dict[str, float]]] = deque()
        self._since: float | None = None

    @property
    def time(self) -> float:
        return self.plant.time

    def signals(self) -> dict[str, float]:
        """The predicted analyzer signals (what it will read ``dead_time`` from now)."""
        return {name: float(self.analyzer.read(name)) for name in self.band}

    def step(self, inputs: Mapping[str, float]) -> dict[str, float]:
        """Write the plant's measured ``inputs`` (``TAG.Assembly``), step ``dt``, predict."""
        self._write(inputs)
        self.plant.step()
        now = self.signals()
        self._past.append((self.time, now))
        return now

    def catch_up(self, data: RunSamples, elapsed: float, window: float = START_WINDOW) -> str:
        """Bring a predictor made at rest to the state of a run ``elapsed`` s after its start,
        from the run's record: what a control service restarted in the middle of a run
        does before its first tick. Returns how (for the log).

        Why: started at rest, the twin predicts an empty line for as long as the line takes
        to fill (the lomustine line's purity: 9 min outside a 2-point band), and a mismatch
        alarm enabled in production then raises on a line that is fine. The recorded inputs
        (what was written, when; the last value held through the gap the service was away)
        are replayed over the run's last
        ``window`` s from the steady state at the inputs held then (a flow line forgets
        what came before), or over the whole run from rest if it is shorter, as the
        what-if's estimate of a run's state (docs/digital-twin.md). Each replayed step is a
        prediction like any other, so the mismatch after the restart compares with what the
        twin predicted one dead time before, not with nothing."""
        rep = recorded_inputs(self.config, data, list(self.plant.views))
        start = max(0.0, elapsed - window)
        how = "replayed from rest"
        if start > 0.0:
            self._write(held_at(rep, start))
            try:
                self.plant.steady_state()
                how = f"its last {window / 3600:g} h replayed from the steady state then"
            except ValueError:
                how = f"its last {window / 3600:g} h replayed from rest (no flow then)"
        n = math.ceil((elapsed - start) / self.dt - 1e-9)
        for k in range(max(n, 0)):
            self.step(held_at(rep, start + k * self.dt))
        return how

    def _write(self, inputs: Mapping[str, float]) -> None:
        for s, v in inputs.items():
            tag, _, assembly = s.partition(".")
            if tag in self.plant.views and math.isfinite(v):
                self.plant.views[tag].write(assembly, None, float(v))

    def compare(self, measured: Mapping[str, float]) -> Mismatch:
        """Compare the analyzer's ``measured`` signals now with the prediction made
        ``dead_time`` ago; call after :meth:`step`."""
        due = self.time - self.dead_time
        while len(self._past) > 1 and self._past[1][0] <= due + 1e-9:
            self._past.popleft()
        if not self._past or self._past[0][0] > due + 1e-9:
            return Mismatch(False, None, {})  # no prediction old enough yet
        predicted = self._past[0][1]
        diff = {name: float(measured.get(name, math.nan)) - predicted[name]
                for name in self.band}
        beyond = any(not abs(d) <= self.band[n] for n, d in diff.items())
        if not beyond:
            self._since = None
        elif self._since is None:
            self._since = self.time
        active = self._since is not None and self.time - self._since >= self.hold - 1e-9
        return Mismatch(active, self._since, diff)


"""The twin beside the plant: its prediction leads the analyzer by the dead time, matches it
at steady state, and a fault the model does not know raises the mismatch in time."""

from __future__ import annotations

import math

import pytest

from modulecontrol.clock import Clock
from modulecontrol.descriptors import load_plant
from modulecontrol.simulators import SimulatedPlant
from modulecontrol.twin import QualityPredictor, TwinError
from tests.twin.conftest import PLANT

DT = 10.0


def _line() -> tuple[SimulatedPlant, QualityPredictor]:
    config = load_plant(PLANT)
    plant = SimulatedPlant.from_config(config, Clock(), dt=DT)
    plant.start_services()
    plant.steady_state()
    twin = QualityPredictor(config, band={"Purity": 1.0}, hold=60.0, dt=DT)
    return plant, twin


def _run(plant: SimulatedPlant, twin: QualityPredictor, steps: int,
         inputs: dict[str, float]) -> tuple[list[float], list[float], list[bool]]:
    measured, predicted, alarms = [], [], []
    pat = plant.view("PAT1")
    for _ in range(steps):
        for s, v in inputs.items():
            tag, _, assembly = s.partition(".")
            plant.view(tag).write(assembly, None, v)
        plant.step()
        predicted.append(twin.step(inputs)["Purity"])
        m = float(pat.read("Purity"))
        measured.append(m)
        alarms.append(twin.compare({"Purity": m}).active)
    return measured, predicted, alarms


def test_prediction_leads_the_analyzer_by_its_dead_time_and_matches_at_steady_state() -> None:
    plant, twin = _line()
    lag = round(twin.dead_time / DT)
    assert lag >= 1  # the analyzer of the plant file has a dead time to be ahead of
    measured, predicted, alarms = _run(plant, twin, 60, {"R2.TempSP": 10.0})
    assert measured[0] - measured[-1] > 5  # the change moves purity visibly
    # what the twin predicted `lag` steps ago is what the analyzer reads now
    late = [abs(m - p) for m, p in zip(measured[lag:], predicted[:-lag], strict=True)]
    assert max(late) < 1.0
    # ... and not what it predicts now: during the transient the prediction is ahead
    assert max(abs(m - p) for m, p in zip(measured, predicted, strict=True)) > 1.0
    assert not any(alarms)


def test_a_fault_the_model_does_not_know_raises_the_mismatch_within_the_declared_time() -> None:
    plant, twin = _line()
    _run(plant, twin, 6, {})
    plant.faults.inject("R2", "fouling", volume_fraction=0.6)  # R2 loses residence time
    declared = 15 * 60.0  # transport to the analyzer, its dead time, and the hold
    _, _, alarms = _run(plant, twin, round(declared / DT), {})
    assert any(alarms)
    first = alarms.index(True) * DT
    assert first >= twin.hold  # not before the excursion has lasted the hold


def test_unknown_signal_and_unevaluable_measurement() -> None:
    config = load_plant(PLANT)
    with pytest.raises(TwinError, match="no signal 'Colour'"):
        QualityPredictor(config, band={"Colour": 1.0}, hold=0.0)
    twin = QualityPredictor(config, band={"Purity": 1.0}, hold=0.0, dt=DT)
    for _ in range(round(twin.dead_time / DT) + 1):
        twin.step({})
    state = twin.compare({"Purity": math.nan})
    assert state.active and math.isnan(state.differences["Purity"])  # trips, never clears

"""Measurement noise on simulated sensors (``simulator.noise``): off by default, seeded per
module, inside the scale range, and absent while the sensor is stuck."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from modulecontrol.clock import Clock
from modulecontrol.descriptors import load_plant
from modulecontrol.simulators import SimulatedPlant


def _plant(tmp_path: Path, noise: str | None) -> SimulatedPlant:
    extra = f"\n      simulator_noise: {{Pressure: {noise}}}" if noise else ""
    (tmp_path / "plant.yaml").write_text(f"""\
kind: Plant
name: noise
modules:
  - tag: P1
    type: HPLCPump
    simulated: true
    endpoint: {{protocol: modbus-tcp, port: 15020}}
    overrides:
      simulator: {{feed: {{THF: 12.33 mol/L}}}}{extra}
  - {{tag: W1, type: DivertValve, simulated: true,
     endpoint: {{protocol: modbus-tcp, port: 15021, unit_id: 2}}}}
connections:
  - {{from: P1.outlet, to: W1.inlet, volume: 1 mL}}
""")
    plant = SimulatedPlant.from_config(load_plant(tmp_path / "plant.yaml"), Clock.fast())
    plant.step(5)
    return plant


def test_without_noise_a_steady_value_is_exactly_constant(tmp_path: Path) -> None:
    view = _plant(tmp_path, None).view("P1")
    assert view.noise == {}
    assert len({view.read("Pressure") for _ in range(20)}) == 1


def test_noise_has_the_configured_spread_and_is_reproducible(tmp_path: Path) -> None:
    view = _plant(tmp_path, "5 kPa").view("P1")  # 0.05 bar
    assert view.noise == {"Pressure": pytest.approx(0.05)}
    true = view.model.state()["pressure"] / 1e5
    samples = [view.read("Pressure") for _ in range(2000)]
    assert statistics.mean(samples) == pytest.approx(true, abs=0.01)
    assert statistics.stdev(samples) == pytest.approx(0.05, rel=0.1)
    again = _plant(tmp_path, "5 kPa").view("P1")
    assert [again.read("Pressure") for _ in range(10)] == samples[:10]
    assert view.read("Flow") == view.read("Flow")  # only the configured assembly


def test_noise_stays_in_the_scale_range_and_stops_while_stuck(tmp_path: Path) -> None:
    plant = _plant(tmp_path, "2 bar")  # on about 1 bar: many draws fall below 0
    view = plant.view("P1")
    true = view.model.state()["pressure"] / 1e5
    samples = [view.read("Pressure") for _ in range(300)]
    assert min(samples) >= 0.0  # reflected at scale_min 0 bar: not an out-of-range value
    assert sum(s < true for s in samples) > 30  # noise does reach down there
    assert len(set(samples)) == len(samples)  # and never repeats a reading exactly
    plant.faults.inject("P1", "stuck", variable="Pressure", value=3.0)
    frozen = {view.read("Pressure") for _ in range(50)}
    assert len(frozen) == 1 and frozen.pop() == pytest.approx(3.0)  # no flicker
    plant.faults.clear("P1", "stuck")
    assert len({view.read("Pressure") for _ in range(10)}) > 1

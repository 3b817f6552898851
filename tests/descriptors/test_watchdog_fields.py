"""``stale_after``/``deadband`` on data assemblies and ``simulator.noise``: parsing, units,
per-instance overrides (including turning a type's watchdog off)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modulecontrol.descriptors import DataAssembly, load_plant

PLANT = """\
kind: Plant
name: watched
modules:
  - tag: P1
    type: HPLCPump
    simulated: true
    endpoint: {protocol: modbus-tcp, port: 15020}
    overrides:
      assemblies: {Pressure: {stale_after: 2 min, deadband: 20 kPa}}
      simulator_noise: {Pressure: 10 kPa}
  - tag: P2
    type: HPLCPump
    endpoint: {protocol: modbus-tcp, port: 15021}
    overrides: {assemblies: {Pressure: {stale_after: "off"}}}
  - {tag: M1, type: TMixer}
  - {tag: W1, type: DivertValve, endpoint: {protocol: modbus-tcp, port: 15022}}
connections:
  - {from: P1.outlet, to: M1.inlet_a}
  - {from: P2.outlet, to: M1.inlet_b}
  - {from: M1.outlet, to: W1.inlet}
"""


def test_plant_overrides_set_and_clear_the_watchdog(tmp_path: Path) -> None:
    f = tmp_path / "plant.yaml"
    f.write_text(PLANT)
    cfg = load_plant(f)
    p1 = cfg.type_of("P1")
    assert p1.assembly("Pressure").stale_after == 120.0
    assert p1.assembly("Pressure").deadband == pytest.approx(0.2)  # bar
    assert p1.simulator is not None and p1.simulator.noise == {"Pressure": "10 kPa"}
    assert cfg.type_of("P2").assembly("Pressure").stale_after is None
    assert cfg.type_of("P1").assembly("Flow").stale_after is None  # off unless configured


def test_deadband_is_a_difference_in_the_unit() -> None:
    da = DataAssembly.model_validate({"name": "T", "class": "AnaView", "unit": "degC",
                                      "stale_after": "2 min", "deadband": "0.2 K"})
    assert da.stale_after == 120.0 and da.deadband == pytest.approx(0.2)
    da = DataAssembly.model_validate({"name": "T", "class": "AnaMon", "unit": "degC",
                                      "stale_after": 30})
    assert da.stale_after == 30.0 and da.deadband is None


def test_a_type_can_turn_the_watchdog_off_per_instance_with_its_deadband(
        tmp_path: Path) -> None:
    (tmp_path / "gauge.yaml").write_text("""\
kind: ModuleType
name: Gauge
ports: [{name: inlet, direction: in, required: false}]
data_assemblies:
  - name: P
    class: AnaView
    unit: bar
    stale_after: 1 min
    deadband: 0.01
    bindings:
      V: {modbus: {table: input, address: 0, type: float32}}
""")
    (tmp_path / "plant.yaml").write_text("""\
kind: Plant
name: g
types: [gauge.yaml]
modules:
  - {tag: G1, type: Gauge, endpoint: {protocol: modbus-tcp, port: 15020}}
  - {tag: G2, type: Gauge, endpoint: {protocol: modbus-tcp, port: 15021},
     overrides: {assemblies: {P: {stale_after: "off"}}}}
""")
    cfg = load_plant(tmp_path / "plant.yaml")
    assert cfg.type_of("G1").assembly("P").stale_after == 60.0
    assert cfg.type_of("G1").assembly("P").deadband == pytest.approx(0.01)
    assert cfg.type_of("G2").assembly("P").stale_after is None
    assert cfg.type_of("G2").assembly("P").deadband is None

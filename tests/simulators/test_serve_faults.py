"""Fault scenarios, the fault record, security refusal and the CLI (no servers needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modulecontrol.clock import Clock
from modulecontrol.descriptors import OpcUaEndpoint, load_plant, validate_file
from modulecontrol.errors import ConfigError
from modulecontrol.simulators import (
    FaultRecord,
    Scenario,
    SecurityError,
    SimulatedPlant,
    load_scenario,
)
from modulecontrol.simulators._opcua_server import serve_pea
from modulecontrol.simulators.cli import app
from modulecontrol.simulators.models import FaultError

PLANT = Path(__file__).resolve().parents[2] / "recipes" / "lomustine" / "plant.yaml"


def _plant(clock: Clock | None = None) -> SimulatedPlant:
    return SimulatedPlant.from_config(load_plant(PLANT), clock or Clock.fast())


def test_scenario_errors_are_located(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("kind: Scenario\nfaults:\n  - {at: 2 h, module: PX, fault: stal}\n"
                 "  - {at: soon, module: P1, fault: stall}\n")
    with pytest.raises(ConfigError) as info:
        validate_file(f)
    assert f"{f}:4:" in str(info.value)  # 'soon' is not a duration
    f.write_text("kind: Scenario\nfaults:\n  - {at: 2 h, module: PX, fault: stal}\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(f, load_plant(PLANT))
    text = str(info.value)
    assert f"{f}:3:" in text and "did you mean 'stall'" in text and "no module 'PX'" in text


async def test_scenario_plays_on_the_clock() -> None:
    clock = Clock.fast()
    plant = _plant(clock)
    seen: list[FaultRecord] = []
    plant.faults.on_record(seen.append)
    sc = Scenario.model_validate({"faults": [
        {"at": "1 min", "module": "P1", "fault": "stall", "duration": "30 s"},
        {"at": "2 min", "module": "R1", "fault": "fouling", "params": {"volume_fraction": 0.2}},
    ]})
    plant.start()
    try:
        await plant.faults.play(sc)
    finally:
        await plant.stop()
    assert [(r.module, r.fault, r.event) for r in seen] == [
        ("P1", "stall", "start"), ("P1", "stall", "end"), ("R1", "fouling", "start")]
    assert [r.time for r in seen] == pytest.approx([60.0, 90.0, 120.0], abs=1.0)
    assert plant.view("R1").read("Fouled") is True
    assert ("R1", "fouling") in plant.faults.active


def test_sensor_fault_in_assembly_units() -> None:
    plant = _plant()
    plant.step(2)
    r1 = plant.view("R1")
    before = r1.read("T")
    assert abs(before - 80.0) > 10.0
    plant.faults.inject("R1", "stuck", variable="T", value=80.0)
    assert r1.read("T") == pytest.approx(80.0)
    plant.faults.clear("R1", "stuck")
    assert r1.read("T") == pytest.approx(before)
    with pytest.raises(FaultError):
        plant.faults.inject("M1", "stall")
    with pytest.raises(FaultError, match="unknown fault"):
        plant.faults.inject("P1", "explode")


def test_thermostat_failure_on_the_jacket() -> None:
    plant = _plant()
    r1 = plant.view("R1")
    r1.write_var("temperature_setpoint", "60 degC")
    plant.faults.inject("R1", "thermostat_failure")
    plant.step(120)
    assert r1.read("JacketT") < 25.0
    plant.faults.clear("R1", "thermostat_failure")
    plant.step(300)
    assert r1.read("JacketT") > 55.0


async def test_secured_endpoint_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    plant = _plant()
    ep = OpcUaEndpoint(protocol="opcua", url="opc.tcp://127.0.0.1:4840/x", username="op",
                       password_env="MC_TEST_SIM_PASSWORD")
    monkeypatch.delenv("MC_TEST_SIM_PASSWORD", raising=False)
    with pytest.raises(SecurityError, match="MC_TEST_SIM_PASSWORD"):
        await serve_pea(plant.view("R1"), ep, "127.0.0.1", 4840, "/x")
    plain = OpcUaEndpoint(protocol="opcua", url="opc.tcp://127.0.0.1:4840/x",
                          security_policy="None", security_mode="None")
    with pytest.raises(SecurityError, match="--insecure"):  # no security only on request
        await serve_pea(plant.view("R1"), plain, "127.0.0.1", 4840, "/x")
    assert "MC_TEST_SIM_PASSWORD" not in os.environ


def test_cli_steady_json() -> None:
    import json

    result = CliRunner().invoke(app, ["steady", str(PLANT), "--json", "--set", "V1.Valve=true",
                                      "--set", "P1.FlowSetpoint=3"])
    assert result.exit_code == 0, result.output
    rows = {f"{r['module']}.{r['port']}": r for r in json.loads(result.output)}
    # the plant's FlowSP defaults are its operating point: P2 0.375, P3 0.45 mL/min
    assert rows["M1.outlet"]["flow_mL_min"] == pytest.approx(3.375)  # P1 3 + P2 0.375
    assert rows["V1.product"]["flow_mL_min"] == pytest.approx(3.825)  # + P3 0.45
    assert rows["V1.waste"]["flow_mL_min"] == pytest.approx(0.0)


@pytest.mark.parametrize("duration", ["5 bar", "-1 min", "abc"])
def test_cli_serve_refuses_a_duration_that_is_no_positive_time(duration: str) -> None:
    # '5 bar' used to be taken as 500000 s (converted to SI without a dimension check):
    # the server started and ran for days instead of refusing the option.
    result = CliRunner().invoke(app, ["serve", str(PLANT), "--duration", duration])
    assert result.exit_code == 2, result.output
    assert "--duration" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(("item", "message"), [
    ("V1.Valve=abc", "must be a number"),
    ("X1.Valve=1", "no simulated module 'X1'"),
])
def test_cli_steady_bad_set_is_one_clear_line(item: str, message: str) -> None:
    result = CliRunner().invoke(app, ["steady", str(PLANT), "--set", item])
    assert result.exit_code in (1, 2), result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert "error: \"" not in result.output   # no KeyError repr quoting


_SECURED_PLANT = """\
kind: Plant
name: secured
modules:
  - tag: P1
    type: HPLCPump
    simulated: true
    endpoint: {protocol: modbus-tcp, host: 127.0.0.1, port: 15021}
  - tag: R1
    type: CoilReactor
    simulated: true
    endpoint:
      protocol: opcua
      url: opc.tcp://127.0.0.1:14841/modulecontrol/R1
      username: ctrl
      password_env: MC_TEST_UNSET_PASSWORD
  - tag: V1
    type: DivertValve
    simulated: true
    endpoint: {protocol: modbus-tcp, host: 127.0.0.1, port: 15024}
connections:
  - {from: P1.outlet, to: R1.inlet}
  - {from: R1.outlet, to: V1.inlet}
"""


def _secured_plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MC_TEST_UNSET_PASSWORD", raising=False)
    path = tmp_path / "plant.yaml"
    path.write_text(_SECURED_PLANT)
    return path


def test_cli_serve_without_the_password_is_one_line(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # SecurityError used to escape as a traceback: the CLI caught only ServeError.
    plant = _secured_plant(tmp_path, monkeypatch)
    result = CliRunner().invoke(app, ["serve", str(plant), "--duration", "1 s",
                                      "--port-offset", "20000", "--pki", str(tmp_path / "pki")])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "MC_TEST_UNSET_PASSWORD" in " ".join(result.output.split())


def test_run_simulate_without_the_password_is_one_line(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from modulecontrol.cli import app as main_app

    _secured_plant(tmp_path, monkeypatch)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("kind: Recipe\nname: tiny\nplant: plant.yaml\nprocedure:\n"
                      "  - name: main\n    steps:\n      - wait: {duration: 1 s}\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main_app, ["run", str(recipe), "--simulate", "--yes",
                                           "--no-live", "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 5, result.output
    assert isinstance(result.exception, SystemExit)
    text = " ".join(result.output.split())
    assert "the simulators did not start" in text and "MC_TEST_UNSET_PASSWORD" in text

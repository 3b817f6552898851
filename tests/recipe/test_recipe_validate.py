"""Loading recipes: examples, parameters and overrides, signals, helpers, service states."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.descriptors import PlantConfig, load_plant
from modulecontrol.errors import ConfigError
from modulecontrol.recipe import (
    ServiceCall,
    load_recipe,
    parse_set_options,
    plant_signals,
    transition,
    validate_recipe_with_plant,
)
from modulecontrol.recipe._model import ServiceStep, WaitStep
from modulecontrol.recipe._states import STABLE_STATES
from modulecontrol.yamlio import load_yaml

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"
EXAMPLES = sorted((ROOT / "recipes" / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def plant() -> PlantConfig:
    return load_plant(PLANT)


def _write(tmp_path: Path, body: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"kind: Recipe\nname: t\nplant: {PLANT}\n{body}", encoding="utf-8")
    return path


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_are_valid(path: Path) -> None:
    v = load_recipe(path)
    assert v.file == str(path)
    assert v.plant.plant.name == "lomustine-line"
    for step, _ in v.steps():
        loc = v.location(step)
        assert loc.file == str(path) and loc.line > 1


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"prime_and_flush.yaml", "dosing_demo.yaml"}


def test_parameters_resolved_in_si_with_given_unit(plant: PlantConfig) -> None:
    v = load_recipe(ROOT / "recipes/examples/prime_and_flush.yaml", plant)
    flush = v.parameters["flush_flow"]
    assert flush.value == pytest.approx(2e-6 / 60)
    assert (flush.magnitude, flush.unit, flush.source) == (2.0, "mL/min", "default")
    t = v.parameters["flush_time"]
    assert (t.value, t.magnitude, t.unit) == (120.0, 2.0, "min")
    assert v.seconds("${flush_time}") == 120.0
    assert v.resolve({"a": ["${flush_flow}", "at ${back_pressure}"]}) == {
        "a": ["2 mL/min", "at 4 bar"]
    }


def test_overrides_are_parsed_with_units(plant: PlantConfig) -> None:
    path = ROOT / "recipes/examples/prime_and_flush.yaml"
    v = load_recipe(path, plant, {"flush_flow": "120 mL/h", "flush_time": "30"})
    assert v.parameters["flush_flow"].value == pytest.approx(2e-6 / 60)
    assert v.parameters["flush_flow"].source == "override"
    assert v.parameters["flush_time"].value == 30.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"flush_flw": "1"}, "--set flush_flw=1: unknown parameter 'flush_flw' (did you mean"),
        ({"flush_flow": "50 mL/min"}, "--set flush_flow=50 mL/min: parameter 'flush_flow':"),
        ({"flush_flow": "3 bar"}, "cannot be expressed in 'mL/min'"),
        ({"flush_time": "-1 s"}, "parameter 'flush_time': a duration must be positive"),
    ],
)
def test_bad_overrides(plant: PlantConfig, overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_recipe(ROOT / "recipes/examples/prime_and_flush.yaml", plant, overrides)
    assert any(message in str(p) for p in info.value.problems), str(info.value)


def test_override_fills_missing_value(tmp_path: Path, plant: PlantConfig) -> None:
    path = _write(
        tmp_path,
        "parameters:\n  n: {type: integer}\n  on: {type: bool}\n  mode: {type: string, "
        "choices: [a, b]}\nprocedure:\n  - name: b\n    steps:\n"
        "      - repeat: {times: '${n}', steps: [{wait: {duration: 1 s}}]}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_recipe(path, plant)
    assert len(info.value.problems) == 3
    v = load_recipe(path, plant, {"n": "3", "on": "yes", "mode": "b"})
    assert (v.parameters["n"].value, v.parameters["on"].value) == (3, True)
    with pytest.raises(ConfigError, match="'c' is not one of: a, b"):
        load_recipe(path, plant, {"n": "3", "on": "yes", "mode": "c"})


def test_parse_set_options() -> None:
    assert parse_set_options(["a=1 mL/min", "b = x=y"]) == {"a": "1 mL/min", "b": "x=y"}
    with pytest.raises(ConfigError, match="expected --set NAME=VALUE"):
        parse_set_options(["novalue"])
    with pytest.raises(ConfigError, match="set twice"):
        parse_set_options(["a=1", "a=2"])


def test_signal_catalogue(plant: PlantConfig) -> None:
    s = plant_signals(plant)
    assert (s["R1.T"].unit, s["R1.T"].kind) == ("degC", "number")
    assert s["P1.FlowSP"].unit == "mL/min"  # a parameter's VOut
    assert s["P1.FlowSP.VExt"].unit == "mL/min"
    assert s["P1.FlowSP.ApplyEn"].kind == "bool"
    assert s["P1.Flow.TagName"].kind == "str"
    assert s["V1.Valve"].kind == "bool"
    assert s["P1.Dosing.state"].kind == "str"
    assert not any(k.startswith(("M1.", "steady.", "divert.")) for k in s)


def test_recipe_signals_and_compile(tmp_path: Path, plant: PlantConfig) -> None:
    path = _write(
        tmp_path,
        "steady_state:\n  - {name: pur, signal: PAT1.Purity, band: 0.5 %, path: [P1, PAT1]}\n"
        "divert: {valve: V1, product_when: 'steady.pur and PAT1.Purity > 98 %'}\n"
        "procedure:\n  - name: b\n    steps:\n      - wait: {until: divert.product}\n",
    )
    v = load_recipe(path, plant)
    assert v.signals["steady.pur"].kind == "bool"
    cond = v.compile("PAT1.Purity > 98 % and steady.pur")
    assert cond.update(0.0, {"PAT1.Purity": 0.99, "steady.pur": True}) is True
    assert cond.update(1.0, {"PAT1.Purity": 0.97, "steady.pur": True}) is False


def test_condition_columns_map_to_file(tmp_path: Path, plant: PlantConfig) -> None:
    body = (
        "procedure:\n  - name: b\n    steps:\n"
        "      - wait: {until: R1.X > 1}\n"  # line 7, plain: col 23 + 0
        "      - wait: {until: 'R1.Y > 1'}\n"  # line 8, quoted: col 24
        "      - wait:\n          until: >\n            R1.Z > 1\n"  # block: value start
    )
    with pytest.raises(ConfigError) as info:
        load_recipe(_write(tmp_path, body), plant)
    locs = {p.message.split("'")[1]: p.location for p in info.value.problems if p.location}
    assert (locs["R1.X"].line, locs["R1.X"].col) == (7, 23)
    assert (locs["R1.Y"].line, locs["R1.Y"].col) == (8, 24)
    assert locs["R1.Z"].line == 10


def test_every_problem_reported_at_once(tmp_path: Path, plant: PlantConfig) -> None:
    body = (
        "procedure:\n  - name: b\n    steps:\n"
        "      - service: {module: P9, service: Dosing}\n"
        "      - set: {P1.Flow: 1}\n"
        "      - wait: {until: 'R1.T > 3 bar'}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_recipe(_write(tmp_path, body), plant)
    assert [p.location.line for p in info.value.problems if p.location] == [7, 8, 9]


def test_labels_and_helpers(plant: PlantConfig) -> None:
    v = load_recipe(ROOT / "recipes/examples/prime_and_flush.yaml", plant)
    labels = [v.label(s) for s, _ in v.steps()]
    assert "prime.steps[1].parallel[0][0]" in labels
    assert "fill_coil" in labels
    waits = [s for s, _ in v.steps() if isinstance(s, WaitStep)]
    assert waits[0].path[:2] == ("procedure", 0)  # the step knows its place
    services = [s for s, _ in v.steps() if isinstance(s, ServiceStep)]
    assert isinstance(services[0].service, ServiceCall)


def test_plant_argument_overrides_recipe_plant(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "kind: Recipe\nname: t\nprocedure:\n  - name: b\n    steps:\n"
        "      - wait: {duration: 1 s}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="names no plant"):
        load_recipe(path)
    assert validate_recipe_with_plant(load_yaml(path), PLANT).recipe.name == "t"


def test_cli_validate(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(ROOT / "recipes/examples/dosing_demo.yaml")])
    assert ok.exit_code == 0, ok.output
    bad = ROOT / "tests/recipe/bad/unknown_service.yaml"
    res = runner.invoke(app, ["validate", str(bad), "--plant", str(PLANT)])
    assert res.exit_code == 1
    assert "has no service 'Dose'" in res.output


def test_state_table() -> None:
    assert transition("Idle", "start") == "Execute"
    assert transition("Execute", "complete") == "Completed"
    assert transition("Held", "unhold") == "Execute"
    assert transition("Paused", "resume") == "Execute"
    for s in ("Completed", "Stopped", "Aborted"):
        assert transition(s, "reset") == "Idle"
    for s in STABLE_STATES:
        assert (transition(s, "abort") is None) == (s == "Aborted")
        assert (transition(s, "stop") is None) == (s in ("Idle", "Stopped", "Aborted"))
    assert transition("Idle", "hold") is None


def test_state_sequence_across_branches_and_loops(tmp_path: Path, plant: PlantConfig) -> None:
    body = (
        "procedure:\n  - name: b\n    steps:\n"
        "      - parallel:\n"
        "          - - service: {module: P1, service: Dosing}\n"
        "          - - service: {module: P2, service: Dosing}\n"
        "      - repeat:\n          times: 2\n          steps:\n"
        "            - service: {module: P1, service: Dosing, command: hold}\n"
        "            - service: {module: P1, service: Dosing, command: unhold}\n"
        "      - service: {module: P2, service: Dosing, command: stop}\n"
        "      - service: {module: P2, service: Dosing, command: reset}\n"
        "      - service: {module: P1, service: Dosing, procedure: Volume, command: restart}\n"
    )
    v = load_recipe(_write(tmp_path, body), plant)
    assert len(list(v.steps())) == 9

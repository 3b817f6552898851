"""Alarms declared in the plant file (module alarms, the philosophy) and in recipes (groups,
re-alarm, suppression by design): bad declarations are refused with file:line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modulecontrol.descriptors import load_plant
from modulecontrol.errors import ConfigError
from modulecontrol.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]
ANCHOR = "  - tag: R1\n    type: CoilReactor\n"


def _plant(tmp_path: Path, alarms: str, philosophy: str = "") -> Path:
    folder = tmp_path / "lomustine"
    shutil.copytree(ROOT / "recipes" / "lomustine", folder)
    plant = folder / "plant.yaml"
    text = plant.read_text()
    plant.write_text(text.replace(ANCHOR, ANCHOR + alarms, 1) + philosophy)
    return plant


def _line_of(plant: Path, needle: str) -> int:
    return next(i for i, line in enumerate(plant.read_text().splitlines(), 1) if needle in line)


def test_a_plant_alarm_and_philosophy_load(tmp_path: Path) -> None:
    plant = _plant(tmp_path, "    alarms:\n      - {name: r1_hot, assembly: T, high: 80 degC,"
                   " deadband: 1 K, on_delay: 10 s, priority: high,\n"
                   "         suppressed_when: {Tempering: [Idle]}}\n",
                   "alarm_philosophy:\n  max_shelve: 2 h\n  chattering: {activations: 4,"
                   " window: 2 min, policy: shelve}\n")
    cfg = load_plant(plant)
    (al,) = cfg.plant.module("R1").alarms
    assert al.on_delay == 10.0 and al.priority == "high"
    phil = cfg.plant.alarm_philosophy
    assert phil.max_shelve == 7200.0 and phil.chattering.window == 120.0


@pytest.mark.parametrize(("alarm", "needle", "message"), [
    ("{name: r1_x, assembly: Temp, high: 80}", "r1_x", "no data assembly 'Temp'"),
    ("{name: r1_x, assembly: T, high: 80 bar}", "r1_x", "alarm high:"),
    ("{name: r1_x, assembly: T, high: 20, low: 30}", "r1_x", "low limit must be below"),
    ("{name: r1_x, assembly: T}", "r1_x", "needs 'high', 'low' or both"),
    ("{name: r1_x, assembly: T, high: 80, suppressed_when: {Heat: [Idle]}}", "r1_x",
     "has no service 'Heat'"),
    ("{name: r1_x, assembly: T, high: 80, suppressed_when: {Tempering: [Sleeping]}}", "r1_x",
     "Sleeping"),
    ("{name: r1_x, assembly: T, high: 80, on_delay: 5 mL}", "r1_x", "on_delay"),
])
def test_a_bad_plant_alarm_is_refused_where_it_stands(tmp_path: Path, alarm: str, needle: str,
                                                      message: str) -> None:
    plant = _plant(tmp_path, f"    alarms:\n      - {alarm}\n")
    with pytest.raises(ConfigError) as info:
        load_plant(plant)
    line = _line_of(plant, needle)
    hits = [str(p) for p in info.value.problems if message in str(p)]
    assert hits, [str(p) for p in info.value.problems]
    assert hits[0].startswith(f"{plant}:{line}:"), hits


def test_a_bad_philosophy_is_refused_where_it_stands(tmp_path: Path) -> None:
    plant = _plant(tmp_path, "", "alarm_philosophy:\n  max_shelve: forever\n  flood: 3\n")
    with pytest.raises(ConfigError) as info:
        load_plant(plant)
    text = "\n".join(str(p) for p in info.value.problems)
    assert f"{plant}:{_line_of(plant, 'max_shelve')}:" in text
    assert f"{plant}:{_line_of(plant, 'flood')}:" in text


def test_recipe_alarm_keys_are_checked_against_the_procedure_and_plant(tmp_path: Path) -> None:
    plant = _plant(tmp_path, "    alarms:\n      - {name: r1_hot, assembly: T, high: 80}\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "kind: Recipe\nname: r\nversion: 1.0.0\nplant: lomustine/plant.yaml\n"
        "alarms:\n"
        "  - {name: r1_hot, signal: R1.T, high: 70 degC}\n"
        "  - {name: r2_hot, signal: R2.T, high: 70 degC, suppressed_in: [warmup],\n"
        "     suppressed_when: {R9.Dosing: [Idle]}, realarm_after: 5 kg}\n"
        "procedure:\n  - name: b\n    steps:\n      - name: stand\n"
        "        wait: {duration: 1 min}\n")
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe, load_plant(plant))
    text = "\n".join(str(p) for p in info.value.problems)
    assert f"{recipe}:6:" in text and "is an alarm of the plant (on R1)" in text
    assert f"{recipe}:7:" in text and "no step named 'warmup'" in text
    assert "'R9.Dosing' is not MODULE.Service of the plant" in text
    assert "realarm_after" in text

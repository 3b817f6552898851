"""The plant's safe stop order (``shutdown:``): declared stages, the derived default, and the
located errors of an order that names unknown modules, stops one twice or a feed late."""

from __future__ import annotations

from pathlib import Path

import pytest

from modulecontrol.descriptors import PlantConfig, load_plant, plant_from_doc, shutdown_stages
from modulecontrol.errors import ConfigError
from modulecontrol.yamlio import load_yaml_text

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"
FEEDS = ["P1", "P2", "P3", "P4"]


def _with_shutdown(block: str) -> str:
    """The lomustine plant with its ``shutdown:`` replaced by ``block`` (may be empty)."""
    text = PLANT.read_text(encoding="utf-8")
    head, sep, _ = text.partition("\nshutdown:\n")
    assert sep, "the lomustine plant declares its shutdown order"
    return head + "\n" + block


def _load(text: str) -> PlantConfig:
    # the file name keeps relative references (species.yaml) resolving beside the real plant
    return plant_from_doc(load_yaml_text(text, file=str(PLANT)))


def _problems(block: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(_with_shutdown(block))
    return [str(p) for p in info.value.problems]


def test_lomustine_plant_declares_feeds_then_temperature_then_pressure() -> None:
    stages = shutdown_stages(load_plant(PLANT))
    assert stages[0] == FEEDS
    assert stages[1] == ["R1", "R2", "CR1", "PAT1"]
    assert stages[2] == ["BPR1", "V1"]
    assert stages[3] == ["M1", "M2"]  # modules not listed: a last stage of their own


def test_default_order_is_feeds_first_and_valves_last() -> None:
    config = _load(_with_shutdown(""))
    stages = shutdown_stages(config)
    assert stages[0] == FEEDS
    assert stages[-1] == ["BPR1", "V1"]
    assert set(stages[1]) == {"M1", "R1", "M2", "R2", "PAT1", "CR1"}


def test_unknown_module_is_located_with_a_suggestion() -> None:
    problems = _problems("shutdown:\n  - [P1, P2, P3, P4]\n  - [R11]\n")
    assert len(problems) == 1
    assert "plant.yaml:" in problems[0]
    assert "shutdown stage 2: unknown module 'R11'" in problems[0]
    assert "R1" in problems[0].split("R11", 1)[1]  # did you mean R1


def test_a_module_stops_once() -> None:
    problems = _problems("shutdown:\n  - [P1, P2, P3, P4]\n  - [R1, BPR1]\n  - [BPR1]\n")
    assert len(problems) == 1
    assert "shutdown stage 3: module BPR1 already stops in stage 2" in problems[0]


def test_a_feed_after_heating_is_refused_at_its_line() -> None:
    text = _with_shutdown("shutdown:\n  - [P1, P2, P3]\n  - [R1, R2]\n  - [P4]\n")
    lines = text.splitlines()
    p4_line = next(i for i, ln in enumerate(lines, 1) if ln.strip() == "- [P4]")
    with pytest.raises(ConfigError) as info:
        _load(text)
    (problem,) = info.value.problems
    assert problem.location is not None and problem.location.line == p4_line
    assert "feed P4 stops after R1 (stage 2)" in problem.message
    assert "move P4 to an earlier stage" in problem.message


def test_feeds_may_stop_in_several_stages_before_the_rest() -> None:
    config = _load(_with_shutdown("shutdown:\n  - [P2]\n  - [P1, P3, P4]\n  - [R1]\n"))
    stages = shutdown_stages(config)
    assert stages[:3] == [["P2"], ["P1", "P3", "P4"], ["R1"]]


def test_an_unlisted_feed_is_refused() -> None:
    problems = _problems("shutdown:\n  - [P1, P2, P3]\n  - [R1]\n")
    assert len(problems) == 1
    assert "feed P4 is not in the shutdown order" in problems[0]


def test_an_empty_stage_is_refused() -> None:
    problems = _problems("shutdown:\n  - [P1, P2, P3, P4]\n  - []\n")
    assert len(problems) == 1
    assert "shutdown" in problems[0]

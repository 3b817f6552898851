"""Step kinds are declared once (recipe/_model.py); each concern dispatches them through one
table keyed by the step class, and every table covers every kind."""

from __future__ import annotations

from pathlib import Path

from modulecontrol.clock import Clock
from modulecontrol.orchestrator import Orchestrator
from modulecontrol.proxy import proxies_for
from modulecontrol.recipe import load_recipe
from modulecontrol.recipe._model import STEP_CLASSES
from modulecontrol.recipe._validate import _Validator
from modulecontrol.yamlio import load_yaml

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "examples" / "prime_and_flush.yaml"


def test_validator_tables_cover_every_kind() -> None:
    vr = load_recipe(RECIPE)
    v = _Validator(load_yaml(RECIPE), vr.recipe, vr.plant, {}, None)
    assert set(v.static_checks) == set(STEP_CLASSES)
    assert set(v.flows) == set(STEP_CLASSES)


async def test_interpreter_table_covers_every_kind() -> None:
    vr = load_recipe(RECIPE)
    orch = Orchestrator(vr, proxies_for(vr.plant), clock=Clock.fast())
    assert set(orch.interpreter.handlers) == set(STEP_CLASSES)


def test_steps_know_their_place() -> None:
    """A step's path is its place in the document (no side table by id()): it locates the
    step and survives a copy of the model."""
    vr = load_recipe(RECIPE)
    for step, path in vr.steps():
        assert step.path == path
        assert vr.location(step).line >= 1
        node = vr.doc.data
        for part in path:
            node = node[part]
        assert step.KIND in node
        assert step.model_copy().path == path

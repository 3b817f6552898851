"""``diff_recipes``: what changed between two versions, in recipe terms (docs/signatures.md)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.recipe import diff_recipe_texts

ROOT = Path(__file__).resolve().parents[2]
DEMO = (ROOT / "recipes" / "examples" / "dosing_demo.yaml").read_text(encoding="utf-8")
CAMPAIGN = (ROOT / "recipes" / "examples" / "lomustine_campaign.yaml").read_text(
    encoding="utf-8")


def test_layout_and_comments_are_no_change() -> None:
    relaid = "# a new comment\n" + DEMO.replace("\n", "\r\n").replace(
        "  flow: {type: number, unit: mL/min, default: 1.0, min: 0.1, max: 5}",
        "  flow:\n    type: number\n    unit: mL/min\n    default: 1.0\n    min: 0.1\n    max: 5")
    assert diff_recipe_texts(DEMO, relaid) == []
    assert diff_recipe_texts(CAMPAIGN, CAMPAIGN) == []


def test_steps_added_and_removed_are_named_and_others_untouched() -> None:
    extra = DEMO.replace("procedure:\n  - name: dose\n    steps:\n",
                         "procedure:\n  - name: dose\n    steps:\n"
                         "      - name: settle\n        wait: {duration: 30 s}\n")
    changes = [str(c) for c in diff_recipe_texts(DEMO, extra)]
    assert changes == ["step procedure/dose/settle: added"]
    assert [str(c) for c in diff_recipe_texts(extra, DEMO)] == [
        "step procedure/dose/settle: removed"]


def test_alarms_and_interlocks_of_the_campaign() -> None:
    assert "alarms:" in CAMPAIGN
    changed = CAMPAIGN.replace("alarms:\n", "alarms:\n  - {name: extra_high, signal: R1.T,"
                               " high: 99 degC}\n", 1)
    assert "alarm extra_high: added" in [str(c) for c in diff_recipe_texts(CAMPAIGN, changed)]


@settings(max_examples=30, deadline=None)
@given(st.floats(0.2, 4.9), st.floats(5.1, 40.0), st.booleans())
def test_parameter_limits_property(default: float, high: float, unit_change: bool) -> None:
    """Whatever a parameter's default and maximum become, the diff reports exactly the
    fields that changed, with old and new value, and nothing else."""
    line = "  flow: {type: number, unit: mL/min, default: 1.0, min: 0.1, max: 5}"
    unit = "mL/h" if unit_change else "mL/min"
    new = f"  flow: {{type: number, unit: {unit}, default: {default!r}, min: 0.1, max: {high!r}}}"
    changes = diff_recipe_texts(DEMO, DEMO.replace(line, new))
    assert len(changes) == 1
    (c,) = changes
    assert (c.section, c.key, c.kind) == ("parameter", "flow", "changed")
    fields = {f: (a, b) for f, a, b in c.fields}
    expected: dict[str, tuple[object, object]] = {"max": (5, high)}
    if default != 1.0:
        expected["default"] = (1.0, default)
    if unit_change:
        expected["unit"] = ("mL/min", "mL/h")
    assert fields == expected

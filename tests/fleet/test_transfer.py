"""``modulecontrol transfer``: a recipe of one plant checked against another, located."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.fleet import transfer

ROOT = Path(__file__).parents[2]
RECIPE = ROOT / "recipes/examples/dosing_demo.yaml"
PLANT = ROOT / "recipes/lomustine/plant.yaml"


def _other_plant(tmp_path: Path, edit: dict[str, str]) -> Path:
    """The lomustine plant with each regular expression of ``edit`` replaced."""
    text = PLANT.read_text(encoding="utf-8")
    for old, new in edit.items():
        text, n = re.subn(old, new, text)
        assert n, old
    shutil.copy(PLANT.parent / "species.yaml", tmp_path / "species.yaml")
    out = tmp_path / "other.yaml"
    out.write_text(text, encoding="utf-8")
    return out


def test_same_plant_transfers_as_is() -> None:
    report = transfer(RECIPE, PLANT, PLANT)
    assert report.ok
    assert [(m.tag, m.type_from, m.type_to) for m in report.modules] == [
        ("P1", "HPLCPump", "HPLCPump")]


def test_a_smaller_pump_is_out_of_range_at_the_recipe_line(tmp_path: Path) -> None:
    other = _other_plant(tmp_path, {r"FlowSP: \{default: 0.375\}":
                                    "FlowSP: {default: 0.375, max: 0.5}"})
    report = transfer(RECIPE, PLANT, other)
    assert not report.missing and not report.other
    (p,) = report.out_of_range
    assert p.location is not None and p.location.line == 18  # FlowSP: "${flow}"
    assert "FlowSP" in p.message and "0.5" in p.message


def test_a_missing_module_is_reported(tmp_path: Path) -> None:
    other = _other_plant(tmp_path, {r"\bP1\b": "P9"})
    report = transfer(RECIPE, PLANT, other)
    assert [(m.tag, m.type_to) for m in report.modules] == [("P1", None)]
    assert report.missing and all("P1" in p.message for p in report.missing)
    assert all(p.location is not None and p.location.file.endswith("dosing_demo.yaml")
               for p in report.missing)


def test_cli_exit_codes(tmp_path: Path) -> None:
    other = _other_plant(tmp_path, {r"\bP1\b": "P9"})
    ok = CliRunner().invoke(app, ["transfer", str(RECIPE), "--from", str(PLANT),
                                  "--to", str(PLANT)])
    assert ok.exit_code == 0 and "transfers as is" in ok.output
    bad = CliRunner().invoke(app, ["transfer", str(RECIPE), "--from", str(PLANT),
                                   "--to", str(other)])
    assert bad.exit_code == 1 and "missing" in bad.output
    # the recipe must be valid where it comes from
    invalid = CliRunner().invoke(app, ["transfer", str(RECIPE), "--from", str(other),
                                       "--to", str(PLANT)])
    assert invalid.exit_code == 2

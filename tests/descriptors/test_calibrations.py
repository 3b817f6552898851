"""A plant file's ``calibrations:``: calibrated overlays (``kind: TwinCalibration``) applied to
the simulated modules' models through the real loader, the same function as ``optimize
--calibration``, every refusal located in the file and at the key that caused it, an edited
overlay never hidden by the parse cache, and ``validate`` / ``describe`` saying which overlay
is in effect with its provenance."""

from __future__ import annotations

import copy
import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modulecontrol import yamlio
from modulecontrol.cli import app
from modulecontrol.descriptors import load_plant, validate_file
from modulecontrol.errors import ConfigError
from modulecontrol.twin import apply_overlay
from modulecontrol.yamlio import dump_yaml

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"
FITTED = "2.2 L/(mol*s)"
PROVENANCE = {"runs": [1, 2],
              "windows": [[1.7e9, 1.7e9 + 1800.0], [1.7e9 + 1800.0, 1.7e9 + 3600.0]],
              "estimates": [{"name": "R2.reactions.nitrosation_equilibrium.k_ref", "value": 2.2,
                             "ci95": [2.17, 2.23], "unit": "L/(mol s)", "initial": 1.8}],
              "n_points": 80, "rms_scaled_residual": 0.0075, "warnings": []}


def _reactions() -> list[dict[str, Any]]:
    """R2's reactions as the plant file gives them, nitrosation's k_ref as if fitted."""
    sim = load_plant(PLANT).type_of("R2").simulator
    assert sim is not None
    reactions: list[dict[str, Any]] = copy.deepcopy(sim.parameters["reactions"])
    for r in reactions:
        if r["name"] == "nitrosation_equilibrium":
            r["k_ref"] = FITTED
    return reactions


def _overlay(**change: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": "TwinCalibration", "plant": "plant.yaml",
                           "plant_name": "lomustine-line", "provenance": PROVENANCE,
                           "modules": [{"tag": "R2", "overrides": {"simulator": {
                               "reactions": _reactions()}}}]}
    doc.update(change)
    return doc


def _plant(folder: Path, calibrations: list[str], edit: Any = None) -> Path:
    """The lomustine plant copied into ``folder`` with ``calibrations:`` after ``species:``."""
    shutil.copy(PLANT.parent / "species.yaml", folder / "species.yaml")
    text = PLANT.read_text(encoding="utf-8")
    text = text.replace("species: species.yaml\n",
                        f"species: species.yaml\ncalibrations: [{', '.join(calibrations)}]\n")
    if edit is not None:
        text = edit(text)
    path = folder / "plant.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_yaml(doc), encoding="utf-8")
    return path


def _k_ref(config: Any) -> str:
    reactions = config.type_of("R2").simulator.parameters["reactions"]
    return str(next(r["k_ref"] for r in reactions if r["name"] == "nitrosation_equilibrium"))


def _line_of(path: Path, pattern: str) -> int:
    """1-based number of the first line of ``path`` matching ``pattern``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, s in enumerate(lines, 1) if re.search(pattern, s))


def test_included_overlay_sets_the_models_as_optimize_calibration_does(tmp_path: Path) -> None:
    overlay = _write(tmp_path / "calibration" / "r2.yaml", _overlay())
    config = load_plant(_plant(tmp_path, ["calibration/r2.yaml"]))
    assert _k_ref(config) == FITTED
    (cal,) = config.calibrations
    assert cal.sha256 == hashlib.sha256(overlay.read_bytes()).hexdigest()
    assert cal.record(config.base_dir) == {"file": "calibration/r2.yaml", "sha256": cal.sha256,
                                           "modules": {"R2": ["reactions"]}, "runs": [1, 2]}
    # one implementation: the plant without the key, calibrated on the command line's way
    (tmp_path / "plain").mkdir()
    plain = load_plant(_plant(tmp_path / "plain", []))
    assert _k_ref(plain) != FITTED
    by_option = apply_overlay(plain, overlay)
    assert by_option.instance_types == config.instance_types
    assert plain.calibrations == [] and _k_ref(plain) != FITTED  # the original untouched
    # the plant's other modules and its own overrides are as the plant file writes them
    assert config.type_of("R1") == plain.type_of("R1")
    # the same overlay again on the command line is refused, not applied twice
    with pytest.raises(ConfigError, match="already in effect"):
        apply_overlay(config, overlay)


def test_an_edited_overlay_is_read_anew_whatever_the_cache_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(yamlio.CACHE_ENV, str(tmp_path / "cache"))
    overlay = _write(tmp_path / "r2.yaml", _overlay())
    plant = _plant(tmp_path, ["r2.yaml"])
    assert _k_ref(load_plant(plant)) == FITTED
    assert _k_ref(load_plant(plant)) == FITTED  # now from the cache
    doc = _overlay()
    for r in doc["modules"][0]["overrides"]["simulator"]["reactions"]:
        if r["name"] == "nitrosation_equilibrium":
            r["k_ref"] = "2.5 L/(mol*s)"
    _write(overlay, doc)  # the plant file unchanged, its parse cached
    again = load_plant(plant)
    assert _k_ref(again) == "2.5 L/(mol*s)"
    assert again.calibrations[0].sha256 == hashlib.sha256(overlay.read_bytes()).hexdigest()


def _two_overlays(tmp_path: Path) -> list[str]:
    _write(tmp_path / "a.yaml", _overlay())
    _write(tmp_path / "b.yaml", _overlay())
    return ["a.yaml", "b.yaml"]


def _not_simulated(text: str) -> str:
    head, sep, tail = text.partition("  - tag: R2\n")
    return head + sep + tail.replace("simulated: true", "simulated: false", 1)


CASES: list[tuple[str, Any, str, str, str]] = [
    # (id, overlay doc (None: no file), plant edit, file:key that is reported, message)
    ("missing file", None, "", "plant.yaml:calibrations: \\[", "calibration file .*r2.yaml "
     "not found"),
    ("not a calibration", {"kind": "Recipe", "name": "x"}, "", "r2.yaml:^kind:",
     "a Recipe document: a calibration is the 'kind: TwinCalibration' overlay"),
    ("another plant", _overlay(plant_name="other-line"), "", "r2.yaml:^plant_name:",
     "fitted on plant 'other-line', not on 'lomustine-line'"),
    ("another plant file (old overlay)", {k: v for k, v in _overlay(plant="line2.yaml").items()
                                          if k != "plant_name"}, "", "r2.yaml:^plant:",
     "fitted on plant file 'line2.yaml', not on plant.yaml"),
    ("unknown tag", _overlay(modules=[{"tag": "R9", "overrides": {"simulator": {
        "reactions": []}}}]), "", "r2.yaml:tag: R9", "no module 'R9' in plant lomustine-line"),
    ("unknown key", _overlay(modules=[{"tag": "R2", "overrides": {"simulator": {
        "reactons": []}}}]), "", "r2.yaml:reactons:",
     "R2: 'reactons' is not a simulator parameter of CoilReactor \\(did you mean 'reactions'"),
    ("not simulated", _overlay(), "not simulated", "r2.yaml:tag: R2",
     "module R2 is not simulated \\(real hardware"),
    ("assemblies are not the overlay's", _overlay(modules=[{"tag": "R2", "overrides": {
        "simulator": {"reactions": []}, "assemblies": {"TempSP": {"max": 50}}}}]), "",
     "r2.yaml:assemblies:", "assemblies"),
]


@pytest.mark.parametrize(("overlay", "edit", "where", "message"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refusals_are_located_at_the_key(tmp_path: Path, overlay: dict[str, Any] | None,
                                         edit: str, where: str, message: str) -> None:
    if overlay is not None:
        _write(tmp_path / "r2.yaml", overlay)
    plant = _plant(tmp_path, ["r2.yaml"], _not_simulated if edit else None)
    with pytest.raises(ConfigError) as err:
        load_plant(plant)
    file, _, pattern = where.partition(":")
    line = _line_of(tmp_path / file, pattern)
    assert any(p.location is not None and Path(p.location.file).name == file
               and p.location.line == line and re.search(message, p.message)
               for p in err.value.problems), str(err.value)


def test_two_overlays_setting_one_key_are_refused_naming_both(tmp_path: Path) -> None:
    plant = _plant(tmp_path, _two_overlays(tmp_path))
    with pytest.raises(ConfigError) as err:
        load_plant(plant)
    (problem,) = err.value.problems
    assert problem.location is not None and Path(problem.location.file).name == "b.yaml"
    assert problem.location.line == _line_of(tmp_path / "b.yaml", "reactions:")
    assert f"also set by calibration {tmp_path / 'a.yaml'} (" in problem.message
    assert f"a.yaml:{_line_of(tmp_path / 'a.yaml', 'reactions:')}:" in problem.message


def test_a_bad_value_in_an_overlay_is_located_in_the_overlay_by_validate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _overlay()
    for r in doc["modules"][0]["overrides"]["simulator"]["reactions"]:
        if r["name"] == "nitrosation_equilibrium":
            r["k_ref"] = 2.2  # no unit: the model refuses it when the plant is built
    _write(tmp_path / "r2.yaml", doc)
    _plant(tmp_path, ["r2.yaml"])
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["validate", "plant.yaml"])
    assert res.exit_code == 1
    line = _line_of(tmp_path / "r2.yaml", "- name: nitrosation_equilibrium")  # its reaction
    assert re.search(rf"^r2.yaml:{line}:\d+: module R2: simulator parameters: .*k_ref needs a "
                     "unit", res.output, re.M), res.output


def test_validate_and_describe_say_which_overlay_is_in_effect(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overlay = _write(tmp_path / "calibration" / "r2.yaml", _overlay())
    _plant(tmp_path, ["calibration/r2.yaml"])
    monkeypatch.chdir(tmp_path)
    digest = hashlib.sha256(overlay.read_bytes()).hexdigest()[:12]
    res = CliRunner().invoke(app, ["validate", "plant.yaml"])
    assert res.exit_code == 0, res.output
    assert f"calibration calibration/r2.yaml (sha256 {digest}): sets R2.reactions" in res.output
    assert ("fitted on runs 1, 2 (2023-11-14 22:13 UTC to 2023-11-14 23:13 UTC); "
            "R2.reactions.nitrosation_equilibrium.k_ref = 2.2 L/(mol s) [2.17, 2.23]; "
            "80 points; rms scaled residual 0.0075; 0 warnings") in res.output
    res = CliRunner().invoke(app, ["describe", "plant.yaml"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert re.search(r"R2 .*CoilReactor .* yes .*reactions \(r2.yaml\)", res.output)
    assert f"calibration calibration/r2.yaml (sha256 {digest})" in res.output
    assert "fitted on runs 1, 2" in res.output
    # the overlay on its own: its schema
    assert CliRunner().invoke(app, ["validate", "calibration/r2.yaml"]).exit_code == 0
    assert validate_file(overlay).overlay.plant_name == "lomustine-line"

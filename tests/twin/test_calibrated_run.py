"""A run of a plant that includes a calibrated overlay records which one: the run metadata
keeps its path (relative to the plant file) and SHA-256 beside the plant file's hash, in the
chained run row, and the batch report shows it under the plant's hash."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.records import verify_audit
from tests.descriptors.test_calibrations import ROOT, _overlay, _plant, _write


def test_a_run_records_the_overlay_its_simulated_plant_ran_with(tmp_path: Path) -> None:
    overlay = _write(tmp_path / "calibration" / "r2.yaml", _overlay())
    plant = _plant(tmp_path, ["calibration/r2.yaml"])
    recipe = tmp_path / "demo.yaml"
    recipe.write_text((ROOT / "recipes" / "examples" / "dosing_demo.yaml").read_text(
        encoding="utf-8").replace("plant: ../lomustine/plant.yaml", "plant: plant.yaml"),
        encoding="utf-8")
    db = tmp_path / "runs.db"
    res = CliRunner().invoke(app, ["run", str(recipe), "--simulate", "--speed", "100", "--yes",
                                   "--no-live", "--db", str(db), "--report-dir",
                                   str(tmp_path / "reports")])
    assert res.exit_code == 0, res.output
    with sqlite3.connect(db) as conn:
        plant_hash, metadata = conn.execute("SELECT plant_hash, metadata FROM runs").fetchone()
    digest = hashlib.sha256(overlay.read_bytes()).hexdigest()
    assert plant_hash == hashlib.sha256(plant.read_bytes()).hexdigest()
    assert json.loads(metadata)["calibrations"] == [
        {"file": "calibration/r2.yaml", "sha256": digest, "modules": {"R2": ["reactions"]},
         "runs": [1, 2]}]
    assert verify_audit(db).ok  # the metadata is in the chained run row
    html = (tmp_path / "reports" / "run-1.html").read_text(encoding="utf-8")
    assert f"calibration/r2.yaml SHA-256 {digest}" in html

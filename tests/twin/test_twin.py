"""The twin's fit, against runs the simulator made with known parameters and seeded noise:
the worked example of docs/digital-twin.md, run as written, recovers the truth."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.descriptors import load_plant
from modulecontrol.records import AuditTrail, run_samples, verify_audit
from modulecontrol.twin import ParamRef, TwinError, record_simulated_run
from tests.twin.conftest import PLANT, ROOT, doc_block, doc_commands, estimates


def test_recorded_run_reads_back_inputs_and_measurements(tmp_path: Path) -> None:
    config = load_plant(PLANT)
    db = tmp_path / "runs.db"
    run = record_simulated_run(config, db, settings={"R1.TempSP": 45.0},
                               outputs=["PAT1.Impurity"], duration=300.0, interval=60.0,
                               dt=10.0)
    data = run_samples(db, run)
    assert data.series["R1.TempSP"][1].tolist() == [45.0]
    assert len(data.series["PAT1.Impurity"][0]) == 5
    assert data.t_end - data.run.t_start == 300.0


@pytest.mark.parametrize(("name", "message"), [
    ("R9.reactions.x.k_ref", "no module 'R9'"),
    ("R1.reactions.nope.k_ref", "'nope' not found under R1.reactions (known: carbamylation"),
    ("R1.reactions.dcu_formation.kref", "'kref' not found under R1.reactions.1 (known: name"),
    ("R1", "give TAG.path"),
])
def test_parameter_names_are_resolved_or_refused_with_what_exists(name: str,
                                                                  message: str) -> None:
    with pytest.raises(TwinError, match=re.escape(message)):
        ParamRef.resolve(load_plant(PLANT), name)


def test_cli_refuses_an_unknown_parameter_with_exit_2(workdir: Path) -> None:
    res = CliRunner().invoke(app, ["twin", "fit", "1", "--plant", "plant.yaml", "--db",
                                   "runs.db", "--param", "R1.reactions.nope.k_ref"])
    assert res.exit_code == 2
    assert "'nope' not found" in res.output


TRUTH = {"R2.reactions.nitrosation_equilibrium.k_ref": 2.2,
         "R2.reactions.nitrosation_equilibrium.Ea": 55.0}


def test_worked_example_recovers_k_and_ea_from_two_temperatures_and_warns_on_one(
        workdir: Path) -> None:
    commands = doc_commands("twin-commands")
    assert [c[:2] for c in commands] == [["twin", "record"]] * 2 + [["twin", "fit"]] * 2
    results = []
    for args in commands:
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        results.append(res)
    both, one = results[2], results[3]
    found = estimates(both.stdout)
    assert set(found) == set(TRUTH)
    for name, truth in TRUTH.items():
        value, low, high = found[name]
        assert abs(value / truth - 1) < 0.05, (name, value)
        assert low <= truth <= high, (name, low, high)
    assert "not identifiable" not in both.output
    assert "not identifiable separately" in one.stderr
    assert "inf" in one.stdout  # no interval that pretends to know
    overlay = (workdir / "R2-calibrated.yaml").read_text(encoding="utf-8")
    assert "TwinCalibration" in overlay and "nitrosation_equilibrium" in overlay
    # the fit report: residual plots, the correlation matrix as the fit computed it
    report = (workdir / "fit" / "fit-report.md").read_text(encoding="utf-8")
    for png in ("residuals.png", "correlation.png"):
        assert (workdir / "fit" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({png})" in report
    fitted = json.loads((workdir / "fit" / "fit.json").read_text(encoding="utf-8"))
    corr = fitted["correlation"][0][1]
    assert f"{corr:+.3f}" in report and abs(corr) < 0.999
    # the overlay's provenance in the audit trail, the chain intact
    entries = [e for e in AuditTrail(workdir / "runs.db").entries()
               if e.action == "twin calibration"]
    assert len(entries) == 1 and entries[0].object == "overlay R2-calibrated.yaml"
    prov = entries[0].new_value
    assert prov["runs"] == [1, 2] and len(prov["time_ranges"]) == 2
    assert {e["name"] for e in prov["estimates"]} == set(TRUTH)
    assert prov["n_points"] == fitted["n_points"]
    assert verify_audit(workdir / "runs.db").ok
    # the overlay's hash in its audit entry: what a run record's calibration is matched by
    digest = hashlib.sha256((workdir / "R2-calibrated.yaml").read_bytes()).hexdigest()
    assert prov["sha256"] == digest
    # optimise on the calibrated twin: the plant as copied, then as the page includes the
    # overlay in it; the page's commands as written
    shutil.copy(ROOT / "recipes" / "examples" / "lomustine_optimize.yaml",
                workdir / "optimize.yaml")
    check, command = doc_commands("twin-optimize")
    assert check[:1] == ["validate"] and "--calibration" not in command
    plain = CliRunner().invoke(app, [*command, "--json"])
    assert plain.exit_code == 0, plain.output
    by_option = CliRunner().invoke(app, [*command, "--calibration", "R2-calibrated.yaml",
                                         "--json"])
    assert by_option.exit_code == 0, by_option.output
    bad = CliRunner().invoke(app, [*command, "--calibration", "plant.yaml"])
    assert bad.exit_code == 2 and "TwinCalibration" in bad.output
    include = doc_block("twin-include", "yaml").strip()
    plant = workdir / "plant.yaml"
    text = plant.read_text(encoding="utf-8")
    plant.write_text(text.replace("species: species.yaml\n",
                                  f"species: species.yaml\n{include}\n", 1), encoding="utf-8")
    validated = CliRunner().invoke(app, check)
    assert validated.exit_code == 0, validated.output
    shown = doc_block("twin-optimize", "text")
    assert shown.strip().splitlines()[1].split(" (sha256")[0] in validated.stdout  # as shown
    assert f"(sha256 {digest[:12]}): sets R2.reactions" in validated.stdout
    assert f"fitted on runs 1, 2 ({prov['time_ranges'][0][0][:10]}" in validated.stdout
    calibrated = CliRunner().invoke(app, [*command, "--json"])
    assert calibrated.exit_code == 0, calibrated.output
    # one implementation: the included overlay and --calibration give the same campaign
    assert calibrated.stdout == by_option.stdout
    twice = CliRunner().invoke(app, [*command, "--calibration", "R2-calibrated.yaml"])
    assert twice.exit_code == 2 and "already in effect" in twice.output
    runs = [json.loads(r.stdout) for r in (calibrated, plain)]
    n = int(command[command.index("--experiments") + 1])
    assert [len(r["experiments"]) for r in runs] == [n, n]
    first = [r["experiments"][0] for r in runs]
    assert first[0]["setpoints"] == first[1]["setpoints"]  # the same start ...
    # ... where the calibrated nitrosation (faster, as the runs showed) reaches a higher purity
    assert first[0]["means"]["PAT1.Purity"] > first[1]["means"]["PAT1.Purity"]
    best = runs[0]["experiments"][runs[0]["best"]]
    assert best["objective"] > first[0]["objective"]  # the search improved on its start


def test_whatif_worked_example_reports_the_models_new_steady_state(workdir: Path) -> None:
    from modulecontrol.simulators.lomustine import steady_state_kpis

    record, ahead = doc_commands("twin-whatif")
    assert CliRunner().invoke(app, record).exit_code == 0
    res = CliRunner().invoke(app, [*ahead, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    expected, _ = steady_state_kpis(workdir / "plant.yaml", parameters={"R2": {"TempSP": 10}})
    assert out["purity_pct"] == pytest.approx(100 * expected.purity, rel=1e-6)
    assert out["yield_pct"] == pytest.approx(100 * expected.solution_yield, rel=1e-6)
    assert out["before"]["purity_pct"] > 90 > out["purity_pct"]  # the change goes off-spec
    assert 0 < out["time_to_steady_s"] < out["horizon_s"] == 1800
    # off-spec from when the colder stream reaches the analyzer to the horizon, no more
    assert 0 < out["off_spec_ml"] < 1800 * 1.2 / 60
    text = CliRunner().invoke(app, ahead)
    doc = (ROOT / "docs" / "digital-twin.md").read_text(encoding="utf-8")
    shown = doc.split("<!-- twin-whatif -->", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    assert text.stdout.strip() == shown.strip()  # the page shows what the command prints


def test_whatif_refuses_a_signal_that_is_not_a_set_point(workdir: Path) -> None:
    record, _ = doc_commands("twin-whatif")
    assert CliRunner().invoke(app, record).exit_code == 0
    res = CliRunner().invoke(app, ["twin", "whatif", "1", "--plant", "plant.yaml", "--db",
                                   "runs.db", "--set", "PAT1.Purity=99", "--horizon", "2 bar"])
    assert res.exit_code == 2
    assert "not a time" in res.output
    res = CliRunner().invoke(app, ["twin", "whatif", "1", "--plant", "plant.yaml", "--db",
                                   "runs.db", "--set", "PAT1.Purity=99", "--horizon", "10min"])
    assert res.exit_code == 2
    assert "--set PAT1.Purity: not a simulated set point" in res.output

"""The two-product campaign (recipes/campaigns/lomustine_then_semustine.yaml) end to end at
high speed: each product is its own lot in the figures, the run summary and the report, next
to the changeover; the recorded crystallizer and heater values are physically possible; the
trends shade the windows the orchestrator decided on (issue #16)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from modulecontrol import _runcli
from modulecontrol.orchestrator import RunResult
from modulecontrol.records import report
from modulecontrol.session import RunOptions, Session

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN = ROOT / "recipes" / "campaigns" / "lomustine_then_semustine.yaml"
SHORT = {"lomustine_time": "30 min", "semustine_time": "30 min"}
NON_NEGATIVE = ("CR1.MeanSize", "CR1.CrystalRate", "CR1.SuspensionDensity",
                "CR1.Supersaturation", "R1.HeaterPower", "R2.HeaterPower", "PAT1.Product",
                "PAT1.Purity", "V1.ProductVolume", "V1.WasteVolume")


@pytest.mark.slow
async def test_two_product_campaign_reports_each_lot(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    session = Session.load(CAMPAIGN, None, RunOptions(
        simulate=True, speed=1200.0, db=db, overrides=SHORT, report_dir=tmp_path,
        auto_answer="ok"))
    outcome = await asyncio.wait_for(session.run(), 600)
    assert outcome.result is RunResult.COMPLETED, outcome.message
    f = outcome.figures
    lots = {lot["name"]: lot for lot in f["lots"]}
    assert list(lots) == ["lomustine", "semustine"]
    lom, sem = lots["lomustine"], lots["semustine"]
    # lomustine | changeover | semustine: the windows follow one another without a gap
    # (figures keep 6 significant digits: 0.1 s at a few hours)
    assert lom["end_at_s"] + f["changeover.duration_s"] == pytest.approx(sem["start_at_s"],
                                                                         abs=0.1)
    for lot in (lom, sem):
        # each product was made on spec for a while inside its own window
        assert 0 < lot["production_time_s"] <= lot["duration_s"]
        assert lot["product_g"] > 0 and lot["throughput_g_per_h"] > 0
        assert 0 < lot["yield_pct"] <= 100
        assert lot["purity_mean_pct"] >= 90 and lot["purity_min_pct"] >= 90
        assert lot["on_spec_volume_ml"] > 0 and lot["diverted_volume_ml"] > 0
    # what reached the product outlet within the lots is at most all it ever received
    received = f["streams"]["product solution"]["volume_ml"]
    assert lom["on_spec_volume_ml"] + sem["on_spec_volume_ml"] <= received * 1.000001
    wasted = f["streams"]["waste"]["volume_ml"]
    assert lom["diverted_volume_ml"] + sem["diverted_volume_ml"] <= wasted * 1.000001
    # what came in left: a repeated step of a nearly empty line once scaled its flow by
    # 1e10 and the record showed 1.5e10 mL diverted and a balance of 4.5e9 %
    assert f["material_balance_pct"] == pytest.approx(100.0, abs=1.0)
    # the changeover: THF delivered, waste made, and lomustine left below the check's limit
    assert f["changeover.thf_ml"] > 0 and f["changeover.waste_ml"] > 0
    assert 0 <= f["changeover.carryover_mol_per_l"] < 1e-5
    # the summary `run` prints: the changeover figures and a lots table
    with _runcli.console.capture() as cap:
        _runcli._summary(outcome)
    text = " ".join(cap.get().split())
    assert "changeover.waste_ml" in text and "changeover.carryover_mol_per_l" in text
    assert "lomustine" in text and "semustine" in text and "on-spec volume" in text
    # the batch report: the lots table, and the trends shade steady state and to product
    assert outcome.run_id is not None
    html = report(db, outcome.run_id, "html")
    assert "<h3>Lots (one per product)</h3>" in html
    doc = json.loads(report(db, outcome.run_id, "json"))
    kinds = [w["kind"] for w in doc["plots"]["windows"]]
    assert kinds.count("to product") >= 2 and "steady state" in kinds
    to_product = [w for w in doc["plots"]["windows"] if w["kind"] == "to product"]
    for lot in (lom, sem):  # each lot has its own divert window that starts inside it
        assert any(lot["start_at_s"] <= w["start_s"] < lot["end_at_s"] for w in to_product)
    # every signal of the recipe's display list is readable: on an axis of its own unit
    # and not pushed off it, or a lane, or a constant (issue #16: inlet channels and
    # analyzer methods, which say which product is made, were not plotted at all)
    plots = doc["plots"]
    on_axis = {t for p in plots["panels"] for a in p["axes"] for t in a["tags"]
               if t not in a["off_axis"]}
    shown = on_axis | set(plots["lanes"]) | {c["tag"] for c in plots["constants"]}
    display = session.vr.recipe.display
    assert {"P1.Inlet", "PAT1.Method"} <= set(display)
    assert set(display) <= shown, set(display) - shown
    # alarm limits as lines on their signal's axis (R1.T high 60 degC)
    limits = [x for p in doc["plots"]["panels"] for a in p["axes"] for x in a["limits"]]
    assert {"tag": "R1.T", "name": "r1_high", "value": 60.0} in [
        {k: x[k] for k in ("tag", "name", "value")} for x in limits]
    # models never produced physically impossible values (issue #16: mean size -3.7 um)
    with sqlite3.connect(db) as conn:
        for tag in NON_NEGATIVE:
            (low,) = conn.execute("SELECT min(value) FROM samples s JOIN tags g ON g.id ="
                                  " s.tag_id WHERE g.name = ?", (tag,)).fetchone()
            assert low is not None and low >= 0.0, (tag, low)

"""Batch report of a synthetic run whose figures are known in advance; CLI commands."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modulecontrol.records import (
    AuditTrail,
    EventKind,
    Historian,
    RecordsError,
    RunResult,
    TagConfig,
    list_runs,
    report,
    run_figures,
)
from modulecontrol.records.cli import app

T0 = 1_700_000_000.0


def approx(x: float) -> object:
    """Figures are rounded to 6 significant digits."""
    return pytest.approx(x, rel=1e-5)


HOURS = 2.0
END = T0 + HOURS * 3600
DIVERT_UNTIL = T0 + 1800  # first 30 min to waste, purity 50 % then 99 %
AMINE_C = 7.0  # mol/L
M_PRODUCT = 200.0  # g/mol

FIGURES = {
    "feeds": [
        {"tag": "P1.flow", "name": "amine", "density": "1.0 g/mL",
         "concentration": f"{AMINE_C} mol/L"},
        {"tag": "P2.flow", "name": "reagent"},
    ],
    "limiting_feed": "amine",
    "product": {"tag": "OUT.flow", "density": "1 g/mL"},
    "product_molar_mass": f"{M_PRODUCT} g/mol",
    "purity_tag": "AT.purity",
    "purity_spec": 98.0,
    "divert_tag": "V.divert",
    "divert_product_state": "low",  # 1 = to waste on this plant
    "diverted_feeds": ["amine"],
    "steady_state": {"tag": "AT.purity", "tolerance": 0.01, "window": 600},
}


async def _make_run(db: Path) -> int:
    h = Historian(db, flush_interval=0.05)
    h.configure_tag("P1.flow", TagConfig(unit="mL/min"))
    h.configure_tag("P2.flow", TagConfig(unit="g/h"))
    h.configure_tag("OUT.flow", TagConfig(unit="g/h", deadband=0.0))  # constant: 1 sample
    h.configure_tag("AT.purity", TagConfig(unit="%"))
    h.configure_tag("V.divert", TagConfig(unit=""))
    h.configure_tag("R1.T", TagConfig(unit="degC"))
    h.configure_tag("R1.p", TagConfig(unit="bar"))
    rid = await h.start_run("synthetic", recipe_version="1", recipe_text="x", t=T0,
                            metadata={"figures": FIGURES, "tag_groups": {"V.divert": "valves"}})
    for k in range(121):
        t = T0 + 60 * k
        before = t < DIVERT_UNTIL
        h.record_sample("P1.flow", 1.0, t=t)
        h.record_sample("P2.flow", 30.0, t=t)
        h.record_sample("OUT.flow", 90.0, t=t)
        h.record_sample("AT.purity", 50.0 if before else 99.0, t=t)
        h.record_sample("V.divert", 1.0 if before else 0.0, t=t)
        h.record_sample("R1.T", 60.0, t=t)
        h.record_sample("R1.p", 2.0, t=t)
    for t, st in ((T0, "Starting"), (T0 + 60, "Execute"), (END - 60, "Completing")):
        h.record_event(EventKind.STATE_CHANGE, "R1.Heat", {"state": st}, t=t)
    h.record_event(EventKind.STEP_TRANSITION, "", {"step": "startup"}, t=T0)
    h.record_event(EventKind.STEP_TRANSITION, "", {"step": "collect"}, t=DIVERT_UNTIL)
    h.record_event(EventKind.DEVIATION, "AT", {"text": "purity low at start-up"}, t=T0 + 600)
    h.raise_alarm("R1.TH", "T high", 750, t=T0 + 100)
    h.clear_alarm("R1.TH", t=T0 + 200)
    h.record_operator_action("alice", "parameter_write", "R1.T.SP", old_value=60,
                             new_value=61, reason="conversion", t=T0 + 300)
    await h.end_run(rid, RunResult.COMPLETED, t=END)
    await h.close()
    return rid


async def test_figures_match_known_input(db: Path) -> None:
    rid = await _make_run(db)
    f = run_figures(db, rid)
    assert f["duration_s"] == approx(7200)
    # feeds: 1 mL/min x 1 g/mL = 60 g/h, + 30 g/h -> 180 g in; product 90 g/h -> 180 g out
    assert f["mass_in_g"] == approx(180.0)
    assert f["mass_out_g"] == approx(180.0)
    assert f["material_balance_pct"] == approx(100.0)
    # first 30 min to waste while the amine runs: 30 mL off-spec (1 mL/min x 30 min)
    assert f["off_spec_time_s"] == approx(1800.0)
    assert f["off_spec_volume_ml"] == approx(30.0)
    assert f["off_spec_mass_g"] == approx(30.0)
    assert f["production_time_s"] == approx(5400.0)
    assert f["product_stream_mass_g"] == approx(135.0)
    compound = 90.0 * 0.99 * 1.5  # purity basis (auto: no product concentration)
    assert f["product_g"] == approx(compound)
    assert f["product_total_g"] == approx(90.0 * (0.5 * 0.5 + 0.99 * 1.5))
    assert f["throughput_g_per_h"] == approx(compound / 1.5)
    assert f["throughput_overall_g_per_h"] == approx(f["product_total_g"] / HOURS)
    amine_mol_window = 90.0 / 1000 * AMINE_C
    assert f["yield_pct"] == approx(100 * compound / M_PRODUCT / amine_mol_window)
    assert f["overall_yield_pct"] == approx(
        100 * f["product_total_g"] / M_PRODUCT / (120.0 / 1000 * AMINE_C))
    assert f["purity_mean_pct"] == approx(99.0)
    assert f["purity_min_pct"] == approx(99.0)  # while collecting
    assert f["purity_below_spec_s"] == approx(1800.0)
    # no steady_state event: the signal detector, from the first feed sample (run start)
    assert f["steady_state_source"] == "signal AT.purity"
    assert f["time_to_steady_state_s"] == approx(1800.0)
    assert (f["deviations"], f["alarms"], f["operator_actions"]) == (1, 1, 1)
    assert "workup_recovery_pct" not in f  # no workup in the metadata
    assert f["notes"] == []


async def test_constant_flow_throughput_without_extras(db: Path) -> None:
    h = Historian(db, flush_interval=0.05)
    h.configure_tag("F", TagConfig(unit="kg/h"))
    rid = await h.start_run("c", t=T0, metadata={"figures": {"product": {"tag": "F"}}})
    h.record_sample("F", 0.25, t=T0 - 10)  # value held from before the run started
    await h.end_run(rid, t=T0 + 1800)
    await h.close()
    f = run_figures(db, rid)
    assert f["throughput_g_per_h"] == approx(250.0)
    assert f["product_stream_mass_g"] == approx(125.0)
    assert f["product_g"] == approx(125.0)


async def test_html_json_csv(db: Path, tmp_path: Path) -> None:
    rid = await _make_run(db)
    page = report(db, rid, "html", tmp_path / "r.html")
    assert (tmp_path / "r.html").read_text() == page
    # flows, temperature and pressure are constant here: a table, not plots
    assert page.count("data:image/png;base64,") == 4  # analyzer, on/off lanes, states, steps
    for title in ("analyzer signals", "on/off signals", "service states", "recipe steps",
                  "Constant signals", "R1.p", "R1.TH", "alice", "purity low"):
        assert title in page
    assert "src='http" not in page and "<script" not in page  # self-contained
    doc = json.loads(report(db, rid, "json"))
    assert doc["figures"] == run_figures(db, rid)
    assert doc["run"]["recipe_name"] == "synthetic"
    assert doc["operator_actions"][0]["old_value"] == 60
    rows = list(csv.reader(io.StringIO(report(db, rid, "csv"))))
    assert rows[0][:4] == ["time_utc", "t_rel_s", "tag", "value"]
    conn = sqlite3.connect(db)
    (n,) = conn.execute("SELECT COUNT(*) FROM samples").fetchone()
    conn.close()
    assert len(rows) - 1 == n
    with pytest.raises(RecordsError, match="no run 99"):
        report(db, 99)


async def test_missing_tag_is_named_and_its_figures_not_available(db: Path) -> None:
    h = Historian(db, flush_interval=0.05)
    rid = await h.start_run("c", t=T0, metadata={"figures": {"product": {"tag": "NOPE"}}})
    await h.end_run(rid, t=T0 + 10)
    await h.close()
    f = run_figures(db, rid)
    assert f["product_g"] is None and "NOPE" in f["not_available"]["product_g"]
    assert f["duration_s"] == 10 and any("not available" in n for n in f["notes"])


async def test_cli(db: Path, tmp_path: Path) -> None:
    rid = await _make_run(db)
    runner = CliRunner()
    res = runner.invoke(app, ["runs", "--db", str(db)])
    assert res.exit_code == 0 and "synthetic" in res.output and "completed" in res.output
    res = runner.invoke(app, ["report", str(rid), "--db", str(db), "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.output)["run"]["id"] == rid
    res = runner.invoke(app, ["report", str(rid), "--db", str(db)])
    assert res.exit_code == 0 and (db.parent / f"run-{rid}.html").exists()
    res = runner.invoke(app, ["report", "7", "--db", str(db)])
    assert res.exit_code == 2 and "no run 7" in res.output
    res = runner.invoke(app, ["audit", "verify", "--db", str(db)])
    assert res.exit_code == 0 and "audit trail OK" in res.output
    with AuditTrail(db) as trail:
        trail.append("bob", "write", "Y", old_value=1, new_value=2, reason="r")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET user='eve' WHERE seq=2")
    conn.close()
    res = runner.invoke(app, ["audit", "verify", "--db", str(db)])
    assert res.exit_code == 1 and "record edited: audit row 2 differs" in res.output
    res = runner.invoke(app, ["runs", "--db", str(tmp_path / "nothing.db")])
    assert res.exit_code == 2 and "no records database" in res.output
    assert [r.id for r in list_runs(db)] == [rid]


async def test_interval_between_named_steps(db: Path) -> None:
    """A changeover: duration between two step starts, and the increase of totalizers in it,
    with a counter reset inside the interval bridged."""
    spec = {"intervals": [
        {"name": "changeover", "start": "flush", "end": "produce_b",
         "counters": {"solvent_ml": ["P1.total", "P2.total"], "waste_ml": ["V.waste"]}},
        {"name": "never", "start": "flush", "end": "no_such_step"},
    ]}
    h = Historian(db, flush_interval=0.05)
    h.configure_tag("P1.total", TagConfig(unit="mL", deadband=0.0))
    h.configure_tag("P2.total", TagConfig(unit="L", deadband=0.0))
    h.configure_tag("V.waste", TagConfig(unit="mL", deadband=0.0))
    rid = await h.start_run("co", t=T0, metadata={"figures": spec})
    flush, produce_b = T0 + 600.0, T0 + 2400.0
    for k in range(61):  # 1 mL/min on P1, 0.5 mL/min on P2 (in L), waste only while flushing
        t = T0 + 60.0 * k
        p1 = float(k) if t < T0 + 1200 else float(k - 20)  # P1 counter reset at 20 min
        h.record_sample("P1.total", p1, t=t)
        h.record_sample("P2.total", 0.0005 * k, t=t)
        h.record_sample("V.waste", 1.5 * (min(max(t, flush), produce_b) - flush) / 60.0, t=t)
    h.record_event(EventKind.STEP_TRANSITION, "flush", {"step": "flush"}, t=flush)
    h.record_event(EventKind.STEP_TRANSITION, "flush", {"message": "done"}, t=flush + 5)
    h.record_event(EventKind.STEP_TRANSITION, "produce_b", {"step": "produce_b"}, t=produce_b)
    await h.end_run(rid, t=T0 + 3600)
    await h.close()
    f = run_figures(db, rid)
    assert f["changeover.duration_s"] == pytest.approx(1800.0)
    # 30 min: P1 30 mL (one 1 mL step lost to the reset sample), P2 15 mL
    assert f["changeover.solvent_ml"] == pytest.approx(29.0 + 15.0)
    assert f["changeover.waste_ml"] == pytest.approx(45.0)
    assert f["never.duration_s"] is None
    assert any("no_such_step never started" in n for n in f["notes"])

"""Continuous-campaign figures: a synthetic run whose every figure is computed by hand, and
the recorded lomustine sample run checked against its own raw records.

Synthetic timeline (s after run start; all samples every 60 s):

    0     run start                      purity 0 %
    300   step feeds_on starts (t0)
    600   amine 1 mL/min + reagent 60 g/h start, heptane 2 mL/min; purity 50 %; line to waste
    1200  steady_state event from another detector ("other") - not the one named
    2100  purity 95 %
    2400  steady_state "purity" true; valve to product; crystals 3 g/h
    2990  simulated fault P1 blockage (ends 3150)
    3000  interlock trips (clears 3200), recipe Holding/Held, feeds stop
    3290  operator answers "resume"
    3300  Unholding/Execute, feeds run again
    4200  off-spec excursion: purity 85 %, valve to waste (until 4500, purity then 96 %)
    5990  divert control ends; 6000 feeds stop, valve to waste, crystals 1 g/h (wash-out)
    6000  flush: 1 mL/min of unmetered solvent to waste until the end
    7200  run end, crystals 0
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from modulecontrol.records import EventKind, Historian, RunResult, TagConfig, report, run_figures
from modulecontrol.records._workup import WorkupSpec, extraction_recovery
from modulecontrol.simulators.lomustine import Workup

T0 = 1_750_000_000.0
END = 7200
ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DB = Path(__file__).parent / "data" / "lomustine_sample_run.db"


def approx(x: float) -> object:
    """Figures are rounded to 6 significant digits."""
    return pytest.approx(x, rel=1e-5)


def feeding(t: float) -> bool:
    return 600 <= t < 3000 or 3300 <= t < 6000


def to_product(t: float) -> bool:
    return 2400 <= t < 4200 or 4500 <= t < 6000


def purity(t: float) -> float:
    if t < 600:
        return 0.0
    if t < 2100:
        return 50.0
    if t < 4200:
        return 95.0
    if t < 4500:
        return 85.0
    return 96.0


def crystals_g_per_h(t: float) -> float:
    return 3.0 if 2400 <= t < 6000 else 1.0 if 6000 <= t < 7200 else 0.0


def amine_ml_min(t: float) -> float:
    return 1.0 if feeding(t) else 0.0


def heptane_ml_min(t: float) -> float:
    return 2.0 if 600 <= t < 7200 else 0.0


def waste_ml_min(t: float) -> float:
    line = 2.0 if feeding(t) else 0.0  # amine 1 mL/min + reagent 1 mL/min (1 g/mL)
    return (0.0 if to_product(t) else line) + (1.0 if t >= 6000 else 0.0)


def product_solution_ml_min(t: float) -> float:
    return 2.0 if feeding(t) and to_product(t) else 0.0


def cumulative(rate_per_min: Callable[[float], float], t: float) -> float:
    """Totaliser value at t: every rate is constant over each whole minute."""
    return sum(rate_per_min(60.0 * m) for m in range(int(t // 60)))


FIGURES: dict[str, Any] = {
    "feeds": [
        {"tag": "P1.Flow", "totaliser": "P1.Volume", "name": "amine", "density": "1 g/mL",
         "concentration": "0.5 mol/L"},
        {"tag": "P2.Flow", "name": "reagent", "density": "1 g/mL"},
        {"totaliser": "P4.Volume", "name": "heptane", "density": "0.7 g/mL"},
    ],
    "limiting_feed": "amine",
    "start_step": "feeds_on",
    "product": {"tag": "CR.CrystalRate", "name": "crystals"},
    "product_basis": "stream",
    "product_molar_mass": "250 g/mol",
    "outlets": [
        {"totaliser": "V.WasteVolume", "name": "waste", "density": "1 g/mL"},
        {"totaliser": "V.ProductVolume", "name": "product solution", "density": "1 g/mL"},
    ],
    "waste": "waste",
    "balance": {"inputs": ["amine", "reagent"], "outputs": ["waste", "product solution"]},
    "purity_tag": "AT.Purity",
    "purity_spec": 90,
    "divert_tag": "V.Valve",
    "steady_state": {"event": "purity", "tag": "AT.Purity", "tolerance": 0.01, "window": 600},
    "workup": {"partition_coefficient": 10, "phase_ratio": 1, "washes": 2},
}


async def make_campaign(db: Path, figures: dict[str, Any]) -> int:
    h = Historian(db, flush_interval=0.05)
    units = {"P1.Flow": "mL/min", "P1.Volume": "mL", "P2.Flow": "g/h", "P4.Volume": "mL",
             "CR.CrystalRate": "g/h", "V.WasteVolume": "mL", "V.ProductVolume": "mL",
             "AT.Purity": "%", "V.Valve": ""}
    for tag, unit in units.items():
        h.configure_tag(tag, TagConfig(unit=unit))
    rid = await h.start_run("campaign", recipe_version="1", recipe_text="x", t=T0,
                            metadata={"figures": figures})
    for k in range(END // 60 + 1):
        s = 60.0 * k
        t = T0 + s
        h.record_sample("P1.Flow", amine_ml_min(s), t=t)
        h.record_sample("P1.Volume", cumulative(amine_ml_min, s), t=t)
        h.record_sample("P2.Flow", 60.0 if feeding(s) else 0.0, t=t)
        h.record_sample("P4.Volume", cumulative(heptane_ml_min, s), t=t)
        h.record_sample("CR.CrystalRate", crystals_g_per_h(s), t=t)
        h.record_sample("V.WasteVolume", cumulative(waste_ml_min, s), t=t)
        h.record_sample("V.ProductVolume", cumulative(product_solution_ml_min, s), t=t)
        h.record_sample("AT.Purity", purity(s), t=t)
        h.record_sample("V.Valve", 1.0 if to_product(s) else 0.0, t=t)
    ev = h.record_event
    ev(EventKind.STATE_CHANGE, "recipe", {"state": "Execute", "previous": "Starting"}, t=T0)
    ev("divert_enabled", "V", {"message": "divert control active from feeds_on"}, t=T0 + 299)
    ev(EventKind.STEP_TRANSITION, "feeds_on", {"step": "feeds_on", "step_kind": "service",
                                               "message": "service step started"}, t=T0 + 300)
    ev("steady_state", "other", {"steady": True}, t=T0 + 1200)
    ev("steady_state", "purity", {"steady": True}, t=T0 + 2400)
    ev("divert", "V", {"to_product": True}, t=T0 + 2400)
    ev("sim_fault", "P1", {"fault": "blockage", "phase": "start"}, t=T0 + 2990)
    ev("interlock_tripped", "overpressure", {"condition": "P1.Pressure > 20 bar",
                                             "action": "hold"}, t=T0 + 3000)
    ev(EventKind.STATE_CHANGE, "recipe", {"state": "Holding", "previous": "Execute",
                                          "reason": "interlock overpressure"}, t=T0 + 3000)
    ev(EventKind.STATE_CHANGE, "recipe", {"state": "Held", "previous": "Holding"}, t=T0 + 3010)
    ev("sim_fault", "P1", {"fault": "blockage", "phase": "end"}, t=T0 + 3150)
    ev("interlock_cleared", "overpressure", {}, t=T0 + 3200)
    h.record_operator_action("bob", "answer", "overpressure", new_value="resume",
                             reason="prompt: resume the recipe?", t=T0 + 3290)
    ev(EventKind.STATE_CHANGE, "recipe", {"state": "Unholding", "previous": "Held"},
       t=T0 + 3300)
    ev(EventKind.STATE_CHANGE, "recipe", {"state": "Execute", "previous": "Unholding"},
       t=T0 + 3310)
    ev("divert", "V", {"to_product": False}, t=T0 + 4200)
    ev("divert", "V", {"to_product": True}, t=T0 + 4500)
    ev("steady_state", "purity", {"steady": False}, t=T0 + 4200)
    ev("divert_disabled", "V", {}, t=T0 + 5990)
    ev("divert", "V", {"to_product": False}, t=T0 + 6000)
    await h.end_run(rid, RunResult.COMPLETED, t=T0 + END)
    await h.close()
    return rid


# hand-computed values of the synthetic campaign ------------------------------------------
PRODUCTION_S = 1800 + 1500                      # to product: 2400-4200, 4500-6000
PRODUCT_G = 3.0 * PRODUCTION_S / 3600           # 3 g/h while to product
PRODUCT_TOTAL_G = 3.0 * 1.0 + 1.0 * 1200 / 3600  # 2400-6000 at 3 g/h + wash-out 1 g/h
AMINE_WINDOW_MOL = 50 * 0.5e-3                  # fed while to product: 10+15+25 min x 1 mL/min
AMINE_TOTAL_MOL = 85 * 0.5e-3                   # fed 40 + 45 min
RECOVERY = (10 / 11) ** 2


async def test_campaign_figures_by_hand(db: Path) -> None:
    rid = await make_campaign(db, FIGURES)
    f = run_figures(db, rid)
    assert f["notes"] == []
    # windows
    assert f["production_time_s"] == approx(PRODUCTION_S)
    assert (f["production_start_at_s"], f["production_end_at_s"]) == (2400, 6000)
    # start-up: from the feeds_on step to the "purity" detector's event (not "other")
    assert f["feed_start_at_s"] == approx(300)
    assert f["time_to_steady_state_s"] == approx(2100)
    assert f["steady_state_at_s"] == approx(2400)
    assert f["steady_state_source"] == "event purity"
    # product, throughput, yield: production window and whole run
    assert f["product_g"] == approx(PRODUCT_G)
    assert f["product_total_g"] == approx(PRODUCT_TOTAL_G)
    assert f["throughput_g_per_h"] == approx(3.0)
    assert f["throughput_overall_g_per_h"] == approx(PRODUCT_TOTAL_G / 2.0)
    assert f["yield_pct"] == approx(100 * PRODUCT_G / 250 / AMINE_WINDOW_MOL)
    assert f["yield_pct"] == approx(44.0)
    assert f["overall_yield_pct"] == approx(100 * PRODUCT_TOTAL_G / 250 / AMINE_TOTAL_MOL)
    # work-up model
    assert f["workup_recovery_pct"] == approx(100 * RECOVERY)
    assert f["isolated_product_g"] == approx(PRODUCT_G * RECOVERY)
    assert f["isolated_product_total_g"] == approx(PRODUCT_TOTAL_G * RECOVERY)
    assert f["isolated_throughput_g_per_h"] == approx(3.0 * RECOVERY)
    assert f["isolated_yield_pct"] == approx(44.0 * RECOVERY)
    assert f["overall_isolated_yield_pct"] == approx(
        100 * PRODUCT_TOTAL_G / 250 / AMINE_TOTAL_MOL * RECOVERY)
    # purity over the production window (95 % for 1800 s, 96 % for 1500 s)
    assert f["purity_mean_pct"] == approx((95 * 1800 + 96 * 1500) / 3300)
    assert f["purity_min_pct"] == approx(95.0)
    assert f["purity_below_spec_s"] == approx(1500 + 300)  # 600-2100 and the excursion
    # off-spec: to waste while feeding = start-up 600-2400 + excursion 4200-4500; the hold
    # (no feed) and the flush (unmetered solvent) do not count
    assert f["off_spec_time_s"] == approx(1800 + 300)
    assert f["off_spec_volume_ml"] == approx(2.0 * 35)
    assert f["off_spec_mass_g"] == approx(70.0)
    assert f["off_spec_source"] == "outlet waste"
    # balance: amine 85 g + reagent 85 g in; waste 70 + 20 (flush) + product solution 100 out
    assert f["mass_in_g"] == approx(170.0)
    assert f["mass_out_g"] == approx(190.0)
    assert f["material_balance_pct"] == approx(100 * 190 / 170)
    assert f["balance_boundary"] == {"in": ["amine", "reagent"],
                                     "out": ["waste", "product solution"]}
    assert f["streams"]["heptane"] == {"mass_g": approx(154.0), "volume_ml": approx(220.0),
                                       "mol": None}
    assert f["streams"]["reagent"]["volume_ml"] == approx(85.0)
    # deviations and interventions
    assert (f["interlock_trips"], f["holds"], f["sim_faults"]) == (1, 1, 1)
    assert f["hold_time_s"] == approx(300)
    assert f["deviations"] == 5


async def test_deviations_listed_in_json_and_html(db: Path) -> None:
    rid = await make_campaign(db, FIGURES)
    doc = json.loads(report(db, rid, "json"))
    assert doc["figures"] == run_figures(db, rid)
    got = [(d["kind"], d["source"], d["at_s"], d["duration_s"]) for d in doc["deviations"]]
    assert got == [
        ("sim_fault", "P1", 2990, 160),
        ("interlock", "overpressure", 3000, 200),
        ("hold", "recipe", 3000, 300),
        ("operator_answer", "overpressure", 3290, None),
        ("off_spec", "V", 4200, 300),
    ]
    hold = doc["deviations"][2]
    assert "interlock overpressure" in hold["details"] and "Unholding" in hold["details"]
    assert "resume" in doc["deviations"][3]["details"]
    page = report(db, rid, "html")
    for text in ("Deviations and interventions", "interlock", "sim_fault", "operator_answer",
                 "blockage", "Streams, whole run", "product solution",
                 "throughput, production window", "isolated yield, whole run"):
        assert text in page
    # figures in human units: durations as h:mm:ss, never raw seconds
    assert "<td>0:05:00</td>" in page and "<td>300.0</td>" not in page


async def test_feed_start_and_steady_state_fallbacks(db: Path) -> None:
    figures = {**FIGURES, "start_step": None,
               "steady_state": {"tag": "AT.Purity", "tolerance": 0.01, "target": 96.0}}
    rid = await make_campaign(db, figures)
    f = run_figures(db, rid)
    # t0 = first amine flow above zero; any detector's first "steady" event counts
    assert f["feed_start_at_s"] == approx(600)
    assert f["time_to_steady_state_s"] == approx(600)
    assert f["steady_state_source"] == "event other"


async def test_signal_detector_only_without_events(db: Path) -> None:
    figures = {**FIGURES, "steady_state": {"event": "nope", "tag": "AT.Purity",
                                           "tolerance": 0.001, "target": 96.0}}
    rid = await make_campaign(db, figures)
    f = run_figures(db, rid)
    assert f["steady_state_source"] == "signal AT.Purity"
    assert f["time_to_steady_state_s"] == approx(4500 - 300)  # 96 % from 4500, t0 = step


async def test_off_spec_from_diverted_feeds_and_default_balance(db: Path) -> None:
    figures = {k: v for k, v in FIGURES.items() if k not in ("waste", "balance")}
    figures["diverted_feeds"] = ["amine", "reagent"]
    rid = await make_campaign(db, figures)
    f = run_figures(db, rid)
    assert f["off_spec_volume_ml"] == approx(70.0)  # the same 35 min x 2 mL/min
    assert f["off_spec_source"] == "feeds amine, reagent"
    # default boundary: all feeds in (incl. heptane), product + all outlets out
    assert f["mass_in_g"] == approx(170.0 + 154.0)
    assert f["mass_out_g"] == approx(PRODUCT_TOTAL_G + 190.0)


@pytest.mark.parametrize(("tolerance", "flagged"), [(None, False), (15.0, False),
                                                    (5.0, True)])
async def test_a_balance_outside_its_tolerance_is_a_deviation(
        db: Path, tolerance: float | None, flagged: bool) -> None:
    """The campaign's balance is 190 g out for 170 g in (111.8 %): beyond a declared 5 %,
    a deviation of the run, in the figures' count, the JSON and the HTML report."""
    balance = {**FIGURES["balance"], "tolerance": tolerance}
    rid = await make_campaign(db, {**FIGURES, "balance": balance})
    f = run_figures(db, rid)
    doc = json.loads(report(db, rid, "json"))
    devs = [d for d in doc["deviations"] if d["kind"] == "material_balance"]
    assert f["deviations"] == len(doc["deviations"])
    if not flagged:
        assert not devs
        return
    (dev,) = devs
    assert dev["details"].startswith("material balance 111.8 % (in 170 g, out 190 g), "
                                     "outside 100 ± 5 %")
    assert dev["at_s"] == approx(f["duration_s"])
    assert "material balance 111.8 %" in report(db, rid, "html")


async def test_a_balance_that_cannot_be_computed_is_a_deviation_when_declared(
        db: Path) -> None:
    """A tolerance is a promise to check: a balance without the masses to compute it (a
    stream without a density) is flagged, not passed."""
    figures = json.loads(json.dumps(FIGURES))
    figures["balance"]["tolerance"] = 2.0
    for st in figures["outlets"]:
        st.pop("density", None)
    rid = await make_campaign(db, figures)
    doc = json.loads(report(db, rid, "json"))
    (dev,) = [d for d in doc["deviations"] if d["kind"] == "material_balance"]
    assert "cannot be computed: material balance needs every stream in mass" in dev["details"]


async def test_low_divert_state_and_no_divert(db: Path) -> None:
    rid = await make_campaign(db, {**FIGURES, "divert_product_state": "low"})
    f = run_figures(db, rid)
    assert f["production_time_s"] == approx(END - PRODUCTION_S)
    figures = {k: v for k, v in FIGURES.items() if k not in ("divert_tag", "waste")}
    rid2 = await make_campaign(db.with_name("b.db"), figures)
    f2 = run_figures(db.with_name("b.db"), rid2)
    assert f2["product_g"] == approx(PRODUCT_TOTAL_G)  # whole run is the window
    assert "off_spec_time_s" not in f2
    assert any("no divert_tag" in n for n in f2["notes"])


def test_spec_names_are_checked() -> None:
    from modulecontrol.records import FigureSpec

    with pytest.raises(ValueError, match="waste 'drain' is not one of the outlets"):
        FigureSpec.model_validate({**FIGURES, "waste": "drain"})
    with pytest.raises(ValueError, match="balance: 'steam'"):
        FigureSpec.model_validate({**FIGURES, "balance": {"inputs": ["steam"],
                                                          "outputs": ["waste"]}})
    with pytest.raises(ValueError, match="needs a flow 'tag', a 'totaliser'"):
        FigureSpec.model_validate({"feeds": [{"name": "x"}]})
    with pytest.raises(ValueError, match="washes"):
        FigureSpec.model_validate({**FIGURES, "workup": {"partition_coefficient": 1,
                                                         "washes": -1}})


@pytest.mark.parametrize(("k", "r", "n"), [(10, 1, 2), (3.5, 0.5, 4), (100, 2, 0)])
def test_one_workup_formula(k: float, r: float, n: int) -> None:
    expected = (k * r / (1 + k * r)) ** n
    assert extraction_recovery(k, r, n) == pytest.approx(expected)
    assert WorkupSpec(partition_coefficient=k, phase_ratio=r, washes=n).recovery == \
        pytest.approx(expected)
    assert Workup(partition_coefficient=k, phase_ratio=r, washes=n).recovery == \
        pytest.approx(expected)


# the recorded lomustine run ----------------------------------------------------------------

def _campaign_report_section() -> dict[str, Any]:
    doc = YAML(typ="safe").load((ROOT / "recipes" / "lomustine" / "campaign.yaml").read_text())
    return dict(doc["report"])


def _raw(conn: sqlite3.Connection, tag: str) -> list[tuple[float, float]]:
    return [(t, v) for t, v in conn.execute(
        "SELECT s.t, s.value FROM samples s JOIN tags g ON g.id = s.tag_id WHERE g.name = ?"
        " ORDER BY s.t", (tag,))]


def test_sample_run_with_the_campaign_report_section(tmp_path: Path) -> None:
    db = tmp_path / "sample.db"
    shutil.copy(SAMPLE_DB, db)
    conn = sqlite3.connect(db)
    md = json.loads(conn.execute("SELECT metadata FROM runs WHERE id = 1").fetchone()[0])
    md["figures"] = _campaign_report_section()  # the recipe's current report: section
    conn.execute("UPDATE runs SET metadata = ? WHERE id = 1", (json.dumps(md),))
    conn.commit()
    (t_start,) = conn.execute("SELECT t_start FROM runs WHERE id = 1").fetchone()
    events = [(t, k, s, json.loads(p)) for t, k, s, p in conn.execute(
        "SELECT t, kind, source, payload FROM events WHERE run_id = 1 ORDER BY t, id")]
    valve = _raw(conn, "V1.Valve")
    last = {tag: _raw(conn, tag)[-1][1] for tag in (
        "P1.DeliveredVolume", "P2.DeliveredVolume", "P3.Dispensed", "V1.WasteVolume",
        "V1.ProductVolume")}
    conn.close()

    f = run_figures(db, 1)
    assert f["notes"] == []
    feeds_on = next(t for t, k, s, p in events if k == "step_transition"
                    and p.get("step") == "feeds_on")
    steady = next(t for t, k, s, p in events if k == "steady_state" and p["steady"] is True)
    assert f["time_to_steady_state_s"] == approx(steady - feeds_on)
    assert 35 * 60 < f["time_to_steady_state_s"] < 45 * 60  # "~40 min start-up"
    opened = next(t for t, v in valve if v > 0.5)
    closed = next(t for t, v in valve if t > opened and v < 0.5)
    assert f["production_time_s"] == approx(closed - opened)
    assert 29 * 60 < f["production_time_s"] < 31 * 60
    # everything the waste totaliser counted went there while the amine pump ran
    assert f["off_spec_volume_ml"] == approx(last["V1.WasteVolume"])
    # the reaction line is liquid-full: what the pumps delivered left through V1
    fed = last["P1.DeliveredVolume"] + last["P2.DeliveredVolume"] + last["P3.Dispensed"]
    out = last["V1.WasteVolume"] + last["V1.ProductVolume"]
    assert f["material_balance_pct"] == approx(100 * out / fed)
    assert 99.0 < f["material_balance_pct"] < 101.0
    # production-window figures are rates over the window, not diluted by start-up and flush
    assert f["throughput_g_per_h"] > 1.5 * f["throughput_overall_g_per_h"]
    assert f["isolated_throughput_g_per_h"] == approx(f["throughput_g_per_h"] * RECOVERY)
    assert f["purity_mean_pct"] > 90.0  # on-spec while collected
    assert f["deviations"] == 0
    assert f["feed_start_at_s"] == approx(feeds_on - t_start)

"""Each product of a multi-product campaign is its own lot (issue #16): a synthetic
two-product run whose lot figures are computed by hand, the carry-over at the switch, the
summary and HTML tables, and the located errors of a lot that names no step.

Synthetic timeline (s after run start, samples every 60 s):

    600    step a_on: product A feeds (amine 1 mL/min at 1 mol/L); valve to waste
    1200   valve to product, purity 95 %; crystals of A 3.6 g/h
    3600   step switch: solvent, valve to waste, purity 0 %, crystals 0
    4800   step b_on: product B feeds (amine at 0.5 mol/L on the same pump); to waste
    5400   valve to product, purity 92 %; crystals of B 1.8 g/h
    7800   step flush: valve to waste; 8400 run end
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modulecontrol import _runcli
from modulecontrol.orchestrator import RunResult as OrchResult
from modulecontrol.records import (
    EventKind,
    FigureSpec,
    Historian,
    RunResult,
    TagConfig,
    report,
    run_figures,
)
from modulecontrol.session import RunOutcome

T0 = 1_760_000_000.0
END = 8400.0
STEPS = {"a_on": 600.0, "switch": 3600.0, "b_on": 4800.0, "flush": 7800.0}

SPEC: dict[str, Any] = {
    "feeds": [{"tag": "P1.Flow", "name": "amine", "concentration": "1 mol/L"}],
    "limiting_feed": "amine",
    "product": {"tag": "CR1.CrystalRate", "name": "crystals"},
    "product_basis": "stream",
    "product_molar_mass": "100 g/mol",
    "outlets": [{"totaliser": "V1.WasteVolume", "name": "waste"},
                {"totaliser": "V1.ProductVolume", "name": "product solution"}],
    "waste": "waste",
    "on_spec": "product solution",
    "purity_tag": "PAT1.Purity",
    "purity_spec": 90,
    "divert_tag": "V1.Valve",
    "lots": [
        {"name": "A", "start": "a_on", "end": "switch"},
        {"name": "B", "start": "b_on", "end": "flush", "product_molar_mass": "200 g/mol",
         "limiting_concentration": "0.5 mol/L", "purity_spec": 93},
    ],
    "intervals": [{"name": "changeover", "start": "switch", "end": "b_on",
                   "counters": {"waste_ml": ["V1.WasteVolume"]},
                   "values": {"carryover_mol_per_l": {"tag": "PAT1.Product", "at": "b_on"}}}],
}


def _to_product(t: float) -> bool:
    return 1200 <= t < 3600 or 5400 <= t < 7800


def _values(t: float, waste: float, prod: float) -> dict[str, float]:
    feeding = 600 <= t < 7800
    return {
        "P1.Flow": 1.0 if feeding else 0.0,
        "V1.Valve": float(_to_product(t)),
        "PAT1.Purity": 95.0 if 1200 <= t < 3600 else 92.0 if 5400 <= t < 7800 else 0.0,
        # lomustine-like product A at the analyzer, washing out after the switch
        "PAT1.Product": 0.02 if t < 3600 else 0.02 * 0.5 ** ((t - 3600) / 300),
        "CR1.CrystalRate": 3.6 if 1200 <= t < 3600 else 1.8 if 5400 <= t < 7800 else 0.0,
        "V1.WasteVolume": waste, "V1.ProductVolume": prod,
    }


UNITS = {"P1.Flow": "mL/min", "V1.Valve": "", "PAT1.Purity": "%", "PAT1.Product": "mol/L",
         "CR1.CrystalRate": "g/h", "V1.WasteVolume": "mL", "V1.ProductVolume": "mL"}


async def _make_run(db: Path) -> int:
    h = Historian(db, flush_interval=0.05)
    for tag, unit in UNITS.items():
        h.configure_tag(tag, TagConfig(unit=unit, deadband=0.0))
    rid = await h.start_run("two products", t=T0, metadata={"figures": SPEC})
    waste = prod = 0.0
    for k in range(int(END // 60) + 1):
        t = 60.0 * k
        for tag, v in _values(t, waste, prod).items():
            h.record_sample(tag, v, t=T0 + t)
        # the 1 mL that flows in the next minute goes to product or to waste
        if 600 <= t < 7800:
            if _to_product(t):
                prod += 1.0
            else:
                waste += 1.0
    for step, t in STEPS.items():
        h.record_event(EventKind.STEP_TRANSITION, step, {"step": step}, t=T0 + t)
    await h.end_run(rid, RunResult.COMPLETED, t=T0 + END)
    await h.close()
    return rid


def _lots(f: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lot["name"]: lot for lot in f["lots"]}


async def test_each_product_is_its_own_lot(tmp_path: Path) -> None:
    db = tmp_path / "lots.db"
    f = run_figures(db, await _make_run(db))
    a, b = _lots(f)["A"], _lots(f)["B"]
    assert (a["start_at_s"], a["end_at_s"], a["duration_s"]) == (600, 3600, 3000)
    assert (b["start_at_s"], b["end_at_s"], b["duration_s"]) == (4800, 7800, 3000)
    assert a["production_time_s"] == pytest.approx(2400) and \
        b["production_time_s"] == pytest.approx(2400)
    # A: 3.6 g/h for 40 min = 2.4 g; B: 1.8 g/h for 40 min = 1.2 g
    assert a["product_g"] == pytest.approx(2.4) and b["product_g"] == pytest.approx(1.2)
    assert a["throughput_g_per_h"] == pytest.approx(3.6)
    assert b["throughput_g_per_h"] == pytest.approx(1.8)
    # A: 2.4 g / 100 g/mol = 24 mmol of 40 mL x 1 mol/L = 40 mmol -> 60 %
    # B: 1.2 g / 200 g/mol = 6 mmol of 40 mL x 0.5 mol/L (its own reagent) = 20 mmol -> 30 %
    assert a["yield_pct"] == pytest.approx(60.0) and b["yield_pct"] == pytest.approx(30.0)
    assert (a["purity_mean_pct"], a["purity_min_pct"]) == (pytest.approx(95), pytest.approx(95))
    assert b["purity_mean_pct"] == pytest.approx(92)
    # below spec while feeding: A 10 min of start-up (spec 90); B its 10 min start-up and
    # all 40 min of production (its own spec, 93 %)
    assert a["purity_below_spec_s"] == pytest.approx(600)
    assert b["purity_below_spec_s"] == pytest.approx(3000)
    # 1 mL/min: 40 mL to product in each lot, 10 mL of start-up to waste
    assert a["on_spec_volume_ml"] == pytest.approx(40) and a["diverted_volume_ml"] == \
        pytest.approx(10)
    assert b["on_spec_volume_ml"] == pytest.approx(40) and b["diverted_volume_ml"] == \
        pytest.approx(10)
    # the changeover between them: 20 min, the 20 mL flushed to waste, and the product A
    # left at the analyzer when B starts (four half-lives of 5 min: 1/16 of 0.02 mol/L)
    assert f["changeover.duration_s"] == pytest.approx(1200)
    assert f["changeover.waste_ml"] == pytest.approx(20)
    assert f["changeover.carryover_mol_per_l"] == pytest.approx(0.02 / 16)


async def test_lots_in_the_summary_and_the_report(tmp_path: Path) -> None:
    db = tmp_path / "lots.db"
    rid = await _make_run(db)
    f = run_figures(db, rid)
    with _runcli.console.capture() as cap:
        _runcli._summary(RunOutcome(result=OrchResult.COMPLETED, exit_code=0, run_id=rid,
                                    figures=f, sim_seconds=END))
    text = " ".join(cap.get().split())
    assert "lots" in text and "│ A │ B │" in text.replace("┃", "│")
    assert "throughput │ 3.600 g/h │ 1.800 g/h" in text
    assert "yield │ 60.00 % │ 30.00 %" in text
    assert "on-spec volume (to product) │ 40.00 mL │ 40.00 mL" in text
    assert "changeover.carryover_mol_per_l │ 1.250 mmol/L" in text
    html = report(db, rid, "html")
    assert "<h3>Lots (one per product)</h3>" in html
    assert "<td>diverted volume (to waste)</td><td>10.00 mL</td><td>10.00 mL</td>" in html


def test_a_lot_is_declared_with_its_steps() -> None:
    with pytest.raises(ValueError, match="lots need divert_tag"):
        FigureSpec.model_validate({"lots": [{"name": "A", "start": "a_on"}]})
    with pytest.raises(ValueError, match="on_spec 'nowhere' is not one of the outlets"):
        FigureSpec.model_validate({**SPEC, "on_spec": "nowhere"})
    with pytest.raises(ValueError, match="A used twice"):
        FigureSpec.model_validate({**SPEC, "intervals": [{"name": "A", "start": "x",
                                                          "end": "y"}]})
    with pytest.raises(ValueError, match="limiting_concentration must be a quantity"):
        FigureSpec.model_validate({**SPEC, "lots": [{"name": "A", "start": "a",
                                                     "limiting_concentration": "0.5"}]})

"""The twin at work in a run: the lomustine campaign with a ``twin`` block, the plant served
over its real protocols on 127.0.0.1. The prediction is recorded beside the analyzer, agrees
with it at steady state, and a catalyst fault the twin does not know raises the mismatch
alarm within the declared time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modulecontrol.errors import ConfigError
from modulecontrol.events import EventKind
from modulecontrol.orchestrator import Event, RunResult
from modulecontrol.recipe import load_recipe
from modulecontrol.records import run_samples
from modulecontrol.session import RunOptions, Session
from modulecontrol.yamlio import dump_yaml, load_yaml
from tests._poll import until

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN = ROOT / "recipes" / "lomustine" / "campaign.yaml"
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"
HOLD = 300.0
TWIN = {"analyzer": "PAT1", "predict": ["Purity", "Product"], "dt": "10 s",
        "mismatch": [{"signal": "Purity", "band": "2 %", "hold": "5 min"}],
        "enabled_from": "production", "disabled_from": "stop_reagents"}


def _recipe(tmp_path: Path, twin: dict[str, Any]) -> Path:
    doc = load_yaml(CAMPAIGN).data
    doc["plant"] = str(PLANT)
    doc["twin"] = twin
    path = tmp_path / "campaign-twin.yaml"
    path.write_text(dump_yaml(doc), encoding="utf-8")
    return path


def test_twin_block_errors_are_located(tmp_path: Path) -> None:
    bad = {**TWIN, "predict": ["Purity", "Colour"],
           "mismatch": [{"signal": "Product", "band": "2 %"},
                        {"signal": "Purity", "band": "-1 %", "name": "purity_low"}],
           "enabled_from": "nowhere"}
    with pytest.raises(ConfigError) as err:
        load_recipe(_recipe(tmp_path, bad))
    text = str(err.value)
    for needed in ("has no number signal 'Colour'", "mismatch on 'Product', which the twin",
                   "band must be positive", "alarm name 'purity_low' is used twice",
                   "no step named 'nowhere'"):
        assert needed in text, text
    assert "campaign-twin.yaml:" in text  # located in the file
    ok = load_recipe(_recipe(tmp_path, TWIN))
    for name in ("twin.PAT1.Purity", "twin.PAT1.Purity.mismatch", "twin.PAT1.Product"):
        assert ok.signals[name].unit == ok.signals[name.removeprefix("twin.")
                                                    .removesuffix(".mismatch")].unit


@pytest.mark.slow
async def test_prediction_matches_the_analyzer_and_a_catalyst_fault_raises_the_mismatch(
        tmp_path: Path) -> None:
    options = RunOptions(simulate=True, speed=500.0, db=tmp_path / "run.db",
                         overrides={"checks": "1", "check_interval": "60 min"},
                         report_dir=tmp_path, auto_answer="ok")
    session = Session.load(_recipe(tmp_path, TWIN), None, options)
    task = asyncio.create_task(session.run())
    seen: list[Event] = []
    try:
        assert await until(lambda: session.orchestrator is not None or task.done(), 60)
        assert not task.done(), task.result().message
        orch = session.orchestrator
        assert orch is not None and session.simulation is not None
        orch.subscribe(seen.append)
        assert orch.supervisor.twin is not None

        def in_production() -> bool:
            return orch.progress.step == "hour" or task.done()

        assert await until(in_production, 120, 0.02)
        # a steady stretch of production before the fault (about 10 simulated minutes)
        t_steady = orch.clock.now()
        e_steady = orch.clock.datetime().timestamp()  # the historian's time line
        await until(lambda: orch.clock.now() - t_steady > 600 or task.done(), 60, 0.02)
        assert not any(e.kind is EventKind.ALARM_RAISED and e.source == "twin_Purity"
                       for e in seen)
        plant: Any = session.simulation
        t_fault = orch.clock.now()
        e_fault = orch.clock.datetime().timestamp()
        plant.faults.inject("R2", "deactivation", activity=0.3)
        assert await until(lambda: any(e.kind is EventKind.ALARM_RAISED
                                       and e.source == "twin_Purity" for e in seen), 90, 0.02)
        outcome = await asyncio.wait_for(task, 180)
    finally:
        if not task.done():
            task.cancel()
    assert outcome.result is RunResult.COMPLETED, outcome.message
    alarm = next(e for e in seen if e.kind is EventKind.ALARM_RAISED
                 and e.source == "twin_Purity")
    assert alarm.data["signal"] == "twin.PAT1.Purity.mismatch"
    # declared: the change reaches the analyzer (R2's 5 min residence and the line after
    # it, the analyzer's dead time) and then lasts the hold; not before the hold
    assert HOLD <= alarm.t - t_fault <= HOLD + 15 * 60
    # recorded: the prediction beside the measurement, within 1 point at steady state
    assert outcome.run_id is not None
    data = run_samples(tmp_path / "run.db", outcome.run_id)
    ts, measured = data.series["PAT1.Purity"]
    pt, predicted = data.series["twin.PAT1.Purity"]
    mt, mismatch = data.series["twin.PAT1.Purity.mismatch"]
    steady = (ts >= e_steady) & (ts < e_fault) & np.isfinite(measured)
    assert steady.sum() >= 5
    assert orch.supervisor.twin is not None
    dead_time = orch.supervisor.twin.predictor.dead_time
    ahead = np.interp(ts[steady] - dead_time, pt, predicted)
    assert np.max(np.abs(measured[steady] - ahead)) < 1.0
    window = (mt >= e_steady) & (mt < e_fault)
    assert np.max(np.abs(mismatch[window])) < 1.0
    assert np.min(mismatch[mt > e_fault + HOLD]) < -2.0  # the fault, as recorded

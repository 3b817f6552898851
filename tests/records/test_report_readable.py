"""The batch report reads as an engineer needs: one unit per axis, limits that do not flatten
the data, on/off signals as lanes, constants in a table, simulated time said, human units."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from modulecontrol.records import (
    EventKind,
    Historian,
    RunResult,
    TagConfig,
    format_elapsed,
    format_figure,
    report,
)
from modulecontrol.records._plots import plot_plan

T0 = 1_700_000_000.0
END = T0 + 2 * 3600

UNITS = {
    "P1.Pressure": "bar", "P1.PressureLimit": "bar", "R1.Pressure": "bar",
    "R1.PressureDrop": "kPa", "BPR1.Setpoint": "bar",
    "PAT1.Purity": "%", "PAT1.Product": "mol/L",
    "CR1.MeanSize": "um", "CR1.CrystalRate": "g/h",
    "P1.Run": "", "V1.Valve": "", "P1.Fault": "", "P3.Diameter": "mm",
}


def _value(tag: str, k: int) -> float:
    """Sample k (one a minute) of each tag."""
    ramp = k / 120
    return {
        "P1.Pressure": 1.0 + 3.0 * ramp, "R1.Pressure": 1.2 + 2.5 * ramp,
        "P1.PressureLimit": 400.0 if k < 10 else 100.0,  # a trip limit, set at start
        "R1.PressureDrop": 0.5 + ramp, "BPR1.Setpoint": 0.0 if k < 5 else 3.0,
        "PAT1.Purity": 50.0 + 49.0 * ramp, "PAT1.Product": 0.01 * ramp,
        "CR1.MeanSize": 50.0 * ramp, "CR1.CrystalRate": 0.1 * ramp,
        "P1.Run": float(5 <= k < 100), "V1.Valve": float(k >= 30),
        "P1.Fault": 0.0, "P3.Diameter": 34.9,
    }[tag]


async def _run(db: Path, metadata: dict[str, Any]) -> int:
    h = Historian(db, flush_interval=0.05)
    for tag, unit in UNITS.items():
        h.configure_tag(tag, TagConfig(unit=unit, deadband=0.0))
    rid = await h.start_run("readable", recipe_version="1", recipe_text="x", t=T0,
                            metadata=metadata)
    for k in range(121):
        for tag in UNITS:
            h.record_sample(tag, _value(tag, k), t=T0 + 60 * k)
    for t, st in ((T0, "Starting"), (T0 + 60, "Execute"), (END - 60, "Stopped")):
        h.record_event(EventKind.STATE_CHANGE, "P1.Dosing", {"state": st}, t=t)
    h.raise_alarm("R1.TH", "T high", 750, t=T0 + 3600 + 120)
    await h.end_run(rid, RunResult.COMPLETED, t=END)
    await h.close()
    return rid


GROUPS = {"P1.Run": "on/off signals", "V1.Valve": "on/off signals",
          "P1.Fault": "on/off signals", "PAT1.Purity": "analyzer signals",
          "PAT1.Product": "analyzer signals", "CR1.MeanSize": "crystallizer",
          "CR1.CrystalRate": "crystallizer"}
SIMULATED = {"tag_groups": GROUPS, "speed": 600,
             "clock": {"mode": "scaled", "scale": 600.0,
                       "wall_start_utc": "2026-01-02T03:04:05+00:00"},
             "tag_notes": {"P1.Pressure": "absolute", "R1.Pressure": "absolute",
                           "P1.PressureLimit": "absolute", "BPR1.Setpoint": "differential",
                           "R1.PressureDrop": "differential"}}


class _S:
    """A recorded signal as the plot plan sees it."""

    unit: str
    group: str | None
    t: NDArray[np.float64]
    v: NDArray[np.float64]

    def __init__(self, unit: str, values: list[float]) -> None:
        self.unit, self.group = unit, None
        self.t = np.arange(len(values), dtype=np.float64) * 60.0
        self.v = np.array(values, dtype=np.float64)


def _axes(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Axis by panel title and unit label."""
    return {f"{p['title']}|{a['unit']}": a for p in doc["plots"]["panels"] for a in p["axes"]}


async def test_one_unit_per_axis_and_limits_do_not_flatten_it(db: Path) -> None:
    rid = await _run(db, SIMULATED)
    axes = _axes(json.loads(report(db, rid, "json")))
    assert set(axes) == {
        "pressures|bara", "pressures|bar, differential", "pressures|kPa, differential",
        "analyzer signals|%", "analyzer signals|mol/L",
        "crystallizer|um", "crystallizer|g/h"}
    bar = axes["pressures|bara"]
    assert set(bar["tags"]) == {"P1.Pressure", "P1.PressureLimit", "R1.Pressure"}
    lo, hi = bar["ylim"]
    assert 0.5 < lo <= 1.0 and 4.0 <= hi < 5.0  # the 1-4 bar readings fill the axis
    assert bar["off_axis"] == {"P1.PressureLimit": [100.0, 400.0]}
    assert axes["pressures|bar, differential"]["tags"] == ["BPR1.Setpoint"]


def test_gauge_and_absolute_bar_read_barg_and_bara() -> None:
    """A 3 bar gauge set point and a 4.0 bar absolute reading were both labelled "bar"."""
    series = {"BPR1.Setpoint": _S("bar", [0.0, 3.0]), "BPR1.Pressure": _S("bar", [1.0, 4.0]),
              "R1.PressureDrop": _S("kPa", [0.5, 1.0])}
    notes = {"BPR1.Setpoint": "gauge", "BPR1.Pressure": "absolute",
             "R1.PressureDrop": "differential"}
    plan = plot_plan({"tag_notes": notes}, series, 0.0)
    units = {a.unit: a.tags for p in plan.panels for a in p.axes}
    assert units == {"barg": ["BPR1.Setpoint"], "bara": ["BPR1.Pressure"],
                     "kPa, differential": ["R1.PressureDrop"]}


async def test_alarm_limits_are_lines_that_do_not_rescale_the_axis(db: Path) -> None:
    """A limit inside the data's range is drawn on the axis; one far from it (a trip limit of
    400 bar next to 1-4 bar readings) is named, and neither moves the axis."""
    limits = [{"tag": "P1.Pressure", "name": "p1_high high", "value": 3.5},
              {"tag": "P1.Pressure", "name": "p1_trip high", "value": 400.0},
              {"tag": "PAT1.Purity", "name": "purity_low low", "value": 88.0}]
    rid = await _run(db, {**SIMULATED, "limits": limits})
    axes = _axes(json.loads(report(db, rid, "json")))
    bar = axes["pressures|bara"]
    assert bar["limits"] == [
        {"tag": "P1.Pressure", "name": "p1_high high", "value": 3.5, "on_axis": True},
        {"tag": "P1.Pressure", "name": "p1_trip high", "value": 400.0, "on_axis": False}]
    without = _axes(json.loads(report(db, await _run(db, SIMULATED), "json")))
    assert bar["ylim"] == without["pressures|bara"]["ylim"]  # the axis the data set
    assert axes["analyzer signals|%"]["limits"][0]["on_axis"] is True
    page = report(db, rid, "html")  # drawn: the lines and the off-axis note render
    assert page.count("data:image/png;base64,") == 5


async def test_steady_divert_and_held_windows_are_shaded(db: Path) -> None:
    """The windows the orchestrator decided on (steady state, to product, held) are in the
    plot plan, in seconds after the start, from the run's events."""
    h = Historian(db, flush_interval=0.05)
    h.configure_tag("PAT1.Purity", TagConfig(unit="%", deadband=0.0))
    rid = await h.start_run("windows", recipe_text="x", t=T0, metadata=SIMULATED)
    for k in range(121):
        h.record_sample("PAT1.Purity", 50.0 + 0.4 * k, t=T0 + 60 * k)
    ev: list[tuple[int, EventKind, str, dict[str, Any]]] = [
        (600, EventKind.STEADY_STATE, "purity", {"steady": True}),
        (900, EventKind.DIVERT, "V1", {"to_product": True}),
        (3000, EventKind.STATE_CHANGE, "recipe", {"state": "Holding"}),
        (3010, EventKind.STATE_CHANGE, "recipe", {"state": "Held"}),
        (3600, EventKind.STATE_CHANGE, "recipe", {"state": "Execute"}),
        (4000, EventKind.STEADY_STATE, "purity", {"steady": False}),
        (4100, EventKind.DIVERT, "V1", {"to_product": False}),
        (5000, EventKind.DIVERT, "V1", {"to_product": True})]  # open at the end
    for t, kind, source, payload in ev:
        h.record_event(kind, source, payload, t=T0 + t)
    await h.end_run(rid, RunResult.COMPLETED, t=END)
    await h.close()
    windows = json.loads(report(db, rid, "json"))["plots"]["windows"]
    assert [(w["kind"], w["start_s"], w["end_s"]) for w in windows] == [
        ("steady state", 600, 4000), ("to product", 900, 4100), ("held", 3000, 3600),
        ("to product", 5000, 7200)]
    assert report(db, rid, "html").count("data:image/png;base64,") == 2  # trend, states


async def test_booleans_as_lanes_constants_in_a_table(db: Path) -> None:
    rid = await _run(db, SIMULATED)
    doc = json.loads(report(db, rid, "json"))
    plots = doc["plots"]
    assert plots["lanes"] == ["P1.Run", "V1.Valve"]
    assert {c["tag"]: (c["value"], c["unit"]) for c in plots["constants"]} == {
        "P1.Fault": (0.0, ""), "P3.Diameter": (34.9, "mm")}
    page = report(db, rid, "html")
    assert page.count("data:image/png;base64,") == 5  # 3 panels, lanes, service states
    assert "Constant signals" in page and "<td>P3.Diameter</td><td>34.9</td>" in page


async def test_simulated_clock_says_so_and_times_are_elapsed(db: Path) -> None:
    rid = await _run(db, SIMULATED)
    page = report(db, rid, "html")
    assert "<td>start (UTC)</td>" not in page and "simulated clock (600.0x)" in page
    assert "2026-01-02T03:04:05+00:00" in page  # the wall-clock start
    assert "<td>2:00:00</td>" in page  # simulated duration, h:mm:ss
    assert "<td>1:02:00</td>" in page  # the alarm, since start, not a date
    assert json.loads(report(db, rid, "json"))["plots"]["time_axis"] == \
        "simulated time since start"


async def test_wall_clock_run_keeps_utc(db: Path) -> None:
    rid = await _run(db, {"tag_groups": GROUPS, "speed": 1})
    page = report(db, rid, "html")
    assert "<td>start (UTC)</td>" in page and "simulated clock" not in page
    assert "1:02:00 (2023-11-14T23:15:20.000Z)" in page


@pytest.mark.parametrize(("key", "value", "text"), [
    ("duration_s", 28849.6, "8:00:50"),
    ("changeover.duration_s", 4903.0, "1:21:43"),
    ("throughput_g_per_h", 0.07888, "78.88 mg/h"),
    ("throughput_g_per_h", 12.5, "12.50 g/h"),
    ("throughput_g_per_h", 0.0, "0 g/h"),
    ("product_total_g", 0.06053, "60.53 mg"),
    ("off_spec_volume_ml", 111.7, "111.7 mL"),
    ("yield_pct", 45.5712, "45.57 %"),
    ("deviations", 3, "3"),
    ("steady_state_source", "event purity", "event purity"),
    ("steady_state_reference", 28849.6, "28\u2009850"),
])
def test_figures_in_human_units(key: str, value: Any, text: str) -> None:
    assert format_figure(key, value) == text


def test_elapsed() -> None:
    assert format_elapsed(59.6) == "0:01:00"
    assert format_elapsed(-61, signed=True) == "-0:01:01"
    assert format_elapsed(None) == "-"


def test_a_small_signal_gets_its_own_axis_under_a_large_one_of_its_unit() -> None:
    """Issue #16: the lomustine report drew the 0.375 mL/min amine feed as a flat line under
    the 2.4 mL/min heptane feed, and the 30 mL product totaliser under the 400 mL nitrite
    stock. Signals of one unit more than SPLIT_FACTOR apart in magnitude get axes of their
    own in the same panel; a far outlier is still named off-axis, once."""
    from modulecontrol.records._plots import SPLIT_FACTOR

    series = {"P4.Flow": _S("mL/min", [0.0, 2.4, 2.4]), "P1.Flow": _S("mL/min", [0.0, 0.375]),
              "P3.Rate": _S("mL/min", [0.0, 0.45]),
              "P3.VolumeLeft": _S("mL", [400.0, 375.0]), "V1.ProductVolume": _S("mL", [0, 30.0]),
              "V1.WasteVolume": _S("mL", [0.0, 60.0]), "P4.Delivered": _S("mL", [0.0, 170.0])}
    plan = plot_plan({}, series, 0.0)
    axes = {p.title: [(a.unit, a.tags) for a in p.axes] for p in plan.panels}
    assert axes["flows"] == [("mL/min", ["P4.Flow"]), ("mL/min", ["P1.Flow", "P3.Rate"])]
    assert axes["other (mL)"] == [("mL", ["P3.VolumeLeft", "P4.Delivered"]),
                                  ("mL", ["V1.ProductVolume", "V1.WasteVolume"])]
    for panel in plan.panels:  # on every axis, each signal spans a readable part of it
        for a in panel.axes:
            top = max(abs(a.ylim[0]), abs(a.ylim[1]))
            for t in a.tags:
                assert max(abs(series[t].v)) * SPLIT_FACTOR * 1.1 >= top, (t, a.ylim)
    # a trip limit set as a signal far from the readings stays named, on the first axis
    series = {"P1.Pressure": _S("bar", [1.0, 4.0]), "R1.Pressure": _S("bar", [0.5, 0.8]),
              "P1.PressureLimit": _S("bar", [400.0, 100.0])}
    plan = plot_plan({}, series, 0.0)
    (panel,) = plan.panels
    assert [a.off_axis for a in panel.axes] == [{"P1.PressureLimit": (100.0, 400.0)}, {}]
    assert [a.tags for a in panel.axes] == [["P1.Pressure", "P1.PressureLimit"],
                                            ["R1.Pressure"]]

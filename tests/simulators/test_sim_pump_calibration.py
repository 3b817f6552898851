"""An HPLC pump's flow calibration: the true delivery is ``flow_calibration`` x the commanded
flow, everywhere the flow goes (step, ramp, pulsation, steady state, mass balance), while the
pump itself (its ``Flow`` and ``DeliveredVolume`` assemblies) reports what it commands, as a
real pump controller does. The twin's fit of it is in tests/twin/test_fit_pump_calibration.py.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from modulecontrol.descriptors import load_plant
from modulecontrol.simulators import build_models
from modulecontrol.simulators.models import HplcPump, HplcPumpParams, Species, SpeciesTable
from modulecontrol.twin._model import (
    ParamRef,
    Replay,
    replay,
    steady_outputs,
    upstream,
    with_parameters,
)

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"
ML_MIN = 1e-6 / 60
TABLE = SpeciesTable([Species(name="THF", molar_mass=0.07211, density=889),
                      Species(name="A", molar_mass=0.1, density=1000)])


def _pump(calibration: float, **kw: object) -> HplcPump:
    params = HplcPumpParams.model_validate({"feed": {"THF": 12000.0, "A": 50.0},
                                            "running": True, "flow_calibration": calibration,
                                            **kw})
    return HplcPump("P", TABLE, params)


def test_delivery_is_the_calibration_times_the_commanded_ramp() -> None:
    p = _pump(0.95, flow_setpoint=6 * ML_MIN, ramp_rate=1 * ML_MIN)
    out = p.step(3.0)["out"]
    assert out.flow == pytest.approx(0.95 * 1.5 * ML_MIN)  # mean of the 0 -> 3 mL/min ramp
    assert p.state()["flow"] == pytest.approx(3 * ML_MIN)  # the pump's reading: commanded
    assert p.state()["delivered_flow"] == pytest.approx(out.flow)
    p.step(10.0)
    commanded = (0.5 * 6 * 6 + 6 * 7) * ML_MIN  # ramp 6 s to 6 mL/min, then 7 s plateau
    assert p.counted_volume == pytest.approx(commanded)
    assert p.delivered_volume == pytest.approx(0.95 * commanded)


def test_max_flow_limits_the_commanded_flow_not_the_delivered() -> None:
    p = _pump(1.02, flow_setpoint=12 * ML_MIN, max_flow=10 * ML_MIN)
    out = p.step(1.0)["out"]
    assert p.state()["flow"] == pytest.approx(10 * ML_MIN)
    assert out.flow == pytest.approx(10.2 * ML_MIN)
    assert p.steady_state()["out"].flow == pytest.approx(10.2 * ML_MIN)


@pytest.mark.parametrize("bad", [0.0, -0.5, 95.0, math.inf])
def test_a_calibration_outside_0_to_2_is_refused(bad: float) -> None:
    with pytest.raises(ValidationError, match="flow_calibration"):
        HplcPumpParams(flow_calibration=bad)


@settings(max_examples=60, deadline=None)
@given(calibration=st.floats(0.5, 1.5), setpoint=st.floats(0.01, 10.0),
       leak=st.floats(0.0, 0.5), pulsation=st.floats(0.0, 0.5),
       ramp=st.one_of(st.just(math.inf), st.floats(0.05, 20.0)),
       dts=st.lists(st.floats(0.01, 30.0), min_size=1, max_size=20))
def test_mass_balance_closes_and_the_counters_part_by_the_calibration(
        calibration: float, setpoint: float, leak: float, pulsation: float, ramp: float,
        dts: list[float]) -> None:
    ramped = {} if math.isinf(ramp) else {"ramp_rate": ramp * ML_MIN}  # default: a step
    p = _pump(calibration, flow_setpoint=setpoint * ML_MIN, pulsation=pulsation,
              stroke_volume=1e-8, **ramped)
    if leak > 0:
        p.inject_fault("leak", fraction=leak)
    for dt in dts:
        p.step(dt)
    b = p.balance()
    assert abs(b.residual) <= 1e-12 * max(b.mass_in, 1e-30)
    # what reached the line and what leaked are together the calibrated commanded volume
    total = p.delivered_volume + p.leaked_volume
    assert total == pytest.approx(calibration * p.counted_volume, rel=1e-12, abs=1e-24)
    assert p.delivered_volume == pytest.approx((1 - leak) * total, rel=1e-12, abs=1e-24)


def test_the_pump_reports_its_command_and_total_reset_clears_both_counters() -> None:
    config = load_plant(PLANT)
    ref = ParamRef.resolve(config, "P1.flow_calibration")
    fs, views = build_models(with_parameters(config, {ref: 0.95}))
    p1 = views["P1"]
    p1.write("FlowSetpoint", None, 0.5)
    p1.write("Run", None, True)
    for _ in range(60):
        fs.step(1.0)
    assert p1.read("Flow") == pytest.approx(0.5)  # mL/min, as set
    counted = p1.read("DeliveredVolume")  # mL in a minute, as counted (less the ramp's 25 ms)
    assert counted == pytest.approx(0.5, rel=1e-3)
    assert fs.stream("P1", "out").flow == pytest.approx(0.95 * 0.5 * ML_MIN)
    assert p1.read_var("delivered_volume") == pytest.approx(0.95 * counted * 1e-6, rel=1e-12)
    p1.write("TotalReset", None, True)
    assert p1.read("DeliveredVolume") == 0.0 and p1.read_var("delivered_volume") == 0.0


def test_steady_state_is_where_a_long_run_of_the_calibrated_line_ends() -> None:
    """The fit compares recorded steady samples with the models' steady solve: with P1
    delivering 5 % less, the solve and a long dynamic run of the line must still agree."""
    config = upstream(load_plant(PLANT), ["PAT1"])
    ref = ParamRef.resolve(config, "P1.flow_calibration")
    outputs = ["PAT1.Product", "PAT1.Intermediate", "PAT1.Impurity"]
    levels = {}
    for cal in (1.0, 0.95):
        cfg = with_parameters(config, {ref: cal})
        end = replay(cfg, Replay({}, 4 * 3600.0), outputs, 10.0,
                     dict.fromkeys(outputs, np.array([4 * 3600.0])))
        levels[cal] = steady_outputs(cfg, {}, outputs)
        for s in outputs:
            assert float(end[s][0]) == pytest.approx(levels[cal][s], rel=1e-9), (cal, s)
    # less amine fed: less product
    assert levels[0.95]["PAT1.Product"] < levels[1.0]["PAT1.Product"]


def test_the_pages_example_prints_what_its_comments_say() -> None:
    """docs/simulators.md, HPLC pump: the example runs as written, and each expression line
    (``expression  # value ...``) evaluates to the value its comment gives."""
    page = (ROOT / "docs" / "simulators.md").read_text(encoding="utf-8")
    block = page.split("<!-- pump-calibration-example -->", 1)[1]
    code = block.split("```python\n", 1)[1].split("```", 1)[0]
    lines = code.splitlines()
    namespace: dict[str, object] = {}
    checked = 0
    for stmt in ast.parse(code).body:
        source = ast.get_source_segment(code, stmt)
        assert source is not None
        if isinstance(stmt, ast.Expr):
            value = float(lines[stmt.lineno - 1].partition("  # ")[2].split()[0])
            assert eval(source, namespace) == pytest.approx(value, rel=1e-3), source  # noqa: S307
            checked += 1
        else:
            exec(source, namespace)  # noqa: S102 - the page's own example
    assert checked == 4

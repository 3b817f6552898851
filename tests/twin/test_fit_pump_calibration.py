"""Pump calibration as a fitted parameter (issue #19): the commands of docs/digital-twin.md,
"Pump calibration", run as written against the real simulator. P1 delivers 95 % of its set
flow; the fit finds it from the analyzer's signals alone (the pump itself reports its set
point), alone and together with a rate constant from one operating point."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.descriptors import calibrate, load_plant
from modulecontrol.twin import ParamRef
from tests.twin.conftest import PLANT, doc_commands, estimates

CALIBRATION = "P1.flow_calibration"
K_REF = "R2.reactions.nitrosation_equilibrium.k_ref"


def test_a_calibration_the_plant_file_does_not_write_can_be_named() -> None:
    assert "flow_calibration" not in PLANT.read_text(encoding="utf-8")
    ref = ParamRef.resolve(load_plant(PLANT), CALIBRATION)
    assert (ref.tag, ref.path, ref.value, ref.unit) == ("P1", ("flow_calibration",), 1.0, "")


def test_fit_recovers_the_pump_calibration_alone_and_beside_a_rate_constant(
        workdir: Path) -> None:
    commands = doc_commands("twin-pump-calibration")
    assert [c[:2] for c in commands] == [["twin", "record"], ["twin", "fit"]] * 2
    results = []
    for args in commands:
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        results.append(res)
    truths = [{CALIBRATION: 0.95}, {CALIBRATION: 0.95, K_REF: 2.2}]
    for i, truth in enumerate(truths):
        record, fitted = commands[2 * i], results[2 * i + 1]
        assert {record[k + 1] for k, a in enumerate(record) if a == "--truth"} == {
            f"{name}={value:g}" for name, value in truth.items()}
        found = estimates(fitted.stdout)
        assert set(found) == set(truth)
        for name, true in truth.items():
            value, low, high = found[name]
            assert abs(value / true - 1) < 0.05, (name, value)
            assert low <= true <= high, (name, low, high)
        assert "warning" not in fitted.stderr
    # the first fit's overlay carries the pump's calibration, and the plant takes it
    calibrated = calibrate(load_plant(workdir / "plant.yaml"), workdir / "P1-calibrated.yaml")
    sim = calibrated.type_of("P1").simulator
    assert sim is not None
    assert sim.parameters["flow_calibration"] == pytest.approx(
        estimates(results[1].stdout)[CALIBRATION][0], rel=1e-5)
    # one operating point separates them on the analyzer's three signals: the calibration
    # changes the amine's share of the feed (the impurity follows the free amine), the rate
    # constant only how far the nitrosation goes
    corr = re.search(r"^correlation: \S+ ([-+][0-9.]+)$", results[3].stdout, re.M)
    assert corr is not None and abs(float(corr[1])) < 0.9
    # on the product alone the same run holds one steady number for two parameters: the
    # fit must say so, with no interval that pretends otherwise
    product_only = CliRunner().invoke(app, [*commands[3], "--measure", "PAT1.Product"])
    assert product_only.exit_code == 0, product_only.output
    assert (f"not identifiable separately: {CALIBRATION} and {K_REF}"
            in product_only.stderr)
    assert all(e[1:] == (-math.inf, math.inf)
               for e in estimates(product_only.stdout).values())

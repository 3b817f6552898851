"""The fit over the transient (``twin fit --transient``): a parameter that only shapes the
transient (a thermostat's time constant), recovered from a start-up against the dynamic
replay, where the steady fit can only say that the data do not depend on it; the replay's
smoothness in the parameters that such a fit needs; and a whole-number parameter (a coil's
number of tanks) fitted by its profile."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.descriptors import load_plant
from modulecontrol.errors import ConfigError
from modulecontrol.twin import ParamRef
from modulecontrol.twin._model import Replay, replay, upstream, with_parameters
from tests.twin.conftest import PLANT, doc_commands, estimates


def test_the_pages_transient_fit_recovers_the_thermostat_tau_the_steady_fit_cannot(
        workdir: Path) -> None:
    record, transient, steady = doc_commands("twin-transient")
    for args in (record, transient, steady):
        assert args[:2] in (["twin", "record"], ["twin", "fit"])
    runner = CliRunner()
    res = runner.invoke(app, record)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, transient)
    assert res.exit_code == 0, res.output
    value, low, high = estimates(res.stdout)["R1.thermostat.tau"]
    assert abs(value / 90.0 - 1.0) < 0.05
    assert low <= 90.0 <= high
    assert high / low < 1.1  # an interval that says something
    assert "against the dynamic replay" in res.stdout
    assert "not identifiable" not in res.output
    # the overlay sets the thermostat's key, and a plant that includes it simulates it
    overlay = workdir / "R1-jacket.yaml"
    assert "thermostat" in overlay.read_text(encoding="utf-8")
    plant = workdir / "plant.yaml"
    plant.write_text(plant.read_text(encoding="utf-8")
                     + "calibrations: [R1-jacket.yaml]\n", encoding="utf-8")
    jacket = load_plant(plant).type_of("R1").simulator
    assert jacket is not None and jacket.thermostat is not None
    assert float(str(jacket.thermostat["tau"]).split()[0]) == pytest.approx(value, rel=1e-6)
    # the steady fit: the steady samples do not depend on tau, and it says so
    res = runner.invoke(app, steady)
    assert res.exit_code == 0, res.output
    assert "not identifiable: the data do not depend on R1.thermostat.tau" in res.stderr
    assert "needs --transient" in res.stderr
    assert "[-inf, inf]" in res.stdout


def test_a_plant_sets_one_instances_thermostat_and_a_type_without_a_jacket_refuses_it(
        workdir: Path) -> None:
    text = PLANT.read_text(encoding="utf-8")
    ok = text.replace("        max_substep: 2 s           # fast carbamylation",
                      "        thermostat: {tau: 75 s}\n"
                      "        max_substep: 2 s           # fast carbamylation", 1)
    assert ok != text
    (workdir / "plant.yaml").write_text(ok, encoding="utf-8")
    cfg = load_plant(workdir / "plant.yaml")
    r1, r2 = cfg.type_of("R1").simulator, cfg.type_of("R2").simulator
    assert r1 is not None and r2 is not None
    assert r1.thermostat is not None and r1.thermostat["tau"] == "75 s"
    assert r2.thermostat is not None and r2.thermostat["tau"] == "60 s"  # the type's
    assert "thermostat" not in r1.parameters
    assert ParamRef.resolve(cfg, "R1.thermostat.tau").value == 75.0
    bad = text.replace("        feed_temperature: 20 degC\n  - tag: P2",
                       "        feed_temperature: 20 degC\n        thermostat: {tau: 75 s}\n"
                       "  - tag: P2", 1)
    assert bad != text
    (workdir / "plant.yaml").write_text(bad, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"overrides of P1: 'thermostat': the simulator of "
                                          r"this type has no jacket thermostat"):
        load_plant(workdir / "plant.yaml")


@pytest.mark.parametrize("name", ["R1.reactions.dcu_formation.Ea",
                                  "R1.reactions.carbamylation.k_ref"])
def test_the_replayed_start_up_is_smooth_in_the_parameters(name: str) -> None:
    """The difference quotient of the replayed start-up does not depend on the step: the
    R1 jacket leaves its heating limit about a minute in, where the thermostat dropped the
    rest of a step for some parameters and not their neighbours (R1.T jumped 0.3 K, a
    quotient growing as 1/step: 27 at 1e-4 and 2 700 at 1e-6 for the DCU Ea)."""
    cfg = load_plant(PLANT)
    sub = upstream(cfg, ["R1"])
    ref = ParamRef.resolve(sub, name)
    rep = Replay({"R1.TempSP": (np.zeros(1), np.array([40.0]))}, 300.0)
    outs = ["R1.T", "R1.JacketT"]
    times = dict.fromkeys(outs, np.arange(10.0, 300.0, 10.0))

    def run(x: float) -> dict[str, np.ndarray]:
        return replay(with_parameters(sub, {ref: ref.value * math.exp(x)}), rep, outs, 5.0,
                      times)

    quotients = []
    for h in (1e-4, 1e-6):
        up, down = run(h), run(-h)
        quotients.append({s: (up[s] - down[s]) / (2 * h) for s in outs})
    for s in outs:
        # in kelvin per unit ln-parameter; 1e-3 K: far below the 0.3 K jump over 2e-4
        assert np.abs(quotients[0][s] - quotients[1][s]).max() < 1e-3, s


def test_the_pages_number_of_tanks_is_fitted_by_its_profile(
        workdir: Path) -> None:
    """A whole number (R2's tanks in series) is found by its profile, not moved by least
    squares: the truth inside its interval, and the overlay writes a whole number."""
    record, fit_cmd = doc_commands("twin-tanks")
    runner = CliRunner()
    for args in (record, fit_cmd):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
    value, low, high = estimates(res.stdout)["R2.n_tanks"]
    assert value == int(value) and low <= 10 <= high and high - low <= 2
    assert "not identifiable" not in res.output
    assert f"n_tanks: {int(value)}\n" in (workdir / "R2-tanks.yaml").read_text(encoding="utf-8")


def test_two_whole_numbers_in_one_fit_are_refused(tmp_path: Path) -> None:
    from modulecontrol.twin import TwinError, fit

    with pytest.raises(TwinError, match="whole numbers are fitted by a profile"):
        fit(load_plant(PLANT), tmp_path / "none.db", [1], ["R1.n_tanks", "R2.n_tanks"])

"""The fit over the transient (``twin fit --transient``): a parameter that only shapes the
transient (a thermostat's time constant), recovered from a start-up against the dynamic
replay, where the steady fit can only say that the data do not depend on it; the replay's
smoothness in the parameters that such a fit needs; and a whole-number parameter (a coil's
number of tanks) fitted by its profile."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.descriptors import load_plant
from modulecontrol.errors import ConfigError
from modulecontrol.twin import ParamRef
from modulecontrol.twin._model import Replay, replay, upstream, with_parameters
from tests.twin.conftest import PLANT, copy_run_from, doc_commands, estimates


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


def test_a_transient_fit_refuses_a_run_that_does_not_start_from_rest(tmp_path: Path) -> None:
    """The transient fit replays a run from a plant at rest: a recording begun on a line
    already running (here R1 at 40 °C, the recording cut 10 min into the start-up) is
    refused with the run, the signal, the time and both values, not fitted against a
    replay of the wrong start-up."""
    from modulecontrol.twin import TwinError, fit, record_simulated_run

    cfg = load_plant(PLANT)
    truth = with_parameters(cfg, {ParamRef.resolve(cfg, "R1.thermostat.tau"): 90.0})
    whole = tmp_path / "whole.db"
    outs = ["R1.JacketT", "R1.T"]
    run = record_simulated_run(truth, whole, settings={"R1.TempSP": 40.0}, outputs=outs,
                               duration=1200.0, interval=10.0, noise=0.005, seed=3)
    cut = tmp_path / "cut.db"
    late = copy_run_from(whole, run, cut, 600.0)
    with pytest.raises(TwinError) as caught:
        fit(cfg, cut, [late], ["R1.thermostat.tau"], outs, transient=True)
    msg = str(caught.value)
    found = re.search(r"run (\d+) does not start from rest: R1\.JacketT at (\S+) \(10 s after "
                      r"the run start\) was (\S+) recorded, (\S+) in the replay from rest "
                      r"\(also R1\.T\)", msg)
    assert found is not None, msg
    assert int(found[1]) == late
    assert found[2] == "2023-11-14T22:23:30+00:00"  # 1.7e9 + 600 s + 10 s
    assert float(found[3]) > 39.0 and float(found[4]) < 25.0  # at 40 °C, replayed near 20
    assert "fit a run recorded on a line already in production on its steady windows " \
           "(without --transient)" in msg
    # the CLI says the same, located, and fits nothing
    res = CliRunner().invoke(app, ["twin", "fit", str(late), "--plant", str(PLANT), "--db",
                                   str(cut), "--param", "R1.thermostat.tau", "--measure",
                                   "R1.JacketT", "--measure", "R1.T", "--transient"])
    assert res.exit_code != 0
    assert "does not start from rest: R1.JacketT" in res.output


def test_a_run_recorded_in_production_is_refused_on_its_analyzer(tmp_path: Path) -> None:
    """A recording begun with the line in production: the analyzer measures product from
    its first sample on, where the replay from rest has not reached it yet (~0)."""
    from modulecontrol.twin import TwinError, fit, record_simulated_run

    cfg = load_plant(PLANT)
    outs = ["PAT1.Intermediate", "PAT1.Product"]
    run = record_simulated_run(cfg, tmp_path / "whole.db", settings={"R2.TempSP": 15.0},
                               outputs=outs, duration=1800.0, dt=10.0, seed=1)
    late = copy_run_from(tmp_path / "whole.db", run, tmp_path / "cut.db", 1200.0)
    with pytest.raises(TwinError, match=rf"run {late} does not start from rest: "
                                        r"PAT1\.Intermediate at \S+ \(30 s after the run "
                                        r"start\) was \S+ recorded, \S+ in the replay from "
                                        r"rest \(also PAT1\.Product\).*\(without --transient\)"):
        fit(cfg, tmp_path / "cut.db", [late], ["R2.reactions.nitrosation_equilibrium.k_ref"],
            outs, dt=10.0, transient=True)

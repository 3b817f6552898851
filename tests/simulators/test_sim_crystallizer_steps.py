"""The crystallizer's ROS2 sub-step halving: a step that stays non-physical after the last
halving stops the simulation with a located ModelStateError instead of serving negative
moments or solute; the round-off negatives of a nucleation onset from zero moments are not
such a step, so the lomustine line's start-up runs through at any step size."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modulecontrol.simulators.lomustine import build_flowsheet
from modulecontrol.simulators.models import (
    ModelStateError,
    MsmprCrystallizer,
    MsmprParams,
    Solubility,
    Stream,
)
from modulecontrol.simulators.models._crystallizer import _Vessel
from tests.simulators.conftest import crystal_species


def _crystallizer(**kinetics: float) -> MsmprCrystallizer:
    return MsmprCrystallizer("CR", crystal_species(), MsmprParams.model_validate({
        "volume": 1e-3, "solute": "API", "crystal_density": 1300,
        "solubility": Solubility(coefficients=[10.0]), "max_substep": 30, **kinetics}))


def _feed(cr: MsmprCrystallizer) -> Stream:
    """1 L per 30 min of 100 mol/m3 API: ten times its solubility of 10 mol/m3."""
    return Stream(cr.species, 1e-3 / 1800, 298.15, 1e5, np.array([50000.0, 100.0]))


def test_kinetics_no_halving_can_resolve_stop_with_the_place_and_what_to_change() -> None:
    """Rates of order sigma^0.01: nucleation and growth jump from nothing to their full size
    at the first supersaturation, so no step of 30 s / 4096 keeps the solute positive.
    Before, the negative solute was accepted and sent on as the product's concentration."""
    cr = _crystallizer(kb1=1e20, b1=0.01, kg=1e-2, g=0.01)
    feed = _feed(cr)
    with pytest.raises(ModelStateError) as err:
        for _ in range(20):
            cr.step(30.0, {"feed": feed})
    e = err.value
    assert e.unit == "CR" and 0.0 < e.time < 600.0
    msg = str(e)
    assert msg.startswith(f"CR at t = {e.time:g} s: the crystallization of 'API' admits no "
                          "step of 0.00732 s after 12 halvings of the sub-step (")
    assert "below zero or not finite" in msg
    assert "check kb1/b1, kb2/b2/j and kg/g" in msg and "lower max_substep" in msg
    # the state is the last accepted one: nothing negative was stored
    assert cr.c.min() >= 0.0 and cr.mu.min() >= 0.0


def test_a_step_refused_at_every_halving_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever refuses the step (here an integrator made to give NaN moments at every
    step length) trips after the last halving; it is never taken as it is."""
    step = _Vessel.ros2_step

    def broken(self: _Vessel, y: list[float], h: float) -> list[float]:
        out = step(self, y, h)
        out[1:6] = [math.nan] * 5
        return out

    monkeypatch.setattr(_Vessel, "ros2_step", broken)
    cr = _crystallizer(kb1=1e6, kg=1e-7)
    with pytest.raises(ModelStateError, match=r"CR at t = 0 s: .*after 12 halvings .*"
                       r"\(mu0 0 -> nan, below zero or not finite"):
        cr.step(30.0, {"feed": _feed(cr)})


@pytest.mark.parametrize("dt", [10.0, 60.0])
def test_the_lomustine_start_up_never_trips_the_crystallizer(dt: float) -> None:
    """From an empty line through the nucleation onset to steady state: the crystallizer's
    last-halving steps there leave negatives of 1e-15 or less of its reference values,
    at least a million times below what trips."""
    fs = build_flowsheet()
    crystallizers = [u for u in fs.units.values() if isinstance(u, MsmprCrystallizer)]
    assert crystallizers
    for _ in range(round(2 * 3600.0 / dt)):
        fs.step(dt)
    for cr in crystallizers:
        assert cr.state()["suspension_density"] > 0.0
        assert cr.mu.min() >= -1e-12 * cr.mu.max()

"""Product changeover on the simulated lomustine line: inlet channels, analyzer methods,
crystallizer solute, mass balance. Models only (no protocol servers)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.simulators import SimulatedPlant
from modulecontrol.simulators.lomustine import (
    DEFAULT_PLANT,
    FLUSH_PARAMETERS,
    PURITY_SPEC,
    SEMUSTINE,
    build_line,
    cyclohexyl_balance,
    line_streams,
    product_overrides,
    steady_state_kpis,
)
from modulecontrol.simulators.models import (
    HplcPump,
    MsmprCrystallizer,
    PatAnalyzer,
    SpeciesTable,
    create_model,
)

_SPECIES = SpeciesTable.from_yaml(DEFAULT_PLANT.parent / "species.yaml")


def _analyzer(sim: SimulatedPlant, species: str) -> float:
    """True concentration (mol/m3) of ``species`` in the analyzer's flow cell."""
    return sim.flowsheet.stream("PAT1", "out").concentration(species)


def _write(sim: SimulatedPlant, values: dict[str, dict[str, object]]) -> None:
    """Write service-parameter-like settings to the matching manual assemblies."""
    target = {"InletSP": "Inlet", "Method": "Method"}
    for tag, settings_ in values.items():
        for name, value in settings_.items():
            assert sim.view(tag).write(target[name], None, value)


def _max_relative_residual(sim: SimulatedPlant) -> float:
    out = 0.0
    for b in sim.flowsheet.balances().values():
        scale = max(b.mass_in, b.mass_out, b.holdup, 1e-12)
        out = max(out, abs(b.residual) / scale)
    return out


def test_lomustine_to_semustine_through_a_solvent_flush() -> None:
    sim = build_line(dt=10.0)
    sim.steady_state()
    pat, v1 = sim.view("PAT1"), sim.view("V1")
    lom0 = _analyzer(sim, "lomustine")
    assert lom0 > 0.0 and _analyzer(sim, "semustine") < 1e-9 * lom0
    assert pat.read("Product") == pytest.approx(lom0 / 1000.0)  # mol/L, method 1
    assert pat.read("Purity") >= 100 * PURITY_SPEC

    # flush: HPLC feeds on THF, nitrite stopped, divert to waste
    _write(sim, FLUSH_PARAMETERS)
    sim.view("P3").write("Run", None, False)
    v1.write("Valve", None, False)
    seen_lom = []
    for _ in range(30):  # 30 min, > 3 residence times of the 9 min reactor path
        sim.step(6)
        seen_lom.append(_analyzer(sim, "lomustine"))
    assert seen_lom[-1] < 1e-3 * lom0
    assert min(seen_lom[:5]) > seen_lom[-1]  # it fell, not jumped
    assert _analyzer(sim, "semustine") < 1e-9 * lom0
    assert v1.read("WasteVolume") > 0.0

    # switch to the semustine feeds and method
    route, params = product_overrides("semustine")
    assert route is SEMUSTINE
    _write(sim, params)
    sim.view("P3").write("Run", None, True)
    seen_sem = []
    for _ in range(30):
        sim.step(6)
        seen_sem.append(_analyzer(sim, "semustine"))
    assert seen_sem[0] < seen_sem[-1]
    target, _ = steady_state_kpis(product="semustine")
    sem_ss = line_streams(sim.flowsheet).analyzer.concentration("semustine")
    assert seen_sem[-1] == pytest.approx(sem_ss, rel=1e-6)
    assert _analyzer(sim, "lomustine") < 1e-6 * seen_sem[-1]
    # the analyzer's product signal now reports semustine, with the semustine purity
    assert pat.read("Product") == pytest.approx(seen_sem[-1] / 1000.0, rel=1e-9)
    assert pat.read("Purity") == pytest.approx(100 * target.purity, rel=1e-3)
    assert pat.read("Impurity") == pytest.approx(
        _analyzer(sim, "bis_methylcyclohexylurea") / 1000.0, rel=1e-9)

    # product again: the crystallizer follows the feed and crystallizes semustine
    v1.write("Valve", None, True)
    sim.step(360)  # 1 h
    cr1 = sim.flowsheet.units["CR1"]
    assert isinstance(cr1, MsmprCrystallizer)
    assert cr1.solute == "semustine"
    assert sim.view("CR1").read("CrystalRate") > 0.0
    assert _max_relative_residual(sim) < 1e-9


def test_direct_switch_keeps_mass_balance_and_ring_balance() -> None:
    """No flush: lomustine crystals still in CR1 when semustine arrives are dissolved by the
    solute switch; mass stays conserved, and the new steady state closes the ring balance."""
    sim = build_line(dt=15.0)
    sim.steady_state()
    _write(sim, product_overrides("semustine")[1])
    sim.step(480)  # 2 h: many residence times of the reactors, several of CR1
    assert _max_relative_residual(sim) < 1e-9
    streams = line_streams(sim.flowsheet)
    fed, carried = cyclohexyl_balance(streams, SEMUSTINE)
    assert carried == pytest.approx(fed, rel=1e-3)


def _pump(species: SpeciesTable) -> HplcPump:
    unit = create_model("hplc_pump", "P", species, {
        "feed": {"THF": "12 mol/L"},
        "feeds": {2: {"heptane": "6 mol/L"}, 3: {"tert_butanol": "10 mol/L"}},
        "flow_setpoint": "1 mL/min", "running": True,
    })
    assert isinstance(unit, HplcPump)
    return unit


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([1, 2, 3]), min_size=1, max_size=8))
def test_pump_delivers_the_selected_channel(channels: list[int]) -> None:
    species = _SPECIES
    pump = _pump(species)
    for ch in channels:
        pump.set_input("inlet", ch)
        out = pump.step(1.0, {})["out"]
        present = {n for n in species.names if out.concentration(n) > 0}
        assert present == {{1: "THF", 2: "heptane", 3: "tert_butanol"}[ch]}
        assert pump.state()["inlet"] == ch
    b = pump.balance()
    assert abs(b.residual) <= 1e-12 * max(b.mass_out, 1e-12)


def test_unconfigured_channel_and_method_are_refused() -> None:
    species = _SPECIES
    pump = _pump(species)
    with pytest.raises(ValueError, match="channel 4 has no feed"):
        pump.set_input("inlet", 4)
    assert pump.inlet == 1
    with pytest.raises(ValueError, match="either as 'feed'"):
        create_model("hplc_pump", "P", species,
                     {"feed": {"THF": "1 mol/L"}, "feeds": {1: {"THF": "1 mol/L"}}})
    pat = create_model("pat_analyzer", "A", species, {
        "species": ["lomustine"], "product": "lomustine",
        "methods": {2: {"species": ["semustine", "lomustine"], "product": "semustine"}}})
    assert isinstance(pat, PatAnalyzer)
    with pytest.raises(ValueError, match="no method 3"):
        pat.set_input("method", 3)
    pat.set_input("method", 2)
    assert pat.product == "semustine"
    assert set(pat.state()) >= {"c_lomustine", "c_semustine", "method"}

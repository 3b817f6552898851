"""`validate` runs every check `sim` and `run` make: each finding of issue #16 ("Plant and model
inputs") is refused at its own line, with a message naming what to write instead."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.clock import Clock
from modulecontrol.descriptors import builtin_types, load_plant
from modulecontrol.errors import Problem
from modulecontrol.simulators import SimulatedPlant, default_species, plant_problems
from modulecontrol.simulators.models import MODELS, create_model

ROOT = Path(__file__).resolve().parents[2]
LOMUSTINE = ROOT / "recipes" / "lomustine" / "plant.yaml"

SPECIES = """\
species:
  - {name: S, molar_mass: 100 g/mol, density: 900 kg/m**3}
  - {name: A, molar_mass: 100 g/mol, density: 900 kg/m**3}
  - {name: B, molar_mass: 50 g/mol, density: 900 kg/m**3}
  - {name: C, molar_mass: 150 g/mol, density: 900 kg/m**3}
"""

PUMP = """\
  - tag: P1
    type: HPLCPump
    simulated: true
    endpoint: {protocol: modbus-tcp, host: 127.0.0.1, port: 15021, unit_id: 1}
    overrides:
      simulator:
        feed: {A: 0.15 mol/L, S: 9 mol/L}
        feed_temperature: 20 degC
"""

REACTOR_HEAD = """\
  - tag: R1
    type: CoilReactor
    simulated: true
    endpoint: {protocol: opcua, url: "opc.tcp://127.0.0.1:14841/R1", security_policy: "None",
               security_mode: "None"}
    overrides:
      properties: {volume: 2 mL}
      simulator:
"""

TAIL = """\
connections:
  - {from: P1.outlet, to: R1.inlet}
sinks: {R1.outlet: product}
"""

GOOD_REACTION = (
    "        reactions:\n"
    "          - {stoichiometry: {A: -1, B: -1, C: 1}, k_ref: 0.299 L/(mol*s), T_ref: 25 degC}\n"
)


def plant(tmp_path: Path, pump: str = PUMP, reactor: str = GOOD_REACTION,
          extra: str = "") -> Path:
    (tmp_path / "species.yaml").write_text(SPECIES)
    text = ("kind: Plant\nname: t\nspecies: species.yaml\nmodules:\n" + pump + REACTOR_HEAD
            + reactor + extra + TAIL)
    path = tmp_path / "plant.yaml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[Problem]:
    return plant_problems(load_plant(path))


def line_of(path: Path, needle: str) -> int:
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in {path}")


def only(found: list[Problem]) -> Problem:
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def test_a_plant_that_validates_also_simulates(tmp_path: Path) -> None:
    """pump -> reactor, ending in a declared sink: no problems, and the steady state exists."""
    path = plant(tmp_path)
    assert problems(path) == []
    sim = SimulatedPlant.from_config(load_plant(path), Clock.fast())
    sim.start_services()
    out = {f"{r.module}.{r.port}": r for r in sim.steady_state()}
    r1 = out["R1.outlet"]
    assert r1.flow_ml_min == pytest.approx(1.0)  # the FlowSP default of the built-in type
    assert 0 < r1.concentrations["A"] < 0.15


def test_the_lomustine_plant_is_clean() -> None:
    assert plant_problems(load_plant(LOMUSTINE)) == []


@pytest.mark.parametrize("name", sorted(builtin_types()))
def test_builtin_simulator_sections_carry_units(name: str) -> None:
    """Every built-in type's simulator parameters pass the file rule (units required)."""
    mt = builtin_types().get(name)
    if mt.simulator is None:
        pytest.skip("no simulator")
    params = dict(mt.simulator.parameters)
    params.pop("roles", None)
    fields = MODELS[mt.simulator.model].Params.model_fields
    params.update({k: v for k, v in mt.properties.items() if k in fields and k not in params})
    create_model(mt.simulator.model, name, default_species(), params, units_required=True)
    if mt.simulator.thermostat is not None:
        create_model("thermostat", "j", default_species(), mt.simulator.thermostat,
                     units_required=True)


@pytest.mark.parametrize(
    ("reactor", "needle", "expected"),
    [
        ("        n_tanks: 0\n" + GOOD_REACTION, "n_tanks", "greater than or equal to 1"),
        ("        reactions:\n          - {stoichiometry: {A: -1, B: -1, C: 1},"
         " k_ref: 0.299 1/s}\n", "k_ref",
         "does not fit a reaction of overall order 2: it needs a unit of dimension "
         "[volume]/([substance][time]), e.g. '0.299 L/(mol*s)'"),
        ("        reactions:\n          - {stoichiometry: {A: -1, X: 1}, k_ref: 1 1/s}\n",
         "X: 1", "unknown species 'X'"),
        ("        reactions:\n          - {stoichiometry: {A: -1, C: 1}, k_ref: 1 1/s}\n",
         "stoichiometry", "is not mass balanced"),
        ("        reactions:\n          - {stoichiometry: {A: -1, C: 1}, k_ref: 1 1/s,"
         " order: {A: 1}}\n", "order:", "unknown key 'order' (did you mean 'orders'?)"),
        ("        reactions:\n          - {stoichiometry: {A: -1, B: -1, C: 1},"
         " k_ref: 0.299}\n", "k_ref",
         "k_ref needs a unit of dimension [volume]/([substance][time]), e.g. "
         "'0.299 L/(mol*s)'"),
        ("        reactions:\n          - {stoichiometry: {A: -1, B: -1, C: 1},"
         " k_ref: 1 L/(mol*s), A: 1 L/(mol*s)}\n", "k_ref", "not both"),
        ("        jacket_temperature: 50 degC\n" + GOOD_REACTION, "jacket_temperature",
         "'jacket_temperature' is ignored: the jacket follows the thermostat"),
        ("        max_substep: .nan\n" + GOOD_REACTION, "max_substep", "finite"),
    ],
    ids=["n_tanks_0", "k_dimension", "unknown_species", "unbalanced", "misspelt_key",
         "bare_k_ref", "both_forms", "jacket_ignored", "nan"],
)
def test_reactor_sections_are_checked_at_their_line(
    tmp_path: Path, reactor: str, needle: str, expected: str
) -> None:
    path = plant(tmp_path, reactor=reactor)
    p = only(problems(path))
    assert expected in p.message
    assert p.location is not None and p.location.line == line_of(path, needle)


@pytest.mark.parametrize(
    ("pump", "needle", "expected"),
    [
        (PUMP.replace("A: 0.15 mol/L", "A: 0.15"), "feed:",
         "needs a unit of dimension [substance]/[volume], e.g. '0.15 mol/L'"),
        (PUMP.replace("20 degC", "26.85"), "feed_temperature",
         "needs a unit of dimension [temperature], e.g. '26.85 degC'"),
        (PUMP + "        flow_setpoint: 1 mL/min\n", "flow_setpoint",
         "'flow_setpoint' is ignored: service Dosing sets it from its parameter FlowSP "
         "(default 1 mL/min); give the value as 'overrides.assemblies.FlowSP.default'"),
    ],
    ids=["bare_feed", "bare_feed_temperature", "flow_setpoint_ignored"],
)
def test_pump_sections_are_checked_at_their_line(
    tmp_path: Path, pump: str, needle: str, expected: str
) -> None:
    path = plant(tmp_path, pump=pump)
    p = only(problems(path))
    assert expected in p.message
    assert p.location is not None and p.location.line == line_of(path, needle)


def test_bare_volume_in_properties_is_refused(tmp_path: Path) -> None:
    path = plant(tmp_path)
    path.write_text(path.read_text().replace("volume: 2 mL", "volume: 2"))
    p = only(problems(path))
    assert "needs a unit of dimension [volume], e.g. '2 mL'" in p.message
    assert p.location is not None and p.location.line == line_of(path, "volume: 2")


def test_a_setting_wider_than_the_model_is_refused_naming_both_places(tmp_path: Path) -> None:
    pump = PUMP.replace("    overrides:\n", "    overrides:\n      assemblies:\n"
                        "        FlowSetpoint: {max: 66.7}\n")
    path = plant(tmp_path, pump=pump)
    p = only(problems(path))
    assert "FlowSetpoint max 66.7 mL/min is above what the simulated device can do" in p.message
    assert "'max_flow' 10 mL/min (modulecontrol/descriptors/builtin/hplc_pump.yaml:" in p.message
    assert p.location is not None and p.location.line == line_of(path, "FlowSetpoint: {max")


def test_simulated_needs_a_simulator(tmp_path: Path) -> None:
    (tmp_path / "tank.yaml").write_text(textwrap.dedent("""\
        kind: ModuleType
        name: Tank
        ports: [{name: inlet, direction: in, required: false}]
    """))
    path = plant(tmp_path, extra="  - {tag: T1, type: Tank, simulated: true}\n")
    path.write_text(path.read_text().replace("species: species.yaml",
                                             "species: species.yaml\ntypes: [tank.yaml]"))
    p = only(problems(path))
    assert "has no 'simulator' section" in p.message
    assert p.location is not None and p.location.line == line_of(path, "tag: T1")


def test_an_open_outlet_names_the_sink_to_declare(tmp_path: Path) -> None:
    path = plant(tmp_path)
    path.write_text(path.read_text().replace("sinks: {R1.outlet: product}\n", ""))
    runner = CliRunner()
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert "'sinks: {R1.outlet: product}'" in result.output


def test_validate_command_runs_the_simulator_checks(tmp_path: Path) -> None:
    path = plant(tmp_path, reactor="        n_tanks: 0\n" + GOOD_REACTION)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"plant.yaml:{line_of(path, 'n_tanks')}:" in result.output


def test_sim_steady_refuses_a_set_point_outside_the_setting(tmp_path: Path) -> None:
    path = plant(tmp_path)
    result = CliRunner().invoke(app, ["sim", "steady", str(path), "--set",
                                      "P1.FlowSetpoint=150"])
    assert result.exit_code == 1
    assert "outside its limits [0, 10] mL/min" in result.output
    ok = CliRunner().invoke(app, ["sim", "steady", str(path), "--set", "P1.FlowSetpoint=2",
                                  "--json"])
    assert ok.exit_code == 0, ok.output
    assert math.isclose(__import__("json").loads(ok.output)[0]["flow_mL_min"], 2.0)


def test_a_reactor_publishes_its_outlet_composition_in_mol_per_litre() -> None:
    """Every species is a model variable c_<species>; a linked AnaView reads it in its unit."""
    from modulecontrol.descriptors import module_type_from_text
    from modulecontrol.simulators import ModuleView
    from modulecontrol.simulators.models import SpeciesTable, Stream

    mt = module_type_from_text(textwrap.dedent("""\
        kind: ModuleType
        name: AnalysedCoil
        ports: [{name: inlet, direction: in}, {name: outlet, direction: out}]
        data_assemblies:
          - {name: C_A, class: AnaView, unit: mol/L}
          - {name: C_C, class: AnaView, unit: mol/L}
        simulator:
          model: coil_reactor
          parameters:
            volume: 2 mL
            inner_diameter: 1 mm
            n_tanks: 5
            reactions: [{stoichiometry: {A: -1, B: -1, C: 1}, k_ref: 0.5 L/(mol*s)}]
          links: {C_A: c_A, C_C: c_C}
    """))
    table = SpeciesTable.from_yaml(SPECIES)
    assert mt.simulator is not None
    model = create_model("coil_reactor", "R9", table, mt.simulator.parameters,
                         units_required=True)
    feed = Stream.of(table, "1 mL/min", "25 degC", {"A": "0.15 mol/L", "B": "0.15 mol/L",
                                                    "S": "9 mol/L"})
    out = model.steady_state({"in": feed})["out"]
    view = ModuleView("R9", mt, model)
    assert view.read("C_A") == pytest.approx(out.conc[table.index("A")] / 1000.0)
    assert 0 < view.read("C_C") < 0.15
    assert view.read("C_A") + view.read("C_C") == pytest.approx(0.15)

"""A demonstration plant: reaction, work-up analytics and crystallization in one line.

3 HPLC pumps (reagent A, reagent B, antisolvent water), T-mixer, two jacketed coil reactors
(A + B -> C, then the reversible isomerisation C <=> D) with their thermostats, a 5 bar BPR,
a PAT analyzer, a divert valve, an antisolvent mixer and an MSMPR crystallizer. Used by the
benchmark, the tests and as a template for plant descriptors.
"""

from __future__ import annotations

from modulecontrol.units import to_si as q

from ._crystallizer import MsmprCrystallizer, MsmprParams, Solubility
from ._flowsheet import Flowsheet
from ._inline import (
    BackPressureRegulator,
    BprParams,
    DivertValve,
    DivertValveParams,
    PatAnalyzer,
    PatAnalyzerParams,
    TMixer,
    TMixerParams,
)
from ._pumps import HplcPump, HplcPumpParams
from ._reactor import CoilReactor, CoilReactorParams, Reaction
from ._species import Species, SpeciesTable
from ._thermostat import Thermostat, ThermostatParams


def demo_plant() -> Flowsheet:
    """A fresh demonstration plant, pumps running."""
    sp = SpeciesTable(
        [
            Species(
                name="MeOH",
                molar_mass=q("32.04 g/mol"),
                density=q("792 kg/m**3"),
                viscosity=q("0.55 mPa*s"),
                heat_capacity=q("2530 J/(kg*K)"),
            ),
            Species(
                name="water",
                molar_mass=q("18.015 g/mol"),
                density=q("997 kg/m**3"),
                viscosity=q("0.89 mPa*s"),
            ),
            Species(name="A", molar_mass=q("100 g/mol"), density=q("1100 kg/m**3")),
            Species(name="B", molar_mass=q("80 g/mol"), density=q("1000 kg/m**3")),
            Species(name="C", molar_mass=q("180 g/mol"), density=q("1200 kg/m**3")),
            Species(name="D", molar_mass=q("180 g/mol"), density=q("1250 kg/m**3")),
        ]
    )
    r1 = Reaction(
        name="coupling",
        stoichiometry={"A": -1, "B": -1, "C": 1},
        k_ref=q("0.05 L/(mol*s)"),
        Ea=q("50 kJ/mol"),
        T_ref=q("60 degC"),
        dH=q("-80 kJ/mol"),
    )
    r2 = Reaction(
        name="isomerisation",
        stoichiometry={"C": -1, "D": 1},
        k_ref=q("0.01 1/s"),
        Ea=q("60 kJ/mol"),
        T_ref=q("80 degC"),
        reversible=True,
        k_ref_reverse=q("0.002 1/s"),
        Ea_reverse=q("70 kJ/mol"),
        dH=q("10 kJ/mol"),
    )
    units = [
        HplcPump(
            "P1",
            sp,
            HplcPumpParams(
                feed={"MeOH": q("20 mol/L"), "A": q("1 mol/L")},
                flow_setpoint=q("1 mL/min"),
                running=True,
                ramp_rate=q("1 mL/min/s"),
                pulsation=0.02,
            ),
        ),
        HplcPump(
            "P2",
            sp,
            HplcPumpParams(
                feed={"MeOH": q("20 mol/L"), "B": q("1.1 mol/L")},
                flow_setpoint=q("1 mL/min"),
                running=True,
            ),
        ),
        HplcPump(
            "P3",
            sp,
            HplcPumpParams(
                feed={"water": q("55 mol/L")}, flow_setpoint=q("2 mL/min"), running=True
            ),
        ),
        TMixer("M1", sp, TMixerParams()),
        Thermostat("TH1", sp, ThermostatParams(setpoint=q("60 degC"), tau=120)),
        Thermostat("TH2", sp, ThermostatParams(setpoint=q("80 degC"), tau=120)),
        CoilReactor(
            "R1",
            sp,
            CoilReactorParams(
                volume=q("10 mL"),
                inner_diameter=q("1 mm"),
                design_flow=q("2 mL/min"),
                max_tanks=30,
                reactions=[r1],
                max_substep=10,
            ),
        ),
        CoilReactor(
            "R2",
            sp,
            CoilReactorParams(
                volume=q("20 mL"),
                inner_diameter=q("1.6 mm"),
                design_flow=q("2 mL/min"),
                max_tanks=30,
                reactions=[r2],
                max_substep=10,
            ),
        ),
        BackPressureRegulator("BPR", sp, BprParams(setpoint=q("5 bar"))),
        PatAnalyzer(
            "PAT",
            sp,
            PatAnalyzerParams(
                species=["A", "C", "D"], product="D", dead_time=30, noise=0.5, seed=1
            ),
        ),
        DivertValve("V1", sp, DivertValveParams()),
        TMixer("M2", sp, TMixerParams()),
        MsmprCrystallizer(
            "CR",
            sp,
            MsmprParams(
                volume=q("200 mL"),
                solute="D",
                antisolvent="water",
                crystal_density=1250,
                solubility=Solubility(coefficients=[200.0, 5.0], antisolvent_exponent=4.0),
                kb1=1e7,
                b1=2.0,
                kb2=1e5,
                b2=1.0,
                j=1.0,
                kg=2e-8,
                g=1.2,
                jacket_temperature=q("10 degC"),
                max_substep=60,
            ),
        ),
    ]
    fs = Flowsheet(sp, units)
    for src, dst in [
        (("P1", "out"), ("M1", "in1")),
        (("P2", "out"), ("M1", "in2")),
        (("M1", "out"), ("R1", "in")),
        (("R1", "out"), ("R2", "in")),
        (("R2", "out"), ("BPR", "in")),
        (("BPR", "out"), ("PAT", "in")),
        (("PAT", "out"), ("V1", "in")),
        (("V1", "product"), ("M2", "in1")),
        (("P3", "out"), ("M2", "in2")),
        (("M2", "out"), ("CR", "feed")),
    ]:
        fs.connect(src, dst)
    fs.link_jacket("TH1", "R1")
    fs.link_jacket("TH2", "R2")
    return fs

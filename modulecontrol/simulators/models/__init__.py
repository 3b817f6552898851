"""Process models for continuous flow-chemistry modules (digital twins), SI units inside.

Every model is a :class:`UnitModel`: built from a pydantic ``Params`` (values may carry
units), with named ``inputs``, ``step(dt, inlets) -> outlets``, ``steady_state``, a flat
``state()`` dict, ``measurements()`` with sensor faults, and ``inject_fault``. Models are
registered by kind name in :data:`MODELS`; :func:`create_model` builds one from a mapping.
"""

from ._base import (
    MODELS,
    TEMPERATURE_RANGE,
    Balance,
    FaultError,
    ModelStateError,
    ParameterError,
    UnitModel,
    create_model,
    register_model,
)
from ._crystallizer import MsmprCrystallizer, MsmprParams, Solubility
from ._demo import demo_plant
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
from ._integrate import ros2_step
from ._pumps import HplcPump, HplcPumpParams, SyringePump, SyringePumpParams
from ._reactor import (
    CoilReactor,
    CoilReactorParams,
    Kinetics,
    Reaction,
    hagen_poiseuille,
    tanks_from_dispersion,
)
from ._species import Solids, Species, SpeciesTable, Stream, mix
from ._thermostat import Thermostat, ThermostatParams

__all__ = [
    "MODELS",
    "TEMPERATURE_RANGE",
    "BackPressureRegulator",
    "Balance",
    "BprParams",
    "CoilReactor",
    "CoilReactorParams",
    "DivertValve",
    "DivertValveParams",
    "FaultError",
    "Flowsheet",
    "HplcPump",
    "HplcPumpParams",
    "Kinetics",
    "ModelStateError",
    "MsmprCrystallizer",
    "MsmprParams",
    "ParameterError",
    "PatAnalyzer",
    "PatAnalyzerParams",
    "Reaction",
    "Solids",
    "Solubility",
    "Species",
    "SpeciesTable",
    "Stream",
    "SyringePump",
    "SyringePumpParams",
    "TMixer",
    "TMixerParams",
    "Thermostat",
    "ThermostatParams",
    "UnitModel",
    "create_model",
    "demo_plant",
    "hagen_poiseuille",
    "mix",
    "register_model",
    "ros2_step",
    "tanks_from_dispersion",
]

"""Simulators: process models (``modulecontrol.simulators.models``) and the protocol servers
that expose them as the real devices would (see ``docs/simulators.md``)."""

from modulecontrol.simulators._check import check_plant, plant_problems
from modulecontrol.simulators._control import ControlServer
from modulecontrol.simulators._faults import (
    FAULTS,
    FaultInjector,
    FaultRecord,
    Scenario,
    ScenarioFault,
    load_scenario,
    scenario_from_doc,
)
from modulecontrol.simulators._modbus_server import (
    TABLE_OF_FC,
    ModbusRtuSlave,
    ModbusTcpSlave,
    SlaveStore,
)
from modulecontrol.simulators._opcua_server import PeaRuntime, SecurityError
from modulecontrol.simulators._pki import Credentials
from modulecontrol.simulators._plant import (
    DEFAULT_SPECIES,
    PlantBuildError,
    SimulatedPlant,
    StreamReport,
    build_models,
    default_species,
)
from modulecontrol.simulators._ports import PtyPort, free_port
from modulecontrol.simulators._process import (
    PlantProcess,
    RemoteFaults,
    attach_plant,
    spawn_plant,
)
from modulecontrol.simulators._serve import (
    PlantServer,
    ServedEndpoint,
    ServedPlant,
    ServeError,
    serve_plant,
)
from modulecontrol.simulators._view import ModuleView, TransportFaults, Variable, ViewError

__all__ = [
    "DEFAULT_SPECIES",
    "FAULTS",
    "TABLE_OF_FC",
    "ControlServer",
    "Credentials",
    "FaultInjector",
    "FaultRecord",
    "ModbusRtuSlave",
    "ModbusTcpSlave",
    "ModuleView",
    "PeaRuntime",
    "PlantBuildError",
    "PlantProcess",
    "PlantServer",
    "PtyPort",
    "RemoteFaults",
    "Scenario",
    "ScenarioFault",
    "SecurityError",
    "ServeError",
    "ServedEndpoint",
    "ServedPlant",
    "SimulatedPlant",
    "SlaveStore",
    "StreamReport",
    "TransportFaults",
    "Variable",
    "ViewError",
    "attach_plant",
    "build_models",
    "check_plant",
    "default_species",
    "free_port",
    "load_scenario",
    "plant_problems",
    "scenario_from_doc",
    "serve_plant",
    "spawn_plant",
]

"""Simulators: process models (``modulecontrol.simulators.models``) and the protocol servers
that expose them as the real devices would (see ``docs/simulators.md``).

Why the names load on first use (PEP 562): ``validate`` needs :func:`check_plant` only, and
importing every server here pulled in asyncua, cryptography and pymodbus (about 0.6 s) before
it could check a line. The public face is unchanged: ``from modulecontrol.simulators import
serve_plant`` works as before and imports the module that defines it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modulecontrol.lazy import lazy_names

if TYPE_CHECKING:
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
    from modulecontrol.simulators._ports import (
        PORT_ATTEMPTS,
        PtyPort,
        astart_on_free_port,
        free_port,
        port_in_use,
        start_on_free_port,
    )
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

_WHERE: dict[str, str] = {
    "ControlServer": "_control",
    "Credentials": "_pki",
    "DEFAULT_SPECIES": "_plant",
    "FAULTS": "_faults",
    "FaultInjector": "_faults",
    "FaultRecord": "_faults",
    "ModbusRtuSlave": "_modbus_server",
    "ModbusTcpSlave": "_modbus_server",
    "ModuleView": "_view",
    "PeaRuntime": "_opcua_server",
    "PlantBuildError": "_plant",
    "PlantProcess": "_process",
    "PlantServer": "_serve",
    "PtyPort": "_ports",
    "RemoteFaults": "_process",
    "Scenario": "_faults",
    "ScenarioFault": "_faults",
    "SecurityError": "_opcua_server",
    "ServeError": "_serve",
    "ServedEndpoint": "_serve",
    "ServedPlant": "_serve",
    "SimulatedPlant": "_plant",
    "SlaveStore": "_modbus_server",
    "StreamReport": "_plant",
    "TABLE_OF_FC": "_modbus_server",
    "TransportFaults": "_view",
    "Variable": "_view",
    "ViewError": "_view",
    "attach_plant": "_process",
    "build_models": "_plant",
    "check_plant": "_check",
    "default_species": "_plant",
    "free_port": "_ports",
    "PORT_ATTEMPTS": "_ports",
    "astart_on_free_port": "_ports",
    "port_in_use": "_ports",
    "start_on_free_port": "_ports",
    "load_scenario": "_faults",
    "plant_problems": "_check",
    "scenario_from_doc": "_faults",
    "serve_plant": "_serve",
    "spawn_plant": "_process",
}
"""Each public name -> the private module that defines it."""

__all__ = [
    "DEFAULT_SPECIES",
    "FAULTS",
    "PORT_ATTEMPTS",
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
    "astart_on_free_port",
    "attach_plant",
    "build_models",
    "check_plant",
    "default_species",
    "free_port",
    "load_scenario",
    "plant_problems",
    "port_in_use",
    "scenario_from_doc",
    "serve_plant",
    "spawn_plant",
    "start_on_free_port",
]


if not TYPE_CHECKING:  # the checker sees the imports above; a typo stays an error for it
    __getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)

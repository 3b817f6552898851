"""'Is this a parameter of this procedure?' has one home (``Service.not_a_parameter``): the
descriptor check, the recipe validator and the proxy give the same answer and message."""

from __future__ import annotations

from pathlib import Path

import pytest

from modulecontrol.descriptors import (
    ModbusTcpEndpoint,
    ModuleInstance,
    builtin_type_files,
    builtin_types,
    module_type_from_text,
)
from modulecontrol.errors import ConfigError
from modulecontrol.proxy import LocalService, ModuleProxy
from modulecontrol.recipe import load_recipe
from modulecontrol.statemachine import Command

BAD = Path(__file__).resolve().parents[1] / "recipe" / "bad" / "unknown_service_parameter.yaml"


def test_the_rule() -> None:
    svc = builtin_types().get("HPLCPump").service("Dosing")
    volume = svc.procedure("Volume")
    assert svc.parameters(volume) == ["MaxPressure", "FlowSP", "VolumeSP", "InletSP"]
    assert svc.not_a_parameter("VolumeSP", volume) is None
    assert svc.not_a_parameter("VolumeSP", svc.procedure("Continuous")) == (
        "'VolumeSP' is not a parameter of service Dosing procedure Continuous; "
        "parameters: MaxPressure, FlowSP, InletSP")
    assert svc.not_a_parameter("VolumeSP") is None  # some procedure has it


async def test_recipe_validator_and_proxy_say_the_same() -> None:
    svc = builtin_types().get("HPLCPump").service("Dosing")
    expected = svc.not_a_parameter("FlowSp", svc.default_procedure, "P1")
    assert expected is not None and "(did you mean 'FlowSP'?)" in expected
    with pytest.raises(ConfigError) as info:
        load_recipe(BAD)
    assert [p.message for p in info.value.problems] == [expected]

    inst = ModuleInstance(tag="P1", type="HPLCPump",
                          endpoint=ModbusTcpEndpoint(protocol="modbus-tcp", port=1))
    proxy = ModuleProxy(builtin_types().get("HPLCPump"), inst)
    dosing = LocalService(proxy, svc)
    with pytest.raises(ValueError) as err:  # refused before any I/O: the proxy is not started
        await dosing.command(Command.START, parameters={"FlowSp": "1 mL/min"})
    assert str(err.value) == expected
    await dosing.close()


def test_descriptor_action_names_a_parameter_of_its_procedure() -> None:
    (path,) = [p for p in builtin_type_files() if p.name == "hplc_pump.yaml"]
    text = path.read_text()
    assert "Pausing: [{write: Run, value: false}]" in text
    # a service-wide action may use any procedure's parameter ...
    ok = text.replace("Pausing: [{write: Run, value: false}]",
                      "Pausing: [{write: FlowSetpoint, param: VolumeSP}]")
    module_type_from_text(ok, str(path))
    # ... a write naming no parameter at all is refused with the one message
    bad = text.replace("Pausing: [{write: Run, value: false}]",
                       "Pausing: [{write: FlowSetpoint, param: FlowSp}]")
    with pytest.raises(ConfigError, match="'FlowSp' is not a parameter of service Dosing "
                       r"\(did you mean 'FlowSP'\?\); parameters: MaxPressure, FlowSP"):
        module_type_from_text(bad, str(path))

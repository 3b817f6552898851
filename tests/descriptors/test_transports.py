"""The transport registry: bindings and endpoints of any registered protocol, strictly checked."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Literal

import pytest

from modulecontrol.descriptors import (
    AttributeBinding,
    Binding,
    EndpointBase,
    ModbusBinding,
    ModbusTcpEndpoint,
    OpcUaBinding,
    UnknownTransport,
    binding_model,
    dump_model,
    endpoint_model,
    installed_types,
    module_type_from_text,
    register_transport,
    transports,
    unregister_transport,
)
from modulecontrol.drivers import GROUP, register_transports
from modulecontrol.errors import ConfigError

TYPE = """\
kind: ModuleType
name: Gauge
vendor: test
version: 1.0.0
data_assemblies:
  - name: P
    class: AnaView
    unit: bar
    bindings:
      V: {{{key}: {value}}}
"""


def test_a_binding_key_no_transport_provides_is_located_and_lists_the_installed() -> None:
    with pytest.raises(ConfigError) as info:
        module_type_from_text(TYPE.format(key="modbuss", value="{table: input, address: 0}"),
                              "gauge.yaml")
    (problem,) = info.value.problems
    assert str(problem).startswith(
        "gauge.yaml:10:20: data_assemblies[0].bindings.V.modbuss: unknown transport 'modbuss' "
        "(did you mean 'modbus'?); installed: acme, modbus, opcua, serial"
    )  # and the transports of any other plug-in installed (the example devices' textline)


def test_a_registered_binding_model_checks_its_own_keys() -> None:
    with pytest.raises(ConfigError) as info:
        module_type_from_text(TYPE.format(key="acme", value="{reg: p, acess: read}"), "g.yaml")
    got = sorted(str(p) for p in info.value.problems)
    assert any("bindings.V.acme.reg: String should match pattern" in g for g in got), got
    assert any("unknown key 'acess'" in g for g in got), got


def test_bindings_round_trip_through_yaml() -> None:
    heater = installed_types().get("AcmeHeater")
    again = module_type_from_text(dump_model(heater), "again.yaml")
    assert again == heater
    sp = again.assembly("Setpoint").bindings["VMan"]
    assert sp.for_transport("acme") is not None and sp.for_transport("modbus") is None
    with pytest.raises(TypeError, match="not a OpcUaBinding"):
        sp.get("acme", OpcUaBinding)


def test_a_binding_that_does_not_say_it_is_writable_is_read_only() -> None:
    class Plain(Binding):
        where: int

    assert not Plain(where=1).writable and Plain(where=1).readable


def test_two_models_for_one_name_are_refused() -> None:
    before = transports()
    with pytest.raises(ValueError, match="registered twice with different models"):
        register_transport("modbus", OpcUaBinding, (ModbusTcpEndpoint,), origin="other 1.0")

    class Clash(EndpointBase):
        protocol: Literal["modbus-tcp"]

    with pytest.raises(ValueError, match="protocol 'modbus-tcp' is provided by two transports"):
        register_transport("clash", ModbusBinding, (Clash,))
    assert transports() == before
    assert binding_model("modbus") is ModbusBinding


def test_an_endpoint_model_must_name_its_protocol() -> None:
    class Vague(EndpointBase):
        pass

    with pytest.raises(TypeError, match=r"must declare protocol: Literal\['<name>'\]"):
        register_transport("vague", Binding, (Vague,))


def test_a_driver_that_fails_to_load_is_named_where_its_protocol_is_used() -> None:
    broken = {
        "zeta": EntryPoint("zeta", "zeta_nowhere.driver:ZetaDriver", GROUP),
        "named_wrong": EntryPoint("named_wrong", "modulecontrol.drivers.modbus:ModbusDriver",
                                  GROUP),
    }
    try:
        problems = register_transports(broken)
        assert "ModuleNotFoundError" in problems["zeta"]
        assert "declares transport 'modbus', but is registered as 'named_wrong'" in (
            problems["named_wrong"])
        with pytest.raises(UnknownTransport) as info:
            endpoint_model("zeta")
        assert "the installed driver 'zeta' could not be loaded" in str(info.value)
        assert "zeta_nowhere" in str(info.value)
    finally:
        unregister_transport("zeta")
        unregister_transport("named_wrong")
    with pytest.raises(UnknownTransport) as info:
        endpoint_model("zeta")
    assert "could not be loaded" not in str(info.value)


def test_an_attribute_needs_one_transport() -> None:
    with pytest.raises(ValueError, match="needs at least one transport"):
        AttributeBinding.model_validate({})

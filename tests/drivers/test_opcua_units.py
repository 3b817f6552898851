"""Unit-level checks of the OPC UA driver that need no server."""

from __future__ import annotations

import pytest
from asyncua import ua
from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.descriptors import ModuleInstance
from modulecontrol.drivers import load_driver, tag_table
from modulecontrol.drivers.opcua import OpcUaDriver, _to_wire
from tests.drivers._opcua_pea import coil_reactor


def test_entry_point_and_tag_table() -> None:
    assert load_driver("opcua") is OpcUaDriver
    tags = tag_table(coil_reactor(), "opcua")
    info = tags["Tempering.StateCur"]
    assert info.service is not None and info.service.name == "Tempering"
    assert not info.writable and tags["Tempering.CommandExt"].writable
    assert tags["Tempering.StateCur"].binding.identifier == "s=Tempering.StateCur"  # type: ignore[union-attr]


@given(value=st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=False),
                       st.booleans()))
@settings(max_examples=200, deadline=None)
def test_to_wire_uint32_property(value: int | float | bool) -> None:

    try:
        wire = _to_wire(value, ua.VariantType.UInt32)
    except ValueError:
        ok = isinstance(value, bool) or (
            isinstance(value, float) and value.is_integer() and 0 <= value < 2**32)
        assert not ok or not (0 <= int(value) < 2**32)
        return
    assert isinstance(wire, int) and 0 <= wire < 2**32 and wire == value


def test_endpoint_must_be_opcua() -> None:
    inst = ModuleInstance.model_validate(
        {"tag": "R1", "type": "CoilReactor",
         "endpoint": {"protocol": "modbus-tcp", "host": "127.0.0.1"}})
    with pytest.raises(ValueError, match="needs an 'opcua' endpoint"):
        OpcUaDriver(coil_reactor(), inst)

"""Unit-level checks of the OPC UA driver that need no server."""

from __future__ import annotations

import pytest
from asyncua import ua
from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.descriptors import ModuleInstance, OpcUaBinding
from modulecontrol.drivers import load_driver, tag_table
from modulecontrol.drivers.opcua import (
    MAX_BACKOFF,
    OpcUaDriver,
    _to_wire,
    backoff_delays,
    redact_identity_tokens,
)
from tests.drivers._opcua_pea import coil_reactor


def test_entry_point_and_tag_table() -> None:
    assert load_driver("opcua") is OpcUaDriver
    tags = tag_table(coil_reactor(), "opcua")
    info = tags["Tempering.StateCur"]
    assert info.service is not None and info.service.name == "Tempering"
    assert not info.writable and tags["Tempering.CommandExt"].writable
    b = tags["Tempering.StateCur"].binding
    assert isinstance(b, OpcUaBinding) and b.identifier == "s=Tempering.StateCur"


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


def test_served_types_follow_mtp() -> None:
    from modulecontrol.simulators.opcua_pea import attribute_variant_type

    tags = tag_table(coil_reactor(), "opcua")
    vt = ua.VariantType
    expected = {
        "Tempering.StateCur": vt.UInt32, "Tempering.CommandEn": vt.UInt32,
        "Tempering.StateAutOp": vt.Boolean, "Tempering.TagName": vt.String,
        "TempSP.VExt": vt.Double, "TempSP.ApplyExt": vt.Boolean, "TempSP.VUnit": vt.Int32,
        "Fouled.V": vt.Boolean, "T.WQC": vt.Byte, "T.VAHLim": vt.Double,
    }
    assert {t: attribute_variant_type(tags[t]) for t in expected} == expected


def test_explicit_service_binding_wins() -> None:
    mt = coil_reactor().model_copy(deep=True)
    svc = mt.services[0]
    from modulecontrol.descriptors import AttributeBinding

    svc.bindings["StateCur"] = AttributeBinding.model_validate(
        {"opcua": {"namespace_uri": "urn:x", "identifier": "i=5001"}})
    info = tag_table(mt, "opcua")["Tempering.StateCur"]
    assert isinstance(info.binding, OpcUaBinding) and info.binding.identifier == "i=5001"
    assert info.service is svc


def test_identity_token_redacted_in_asyncua_debug_log() -> None:
    import logging

    logger = logging.getLogger("asyncua.client.ua_client.UASocketProtocol")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    redact_identity_tokens()  # what every OpcUaDriver does when it is made
    handler = Keep(level=logging.DEBUG)
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("Sending: %s", "UserNameIdentityToken(Password=b'hunter2')")
        logger.debug("Sending: %s", "ReadRequest")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    assert "hunter2" not in records[0].getMessage()
    assert records[1].getMessage() == "Sending: ReadRequest"


@given(first=st.floats(0.001, 20), n=st.integers(1, 40))
def test_backoff_is_bounded_and_grows(first: float, n: int) -> None:
    gen = backoff_delays(first)
    delays = [next(gen) for _ in range(n)]
    assert all(0 < d <= MAX_BACKOFF for d in delays)
    assert delays == sorted(delays)
    if n >= 20:
        assert delays[-1] == MAX_BACKOFF

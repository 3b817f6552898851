"""The coded stirrer against the kit, and its codec's properties."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from example_devices.simulator import StirrerSimulator
from example_devices.textline import (
    NAME,
    CodecError,
    Reply,
    TextLineDriver,
    decode_reply,
    decode_request,
    encode_read,
    encode_reply,
    encode_write,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.descriptors import ModuleInstance, installed_types
from modulecontrol.testing import (
    DriverConformance,
    DriverFactory,
    Misspelling,
    Outage,
    WritableCase,
    safe_state_writes,
)


def stirrer_driver(port: str) -> TextLineDriver:
    """The driver for an ExampleStirrer at ``port``, as a plant would declare it."""
    instance = ModuleInstance.model_validate(
        {"tag": "S1", "type": "ExampleStirrer",
         "endpoint": {"protocol": "textline", "port": port, "timeout": 0.3}})
    return TextLineDriver(installed_types().get("ExampleStirrer"), instance)


class TestExampleStirrer(DriverConformance):
    @pytest.fixture
    def device(self, tmp_path: Path) -> StirrerSimulator:
        return StirrerSimulator(link=tmp_path / "ttySTIR")  # the kit starts and stops it

    @pytest.fixture
    def driver_factory(self, running_device: StirrerSimulator,
                       modulecontrol_wiring: Any) -> DriverFactory:
        return lambda: stirrer_driver(running_device.port)

    @pytest.fixture
    def writable_tag(self) -> WritableCase:
        return WritableCase("Setpoint.VMan", 250.0, 1200.0, readback="Setpoint.VRbk")

    @pytest.fixture
    def readonly_tag(self) -> str:
        return "Speed.V"

    @pytest.fixture
    def out_of_range(self) -> tuple[str, Any]:
        return ("Setpoint.VMan", 1600.0)

    @pytest.fixture
    def misspelled_tag(self) -> Misspelling:
        return Misspelling("Setpoint.VMn", "Setpoint.VMan")

    @pytest.fixture
    def stall(self, running_device: StirrerSimulator) -> Outage:
        @contextlib.asynccontextmanager
        async def silent() -> AsyncIterator[None]:
            running_device.silent = True
            try:
                yield
            finally:
                running_device.silent = False

        return silent

    @pytest.fixture
    def outage(self, running_device: StirrerSimulator) -> Outage:
        @contextlib.asynccontextmanager
        async def unplugged() -> AsyncIterator[None]:
            running_device.vanish()
            try:
                yield
            finally:
                running_device.reappear()

        return unplugged

    @pytest.fixture
    def safe_state(self, modulecontrol_wiring: Any) -> list[tuple[str, Any]]:
        stirrer = installed_types().get("ExampleStirrer")
        return safe_state_writes(stirrer, set(stirrer_driver("/dev/null").tags))

    @pytest.fixture
    def readbacks(self) -> dict[str, str]:
        return {"Setpoint.VMan": "Setpoint.VRbk", "Stir.VMan": "Stir.VRbk"}


NO_DEADLINE = settings(deadline=None)
"""No timing in tests: a busy machine must not fail them."""

names = st.from_regex(rf"\A{NAME}\Z")
numbers = st.floats(allow_nan=False, allow_infinity=False)


@NO_DEADLINE
@given(names, numbers)
def test_a_write_request_decodes_to_what_was_encoded(name: str, value: float) -> None:
    assert decode_request(encode_write(name, value)) == (name, value)
    assert decode_request(encode_read(name)) == (name, None)


@NO_DEADLINE
@given(st.one_of(
    st.builds(lambda n, v: Reply("value", n, value=v), names, numbers),
    st.builds(lambda n: Reply("ok", n), names),
    st.builds(lambda c, n, t: Reply("error", n, code=c, text=t), st.integers(0, 9), names,
              st.from_regex(r"\A[a-z0-9.]{0,20}\Z")),
))
def test_a_reply_decodes_to_what_was_encoded(reply: Reply) -> None:
    assert decode_reply(encode_reply(reply)) == reply


@NO_DEADLINE
@given(st.one_of(st.binary(max_size=64),
                 st.from_regex(rb"\A(OK |ERR \d |)[A-Z_0-9=.e+-]{0,20}\r?\n?\Z")))
def test_any_line_is_a_reply_or_a_codec_error(line: bytes) -> None:
    """Noise on the line is a CodecError (the driver's BadReply), never another exception,
    and what decodes is a reply the device could have sent: encoding it decodes to it."""
    try:
        reply = decode_reply(line)
    except CodecError as exc:
        assert str(exc)
        return
    assert decode_reply(encode_reply(reply)) == reply


def test_device_refusals_are_the_protocols_errors() -> None:
    sim = StirrerSimulator()
    assert sim.answer(b"!SPEED_SP=2000\r\n") == Reply("error", "SPEED_SP", code=3,
                                                      text="0..1500")
    assert sim.answer(b"!SPEED=1\r\n").code == 4
    assert sim.answer(b"?TORQUE\r\n").code == 2
    assert sim.answer(b"hello\r\n").code == 5

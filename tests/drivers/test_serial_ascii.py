"""Framing, checksums and reply parsing of the serial driver, without any port."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.descriptors import SerialCommand, SerialEndpoint
from modulecontrol.drivers import BadReply, DeviceRejected
from modulecontrol.drivers.ascii_codec import (
    Framing,
    checksum_hex,
    convert,
    parse_reply,
    render,
)


def test_checksum_known_vectors() -> None:
    # CRC-16/MODBUS check value from the CRC catalogue; sum8 and xor by hand.
    assert checksum_hex("crc16-modbus", b"123456789") == "4B37"
    assert checksum_hex("sum8", b"\x01\x02\xff") == "02"
    assert checksum_hex("xor", b"\x0f\xf0\x01") == "FE"
    assert checksum_hex("none", b"abc") == ""


@pytest.mark.parametrize("kind", ["sum8", "xor", "crc16-modbus"])
def test_frame_unframe_round_trip(kind: str) -> None:
    f = Framing(address=7, checksum=kind)  # type: ignore[arg-type]
    framed = f.frame("RAT 1.5 MM")
    assert framed.startswith(b"07RAT 1.5 MM") and framed.endswith(b"\r")
    assert f.unframe(framed) == "RAT 1.5 MM"
    corrupted = framed.replace(b"1.5", b"1.6")
    with pytest.raises(BadReply, match="checksum mismatch"):
        f.unframe(corrupted)


def test_wrong_address_is_bad_reply() -> None:
    f = Framing(address=1)
    with pytest.raises(BadReply, match="address 01"):
        f.unframe(b"02S14.50\r")


@pytest.mark.parametrize(
    ("reply", "code"),
    [(b"?\r", "?"), (b"S?OOR\r", "?OOR"), (b"I?NA\r", "?NA"), (b"?COM\r", "?COM")],
)
def test_error_replies(reply: bytes, code: str) -> None:
    cmd = SerialCommand(command="DIA", response=r"^[ISA](?P<value>[0-9.]+)$")
    with pytest.raises(DeviceRejected) as info:
        parse_reply(Framing(), cmd, reply)
    assert info.value.code == code


def test_error_pattern_from_endpoint() -> None:
    ep = SerialEndpoint(protocol="serial", port="/dev/null", error_pattern=r"^ERR (?P<code>\d+)$",
                        read_terminator="\r\n")
    f = Framing.from_endpoint(ep)
    assert f.read_terminator == b"\r\n"
    with pytest.raises(DeviceRejected) as info:
        f.check_error(f.unframe(b"ERR 12\r\n"))
    assert info.value.code == "12"
    f.check_error("?")  # the default pattern no longer applies


def test_terminators_are_not_stripped_by_the_model() -> None:
    ep = SerialEndpoint(protocol="serial", port="/dev/x", write_terminator="\r\n",
                        read_terminator="\n")
    assert (ep.write_terminator, ep.read_terminator) == ("\r\n", "\n")


def test_render() -> None:
    assert render(SerialCommand(command="DIA {value:.2f}"), 14.5) == "DIA 14.50"
    assert render(SerialCommand(true_command="RUN", false_command="STP"), True) == "RUN"
    assert render(SerialCommand(true_command="RUN", false_command="STP"), False) == "STP"
    assert render(SerialCommand(command="OUT {value}"), True) == "OUT 1"
    assert render(SerialCommand(command="N {value:d}", conversion="int"), 3.0) == "N 3"
    assert render(SerialCommand(command="DIS"), None) == "DIS"
    with pytest.raises(ValueError, match="cannot fill"):
        render(SerialCommand(command="N {value:d}"), "x")


@pytest.mark.parametrize(
    ("conversion", "raw", "value"),
    [("float", "1.25", 1.25), ("int", "-3", -3), ("bool", "1", True), ("bool", "off", False),
     ("str", "SYR-1", "SYR-1")],
)
def test_conversions(conversion: str, raw: str, value: object) -> None:
    assert convert(conversion, raw) == value


@pytest.mark.parametrize(("conversion", "raw"),
                         [("float", "nan"), ("float", "1e999"), ("int", "1.5"), ("bool", "2")])
def test_bad_conversions(conversion: str, raw: str) -> None:
    with pytest.raises(BadReply):
        convert(conversion, raw)


def test_value_group_rules() -> None:
    named = SerialCommand(command="X", response=r"^(A)(?P<value>\d+)$", conversion="int")
    first = SerialCommand(command="X", response=r"^S(\d+)$", conversion="int")
    whole = SerialCommand(command="X", response=r"\d+", conversion="int")
    assert parse_reply(Framing(), named, b"A42\r")[0] == 42
    assert parse_reply(Framing(), first, b"S7\r")[0] == 7
    assert parse_reply(Framing(), whole, b"S99x\r")[0] == 99
    with pytest.raises(BadReply, match="does not match"):
        parse_reply(Framing(), first, b"S7x\r")


_COMMANDS = [
    SerialCommand(command="DIA", response=r"^[ISA](?P<value>[0-9]+\.[0-9]+)$"),
    SerialCommand(command="STA", response=r"^[ISA](?P<value>[01])$", conversion="bool"),
    SerialCommand(command="N", response=r"(-?\d+)", conversion="int"),
    SerialCommand(command="V", conversion="str"),
    SerialCommand(command="F"),
    SerialCommand(command="O", response=r"^(?P<value>x)?y$"),
]
_FRAMINGS = [
    Framing(),
    Framing(address=3, checksum="crc16-modbus"),
    Framing(checksum="sum8", read_terminator=b"\r\n"),
    Framing(address=0, checksum="xor", error_pattern=re.compile(r"^E(?P<code>\d*)$")),
    Framing(error_pattern=None),
]


@settings(max_examples=400, deadline=None)
@given(
    reply=st.one_of(
        st.binary(max_size=60),
        st.text(alphabet="0123456789.?ISAEWML -x\r\n", max_size=30).map(str.encode),
    ),
    cmd_i=st.integers(0, len(_COMMANDS) - 1),
    framing_i=st.integers(0, len(_FRAMINGS) - 1),
)
def test_parser_raises_only_typed_errors(reply: bytes, cmd_i: int, framing_i: int) -> None:
    framing = _FRAMINGS[framing_i]
    cmd = _COMMANDS[cmd_i]
    try:
        value, text = parse_reply(framing, cmd, reply)
    except (BadReply, DeviceRejected) as exc:
        assert str(exc)
        return
    assert isinstance(text, str)
    assert value is None or isinstance(value, bool | int | float | str)


@settings(max_examples=200, deadline=None)
@given(value=st.floats(0, 50, allow_nan=False), addr=st.integers(0, 99),
       kind=st.sampled_from(["none", "sum8", "xor", "crc16-modbus"]))
def test_framed_reply_round_trips(value: float, addr: int, kind: str) -> None:
    # What a device sends for a value parses back to that value (to the printed precision).
    f = Framing(address=addr, checksum=kind)  # type: ignore[arg-type]
    body = f"{addr:02d}S{value:.3f}".encode()
    line = body + checksum_hex(kind, body).encode() + b"\r"  # type: ignore[arg-type]
    got, _ = parse_reply(f, _COMMANDS[0], line)
    assert got == pytest.approx(value, abs=5e-4)


def test_documented_checksum_examples() -> None:
    # The examples in docs/syringe-protocol.md.
    assert Framing(checksum="crc16-modbus").frame("DIA") == b"DIA75C6\r"
    assert Framing(checksum="crc16-modbus").unframe(b"S14.50C108\r") == "S14.50"
    assert Framing(address=1, checksum="sum8").frame("RUN") == b"01RUN56\r"
    assert Framing(address=1, checksum="sum8").unframe(b"01IAA\r") == "I"

"""The SYR-1 emulator's protocol handling and its built-in syringe model, without a pty."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.drivers.ascii_codec import checksum_hex
from modulecontrol.simulators.syringe_serial import BuiltinSyringe, SyringeSerialEmulator


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def test_handle_commands() -> None:
    emu = SyringeSerialEmulator(pumps={0: BuiltinSyringe(clock=Clock())})
    assert emu.handle(b"RAT 30 MH") == b"S\r"
    assert emu.handle(b"RAT") == b"S0.5000MM\r"
    assert emu.handle(b"rat 500 um") == b"S\r"
    assert emu.handle(b"RAT") == b"S0.5000MM\r"
    assert emu.handle(b"RAT 1 XX") == b"S?\r"
    assert emu.handle(b"RAT -1") == b"S?OOR\r"
    assert emu.handle(b"DIA 0.01") == b"S?OOR\r"
    assert emu.handle(b"DIS 3") == b"S?\r"
    assert emu.handle(b"\x01DIA") == b"S?COM\r"
    assert emu.handle(b"07DIA") is None  # not on this chain


def test_checksum_checked_on_requests() -> None:
    emu = SyringeSerialEmulator(checksum="xor")
    good = b"DIA" + checksum_hex("xor", b"DIA").encode()
    assert emu.handle(good) == b"S14.50" + checksum_hex("xor", b"S14.50").encode() + b"\r"
    assert emu.handle(b"DIA00").startswith(b"S?COM")  # type: ignore[union-attr]


def test_builtin_model_integrates_and_refills() -> None:
    clock = Clock()
    pump = BuiltinSyringe(syringe_volume="10 mL", clock=clock)
    pump.flow_setpoint = 2.0
    pump.running = True
    clock.t = 90.0
    assert pump.dispensed == 3.0 and pump.volume_left == 7.0
    clock.t = 600.0
    assert pump.volume_left == 0.0 and not pump.running and pump.dispensed == 10.0
    pump.refill()
    assert pump.volume_left == 10.0


@settings(max_examples=300, deadline=None)
@given(line=st.one_of(st.binary(max_size=40),
                      st.text(alphabet="0123456789 .-+?DIARTSUNPVLFEMHWXab", max_size=20)
                      .map(str.encode)))
def test_emulator_never_crashes(line: bytes) -> None:
    emu = SyringeSerialEmulator(pumps={0: BuiltinSyringe(clock=Clock())})
    reply = emu.handle(line)
    assert reply is None or (reply.endswith(b"\r") and reply[:1] in (b"I", b"S", b"A", b"0"))

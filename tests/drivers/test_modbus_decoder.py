"""Compiled block decoders agree with the per-tag reference codec, for every type and order."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modulecontrol.descriptors import ModbusBinding
from modulecontrol.drivers._base import TagValue
from modulecontrol.drivers.modbus_codec import (
    BlockDecoder,
    decode_registers,
    tag_decoder,
    to_engineering,
)

TYPES = ["int16", "uint16", "int32", "uint32", "float32", "float64", "bool"]
ORDERS = ["big", "little"]


@st.composite
def register_tags(draw: st.DrawFn) -> tuple[list[tuple[str, ModbusBinding, bool]], list[int]]:
    regs = draw(st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=30))
    tags = []
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(TYPES))
        width = {"float64": 4, "int32": 2, "uint32": 2, "float32": 2}.get(kind, 1)
        address = draw(st.integers(0, len(regs) - width))
        fields: dict[str, object] = {"table": "holding", "address": 100 + address, "type": kind}
        if kind == "bool":
            fields["bit"] = draw(st.integers(0, 15))
        else:
            fields["word_order"] = draw(st.sampled_from(ORDERS))
            fields["byte_order"] = draw(st.sampled_from(ORDERS))
            if draw(st.booleans()):
                fields["scale"] = draw(st.sampled_from([0.1, 0.5, -2.0, 10.0]))
                fields["offset"] = draw(st.sampled_from([0.0, -50.0, 3.25]))
        tags.append((f"T{i}", ModbusBinding.model_validate(fields), draw(st.booleans())))
    return tags, regs


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b and type(a) is type(b)


@given(register_tags())
def test_registers_match_reference(case: tuple[list[tuple[str, ModbusBinding, bool]],
                                               list[int]]) -> None:
    tags, regs = case
    dec = BlockDecoder(len(regs), False,
                       [tag_decoder(n, b, 100, as_bool) for n, b, as_bool in tags])
    out: dict[str, TagValue] = {}
    dec.decode([*regs, 0, 0], 12.5, out)  # a longer reply is cut to the block
    for name, b, as_bool in tags:
        at = b.address - 100
        raw = decode_registers(b, regs[at:at + b.count])
        value = to_engineering(b, raw)
        if as_bool:
            value = bool(value)
        assert _same(out[name].raw, raw), (name, b)
        assert _same(out[name].value, value), (name, b)
        assert out[name].timestamp == 12.5 and out[name].good


@given(st.lists(st.booleans(), min_size=1, max_size=40), st.data())
def test_bits_match(bits: list[bool], data: st.DataObject) -> None:
    picks = data.draw(st.lists(st.integers(0, len(bits) - 1), min_size=1, max_size=5,
                               unique=True))
    decoders = [tag_decoder(f"B{i}", ModbusBinding(table="coil", address=7 + i), 7, True)
                for i in picks]
    out: dict[str, TagValue] = {}
    BlockDecoder(len(bits), True, decoders).decode([*bits, *[False] * 7], 0.0, out)
    assert {k: v.value for k, v in out.items()} == {f"B{i}": bits[i] for i in picks}


def test_short_reply_is_refused() -> None:
    dec = BlockDecoder(4, False, [tag_decoder("T", ModbusBinding(table="input", address=0), 0,
                                              False)])
    with pytest.raises(ValueError, match="3 values instead of 4"):
        dec.decode([1, 2, 3], 0.0, {})

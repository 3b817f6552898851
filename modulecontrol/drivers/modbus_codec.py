"""Register <-> value conversion: data types, word and byte order, scale and offset.

Public because two sides speak it: the Modbus driver, and every simulated or test device that
serves the same register map (``modulecontrol.simulators``), so both decode alike.

Engineering value = raw * scale + offset. Writing inverts it and checks the result fits the
raw type *before* anything goes on the wire, so a set point of 700 on an int16 register scaled
by 0.01 is refused (OutOfRange) rather than silently wrapped by the device.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from pymodbus.client.mixin import ModbusClientMixin

from modulecontrol.descriptors import REGISTER_COUNT, ModbusBinding
from modulecontrol.drivers._base import Quality, TagValue

_DT = ModbusClientMixin.DATATYPE
_DATATYPE: dict[str, Any] = {
    "int16": _DT.INT16,
    "uint16": _DT.UINT16,
    "int32": _DT.INT32,
    "uint32": _DT.UINT32,
    "float32": _DT.FLOAT32,
    "float64": _DT.FLOAT64,
}

INT_RANGE: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}
FLOAT32_MAX = 3.4028234663852886e38


def _swap_bytes(regs: Sequence[int]) -> list[int]:
    return [((r & 0xFF) << 8) | (r >> 8) for r in regs]


_STRUCT: dict[str, struct.Struct] = {
    k: struct.Struct(">" + f) for k, f in
    {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f",
     "float64": "d"}.items()
}


def decode_registers(b: ModbusBinding, regs: Sequence[int]) -> int | float | bool:
    """The raw value held in ``regs`` (exactly ``b.count`` registers starting at the tag).

    Plain ``struct`` rather than pymodbus' ``convert_from_registers``: this runs once per tag
    per poll, and the byte order (which pymodbus does not handle) folds in for free.
    """
    if b.type == "bool":
        assert b.bit is not None
        return bool((regs[0] >> b.bit) & 1)
    words = list(regs)
    if b.word_order == "little":
        words.reverse()
    if b.byte_order == "little":
        words = _swap_bytes(words)
    value: int | float = _STRUCT[b.type or "uint16"].unpack(
        b"".join(w.to_bytes(2, "big") for w in words))[0]
    return value


def encode_registers(b: ModbusBinding, raw: int | float) -> list[int]:
    """Registers for a raw value already checked by :func:`to_raw`."""
    regs: list[int] = ModbusClientMixin.convert_to_registers(
        raw, _DATATYPE[b.type or "uint16"], word_order=b.word_order
    )
    return _swap_bytes(regs) if b.byte_order == "little" else regs


def to_engineering(b: ModbusBinding, raw: int | float | bool) -> int | float | bool:
    """Apply scale and offset; booleans and unscaled integers keep their type."""
    if isinstance(raw, bool):
        return raw
    if b.scale == 1.0 and b.offset == 0.0:
        return raw
    return raw * b.scale + b.offset


def to_raw(b: ModbusBinding, value: Any) -> int | float | bool:
    """Invert scale and offset and check the raw type's range.

    Raises ``ValueError`` (the driver turns it into OutOfRange) with the range in engineering
    units, so the message tells the user which values the register can take.
    """
    kind = b.type or "uint16"
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if value in (0, 1):
            return bool(value)
        raise ValueError(f"a boolean tag takes true/false, not {value!r}")
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int | float):
        raise ValueError(f"a {kind} register takes a number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{value!r} cannot be written to a {kind} register")
    raw = (value - b.offset) / b.scale if (b.scale != 1.0 or b.offset != 0.0) else value
    if kind in INT_RANGE:
        lo, hi = INT_RANGE[kind]
        rounded = round(raw)
        if not lo <= rounded <= hi:
            raise ValueError(
                f"{value!r} is outside what a {kind} register can hold "
                f"[{_eng(b, lo):g}, {_eng(b, hi):g}] with scale {b.scale:g} "
                f"and offset {b.offset:g}"
            )
        return int(rounded)
    if kind == "float32" and abs(raw) > FLOAT32_MAX:
        raise ValueError(f"{value!r} is outside the float32 range (±{FLOAT32_MAX:.3g})")
    return float(raw)


def _eng(b: ModbusBinding, raw: int) -> float:
    lo = raw * b.scale + b.offset
    return float(lo)


def with_bit(word: int, bit: int, on: bool) -> int:
    """``word`` with ``bit`` set or cleared (read-modify-write of a packed boolean)."""
    return (word | (1 << bit)) if on else (word & ~(1 << bit) & 0xFFFF)


# -- compiled read decoders -----------------------------------------------------------------
# Why: a poll decodes the same tags from the same block layout every time. Working out per tag
# and per call which struct, which slice, whether to scale and whether the assembly wants a
# bool costs more than the decoding itself, so it is done once per read plan (BlockDecoder)
# and the hot loop only indexes, unpacks and scales.

BITS, REG_BIT, STRUCT, GENERIC = 0, 1, 2, 3
"""How a tag is taken out of its block: a bit of a bit table, a bit of a register, one
``struct.unpack_from`` on the block's bytes (big/big or little/little layouts), or the general
:func:`decode_registers` (mixed word/byte orders)."""


class TagDecoder(NamedTuple):
    """One tag of a block, with everything its decoding needs resolved in advance."""

    name: str
    kind: int
    at: int
    """Index of the tag's first register/bit in the block (a byte offset for STRUCT)."""
    unpack_from: Callable[[bytes, int], tuple[Any, ...]] | None
    bit: int
    binding: ModbusBinding
    scale: float
    offset: float
    scaled: bool
    as_bool: bool
    """The assembly holds a boolean: a numeric register is read as ``value != 0``."""


def tag_decoder(name: str, b: ModbusBinding, block_address: int, as_bool: bool) -> TagDecoder:
    """The decoder of tag ``name`` bound by ``b`` inside a block starting at ``block_address``."""
    at = b.address - block_address
    kind = b.type or "uint16"
    scaled = kind != "bool" and (b.scale != 1.0 or b.offset != 0.0)
    common = (b, float(b.scale), float(b.offset), scaled, as_bool)
    if b.table in ("coil", "discrete_input"):
        return TagDecoder(name, BITS, at, None, 0, *common)
    if kind == "bool":
        assert b.bit is not None
        return TagDecoder(name, REG_BIT, at, None, b.bit, *common)
    single = REGISTER_COUNT[kind] == 1
    if b.byte_order == b.word_order or single:
        # big/big is the wire order; little/little is the whole value byte-reversed, which
        # is plain little-endian. A single register has no word order.
        endian = "<" if b.byte_order == "little" else ">"
        fmt = struct.Struct(endian + _STRUCT[kind].format[1:])
        return TagDecoder(name, STRUCT, 2 * at, fmt.unpack_from, 0, *common)
    return TagDecoder(name, GENERIC, at, None, 0, *common)


class BlockDecoder:
    """Turns one block's reply (registers or bits) into TagValues, for a fixed set of tags."""

    __slots__ = ("_pack", "bits", "count", "tags")

    def __init__(self, count: int, bits: bool, tags: Sequence[TagDecoder]) -> None:
        self.count = count
        self.bits = bits
        self.tags = tuple(tags)
        needs_bytes = any(t.kind == STRUCT for t in self.tags)
        self._pack = struct.Struct(f">{count}H").pack if needs_bytes else None

    def decode(self, data: Sequence[Any], now: float, out: dict[str, TagValue]) -> None:
        """Add the block's tags to ``out``; ``data`` must hold at least ``count`` values."""
        if len(data) != self.count:
            if len(data) < self.count:
                raise ValueError(f"{len(data)} values instead of {self.count}")
            data = data[:self.count]
        buf = self._pack(*data) if self._pack is not None else b""
        good = Quality.GOOD
        raw: int | float | bool
        for name, kind, at, unpack_from, bit, b, scale, offset, scaled, as_bool in self.tags:
            if kind == STRUCT:
                raw = unpack_from(buf, at)[0]  # type: ignore[misc]
            elif kind == BITS:
                raw = bool(data[at])
            elif kind == REG_BIT:
                raw = bool((data[at] >> bit) & 1)
            else:
                raw = decode_registers(b, data[at:at + b.count])
            value = raw * scale + offset if scaled else raw
            if as_bool:
                value = bool(value)
            out[name] = TagValue(value, good, now, raw)

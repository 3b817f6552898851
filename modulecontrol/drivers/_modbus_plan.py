"""Read coalescing: the fewest Modbus requests that cover a set of tags.

Kept free of I/O so it can be property-tested: every request costs a round trip (several ms on
a serial line), so merging tags that sit close together is the main lever on poll rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from modulecontrol.descriptors import ModbusBinding, ModbusTable

MAX_REGISTERS = 125
"""Registers one read of holding or input registers may return (Modbus spec, FC 3/4)."""
MAX_BITS = 2000
"""Bits one read of coils or discrete inputs may return (Modbus spec, FC 1/2)."""

BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete_input"})


def limit_of(table: str) -> int:
    """Most registers or bits one read request of ``table`` may cover."""
    return MAX_BITS if table in BIT_TABLES else MAX_REGISTERS


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` registers or bits of ``table`` from ``address`` on a unit."""

    table: ModbusTable
    unit_id: int
    address: int
    count: int
    tags: tuple[str, ...]

    @property
    def end(self) -> int:
        """First address past the block."""
        return self.address + self.count


def plan_reads(
    bindings: Mapping[str, ModbusBinding] | Iterable[tuple[str, ModbusBinding]],
    max_gap: int,
    *,
    default_unit: int = 1,
) -> list[Block]:
    """Group tags into blocks, one request each, within the protocol limits.

    Per (table, unit id), tags are sorted by address and taken greedily: a tag joins the open
    block when the hole before it is at most ``max_gap`` registers (or bits) and the block
    stays within 125 registers / 2000 bits; otherwise it starts a new block. Tags that overlap
    (``VMan`` and ``VRbk`` on one register) share a block. The result is ordered by table,
    unit and address so the same tags always give the same requests.
    """
    if max_gap < 0:
        raise ValueError("max_gap must be >= 0")
    items = list(bindings.items()) if isinstance(bindings, Mapping) else list(bindings)
    groups: dict[tuple[str, int], list[tuple[int, int, str]]] = {}
    for name, b in items:
        unit = default_unit if b.unit_id is None else b.unit_id
        groups.setdefault((b.table, unit), []).append((b.address, b.count, name))
    blocks: list[Block] = []
    for (table, unit), spans in sorted(groups.items()):
        limit = limit_of(table)
        spans.sort()
        start = end = -1
        names: list[str] = []
        for address, count, name in spans:
            if names and address - end <= max_gap and max(end, address + count) - start <= limit:
                end = max(end, address + count)
                names.append(name)
                continue
            if names:
                blocks.append(_block(table, unit, start, end, names))
            start, end, names = address, address + count, [name]
        if names:
            blocks.append(_block(table, unit, start, end, names))
    return blocks


def _block(table: str, unit: int, start: int, end: int, names: list[str]) -> Block:
    t: ModbusTable
    if table == "coil":
        t = "coil"
    elif table == "discrete_input":
        t = "discrete_input"
    elif table == "holding":
        t = "holding"
    else:
        t = "input"
    return Block(t, unit, start, end - start, tuple(names))

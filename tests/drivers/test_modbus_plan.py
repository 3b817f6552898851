"""Property tests of read coalescing (plan_reads), a pure function."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.descriptors import ModbusBinding
from modulecontrol.drivers.modbus import MAX_BITS, MAX_REGISTERS, Block, plan_reads

TABLES = ["coil", "discrete_input", "holding", "input"]
REG_TYPES = ["uint16", "int32", "float32", "float64"]


@st.composite
def bindings(draw: st.DrawFn) -> dict[str, ModbusBinding]:
    n = draw(st.integers(0, 40))
    out: dict[str, ModbusBinding] = {}
    for i in range(n):
        table = draw(st.sampled_from(TABLES))
        kind = "bool" if table in ("coil", "discrete_input") else draw(st.sampled_from(REG_TYPES))
        address = draw(st.integers(0, 3000))
        unit = draw(st.sampled_from([None, 1, 2]))
        out[f"T{i}"] = ModbusBinding.model_validate(
            {"table": table, "address": address, "type": kind, "unit_id": unit})
    return out


def _limit(table: str) -> int:
    return MAX_BITS if table in ("coil", "discrete_input") else MAX_REGISTERS


def _dp_minimum(spans: list[tuple[int, int]], gap: int, limit: int) -> int:
    """Fewest runs of consecutive (sorted) spans, each run a valid block: a reference."""
    n = len(spans)
    best = [0] + [n + 1] * n
    for j in range(1, n + 1):
        for i in range(j):
            start, end, ok = spans[i][0], spans[i][0] + spans[i][1], True
            for a, c in spans[i + 1:j]:
                if a - end > gap:
                    ok = False
                    break
                end = max(end, a + c)
            if ok and end - start <= limit:
                best[j] = min(best[j], best[i] + 1)
    return best[n]


@settings(max_examples=150, deadline=None)
@given(bindings(), st.integers(0, 20))
def test_plan_covers_each_tag_once_within_limits(bs: dict[str, ModbusBinding], gap: int) -> None:
    blocks = plan_reads(bs, gap, default_unit=1)
    seen: dict[str, Block] = {}
    for blk in blocks:
        assert 1 <= blk.count <= _limit(blk.table)
        for name in blk.tags:
            assert name not in seen, f"{name} read twice"
            seen[name] = blk
    assert set(seen) == set(bs)
    for name, blk in seen.items():
        b = bs[name]
        assert blk.table == b.table
        assert blk.unit_id == (1 if b.unit_id is None else b.unit_id)
        assert blk.address <= b.address and b.address + b.count <= blk.end
    for blk in blocks:  # no hole inside a block is wider than max_gap
        covered = sorted((bs[n].address, bs[n].address + bs[n].count) for n in blk.tags)
        assert covered[0][0] == blk.address and max(e for _, e in covered) == blk.end
        reach = covered[0][1]
        for a, e in covered[1:]:
            assert a - reach <= gap
            reach = max(reach, e)


@settings(max_examples=150, deadline=None)
@given(bindings(), st.integers(0, 20))
def test_plan_is_minimal_for_sorted_addresses(bs: dict[str, ModbusBinding], gap: int) -> None:
    blocks = plan_reads(bs, gap, default_unit=1)
    groups: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for b in bs.values():
        unit = 1 if b.unit_id is None else b.unit_id
        groups.setdefault((b.table, unit), []).append((b.address, b.count))
    expected = sum(_dp_minimum(sorted(s), gap, _limit(t)) for (t, _), s in groups.items())
    assert len(blocks) == expected


def test_limits_split_long_runs() -> None:
    regs = {f"R{i}": ModbusBinding(table="holding", address=i * 2, type="float32")
            for i in range(100)}
    blocks = plan_reads(regs, 0)
    assert [b.count for b in blocks] == [124, 76]
    bits = {f"C{i}": ModbusBinding(table="coil", address=i) for i in range(2500)}
    assert [b.count for b in plan_reads(bits, 0)] == [2000, 500]


def test_gap_decides_merging() -> None:
    bs = {"a": ModbusBinding(table="input", address=0), "b": ModbusBinding(table="input",
                                                                           address=9)}
    assert len(plan_reads(bs, 8)) == 1
    assert len(plan_reads(bs, 7)) == 2

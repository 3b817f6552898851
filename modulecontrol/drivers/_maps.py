"""Where every attribute of a module type lives on the wire, as tables a person reads.

One source for ``modulecontrol describe TYPE --bindings`` and for the generated page
``docs/register-maps.md``: both are made from the descriptor's bindings through
:func:`tag_table` (so the OPC UA defaults of a type appear exactly as the driver resolves them),
never written by hand, so the documented map cannot drift from what the driver and the
simulator use.

Regenerate the page with ``python -m modulecontrol.docgen register-maps docs/register-maps.md``
(``make docs``); a test fails when the committed page differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from modulecontrol.descriptors import ModbusBinding, ModuleType, OpcUaBinding, SerialBinding
from modulecontrol.drivers._base import TagInfo, tag_table

__all__ = ["BindingTable", "binding_tables", "register_maps_markdown"]

TRANSPORTS = ("modbus", "opcua", "serial")
_TABLE_ORDER = {"coil": 0, "discrete_input": 1, "holding": 2, "input": 3}


@dataclass(frozen=True)
class BindingTable:
    """The bindings of one module type for one transport: a header and rows of text."""

    transport: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def binding_tables(mt: ModuleType) -> list[BindingTable]:
    """One table per transport the type has bindings for (Modbus, OPC UA, serial)."""
    out: list[BindingTable] = []
    for transport in TRANSPORTS:
        infos = list(tag_table(mt, transport).values())
        if infos:
            out.append(_TABLES[transport](infos))
    return out


def _access(info: TagInfo) -> str:
    return "/".join(x for x, ok in (("read", info.readable), ("write", info.writable)) if ok)


def _limits(info: TagInfo) -> str:
    da = info.assembly
    if info.service is not None or (da.min is None and da.max is None):
        return ""
    lo = "" if da.min is None else f"{da.min:g}"
    hi = "" if da.max is None else f"{da.max:g}"
    return f"{lo}..{hi}"


def _unit(info: TagInfo) -> str:
    return "" if info.service is not None else info.assembly.unit


def _modbus(infos: Sequence[TagInfo]) -> BindingTable:
    def key(i: TagInfo) -> tuple[int, int, int, str]:
        b = _mb(i)
        return (b.unit_id or 0, _TABLE_ORDER[b.table], b.address, i.name)

    rows = []
    for info in sorted(infos, key=key):
        b = _mb(info)
        kind: str = b.type or "uint16"
        if b.bit is not None:
            kind += f" bit {b.bit}"
        if b.count > 1 and (b.word_order, b.byte_order) != ("big", "big"):
            kind += f" (words {b.word_order}, bytes {b.byte_order})"
        last = b.address + b.count - 1
        rows.append((
            info.name, b.table, str(b.address) if b.count == 1 else f"{b.address}..{last}",
            kind, str(b.count), f"{b.scale:g}", f"{b.offset:g}",
            "" if b.unit_id is None else str(b.unit_id), _access(info), _unit(info),
            _limits(info)))
    return BindingTable("modbus", ("tag", "table", "address", "type", "count", "scale",
                                   "offset", "unit id", "access", "unit", "limits"), tuple(rows))


def _opcua(infos: Sequence[TagInfo]) -> BindingTable:
    rows = []
    for info in sorted(infos, key=lambda i: i.name):
        b = info.binding
        assert isinstance(b, OpcUaBinding)
        rows.append((info.name, b.identifier, b.namespace_uri or "", b.access, _unit(info),
                     _limits(info)))
    return BindingTable("opcua", ("tag", "node id", "namespace", "access", "unit", "limits"),
                        tuple(rows))


def _serial(infos: Sequence[TagInfo]) -> BindingTable:
    rows = []
    for info in sorted(infos, key=lambda i: i.name):
        b = info.binding
        assert isinstance(b, SerialBinding)
        read = b.read.command or "" if b.read is not None else ""
        reply = b.read.response or "" if b.read is not None else ""
        write = ""
        if b.write is not None:
            w = b.write
            write = w.command if w.command is not None else (
                f"true: {w.true_command}, false: {w.false_command}")
        rows.append((info.name, read, reply, write, _unit(info), _limits(info)))
    return BindingTable("serial", ("tag", "read", "reply", "write", "unit", "limits"),
                        tuple(rows))


_TABLES = {"modbus": _modbus, "opcua": _opcua, "serial": _serial}


def _mb(info: TagInfo) -> ModbusBinding:
    b = info.binding
    assert isinstance(b, ModbusBinding)
    return b


_HEADER = """\
<!-- generated from the built-in module types by `python -m modulecontrol.docgen register-maps \
docs/register-maps.md` (make docs); do not edit by hand -->

# Register maps of the built-in Modbus types

The register map of every built-in module type that speaks Modbus, as its descriptor
(`modulecontrol/descriptors/builtin/*.yaml`) declares it. The Modbus driver reads and writes
these registers, and the simulated devices of `modulecontrol sim serve` have exactly these
addresses. `modulecontrol describe TYPE --bindings` prints the same table, with the OPC UA
node ids and serial commands of types that have them.

- **address**: zero-based (the PDU address: holding register 0 is "40001" in 1-based
  notation). A value of several registers spans the addresses shown.
- **scale, offset**: engineering value = raw × scale + offset; the value is in **unit**.
- **unit id**: empty means the endpoint's `unit_id`.
- **access**: what the driver may do. Several attributes may share a register (a set point
  and its read-back).
- **limits**: the data assembly's min..max. A simulated device answers a write outside them
  with Modbus exception 3 (illegal data value), and a read or write of an address that is
  not in its map with exception 2 (illegal data address); a real device may be stricter.
  The driver reports either as an error naming the setting (see `docs/drivers.md`).
"""


def register_maps_markdown(types: Iterable[ModuleType]) -> str:
    """The page ``docs/register-maps.md``: one section per type with Modbus bindings."""
    parts = [_HEADER]
    for mt in sorted(types, key=lambda t: t.name):
        tables = [t for t in binding_tables(mt) if t.transport == "modbus"]
        if not tables:
            continue
        table = tables[0]
        parts.append(f"\n## {mt.name}\n\n{mt.description}\n\n")
        parts.append("| " + " | ".join(table.columns) + " |\n")
        parts.append("|" + "---|" * len(table.columns) + "\n")
        for row in table.rows:
            parts.append("| " + " | ".join(_md(c) for c in row) + " |\n")
    return "".join(parts)


def _md(cell: str) -> str:
    return cell.replace("|", "\\|")

"""Register maps, node ids and serial commands shown by ``describe --bindings`` and the
generated page ``docs/register-maps.md`` (both from the descriptors, so they cannot drift)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.descriptors import ModbusBinding, builtin_types
from modulecontrol.docgen import main as docgen
from modulecontrol.drivers import binding_tables, register_maps_markdown

PAGE = Path(__file__).resolve().parents[2] / "docs" / "register-maps.md"


def _page() -> str:
    lib = builtin_types()
    return register_maps_markdown(lib.get(name) for name in lib)


def test_committed_page_is_what_the_generator_writes() -> None:
    assert PAGE.read_text(encoding="utf-8") == _page(), (
        "docs/register-maps.md is out of date: run "
        "`python -m modulecontrol.docgen register-maps docs/register-maps.md` (make docs)")


def test_page_follows_the_descriptor(tmp_path: Path) -> None:
    """Every Modbus binding of every built-in type is a row, with its table and address."""
    out = tmp_path / "maps.md"
    assert docgen(["register-maps", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text == _page()
    lib = builtin_types()
    for name in lib:
        mt = lib.get(name)
        modbus = [t for t in binding_tables(mt) if t.transport == "modbus"]
        assert (f"## {name}\n" in text) == bool(modbus)
        for da in mt.data_assemblies:
            for attr, ab in da.bindings.items():
                b = ab.get("modbus", ModbusBinding)
                if b is not None:
                    where = str(b.address) if b.count == 1 else (
                        f"{b.address}..{b.address + b.count - 1}")
                    assert f"| {da.name}.{attr} | {b.table} | {where} | " in text


def test_describe_bindings_shows_registers_node_ids_and_commands() -> None:
    runner = CliRunner()
    env = {"COLUMNS": "250"}
    pump = runner.invoke(app, ["describe", "HPLCPump", "--bindings"], env=env)
    assert pump.exit_code == 0, pump.output
    row = next(line for line in pump.output.splitlines() if "FlowSetpoint.VMan" in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells == ["FlowSetpoint.VMan", "holding", "0..1", "float32", "2", "1", "0",
                     "read/write", "mL/min", "0..10"]
    syringe = runner.invoke(app, ["describe", "SyringePump", "--bindings"], env=env)
    assert "RAT {value:.4f} MM" in syringe.output
    assert "^[ISA](?P<value>[0-9]+\\.[0-9]+)MM$" in syringe.output  # no markup eaten
    assert "true: RUN, false: STP" in syringe.output
    reactor = runner.invoke(app, ["describe", "CoilReactor", "--bindings"], env=env)
    assert "s=Tempering.CommandOp" in reactor.output
    assert "urn:modulecontrol:pea:coilreactor" in reactor.output
    plain = runner.invoke(app, ["describe", "HPLCPump"], env=env)
    assert "holding" not in plain.output  # only with --bindings

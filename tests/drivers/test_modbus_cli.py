from __future__ import annotations

from typer.testing import CliRunner

from modulecontrol.drivers.cli import app, driver_rows


def test_list_names_builtin_modbus() -> None:
    rows = {name: (target, origin) for name, target, origin in driver_rows()}
    assert rows["modbus"] == ("modulecontrol.drivers.modbus:ModbusDriver", "built-in")
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0
    assert "modbus" in result.output and "built-in" in result.output

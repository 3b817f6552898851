"""``modulecontrol sim serve``: the endpoint table as JSON, and a plain table that keeps every
URL on one line when the output is piped (it used to fold at 80 columns)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from typer.testing import CliRunner

from modulecontrol.simulators.cli import app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _plant(tmp_path: Path) -> tuple[Path, int, int]:
    modbus, opcua = _free_port(), _free_port()
    path = tmp_path / "plant.yaml"
    path.write_text(f"""\
kind: Plant
name: a-plant-with-a-rather-long-name-for-its-table-title
modules:
  - {{tag: P1, type: HPLCPump, simulated: true,
     endpoint: {{protocol: modbus-tcp, host: 127.0.0.1, port: {modbus}, unit_id: 1}}}}
  - tag: R1
    type: CoilReactor
    simulated: true
    endpoint:
      protocol: opcua
      url: opc.tcp://127.0.0.1:{opcua}/modulecontrol/a/long/path/to/the/reactor/R1
      security_policy: None
      security_mode: None
  - {{tag: V1, type: DivertValve, simulated: true,
     endpoint: {{protocol: modbus-tcp, host: 127.0.0.1, port: {modbus}, unit_id: 2}}}}
connections:
  - {{from: P1.outlet, to: R1.inlet}}
  - {{from: R1.outlet, to: V1.inlet}}
""")
    return path, modbus, opcua


def test_serve_json_lists_every_endpoint(tmp_path: Path) -> None:
    plant, modbus, opcua = _plant(tmp_path)
    result = CliRunner().invoke(app, ["serve", str(plant), "--duration", "0.5 s", "--json",
                                      "--pki", str(tmp_path / "pki"), "--insecure"])
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]  # the --insecure warning goes to stderr
    assert json.loads(first) == [
        {"tag": "P1", "type": "HPLCPump", "protocol": "modbus-tcp", "host": "127.0.0.1",
         "port": modbus, "unit": 1, "security": "none"},
        {"tag": "R1", "type": "CoilReactor", "protocol": "opcua",
         "url": f"opc.tcp://127.0.0.1:{opcua}/modulecontrol/a/long/path/to/the/reactor/R1",
         "security": "none", "username": "modulecontrol",
         "password_file": str(tmp_path / "pki" / "sim-R1-modulecontrol.password")},
        {"tag": "V1", "type": "DivertValve", "protocol": "modbus-tcp", "host": "127.0.0.1",
         "port": modbus, "unit": 2, "security": "none"},
    ]


def test_serve_table_does_not_wrap_when_piped(tmp_path: Path) -> None:
    plant, _, opcua = _plant(tmp_path)
    result = CliRunner().invoke(app, ["serve", str(plant), "--duration", "0.5 s",
                                      "--pki", str(tmp_path / "pki"), "--insecure"])
    assert result.exit_code == 0, result.output
    url = f"opc.tcp://127.0.0.1:{opcua}/modulecontrol/a/long/path/to/the/reactor/R1"
    line = next(x for x in result.output.splitlines() if "R1" in x)
    assert url in line and "CoilReactor" in line

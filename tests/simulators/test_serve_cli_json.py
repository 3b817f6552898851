"""``modulecontrol sim serve``: the endpoint table as JSON, and a plain table that keeps every
URL on one line when the output is piped (it used to fold at 80 columns).

The plant is served with ``--free-ports`` and the tests read its ports from the output:
ports chosen free by a test and written into the plant could be taken by another process
before ``sim serve`` binds them (seen on CI). The plant's own ports are held by the test
throughout, so a serve that bound them would fail.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from modulecontrol.simulators.cli import app

R1_PATH = "/modulecontrol/a/long/path/to/the/reactor/R1"
R1_URL = re.compile(rf"opc\.tcp://127\.0\.0\.1:(\d+){re.escape(R1_PATH)}")


def _plant(tmp_path: Path, port: int) -> Path:
    """A plant whose Modbus TCP modules share ``port`` and whose OPC UA module is on it too
    (served with ``--free-ports``, none of them listens there)."""
    path = tmp_path / "plant.yaml"
    path.write_text(f"""\
kind: Plant
name: a-plant-with-a-rather-long-name-for-its-table-title
modules:
  - {{tag: P1, type: HPLCPump, simulated: true,
     endpoint: {{protocol: modbus-tcp, host: 127.0.0.1, port: {port}, unit_id: 1}}}}
  - tag: R1
    type: CoilReactor
    simulated: true
    endpoint:
      protocol: opcua
      url: opc.tcp://127.0.0.1:{port}{R1_PATH}
      security_policy: None
      security_mode: None
  - {{tag: V1, type: DivertValve, simulated: true,
     endpoint: {{protocol: modbus-tcp, host: 127.0.0.1, port: {port}, unit_id: 2}}}}
connections:
  - {{from: P1.outlet, to: R1.inlet}}
  - {{from: R1.outlet, to: V1.inlet}}
""")
    return path


def served_ports(served: list[dict[str, object]]) -> tuple[int, int]:
    """The Modbus TCP port (P1's and V1's) and R1's OPC UA port of ``sim serve --json``'s
    line for :func:`_plant`."""
    match = R1_URL.fullmatch(str(served[1]["url"]))
    assert match is not None, served
    return int(str(served[0]["port"])), int(match[1])


def test_serve_json_lists_every_endpoint(tmp_path: Path, first_port_taken: int) -> None:
    # first_port_taken: the plant's port is held, and the first free port R1's server is
    # given is taken before it binds; it starts on another
    plant = _plant(tmp_path, first_port_taken)
    result = CliRunner().invoke(app, ["serve", str(plant), "--duration", "0.5 s", "--json",
                                      "--free-ports", "--pki", str(tmp_path / "pki"),
                                      "--insecure"])
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]  # the --insecure warning goes to stderr
    served = json.loads(first)
    modbus, opcua = served_ports(served)
    assert first_port_taken not in (modbus, opcua) and 0 not in (modbus, opcua)
    assert served == [
        {"tag": "P1", "type": "HPLCPump", "protocol": "modbus-tcp", "host": "127.0.0.1",
         "port": modbus, "unit": 1, "security": "none"},
        {"tag": "R1", "type": "CoilReactor", "protocol": "opcua",
         "url": f"opc.tcp://127.0.0.1:{opcua}{R1_PATH}",
         "security": "none", "username": "modulecontrol",
         "password_file": str(tmp_path / "pki" / "sim-R1-modulecontrol.password")},
        {"tag": "V1", "type": "DivertValve", "protocol": "modbus-tcp", "host": "127.0.0.1",
         "port": modbus, "unit": 2, "security": "none"},
    ]


def test_serve_table_does_not_wrap_when_piped(tmp_path: Path, taken: int) -> None:
    plant = _plant(tmp_path, taken)
    result = CliRunner().invoke(app, ["serve", str(plant), "--duration", "0.5 s",
                                      "--free-ports", "--pki", str(tmp_path / "pki"),
                                      "--insecure"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "R1" in x)
    assert R1_URL.search(line) and "CoilReactor" in line, line
    assert f":{taken}/" not in line


def test_free_ports_and_a_port_offset_exclude_each_other(tmp_path: Path, taken: int) -> None:
    result = CliRunner().invoke(app, ["serve", str(_plant(tmp_path, taken)), "--free-ports",
                                      "--port-offset", "100", "--duration", "0.5 s"])
    assert result.exit_code == 2, result.output
    assert "--free-ports" in result.output

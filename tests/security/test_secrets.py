"""A secured OPC UA run never writes its password anywhere: logs, records, report.

One real run (``Session``, simulated plant served by the session) with a CoilReactor behind
Basic256Sha256 SignAndEncrypt and a user whose password comes from an environment variable;
everything at DEBUG (asyncua included) is captured, then the logs, the SQLite files and the
batch reports (HTML and JSON) are searched for the password.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from modulecontrol.records import report
from modulecontrol.session import EXIT_COMPLETED, RunOptions, Session
from modulecontrol.simulators.opcua_pea import make_certificate

ENV = "MODULECONTROL_TEST_SECRET_PASSWORD"
PASSWORD = "Zq7-unlikely-secret-4711"


def _write_files(folder: Path) -> Path:
    client_cert, client_key = make_certificate(folder / "client", "client",
                                               "urn:modulecontrol:test:client", server=False)
    trust = folder / "runs" / "pki"  # where the session's simulators put their certificates
    trust.mkdir(parents=True)
    (folder / "plant.yaml").write_text(f"""\
kind: Plant
name: secured-line
modules:
  - tag: P0
    type: HPLCPump
    simulated: true
    endpoint: {{protocol: modbus-tcp, port: 15028, unit_id: 3}}
    overrides: {{simulator: {{feed: {{THF: 12.33 mol/L}}}}}}
  - tag: P1
    type: CoilReactor
    simulated: true
    endpoint:
      protocol: opcua
      url: opc.tcp://127.0.0.1:14841/p1
      security_policy: Basic256Sha256
      security_mode: SignAndEncrypt
      username: operator
      password_env: {ENV}
      certificate: {client_cert}
      private_key: {client_key}
      trust_list: [{trust}]
  - {{tag: W1, type: DivertValve, simulated: true,
     endpoint: {{protocol: modbus-tcp, port: 15029, unit_id: 2}}}}
connections:
  - {{from: P0.outlet, to: P1.inlet, volume: 1 mL}}
  - {{from: P1.outlet, to: W1.inlet, volume: 1 mL}}
""")
    recipe = folder / "recipe.yaml"
    recipe.write_text("""\
kind: Recipe
name: secured
version: 1.0.0
plant: plant.yaml
procedure:
  - name: main
    steps:
      - name: temper
        service: {module: P1, service: Tempering, procedure: Hold, parameters: {TempSP: 40}}
      - name: run
        wait: {duration: 20 s}
""")
    return recipe


@pytest.mark.timeout(120)
async def test_password_never_in_logs_records_or_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    recipe = _write_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV, PASSWORD)
    db = tmp_path / "runs" / "records.db"
    options = RunOptions(simulate=True, speed=10.0, db=db, report_dir=tmp_path / "reports")
    # asyncua's own level too: a CLI run earlier in this process may have quietened it
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="asyncua"):
        outcome = await Session.load(recipe, None, options).run()
    assert outcome.exit_code == EXIT_COMPLETED, outcome.message
    assert outcome.run_id is not None and outcome.report is not None
    # the run really used the secured module: the server certificate was generated ...
    assert list((tmp_path / "runs" / "pki").glob("sim-P1.der"))
    # ... and the record talks about it
    json_report = report(db, outcome.run_id, "json")
    html_report = outcome.report.read_text(encoding="utf-8")
    assert "P1" in json_report and "Tempering" in json_report
    logs = caplog.text
    assert len(caplog.records) > 50  # DEBUG was really captured (asyncua is chatty)
    assert ENV in logs or "SignAndEncrypt" in logs or "Basic256Sha256" in logs
    assert PASSWORD not in logs
    assert PASSWORD not in json_report and PASSWORD not in html_report
    needle = PASSWORD.encode()
    for f in (tmp_path / "runs").iterdir():  # the database and its journal files
        if f.is_file():
            data = f.read_bytes()
            assert needle not in data and PASSWORD.encode("utf-16-le") not in data, f

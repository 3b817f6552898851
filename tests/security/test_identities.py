"""Honest identities (issue 14, finding 8): who did what is recorded as it happened.

One real run (``Session``, simulated plant served by the session, the CoilReactor behind the
default security with generated credentials) with a prompt answered by ``--yes`` and a
``--set`` override. The records must say that the program answered the prompt (user
``auto``, with the option that made it), not the operator, and not count that answer as a
deviation; and the override must be in the audit trail with its old and new value and who
set it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modulecontrol.orchestrator import AUTO_USER, OperatorChannel
from modulecontrol.records import AUTOMATIC_ANSWER, AuditTrail, report
from modulecontrol.session import EXIT_COMPLETED, RunOptions, Session

PLANT = """\
kind: Plant
name: identities
modules:
  - tag: P0
    type: HPLCPump
    simulated: true
    endpoint: {protocol: modbus-tcp, port: 15028, unit_id: 3}
    overrides: {simulator: {feed: {THF: 12.33 mol/L}}}
  - tag: R1
    type: CoilReactor
    simulated: true
    endpoint: {protocol: opcua, url: "opc.tcp://127.0.0.1:14841/r1", username: ctrl}
  - {tag: W1, type: DivertValve, simulated: true,
     endpoint: {protocol: modbus-tcp, port: 15029, unit_id: 2}}
connections:
  - {from: P0.outlet, to: R1.inlet, volume: 1 mL}
  - {from: R1.outlet, to: W1.inlet, volume: 1 mL}
"""

RECIPE = """\
kind: Recipe
name: identities
version: 1.0.0
plant: plant.yaml
parameters:
  temp: {type: number, unit: degC, default: 40, min: 20, max: 80}
procedure:
  - name: main
    steps:
      - name: temper
        service: {module: R1, service: Tempering, procedure: Hold,
                  parameters: {TempSP: "${temp}"}}
      - name: confirm
        prompt: {message: "Jacket tempered. Go on?", choices: [go, stop]}
      - name: run
        wait: {duration: 10 s}
"""


def test_an_automatic_answer_names_the_program_and_the_option() -> None:
    import asyncio

    async def ask(channel: OperatorChannel) -> tuple[str, dict[str, str]]:
        prompt = channel.ask("step", "Go on?", ["go", "stop"])
        if not prompt.future.done():
            channel.answer(prompt.id, "stop")
        return await prompt.future, prompt.answer_data()

    auto = asyncio.run(ask(OperatorChannel("olga", "__first__", auto_reason="no terminal")))
    assert auto == ("go", {"user": AUTO_USER, "automatic": "no terminal"})
    human = asyncio.run(ask(OperatorChannel("olga")))
    assert human == ("stop", {"user": "olga"})


@pytest.mark.timeout(120)
async def test_auto_answers_and_overrides_are_recorded_as_they_happened(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plant.yaml").write_text(PLANT)
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "runs" / "records.db"
    options = RunOptions(simulate=True, speed=10.0, db=db, report_dir=tmp_path / "reports",
                         operator="olga", overrides={"temp": "45 degC"},
                         auto_answer="__first__", auto_reason="--yes")
    outcome = await Session.load(tmp_path / "recipe.yaml", None, options).run()
    assert outcome.exit_code == EXIT_COMPLETED, outcome.message
    assert outcome.run_id is not None

    with AuditTrail(db) as trail:
        assert trail.verify().ok
        entries = list(trail.entries())
    # the override: who, what, the value it replaced and the new one
    sets = [e for e in entries if e.action == "set parameter"]
    assert [(e.user, e.object, e.old_value, e.new_value) for e in sets] == [
        ("olga", "temp", "40 degC", "45 degC")]
    assert "--set temp=45 degC" in sets[0].reason
    # the prompt: answered by the program because of --yes, never by "the operator" olga
    answers = [e for e in entries if e.action in ("answer", AUTOMATIC_ANSWER)]
    assert [(e.user, e.action, e.new_value) for e in answers] == [
        (AUTO_USER, AUTOMATIC_ANSWER, "go")]
    assert "answered automatically (--yes)" in answers[0].reason

    doc = json.loads(report(db, outcome.run_id, "json"))
    assert [(a["user"], a["new_value"]) for a in doc["automatic_answers"]] == [
        (AUTO_USER, "go")]
    assert not any(d["kind"] == "operator_answer" for d in doc["deviations"])
    assert doc["figures"]["automatic_answers"] == 1
    assert [a["action"] for a in doc["operator_actions"]] == ["set parameter"]
    assert doc["figures"]["operator_actions"] == 1
    html = report(db, outcome.run_id, "html")
    assert "Automatic answers" in html


@pytest.mark.timeout(120)
def test_cli_run_records_the_os_account_as_who_set_an_override(tmp_path: Path) -> None:
    """``modulecontrol run`` names the account that started it, not a shared "operator"."""
    import getpass

    from typer.testing import CliRunner

    from modulecontrol.cli import app
    from modulecontrol.records import list_runs

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "examples" / "dosing_demo.yaml"
    db = tmp_path / "runs" / "r.db"
    result = CliRunner().invoke(app, ["run", str(recipe), "--simulate", "--yes", "--no-live",
                                      "--speed", "300", "--db", str(db), "--report-dir",
                                      str(tmp_path), "--set", "flow=2 mL/min"])
    assert result.exit_code == 0, result.output
    me = getpass.getuser()
    assert [r.operator for r in list_runs(db)] == [me]
    with AuditTrail(db) as trail:
        sets = [(e.user, e.object, e.old_value, e.new_value) for e in trail.entries()
                if e.action == "set parameter"]
    assert sets == [(me, "flow", "1 mL/min", "2 mL/min")]

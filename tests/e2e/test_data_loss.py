"""A whole run whose records cannot all be written ends "completed with data loss".

Issue #14, finding 5, reproduced as reported: while a simulated run records, another
process's connection holds the database's write lock (``BEGIN EXCLUSIVE``) for longer than
the historian's retry budget. Before, the lost batch was a log line and the run exited 0
"completed"; now the run's outcome, exit code, record and report all say so.

A simulated run serves its plant on free ports of the OS's choice, never on the plant's: the
plant's ports here are one the test holds (``taken``) and Modbus's 502, and the run comes up
all the same. (They used to be chosen free by the test, needlessly.)
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from modulecontrol.descriptors import ModbusTcpEndpoint
from modulecontrol.events import EventKind
from modulecontrol.session import EXIT_DATA_LOSS, RunOptions, Session
from tests._poll import until

PLANT = """\
kind: Plant
name: loss-rig
modules:
  - tag: P1
    type: HPLCPump
    simulated: true
    endpoint: {{protocol: modbus-tcp, port: {p1}, timeout: 0.3, reconnect_max_delay: 0.2}}
    overrides:
      simulator: {{feed: {{THF: 12.33 mol/L}}}}
  - {{tag: W1, type: DivertValve, simulated: true,
     endpoint: {{protocol: modbus-tcp, port: {w1}, unit_id: 2}}}}
connections:
  - {{from: P1.outlet, to: W1.inlet, volume: 1 mL}}
"""

RECIPE = """\
kind: Recipe
name: loss-rig
version: 1.0.0
plant: plant.yaml
procedure:
  - name: main
    steps:
      - name: start
        service: {module: P1, service: Dosing, procedure: Continuous,
                  parameters: {FlowSP: 1}}
      - name: run
        wait: {duration: 10 min}
      - name: stop
        service: {module: P1, service: Dosing, command: stop}
"""


@pytest.mark.slow
async def test_a_run_that_lost_records_ends_completed_with_data_loss(tmp_path: Path,
                                                                      taken: int) -> None:
    (tmp_path / "plant.yaml").write_text(PLANT.format(p1=taken, w1=502))
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    db = tmp_path / "run.db"
    opts = RunOptions(simulate=True, speed=100.0, db=db, report_dir=tmp_path,
                      poll_interval=0.05, write_budget=0.5)
    session = Session.load(tmp_path / "recipe.yaml", None, opts)
    task = asyncio.create_task(session.run())
    blocker: sqlite3.Connection | None = None
    try:
        assert await until(lambda: session.orchestrator is not None
                           and session.orchestrator.progress.step == "run", 30) is not None
        assert session.simulation is not None
        served = session.simulation.config.instance("P1").endpoint
        assert isinstance(served, ModbusTcpEndpoint) and served.port not in (0, taken)
        hist = session.historian
        assert hist is not None
        blocker = sqlite3.connect(db, isolation_level=None, timeout=0.1)
        blocker.execute("BEGIN EXCLUSIVE")  # another process's writer, holding the lock
        assert await until(lambda: bool(hist.losses), 10) is not None
        blocker.execute("ROLLBACK")
        outcome = await asyncio.wait_for(task, 60)
    finally:
        if blocker is not None:
            blocker.close()
        if not task.done():
            task.cancel()
    assert outcome.result is not None and outcome.result.value == "completed"
    assert outcome.exit_code == EXIT_DATA_LOSS
    assert outcome.data_loss and outcome.data_loss[0].samples > 0
    assert "data loss" in outcome.message
    with sqlite3.connect(db) as conn:
        result, note = conn.execute("SELECT result, note FROM runs WHERE id=?",
                                    (outcome.run_id,)).fetchone()
        kinds = [k for (k,) in conn.execute("SELECT kind FROM events WHERE run_id=?",
                                            (outcome.run_id,))]
        alarms = [n for (n,) in conn.execute("SELECT name FROM alarms WHERE run_id=?",
                                             (outcome.run_id,))]
    assert result == "completed_with_data_loss" and "data loss" in note
    assert "data_loss" in kinds and "historian.data_loss" in alarms
    assert outcome.report is not None
    html = outcome.report.read_text()
    assert "completed_with_data_loss" in html and "historian.data_loss" in html


@pytest.mark.slow
async def test_a_record_listener_that_fails_is_data_loss(tmp_path: Path, taken: int) -> None:
    """The session's recorder of events is a listener on the record path: when it cannot
    hand an event to the historian, the event log records ``listener_failed`` and the run
    ends "completed with data loss" (before: a log line, exit 0)."""
    (tmp_path / "plant.yaml").write_text(PLANT.format(p1=taken, w1=502))
    (tmp_path / "recipe.yaml").write_text(RECIPE.replace("10 min", "2 min"))
    opts = RunOptions(simulate=True, speed=100.0, db=tmp_path / "run.db", report_dir=None,
                      poll_interval=0.05)
    session = Session.load(tmp_path / "recipe.yaml", None, opts)
    task = asyncio.create_task(session.run())
    try:
        assert await until(lambda: session.orchestrator is not None
                           and session.orchestrator.progress.step == "run", 30) is not None
        hist = session.historian
        assert hist is not None
        record_event = hist.record_event

        def refusing(kind: Any, source: str = "", payload: Any = None, **kw: Any) -> Any:
            if kind == EventKind.STEP_TRANSITION and (payload or {}).get("step") == "stop":
                raise ValueError("injected: cannot encode")
            return record_event(kind, source, payload, **kw)

        hist.record_event = refusing  # type: ignore[method-assign]
        outcome = await asyncio.wait_for(task, 60)
    finally:
        if not task.done():
            task.cancel()
    assert outcome.exit_code == EXIT_DATA_LOSS
    (loss,) = outcome.data_loss
    assert loss.records == 1 and "step_started" in loss.error and "cannot encode" in loss.error
    failed = [e for e in outcome.events if e.kind is EventKind.LISTENER_FAILED]
    assert failed and failed[0].data["event"] == "step_started"

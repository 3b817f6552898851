"""kill -9 of a running ``modulecontrol run``: records stay whole, the plant keeps its state.

The plant is served by ``modulecontrol sim serve --free-ports`` in one process (the plant
file then rewritten with the ports it reports), the run talks to it over Modbus TCP from
another (no ``--simulate``), exactly as with real hardware.
The run process is SIGKILLed in the middle of production; then ``modulecontrol runs`` must
show the run interrupted, ``modulecontrol audit verify`` must pass, every event committed
before the kill must still be there, and the pump must still be running: nobody stopped it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from modulecontrol.descriptors import load_plant
from modulecontrol.drivers import Disconnected
from modulecontrol.drivers.modbus import ModbusDriver
from modulecontrol.records import Historian, verify_audit
from tests.security._proc import cli, drain, env, stop, wait_for_line


def _files(folder: Path, p1: int, w1: int) -> tuple[Path, Path]:
    plant = folder / "plant.yaml"
    plant.write_text(f"""\
kind: Plant
name: crash-line
modules:
  - tag: P1
    type: HPLCPump
    simulated: true
    endpoint: {{protocol: modbus-tcp, port: {p1}, unit_id: 1, timeout: 0.5}}
    overrides: {{simulator: {{feed: {{THF: 12.33 mol/L}}}}}}
  - tag: W1
    type: DivertValve
    simulated: true
    endpoint: {{protocol: modbus-tcp, port: {w1}, unit_id: 2, timeout: 0.5}}
connections:
  - {{from: P1.outlet, to: W1.inlet, volume: 1 mL}}
""")
    recipe = folder / "recipe.yaml"
    recipe.write_text("""\
kind: Recipe
name: crash-campaign
version: 1.0.0
plant: plant.yaml
procedure:
  - name: main
    steps:
      - name: feed
        service: {module: P1, service: Dosing, procedure: Continuous,
                  parameters: {FlowSP: 1.5}}
      - name: production
        wait: {duration: 2 h}
""")
    return plant, recipe


def _events(db: Path) -> list[tuple[int, float, str, str]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        # a step's start is recorded under its unit procedure, the step in the payload
        return [tuple(r) for r in conn.execute(
            "SELECT id, t, kind, CASE WHEN kind = 'step_transition' "
            "THEN coalesce(json_extract(payload, '$.step'), source) ELSE source END "
            "FROM events ORDER BY id")]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        conn.close()


async def _read_pump(plant: Path, attempts: int = 10) -> dict[str, object]:
    """Read the pump as a fresh client would; a read is idempotent, so a connection refused
    by a server slowed by a busy machine is tried again (bounded)."""
    cfg = load_plant(plant)
    for attempt in range(attempts):
        drv = ModbusDriver(cfg.instance_types["P1"], cfg.instance("P1"))
        try:
            async with drv:
                values = await drv.read(["Run.VRbk", "Flow.V"])
            return {k: v.value for k, v in values.items()}
        except Disconnected:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


@pytest.mark.timeout(120)
def test_kill_9_mid_production(tmp_path: Path) -> None:
    plant, recipe = _files(tmp_path, 15000, 15001)
    db = tmp_path / "records.db"
    server = subprocess.Popen(cli("sim", "serve", str(plant), "--duration", "10 min",
                                  "--free-ports", "--json", "--pki", str(tmp_path / "pki")),
                              cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    run: subprocess.Popen[str] | None = None
    try:
        line = next(x for x in wait_for_line(server, "}]", timeout=30).splitlines()
                    if x.startswith("["))
        ports = {m["tag"]: m["port"] for m in json.loads(line)}
        served = drain(server)
        # the run and the pump's reader connect where the plant is served (the OS's ports)
        _files(tmp_path, ports["P1"], ports["W1"])
        run = subprocess.Popen(cli("run", str(recipe), "--db", str(db), "--no-live", "--yes",
                                   "--report-dir", str(tmp_path / "reports")),
                               cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        before: list[tuple[int, float, str, str]] = []
        while time.monotonic() < deadline:  # production has started and is recorded
            before = _events(db)
            if any(src == "production" for _, _, _, src in before):
                break
            assert run.poll() is None, run.stdout.read() if run.stdout else ""
            time.sleep(0.1)
        else:
            raise AssertionError(f"production never started; events: {before}")
        time.sleep(1.0)  # some samples and flushes in flight
        before = _events(db)
        run.send_signal(signal.SIGKILL)
        assert run.wait(timeout=10) == -signal.SIGKILL

        listed = subprocess.run(cli("runs", "--db", str(db)), env=env(), capture_output=True,
                                text=True, timeout=30)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        row = [line for line in listed.stdout.splitlines() if "crash-campaign" in line]
        assert len(row) == 1 and "interrupted" in row[0], listed.stdout

        verified = subprocess.run(cli("audit", "verify", "--db", str(db)), env=env(),
                                  capture_output=True, text=True, timeout=30)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "audit trail OK" in verified.stdout

        after = _events(db)
        assert before and set(before) <= set(after)  # nothing committed was lost
        # readers never write: the next writer of the database records the interruption
        Historian(db).close_sync()
        after = _events(db)
        assert after[-1][2] == "run_end"  # the interruption itself is on record
        assert verify_audit(db).ok

        assert server.poll() is None, "".join(served)  # the plant outlives its controller
        pump = asyncio.run(_read_pump(plant))
        assert pump["Run.VRbk"] is True, pump  # left running: a dead controller stops nothing
        assert isinstance(pump["Flow.V"], float) and pump["Flow.V"] > 1.0, pump
    finally:
        if run is not None and run.poll() is None:
            run.kill()
            run.wait(timeout=5)
        stop(server)

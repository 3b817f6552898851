"""Done-when of the fleet issue: two simulated lines started on one machine, each a real
``modulecontrol run --sparkplug``, appear side by side in ``modulecontrol fleet status``."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.fleet import Broker, FleetHistorian, fleet_status
from modulecontrol.testing.servers import Mosquitto, Postgres

ROOT = Path(__file__).parents[2]
RECIPE = ROOT / "recipes/examples/dosing_demo.yaml"


def test_two_simulated_lines_in_the_fleet_status(broker: Mosquitto, postgres: Postgres,
                                                 tmp_path: Path) -> None:
    host = FleetHistorian(Broker.parse(broker.url), postgres.dsn)
    thread = threading.Thread(target=host.run, daemon=True)
    thread.start()
    assert host.connected.wait(10)
    runs: list[subprocess.Popen[bytes]] = []
    try:
        # one line after the other: two whole lines at once (each with its plant in a
        # process of its own) starved each other's links on a loaded 2-core machine, and
        # the fleet's view does not depend on the two running at the same moment
        for site, line in (("Basel", "L1"), ("Cork", "L2")):
            proc = subprocess.Popen(
                [sys.executable, "-m", "modulecontrol.cli", "run", str(RECIPE), "--simulate",
                 "--speed", "60", "--yes", "--no-live", "--db", str(tmp_path / f"{site}.db"),
                 "--report-dir", str(tmp_path / site), "--sparkplug", broker.url,
                 "--site", site, "--line", line],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            runs.append(proc)
            try:
                out, _ = proc.communicate(timeout=240)
            except subprocess.TimeoutExpired:
                proc.terminate()  # what the run printed up to its orderly end says why
                out, _ = proc.communicate(timeout=60)
                raise AssertionError(f"the {site} run not ended within 240 s:\n"
                                     f"{out.decode()[-6000:]}") from None
            assert proc.returncode == 0, out.decode()
            assert b"not yet published" not in out
    finally:
        for proc in runs:  # a run that did not end (held, say) is not left behind
            if proc.poll() is None:
                proc.terminate()  # an orderly end stops its simulated plant too
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(30)
        host.stop()
        thread.join(10)
    res = CliRunner().invoke(app, ["fleet", "status", "--pg", postgres.dsn,
                                   "--metric", "DeliveredVolume"])
    assert res.exit_code == 0, res.output
    assert "2 site(s), 2 line(s)" in res.output
    assert "Basel" in res.output and "Cork" in res.output
    delivered = {(r.site, r.line): r for r in fleet_status(postgres.dsn)
                 if r.module == "P1" and r.metric == "DeliveredVolume"}
    assert set(delivered) == {("Basel", "L1"), ("Cork", "L2")}
    for r in delivered.values():  # each line dosed the recipe's default 2 mL
        assert r.unit == "mL" and r.value >= 1.9  # Volume completes at its VolumeSP
        assert not r.line_online  # the run ended: its node said NDEATH
    with psycopg.connect(postgres.dsn) as conn:
        summaries = conn.execute(
            "SELECT l.name, r.summary->>'result' FROM run_summary r "
            "JOIN line l ON l.id = r.line_id ORDER BY 1").fetchall()
        events = conn.execute("SELECT count(*) FROM event").fetchone()
    assert summaries == [("L1", "completed"), ("L2", "completed")]
    assert events is not None and events[0] > 0

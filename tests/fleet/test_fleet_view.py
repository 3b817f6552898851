"""The fleet view's KPIs from known history in a real PostgreSQL, the fleet page's API and
its safety, and ``modulecontrol fleet status`` showing the same figures."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.fleet import FleetPage, Store, fleet_lines, safe_url
from modulecontrol.testing.servers import Postgres

_now = [dt.datetime.now(dt.UTC)]
"""Set by the fixture: the history is written relative to the moment each test starts (a
module-level time would age while a long session runs, and the uptime with it)."""


def _ago(hours: float) -> dt.datetime:
    return _now[0] - dt.timedelta(hours=hours)


@pytest.fixture
def history(postgres: Postgres) -> Postgres:
    """Basel/L1: born 2 h ago, dead 1 h ago, born again 30 min ago; 3 alarms; a finished run
    with figures, then a run started. Cork/L2: born once, never ran anything."""
    _now[0] = dt.datetime.now(dt.UTC)
    s = Store(postgres.dsn)
    try:
        s.node_birth("Basel", "L1", 0, _ago(2), "http://10.0.0.5:8470/")
        s.device_birth("Basel", "L1", "P1", _ago(2), [("Dosing.StateCur", 3, {})])
        s.samples("Basel", "L1", "P1", [("Dosing.StateCur", 3, _ago(1.9), 64, False)])
        with s.conn.transaction():  # its death an hour ago (the NDEATH's receipt time)
            s.conn.execute("UPDATE line SET online = false WHERE name = 'L1'")
            s.conn.execute("UPDATE line_session SET died_at = %s", (_ago(1),))
        s.node_birth("Basel", "L1", 1, _ago(0.5), "http://10.0.0.5:8470/")
        for i in range(3):
            s.event("Basel", "L1", _ago(1.5 - i * 0.1), {"seq": i, "kind": "alarm_raised",
                                                         "source": "R1", "message": "T high"},
                    False)
        s.run_summary("Basel", "L1", _ago(0.4), {"recipe": "campaign", "result": "completed",
                                                 "figures": {"throughput_g_per_h": 12.5,
                                                             "yield_pct": 81.25}})
        s.event("Basel", "L1", _ago(0.2), {"seq": 9, "kind": "run_started",
                                           "source": "recipe",
                                           "message": "run 2 (campaign): recipe started"}, False)
        s.node_birth("Cork", "L2", 0, _ago(0.25), "javascript:alert(1)")
    finally:
        s.close()
    return postgres


def test_kpis_from_the_history(history: Postgres) -> None:
    views = {v.line: v for v in fleet_lines(history.dsn, window_h=24)}
    l1, l2 = views["L1"], views["L2"]
    assert (l1.site, l1.online, l1.station_url) == ("Basel", True, "http://10.0.0.5:8470/")
    # the window starts at the first birth (2 h ago): live 1 h + 0.5 h of it
    assert l1.uptime_pct == pytest.approx(75.0, abs=0.5)
    assert l1.alarms_per_h == pytest.approx(1.5, abs=0.02)
    assert (l1.throughput_g_per_h, l1.yield_pct) == (12.5, 81.25)
    assert l1.last_run == "campaign completed"
    assert l1.active_run == "run 2 (campaign): recipe started"
    assert [(m.name, m.states) for m in l1.modules] == [("P1", {"Dosing": "Execute"})]
    assert l2.uptime_pct == pytest.approx(100.0, abs=0.5)
    assert (l2.active_run, l2.throughput_g_per_h, l2.alarms_per_h) == (None, None, 0.0)
    narrow = {v.line: v for v in fleet_lines(history.dsn, window_h=1)}["L1"]
    assert narrow.uptime_pct == pytest.approx(50.0, abs=0.5)  # dead from -1 h to -0.5 h
    assert narrow.alarms_per_h == 0.0  # all three were earlier


def test_the_page_serves_only_safe_links(history: Postgres) -> None:
    assert safe_url("https://line.example/") == "https://line.example/"
    assert safe_url("javascript:alert(1)") is None and safe_url("//x") is None
    with pytest.raises(ValueError, match="TLS"):
        FleetPage(history.dsn, "0.0.0.0", 0)
    page = FleetPage(history.dsn, "127.0.0.1", 0)
    url = page.start()
    try:
        with httpx.Client(base_url=url) as c:
            html = c.get("/")
            assert "script-src 'self'" in html.headers["content-security-policy"]
            assert c.get("/fleet.js").headers["content-type"].startswith("text/javascript")
            data: dict[str, Any] = c.get("/api/v1/fleet").json()
    finally:
        page.stop()
    lines = {x["line"]: x for x in data["lines"]}
    assert lines["L1"]["station_url"] == "http://10.0.0.5:8470/"
    assert lines["L2"]["station_url"] is None  # a javascript: URL is never a link
    json.dumps(data)


def test_fleet_status_shows_the_kpis(history: Postgres) -> None:
    res = CliRunner().invoke(app, ["fleet", "status", "--pg", history.dsn],
                             env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    l1 = next(line for line in res.output.splitlines() if "Basel" in line and "L1" in line)
    for figure in ("12.50", "81.2", "75.0", "1.50", "campaign completed", "online",
                   "http://10.0.0.5:8470/"):
        assert figure in l1, (figure, l1)


def test_the_commands_in_the_fleet_docs_exist() -> None:
    """Every ``modulecontrol …`` line of docs/fleet.md names a command and options that
    exist (its ``--help`` lists them), so the page cannot drift from the CLI silently."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "fleet.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^ *```\n(.*?)^ *```", doc, re.S | re.M)
    lines = [ln.strip() for b in blocks for ln in b.splitlines()
             if ln.strip().startswith("modulecontrol ")]
    assert len(lines) >= 5
    groups = {"fleet", "user"}
    for line in lines:
        words = line.split()[1:]
        command = words[:2] if words[0] in groups else words[:1]
        res = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "300"})
        assert res.exit_code == 0, (line, res.output)
        for option in re.findall(r"(?<!\S)(--[a-z][a-z-]*)", line):
            assert option in res.output, f"docs/fleet.md: {line}: {option} is not an option"

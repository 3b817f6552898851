"""Done-when of the fleet issue, in a real browser: two lines appear side by side in the
fleet page of ``fleet serve --http``, with module states, a run, and drill-down links to
each line's own station. Playwright drives Debian's Chromium; real Mosquitto and PostgreSQL.

Basel/L1 is the real thing: a control service on the simulated lomustine plant publishing
over Sparkplug (``serve --sparkplug``) with its station. Cork/L2 is the real edge node with
the same plant's devices and a station URL, fed by the test rather than a second simulated
plant: two simulated plants in one test did not start reliably on the shared 2-core machine
(OPC UA sessions timing out), and ``test_fleet_e2e.py`` already runs two simulated lines
(``run --sparkplug``) into ``fleet status``."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modulecontrol._servicecli import SparkplugOptions, sparkplug_extension
from modulecontrol.descriptors import load_plant
from modulecontrol.fleet import Broker, EdgeNode, FleetHistorian, FleetPage, device_metrics
from modulecontrol.service import ServiceOptions
from modulecontrol.statemachine import State
from modulecontrol.station import mount
from modulecontrol.testing.servers import Mosquitto, Postgres
from modulecontrol.testing.service import ServedLine, ServiceThread

pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
from playwright.sync_api import expect, sync_playwright

from tests._browser import CHROMIUM, needs_chromium

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"

pytestmark = needs_chromium


CORK_STATION = "http://127.0.0.1:9/station/"


@pytest.fixture
def two_lines(broker: Mosquitto, tmp_path: Path
              ) -> Iterator[list[tuple[ServiceThread, ServedLine]]]:
    thread = ServiceThread(
        ServiceOptions(plant=PLANT, simulate=True, speed=60.0, db=tmp_path / "line.db",
                       recipes=ROOT / "recipes", report_dir=tmp_path / "reports"),
        mounts=[mount],
        extensions=[sparkplug_extension(SparkplugOptions(broker.url, "Basel", "L1"))])
    served = thread.start()
    cfg = load_plant(PLANT)
    cork = EdgeNode(Broker.parse(broker.url), "Cork", "L2", tmp_path / "cork.db",
                    primary_host="modulecontrol-fleet", info={"Line/Station": CORK_STATION})
    for m in cfg.plant.modules:
        cork.add_device(m.tag, device_metrics(cfg.type_of(m.tag)))
    cork.update("P1", "Dosing.StateCur", int(State.EXECUTE))
    cork.start()
    try:
        yield [(thread, served)]
    finally:
        cork.stop(drain=1.0)
        thread.stop()


def test_two_lines_side_by_side_in_the_fleet_page(
        broker: Mosquitto, postgres: Postgres,
        two_lines: list[tuple[ServiceThread, ServedLine]]) -> None:
    host = FleetHistorian(Broker.parse(broker.url), postgres.dsn)
    runner = threading.Thread(target=host.run, daemon=True)
    runner.start()
    assert host.connected.wait(20)
    page_server = FleetPage(postgres.dsn, "127.0.0.1", 0)
    url = page_server.start()
    l1, l1_line = two_lines[0]
    # a run on L1: its events and summary travel to the fleet (the lines' edges name the
    # fleet historian as their primary host, so they publish once its STATE is online)
    queued = l1.call(lambda s: s.submit("examples/prime_and_flush", {}, "engineer-user"))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                errors: list[Any] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(url + "/")
                rows = page.locator("#fleet tbody tr")
                expect(rows).to_have_count(2, timeout=60_000)
                basel = page.locator("#fleet tbody tr[data-site=Basel]")
                cork = page.locator("#fleet tbody tr[data-site=Cork]")
                expect(basel.locator("td.state")).to_have_text("online")
                expect(cork.locator("td.state")).to_have_text("online")
                expect(basel.locator("td.modules")).to_contain_text("12/12 online")
                expect(cork.locator("td.modules")).to_contain_text("P1: Dosing Execute")
                expect(basel.locator("td.modules")).to_contain_text(
                    re.compile(r"Dosing (Idle|Execute|Stopped|Completed)"), timeout=60_000)
                expect(page.locator("#summary")).to_have_text(
                    "2 site(s), 2 line(s), 2 online")
                # the run reaches the fleet: first as active, then as the last run
                expect(basel).to_contain_text("prime_and_flush", timeout=120_000)
                link = basel.locator("td.line a")
                expect(link).to_have_attribute("href", l1_line.url + "/")
                expect(cork.locator("td.line a")).to_have_attribute("href", CORK_STATION)
                link.click()  # drill-down: the line's own station, its login form
                expect(page.locator("#login")).to_be_visible(timeout=30_000)
                assert page.url.startswith(l1_line.url)
                assert not errors, errors
            finally:
                browser.close()
    finally:
        page_server.stop()
        host.stop()
        runner.join(20)
    run = l1.call(lambda s: s.run(queued.id))
    if run.state == "stopped":
        # Nothing of the fleet's may stop the line's run; the run's own overpressure
        # interlock may, when a loaded machine's link leaves P1 or P2's pressure unknown
        # (it trips on what it cannot evaluate, as it must). Anything else fails.
        trips = _interlock_trips(l1_line.db, run.record_run)
        assert trips and all("reason" in t for t in trips), (run.message, trips)
    else:
        assert run.state in ("running", "completed", "queued"), (run.state, run.message)


def _interlock_trips(db: Path, record_run: int | None) -> list[dict[str, Any]]:
    """The interlock trips recorded in a run (their payloads)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT payload FROM events WHERE kind='interlock_tripped' "
                            "AND run_id=? ORDER BY id", (record_run,)).fetchall()
    finally:
        conn.close()
    return [json.loads(r[0]) for r in rows]

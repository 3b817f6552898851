"""The operator station in a real browser: Playwright drives Debian's Chromium against a
control service serving the simulated lomustine line (600x clock). The tests run in file
order on one service: what an operator does between runs first, then the campaign.

Skipped, with the reason, where Chromium or Playwright is missing (``.ci/install-servers``
installs Chromium; Playwright is in the ``test`` extra)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modulecontrol.service import ServiceOptions
from modulecontrol.station import mount
from modulecontrol.testing.service import ServedLine, ServiceThread

pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
from playwright.sync_api import Browser, Page, expect

from tests._browser import login, needs_chromium
from tests._poll import wait_until

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"
SLOW = 60_000
"""ms a browser-side wait may take at most (the campaign runs ~20 s to production)."""

expect.set_options(timeout=20_000)  # a state change under a loaded CI machine

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedLine, ServiceThread]]:
    folder = tmp_path_factory.mktemp("browser")
    thread = ServiceThread(ServiceOptions(plant=PLANT, simulate=True, speed=600.0,
                                          db=folder / "line.db", recipes=ROOT / "recipes",
                                          report_dir=folder / "reports"), mounts=[mount])
    line = thread.start()
    yield line, thread
    thread.stop()


def _faceplate(page: Page, tag: str) -> None:
    page.click("nav a[data-view=plant]")
    page.click(f"g.module[data-tag={tag}]")
    expect(page.locator("#faceplate h2")).to_contain_text(tag)


def test_the_plant_diagram_is_generated_from_the_connections(
        served: tuple[ServedLine, Any], browser: Browser) -> None:
    page = login(browser, served[0], "operator")
    modules = page.locator("svg.diagram g.module")
    expect(modules).to_have_count(12)
    # flow goes left to right: every connection's arrow points right
    boxes = {t: page.locator(f"g.module[data-tag={t}]").bounding_box() for t in
             ("P1", "M1", "R1", "M2", "R2", "BPR1", "PAT1", "V1", "CR1")}
    xs = [b["x"] for b in boxes.values() if b]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    expect(page.locator("g.module[data-tag=R1] text.value").first).to_contain_text("degC")
    expect(page.locator("g.module[data-tag=P1] text.state")).to_have_text("Idle")
    assert page.errors == []  # type: ignore[attr-defined]
    page.close()


def test_a_parameter_outside_its_limits_is_refused_in_the_faceplate(
        served: tuple[ServedLine, Any], browser: Browser) -> None:
    page = login(browser, served[0], "operator")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/api/v1/modules/" in r.url else None)
    _faceplate(page, "P1")
    page.fill("input[data-set=FlowSP]", "20")
    page.click("button[data-set-button=FlowSP]")
    expect(page.locator("#faceplate .error")).to_contain_text("outside its limits [0, 10] mL/min")
    assert sent == []  # refused before sending
    page.fill("input[data-set=FlowSP]", "0.4")
    page.click("button[data-set-button=FlowSP]")
    expect(page.locator("#faceplate .error")).to_have_text("FlowSP set to 0.4 mL/min")
    # only what CommandEn enables in Idle is clickable
    expect(page.locator("button[data-service=Dosing][data-command=Start]")).to_be_enabled()
    expect(page.locator("button[data-service=Dosing][data-command=Unhold]")).to_be_disabled()
    page.close()


def test_the_faceplate_switches_operation_mode_and_source_through_the_api(
        served: tuple[ServedLine, Any], browser: Browser) -> None:
    page = login(browser, served[0], "operator")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(f"{r.method} {r.url}")
            if "/modes/" in r.url else None)
    _faceplate(page, "R1")
    operation = page.locator("select[data-mode=operation][data-object=Tempering]")
    text = page.locator("[data-mode-text=Tempering]")
    operation.select_option("Operator")
    expect(text).to_have_text(re.compile(r"Operator"))  # confirmed by the PEA, as text
    operation.select_option("Automatic")
    expect(text).to_have_text(re.compile(r"Automatic"))
    source = page.locator("select[data-mode=source][data-object=Tempering]")
    source.select_option("Internal")
    expect(text).to_have_text(re.compile(r"Automatic · Internal"))
    # a parameter's own modes, in its data assembly row (a source only in Automatic)
    page.locator("select[data-mode=operation][data-object=TempSP]").select_option("Automatic")
    expect(page.locator("[data-mode-text=TempSP]")).to_have_text(re.compile(r"Automatic"))
    page.locator("select[data-mode=source][data-object=TempSP]").select_option("External")
    expect(page.locator("[data-mode-text=TempSP]")).to_have_text(
        re.compile(r"Automatic · External"))
    page.locator("select[data-mode=source][data-object=Tempering]").select_option("External")
    expect(text).to_have_text(re.compile(r"Automatic · External"))
    assert sent and all(s.startswith("PUT ") and "/api/v1/modules/R1/modes/" in s for s in sent)
    assert page.errors == []  # type: ignore[attr-defined]
    page.close()


def test_a_viewer_sees_everything_and_can_command_nothing(
        served: tuple[ServedLine, Any], browser: Browser) -> None:
    page = login(browser, served[0], "viewer")
    expect(page.locator("svg.diagram g.module")).to_have_count(12)
    _faceplate(page, "P1")
    expect(page.locator("#faceplate .note")).to_contain_text("may not command")
    buttons = page.locator("#faceplate button[data-command], #faceplate button[data-set-button]")
    assert buttons.count() > 10
    for i in range(buttons.count()):
        expect(buttons.nth(i)).to_be_disabled()
    _faceplate(page, "R1")
    modes = page.locator("#faceplate select[data-mode]")
    assert modes.count() > 2
    for i in range(modes.count()):
        expect(modes.nth(i)).to_be_disabled()
    _faceplate(page, "P1")
    expect(page.locator("#faceplate tr[data-da=Pressure] td.v")).not_to_have_text("—")
    # and the service refuses what a disabled button would have sent
    status = page.evaluate("""async () => {
        const r = await fetch('/api/v1/modules/P1/services/Dosing/start', {method: 'POST',
            headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('mc.token'),
                      'Content-Type': 'application/json'}, body: '{}'});
        return r.status; }""")
    assert status == 403
    page.click("nav a[data-view=run]")
    expect(page.locator("#view-run form.queue")).to_have_count(0)
    page.close()


def test_campaign_from_the_browser_hold_resume_stall_and_ack(
        served: tuple[ServedLine, ServiceThread], browser: Browser) -> None:
    line, thread = served
    page = login(browser, line, "engineer")
    viewer = login(browser, line, "viewer")
    page.click("nav a[data-view=run]")
    # production long enough (12 x 60 min, 72 s at 600x) to hold, stall, acknowledge and
    # stop in it on a loaded machine (3 checks, 18 s, once ran out before the Stop); the Stop
    # ends it, so the length costs nothing
    page.fill("form.queue textarea[name=parameters]", "checks=12\ncheck_interval=60 min")
    page.click("form.queue button[type=submit]")
    state = page.locator("#run-state")
    # through preparation to production
    expect(page.locator("ol.steps li.current")).to_contain_text("▶ production", timeout=SLOW)
    expect(page.locator("ol.steps li[data-step=heat_reactors]")).to_have_class("done")
    page.click("button[data-action=hold]")
    expect(state).to_have_text("Held")
    page.click("button[data-action=resume]")
    expect(state).to_have_text("Execute")
    # the viewer sees the same run and may press nothing
    viewer.click("nav a[data-view=run]")
    expect(viewer.locator("#run-state")).to_have_text("Execute")
    for action in ("hold", "resume", "stop", "abort"):
        expect(viewer.locator(f"button[data-action={action}]")).to_be_disabled()

    def faults(s: Any) -> Any:
        return s.line.simulation.faults

    thread.call(lambda s: faults(s).inject("P1", "stall"))
    ack = page.locator("button[data-ack=feed_pump_stall]").first
    expect(ack).to_be_visible(timeout=20_000)
    expect(page.locator("#banner")).to_contain_text("feed_pump_stall")
    expect(state).to_have_text("Held", timeout=20_000)
    ack.click()
    expect(page.locator("button[data-ack=feed_pump_stall]")).to_have_count(0)
    thread.call(lambda s: faults(s).clear("P1", "stall"))
    expect(state).to_have_text("Execute", timeout=20_000)
    # the acknowledgement reached the other station through the stream
    viewer.click("nav a[data-view=alarms]")
    expect(viewer.locator("tr[data-alarm=feed_pump_stall]")).to_have_count(0)
    page.click("button[data-action=stop]")
    expect(state).to_have_text("stopped", timeout=SLOW)
    assert page.errors == [] and viewer.errors == []  # type: ignore[attr-defined]
    viewer.close()
    page.close()


def test_a_self_optimising_campaign_is_followed_in_the_run_view(
        served: tuple[ServedLine, ServiceThread], browser: Browser) -> None:
    """The example recipe with an ``optimize`` block: the run view shows the campaign (its
    goal, the experiment being made, each one's set points and outcome) from the run's JSON,
    kept live by the stream's experiment events."""
    line = served[0]
    page = login(browser, line, "engineer")
    page.click("nav a[data-view=run]")
    page.fill("form.queue input[name=recipe]", "examples/lomustine_optimize")
    page.click("form.queue button[type=submit]")
    head = page.locator("#campaign-head")
    expect(head).to_have_text("Optimisation throughput: 0 of 25 experiments", timeout=SLOW)
    expect(page.locator("section.campaign p.muted")).to_have_text(
        "maximize throughput subject to PAT1.Purity >= 90 % · cobyla")
    current = page.locator("table.experiments tr.current")
    expect(current).to_contain_text("R2.TempSP = 25 degC")  # the recipe's start point
    expect(current).to_contain_text("running: waiting for steady state")
    first = page.locator("table.experiments tr[data-experiment='0']:not(.current)")
    expect(first).to_contain_text(re.compile(r"best so far|feasible|infeasible|failed"),
                                  timeout=SLOW)
    expect(head).to_contain_text(re.compile(r"Optimisation throughput: [1-9]\d* of 25"))
    with _api(line, "viewer") as api:
        runs = api.get("/api/v1/runs").json()
        run = next(r for r in runs if not r["final"])
        c = api.get(f"/api/v1/runs/{run['id']}").json()["optimize"]
    assert c["name"] == "throughput" and c["budget"] == 25 and c["prior"] == "none"
    assert [v["targets"] for v in c["variables"]] == [
        ["R2.TempSP"], ["P1.FlowSetpoint", "P2.FlowSetpoint"], ["P3.Rate"]]
    e = c["experiments"][0]
    assert e["index"] == 0 and e["setpoints"]["R2.TempSP"] == pytest.approx(25.0)
    assert set(e) >= {"objective", "margins", "feasible", "error", "kpis", "means"}
    # the objective as people read it: the crystal rate in g/h, not kg/s
    assert c["units"]["objective"][0] == "g/h"
    assert c["units"]["objective"][1] == pytest.approx(3.6e6)
    expect(page.locator("table.experiments thead")).to_contain_text("objective (throughput)")
    if e["objective"] is not None:
        expect(first.locator("td").nth(2)).to_contain_text(" g/h")
    page.click("button[data-action=stop]")
    expect(page.locator("#run-state")).to_have_text("stopped", timeout=SLOW)
    assert page.errors == []  # type: ignore[attr-defined]
    page.close()


@contextlib.contextmanager
def _api(line: ServedLine, role: str) -> Iterator[httpx.Client]:
    """The service's API as a user of ``role`` (what a test seeds or checks beside the page)."""
    with httpx.Client(base_url=line.url, timeout=30.0) as c:
        name, password = line.users[role]
        tok = c.post("/api/v1/token", json={"username": name, "password": password})
        c.headers["Authorization"] = f"Bearer {tok.json()['access_token']}"
        yield c



def test_a_trend_shows_history_and_live_data(
        served: tuple[ServedLine, Any], browser: Browser) -> None:
    line = served[0]
    # its own history: R1 is tempered to 40 degC by hand (operator mode, between runs), so
    # R1.T moves and the historian records it whether or not another test ran before
    with _api(line, "operator") as op:
        def r1() -> dict[str, Any]:
            plant = op.get("/api/v1/plant").json()
            return dict(next(m for m in plant["modules"] if m["tag"] == "R1"))

        if r1()["services"]["Tempering"] in ("Stopped", "Completed", "Aborted"):
            op.post("/api/v1/modules/R1/services/Tempering/reset", json={})  # after a run
        # Idle, and the PEA's CommandEn (read a poll later) says so
        wait_until("R1 Tempering may start", lambda: "Start" in r1()["command_en"]["Tempering"])
        r = op.post("/api/v1/modules/R1/services/Tempering/start",
                    json={"parameters": {"TempSP": "40 degC"}})
        assert r.status_code == 200, r.text

        def history() -> bool:
            now = op.get("/api/v1/plant").json()
            end = now["clock_start"] + now["clock_now"]
            h = op.get("/api/v1/history", params={"tag": "R1.T", "start": end - 3600,
                                                  "end": end}).json()
            return len(h["points"]) > 3
        wait_until("R1.T recorded in the historian", history)
        try:
            page = login(browser, line, "viewer")
            page.click("nav a[data-view=trends]")
            page.select_option("#view-trends select", "R1.T")
            page.click("#view-trends button[data-trend=add]")
            # history from the historian endpoint, then live points from the stream on top
            page.wait_for_function("() => window.__station.trend.history > 2")
            n = page.evaluate("() => window.__station.trend.data['R1.T'].length")
            # at 600x R1.T settles within a second: a new set point moves it while we watch
            r = op.put("/api/v1/modules/R1/values/TempSP", json={"value": "30 degC"})
            assert r.status_code == 200, r.text
            page.wait_for_function(f"() => window.__station.trend.data['R1.T'].length > {n}",
                                   timeout=SLOW)
            page.wait_for_function("() => +document.querySelector('canvas#trend')"
                                   f".dataset.points > {n}")
            page.close()
        finally:
            op.post("/api/v1/modules/R1/services/Tempering/stop", json={})

"""The operator station's alarm view in a real browser (Playwright, Debian's Chromium): an
operator shelves an alarm with a reason and a time in the dialog, and sees it come back by
itself when its time runs out on the line's simulated clock (600x)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from modulecontrol.client import Client
from modulecontrol.service import ServiceOptions
from modulecontrol.station import mount
from modulecontrol.testing.service import ServedLine, ServiceThread
from tests.alarms.test_alarms_service import _line_files

pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
from playwright.sync_api import expect, sync_playwright

from tests._browser import CHROMIUM, needs_chromium

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLine]:
    folder = tmp_path_factory.mktemp("alarm-station")
    recipes = _line_files(folder)
    thread = ServiceThread(ServiceOptions(plant=recipes / "lomustine" / "plant.yaml",
                                          simulate=True, speed=600.0, db=folder / "line.db",
                                          recipes=recipes, report_dir=folder / "reports"),
                           mounts=[mount])
    line = thread.start()
    yield line
    thread.stop()


def _api(line: ServedLine, role: str, what: str) -> None:
    async def go() -> None:
        async with Client(line.url) as c:
            await c.login(*line.users[role])
            if what == "start":
                await c.start_run("alarm_demo")
            else:
                await c.command(1, "stop")
    asyncio.run(go())


def test_an_operator_shelves_an_alarm_and_sees_it_come_back(served: ServedLine) -> None:
    _api(served, "engineer", "start")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(served.url + "/")
        name, password = served.users["operator"]
        page.fill("input[name=username]", name)
        page.fill("input[name=password]", password)
        page.click("#login button[type=submit]")
        page.click("nav a[data-view=alarms]")
        row = page.locator("tr[data-alarm=r1_warm]")
        expect(row).to_have_attribute("data-state", "unacknowledged", timeout=60_000)
        expect(row.locator("td").first).to_contain_text("▲ unacknowledged")  # shape and word
        expect(row).to_contain_text("high")
        expect(page.locator("#banner")).to_contain_text("r1_warm")
        page.click("button[data-shelve=r1_warm]")
        dialog = page.locator("dialog#shelve-dialog")
        expect(dialog).to_be_visible()
        dialog.locator("input[name=reason]").fill("thermocouple being recalibrated")
        dialog.locator("input[name=duration]").fill("20 min")
        dialog.locator("button[data-shelve-ok=r1_warm]").click()
        expect(dialog).to_have_count(0)
        expect(row).to_have_attribute("data-state", "shelved")
        expect(row.locator("td").first).to_contain_text("◇ shelved until")
        expect(row).to_contain_text("thermocouple being recalibrated")
        # 1200 s of the line's clock: about 2 s here; it returns by itself
        expect(row).to_have_attribute("data-state", "unacknowledged", timeout=60_000)
        history = page.locator("table.history tbody")
        expect(history).to_contain_text("shelved → unacknowledged")
        expect(history.locator("tr", has_text="unshelve").first).to_contain_text("auto")
        page.click("button[data-ack=r1_warm]")
        expect(row).to_have_attribute("data-state", "acknowledged")
        expect(page.locator("#banner")).not_to_contain_text("r1_warm")
        assert errors == []
        browser.close()
    _api(served, "engineer", "stop")

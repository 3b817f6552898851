"""The operator station and signatures in a real browser (Playwright, Debian's Chromium):
production mode greys out and the service refuses an unapproved recipe; a batch record is
signed in the station's dialog with user name and password typed at that moment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from modulecontrol.client import Client
from modulecontrol.service import ServiceOptions
from modulecontrol.station import mount
from modulecontrol.testing.service import ServedLine, ServiceThread

pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
from playwright.sync_api import Browser, expect

from tests._browser import login, needs_chromium

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"

expect.set_options(timeout=20_000)

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLine]:
    folder = tmp_path_factory.mktemp("station-sign")
    thread = ServiceThread(ServiceOptions(plant=PLANT, simulate=True, speed=600.0,
                                          db=folder / "line.db", recipes=ROOT / "recipes",
                                          report_dir=folder / "reports"), mounts=[mount])
    line = thread.start()
    yield line
    thread.stop()


def test_production_mode_greys_out_and_refuses_an_unapproved_recipe(
        served: ServedLine, browser: Browser) -> None:
    page = login(browser, served, "engineer")
    page.click("nav a[data-view=run]")
    form = page.locator("form.queue")
    button = form.locator("button[type=submit]")
    form.locator("input[name=recipe]").fill("examples/dosing_demo")
    form.locator("select[name=mode]").select_option("simulation")
    expect(button).to_be_enabled()
    expect(form.locator("#mode-note")).to_contain_text("not a production batch")
    form.locator("select[name=mode]").select_option("production")
    expect(button).to_be_disabled()
    expect(form.locator("#mode-note")).to_contain_text(
        "not an approved, effective recipe version (not registered)")
    # a page that is tampered with to enable the button is refused by the service
    page.evaluate("document.querySelector('form.queue button[type=submit]').disabled = false")
    button.click()
    expect(form.locator("p.error")).to_contain_text("not effective")
    runs = page.evaluate("window.__station.runs")
    assert not runs, runs

    async def register_and_submit() -> None:
        async with Client(served.url) as c:
            name, password = served.users["engineer"]
            await c.login(name, password)
            rv = await c.register_recipe("examples/dosing_demo")
            await c.recipe_step(rv["id"], "submit", name, password, "ready for review")

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's loop
        pool.submit(asyncio.run, register_and_submit()).result(timeout=60)
    page.click("nav a[data-view=records]")
    row = page.locator("table.versions tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("in review")
    expect(row).to_contain_text(f"authored by {served.users['engineer'][0]}")
    page.click("nav a[data-view=run]")
    page.locator("form.queue input[name=recipe]").fill("examples/dosing_demo")
    page.locator("form.queue select[name=mode]").select_option("production")
    expect(page.locator("form.queue #mode-note")).to_contain_text("(in review)")
    page.close()


def test_a_batch_record_is_signed_in_the_station(served: ServedLine, browser: Browser) -> None:
    async def run_one() -> int:
        async with Client(served.url) as c:
            await c.login(*served.users["engineer"])
            queued = await c.start_run("examples/dosing_demo", {"volume": "0.5 mL"})
            deadline = time.monotonic() + 120.0
            while time.monotonic() < deadline:
                run: dict[str, Any] = await c.run(queued["id"])
                if run["final"]:
                    return int(run["id"])
                await asyncio.sleep(0.2)
        raise AssertionError("the run did not end")

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's loop
        rid = pool.submit(asyncio.run, run_one()).result(timeout=180)
    page = login(browser, served, "qa")
    page.click("nav a[data-view=records]")
    page.click(f"button[data-sign='{rid}']")
    dialog = page.get_by_role("dialog", name="sign batch record")
    name, password = served.users["qa"]
    dialog.locator("input[name=username]").fill(name)
    dialog.locator("input[name=password]").fill("wrong password")
    dialog.locator("input[name=reason]").fill("batch record reviewed")
    dialog.locator("button[type=submit]").click()
    expect(dialog.locator("p.error")).to_contain_text("wrong user name or password")
    dialog.locator("input[name=password]").fill(password)
    dialog.locator("button[type=submit]").click()
    row = page.locator("table.signatures tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(name)
    expect(row).to_contain_text("approved")
    expect(row).to_contain_text("batch record reviewed")
    expect(page.locator("#signatures h3")).to_contain_text("simulation")
    page.close()

"""Interlock bypass and manual divert override in the operator station (Playwright, Debian's
Chromium): the run view lists the interlocks with a Bypass button for an engineer, signed
in a dialog with user name and password typed at that moment; the divert shows its mode by
text and is overridden and released from the page."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modulecontrol.client import Client
from modulecontrol.service import ServiceOptions
from modulecontrol.station import mount
from modulecontrol.testing.service import ServedLine, ServiceThread

pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
from playwright.sync_api import Browser, expect

from tests._browser import login, needs_chromium
from tests.service.test_bypass_api import NAME, RECIPE

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"

expect.set_options(timeout=20_000)

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLine]:
    folder = tmp_path_factory.mktemp("station-bypass")
    recipes = folder / "recipes"
    recipes.mkdir()
    (recipes / NAME).write_text(RECIPE.format(plant=PLANT.as_posix()), encoding="utf-8")
    thread = ServiceThread(ServiceOptions(plant=PLANT, simulate=True, speed=30.0,
                                          db=folder / "line.db", recipes=recipes,
                                          report_dir=folder / "reports"), mounts=[mount])
    line = thread.start()
    yield line
    thread.stop()


def test_an_interlock_is_bypassed_and_the_divert_overridden_in_the_station(
        served: ServedLine, browser: Browser) -> None:
    async def start() -> int:
        async with Client(served.url) as c:
            await c.login(*served.users["engineer"])
            run = (await c.start_run(NAME))["id"]
            deadline = time.monotonic() + 120.0
            while time.monotonic() < deadline:  # at the first prompt: R1 is cold
                view = await c.run(run)
                if view.get("prompts"):
                    return int(run)
                await asyncio.sleep(0.2)
        raise AssertionError("the run did not reach its first prompt")

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's loop
        run = pool.submit(asyncio.run, start()).result(timeout=180)
    # an operator sees the interlock but may not bypass it
    op = login(browser, served, "operator")
    op.click("nav a[data-view=run]")
    expect(op.locator("tr[data-interlock=r1_hot] .il-state")).to_have_text("armed")
    expect(op.locator("button[data-bypass=r1_hot]")).to_be_disabled()
    op.close()
    page = login(browser, served, "engineer")
    page.click("nav a[data-view=run]")
    page.click("button[data-bypass=r1_hot]")
    dialog = page.get_by_role("dialog", name="bypass interlock r1_hot")
    name, password = served.users["engineer"]
    dialog.locator("input[name=duration]").fill("20 min")
    dialog.locator("input[name=password]").fill("wrong password")
    dialog.locator("input[name=reason]").fill("heat-up test")
    dialog.locator("button[type=submit]").click()
    expect(dialog.locator("p.error")).to_contain_text("wrong user name or password")
    dialog.locator("input[name=password]").fill(password)
    dialog.locator("button[type=submit]").click()
    state = page.locator("tr[data-interlock=r1_hot] .il-state")
    expect(state).to_contain_text(f"BYPASSED by {name}")
    page.click("button[data-unbypass=r1_hot]")
    expect(state).to_have_text("armed")
    # the divert: automatic (never product by itself), held at product by hand, released
    mode = page.locator("#divert-mode")
    expect(mode).to_contain_text("to waste · automatic")
    page.click("button[data-divert-override]")
    dialog = page.get_by_role("dialog", name="override divert")
    dialog.locator("select[name=position]").select_option("product")
    dialog.locator("input[name=password]").fill(password)
    dialog.locator("input[name=reason]").fill("sample the product")
    dialog.locator("button[type=submit]").click()
    expect(mode).to_contain_text(f"to product · MANUAL OVERRIDE at product by {name}")
    page.click("button[data-divert-release]")
    expect(mode).to_contain_text("automatic")
    expect(mode).to_contain_text("to waste")
    assert not page.errors, page.errors  # type: ignore[attr-defined]
    page.close()

    async def stop() -> None:
        async with Client(served.url) as c:
            await c.login(*served.users["engineer"])
            await c.command(run, "abort")

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, stop()).result(timeout=60)

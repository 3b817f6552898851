"""What the browser tests share: Debian's Chromium driven by Playwright, one browser per
test module, and an operator logging in to a served line's station.

Use ``needs_chromium`` as (part of) a module's ``pytestmark`` (the ``browser`` fixture is
in ``tests/conftest.py``): the module skips, with the reason, where Chromium or Playwright
is missing (``.ci/install-servers`` installs Chromium; Playwright is in the ``test``
extra)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modulecontrol.testing.service import ServedLine

pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
from playwright.sync_api import Browser, Page, expect

__all__ = ["CHROMIUM", "login", "needs_chromium"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/install-servers)")


def login(browser: Browser, line: ServedLine, role: str) -> Page:
    """A new page logged in to ``line``'s station as its user of ``role``; the page's
    script errors collect in ``page.errors`` (a test asserts there are none)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(line.url + "/")
    name, password = line.users[role]
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("#login button[type=submit]")
    expect(page.locator("#who")).to_have_text(f"{name} ({role})")
    page.errors = errors  # type: ignore[attr-defined]
    return page

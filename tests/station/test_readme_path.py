"""The README's three lines, followed as a newcomer would: the commands read from README.md
and run as written (in a scratch folder, so ``runs/`` lands there; ``--port 0`` added, the
one change, because the machine is shared), then the campaign queued, held, resumed and run
to its end in Debian's Chromium from the browser alone."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CAMPAIGN_END = 600_000
"""ms the whole campaign may take at most in the browser (about 9.5 h at 600x: ~1 min idle,
several on a loaded 2-core machine)."""

pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason="Debian's chromium is not installed "
                                        "(.ci/install-servers)"),
              # its own waits bound it (start 240 s, the campaign CAMPAIGN_END): the suite's
              # 300 s would end the process before its finally stops the service
              pytest.mark.timeout(900)]


def readme_lines() -> list[str]:
    """The station block of the README: two commands and the line that says what to do."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("operator station in a browser", 1)[1].split("```", 2)[1]
    lines = [ln.strip() for ln in block.strip().splitlines()]
    assert len(lines) == 3, "the README says how in three lines"
    return lines


def command(line: str) -> list[str]:
    words = shlex.split(line.split("#", 1)[0])
    assert words[0] == "modulecontrol"
    # the installed console script, from the test's interpreter (the tree under test)
    return [sys.executable, "-m", "modulecontrol.cli", *words[1:]]


class Output:
    """A process's output lines, read in a thread so a test can wait for one."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        out = proc.stdout
        self._thread = threading.Thread(target=lambda: self.lines.extend(iter(out.readline, "")),
                                        daemon=True)
        self._thread.start()

    def wait_for(self, pattern: str, within: float) -> re.Match[str]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for ln in list(self.lines):
                if m := re.search(pattern, ln):
                    return m
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r} within {within} s: {self.lines}")


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A folder that looks like the repository to the commands (its recipes), whose runs/
    (database, certificates, reports) is the test's own."""
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    yield tmp_path


def test_the_readme_path_from_serve_to_the_campaigns_end(scratch: Path) -> None:
    serve_line, user_line, what_to_do = readme_lines()
    assert "log in as ada" in what_to_do and "Queue run" in what_to_do
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    serve = subprocess.Popen([*command(serve_line), "--port", "0"], cwd=scratch, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = Output(serve)
        url = out.wait_for(r"operator station: open (http://127\.0\.0\.1:\d+)/", 240).group(1)
        # an empty database: serve says how to make the first user, as the README's line 2
        hint = out.wait_for(r"^\s+(modulecontrol user add NAME --role admin)\s*$", 30)
        assert user_line.startswith(hint.group(1).replace("NAME", "ada"))
        password = "a-long-first-password"
        made = subprocess.run(command(user_line), cwd=scratch, capture_output=True, text=True,
                              env={**env, "MODULECONTROL_PASSWORD": password}, timeout=120)
        assert made.returncode == 0, made.stderr
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.fill("input[name=username]", "ada")
            page.fill("input[name=password]", password)
            page.click("#login button[type=submit]")
            expect(page.locator("#who")).to_have_text("ada (admin)")
            page.click("nav a[data-view=run]")
            page.click("form.queue button[type=submit]")  # Queue run, as it comes
            state = page.locator("#run-state")
            expect(state).to_have_text("Execute", timeout=120_000)
            # the whole run's remaining time, from the recipe's durations
            expect(page.locator("#run-remaining")).to_contain_text("h", timeout=60_000)
            page.click("button[data-action=hold]")
            expect(state).to_have_text("Held")
            page.click("button[data-action=resume]")
            expect(state).to_have_text("Execute")
            expect(page.locator("#divert")).not_to_have_text("")
            expect(state).to_have_text("completed", timeout=CAMPAIGN_END)
            expect(page.locator("ol.steps li.current")).to_have_count(0)
            page.click("nav a[data-view=records]")
            expect(page.locator("table.runs tbody tr").first).to_contain_text("completed")
            browser.close()
        assert errors == []
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            code = serve.wait(120)
        except subprocess.TimeoutExpired:
            serve.kill()
            raise
    assert code == 0, out.lines[-20:]

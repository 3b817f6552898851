"""The suite's composition root: every test runs with the wiring ``main()`` gives the CLI.

Wired in ``pytest_configure``, before collection, because test modules load built-in module
types at import (``BUILTIN = builtin_types()``), and undone in ``pytest_unconfigure``. A
driver package's own suite can use the ``modulecontrol_wiring`` fixture of the pytest plugin
(``modulecontrol.testing.plugin``) instead.

With pytest-xdist (``make test TEST_WORKERS="-n 2 --dist loadgroup ..."``, for machines
with more than two cores) the files that run a whole line (a simulated plant in its own
process, a control service, a browser, a broker and a database) are one group, so they run
one after another on one worker while the other worker runs everything else; every other
file is a group of its own (its module fixtures start once). Without ``-n`` (the default of
``make test``: on 2 cores the fault matrix's detection bounds do not hold beside a second
worker's whole line) the groups change nothing.

``taken`` and ``first_port_taken`` force the race of a port chosen free in advance: a port
another process holds, and a ``free_port`` that answers it once (for tests showing that a
server still comes up, on another port).
"""

from __future__ import annotations

import faulthandler
import os
import socket
import sys
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from modulecontrol.bootstrap import Wiring, configure
from tests._poll import tasks_report

_WIRING: list[Wiring] = []


def pytest_configure(config: pytest.Config) -> None:
    _WIRING.append(configure())


def pytest_unconfigure(config: pytest.Config) -> None:
    while _WIRING:
        _WIRING.pop().undo()


_LINE_DIRS = {"e2e", "station", "fleet", "service", "twin"}
"""Test folders whose files run whole lines (see the module's docstring)."""
_ROOT = Path(__file__).parents[1]


def _group(path: Path) -> str:
    rel = path.resolve().relative_to(_ROOT) if path.resolve().is_relative_to(_ROOT) else path
    parts = rel.parts
    if (len(parts) > 2 and parts[0] == "tests" and parts[1] in _LINE_DIRS) \
            or "browser" in rel.name:
        return "whole-lines"
    return rel.as_posix()


HANG_MARGIN = 300.0
"""Seconds past a test's own timeout after which its setup, call and teardown together count
as hung: pytest-timeout does not cover the event loop's closing in the teardown, and a task
that ignored its cancellation there once held ``make test`` for good (stop 29)."""


def _hung(nodeid: str, after: float) -> None:
    """Say what hangs (every thread's stack, every open event loop's tasks), then end the
    run: a hung suite otherwise runs into CI's limit and says nothing."""
    err = sys.stderr
    err.write(f"\n{nodeid}: not done after {after:.0f} s (setup, call and teardown); the "
              "threads and the open event loops' tasks, then the run ends\n")
    faulthandler.dump_traceback(file=err, all_threads=True)
    err.write(tasks_report())
    err.flush()
    os._exit(3)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Generator[None, None, None]:
    mark = item.get_closest_marker("timeout")
    own = float(mark.args[0]) if mark is not None and mark.args else float(
        item.config.getini("timeout") or 300)
    after = own + HANG_MARGIN
    timer = threading.Timer(after, _hung, args=(item.nodeid, after))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item.path)))


@pytest.fixture
def taken() -> Iterator[int]:
    """A port some other process holds: bound, not listening, as by an outgoing
    connection's ephemeral port (nothing answers there, so a start cannot mistake it for
    its own server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@pytest.fixture
def first_port_taken(taken: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """``free_port`` answers ``taken`` once (it lost the race), then free ports again; the
    test must have asked for it (:func:`~modulecontrol.simulators.start_on_free_port` and
    :func:`~modulecontrol.simulators.astart_on_free_port` do)."""
    from modulecontrol.simulators import _ports

    real = _ports.free_port
    answers = [taken]
    monkeypatch.setattr(_ports, "free_port",
                        lambda host="127.0.0.1": answers.pop() if answers else real(host))
    yield taken
    assert not answers, "free_port was never asked: the race was not run"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium (Debian's executable, driven by Playwright) for a test module;
    see ``tests/_browser.py`` for the skip mark and the login."""
    from playwright.sync_api import sync_playwright

    from tests._browser import CHROMIUM

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()

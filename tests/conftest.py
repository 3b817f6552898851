"""The suite's composition root: every test runs with the wiring ``main()`` gives the CLI.

Wired in ``pytest_configure``, before collection, because test modules load built-in module
types at import (``BUILTIN = builtin_types()``), and undone in ``pytest_unconfigure``. A
driver package's own suite can use the ``modulecontrol_wiring`` fixture of the pytest plugin
(``modulecontrol.testing.plugin``) instead.

``make test`` runs the suite on two pytest-xdist workers (``--dist loadgroup``): the files
that run a whole line (a simulated plant in its own process, a control service, a browser, a
broker and a database) are one group, so they run one after another on one worker while
the other worker runs everything else beside them, which is the "other core busy" every
test must tolerate; every other file is a group of its own (its module fixtures start once).
Run by hand without ``-n``, the groups change nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from modulecontrol.bootstrap import Wiring, configure

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item.path)))

"""The suite's composition root: every test runs with the wiring ``main()`` gives the CLI.

Wired in ``pytest_configure``, before collection, because test modules load built-in module
types at import (``BUILTIN = builtin_types()``), and undone in ``pytest_unconfigure``. A
driver package's own suite can use the ``modulecontrol_wiring`` fixture of the pytest plugin
(``modulecontrol.testing.plugin``) instead.
"""

from __future__ import annotations

import pytest

from modulecontrol.bootstrap import Wiring, configure

_WIRING: list[Wiring] = []


def pytest_configure(config: pytest.Config) -> None:
    _WIRING.append(configure())


def pytest_unconfigure(config: pytest.Config) -> None:
    while _WIRING:
        _WIRING.pop().undo()

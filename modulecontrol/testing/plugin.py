"""pytest plugin (entry point ``pytest11``): fixtures of the driver test kit.

Loaded automatically once modulecontrol is installed; it only registers fixtures and never
changes the behaviour of unrelated tests: nothing here is autouse.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from modulecontrol.bootstrap import Wiring


@pytest.fixture(scope="session")
def modulecontrol_wiring() -> Iterator[Wiring]:
    """The composition root for a test session: document kinds and every installed driver's
    transport registered, as ``modulecontrol``'s ``main()`` does (without its CLI logging).

    A driver package's own suite requests it (or makes it autouse in its ``conftest.py``)
    before loading module types or plants that name its transport; undone after the session.
    Imported here, not at the top: this plugin is loaded into every pytest run of an
    environment that has modulecontrol, and must stay cheap there.
    """
    from modulecontrol.bootstrap import configure

    wiring = configure()
    yield wiring
    wiring.undo()


@pytest.fixture
def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free when asked (for a simulator or test server)."""
    # Imported here, not at the top: this plugin loads into every pytest session of an
    # environment where modulecontrol is installed, and must not pull in the simulators.
    from modulecontrol.simulators import free_port

    return free_port()

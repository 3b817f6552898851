"""pytest plugin (entry point ``pytest11``): fixtures of the driver test kit.

Loaded automatically once modulecontrol is installed; it only registers fixtures and never
changes the behaviour of unrelated tests.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free when asked (for a simulator or test server)."""
    # Imported here, not at the top: this plugin loads into every pytest session of an
    # environment where modulecontrol is installed, and must not pull in the simulators.
    from modulecontrol.simulators import free_port

    return free_port()

"""pytest plugin (entry point ``pytest11``): fixtures of the driver test kit.

Loaded automatically once modulecontrol is installed; it only registers fixtures and never
changes the behaviour of unrelated tests.
"""

from __future__ import annotations

import socket

import pytest


@pytest.fixture
def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free when asked (for a simulator or test server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port

"""Fixtures shared by the proxy tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from modulecontrol.testing.modbus import TcpDevice, tcp_device


@pytest.fixture
async def device() -> AsyncIterator[TcpDevice]:
    """A recording Modbus TCP device with unit 1 on a free port of 127.0.0.1."""
    async with tcp_device(units=(1,)) as dev:
        yield dev

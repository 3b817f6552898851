"""pytest plugin (entry point ``pytest11``): fixtures of the driver test kit.

Loaded automatically once modulecontrol is installed; it only registers fixtures and never
changes the behaviour of unrelated tests: nothing here is autouse, and no setting of another
plugin is changed (pytest-asyncio stays in the mode a suite chose). The conformance classes
(:mod:`modulecontrol.testing.conformance`) mark their own coroutines for pytest-asyncio, so a
driver package's suite runs them in strict mode as they are. Install with
``pip install 'modulecontrol[testing]'``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from modulecontrol.bootstrap import Wiring
    from modulecontrol.testing.service import ServedLine


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
    """A TCP port on 127.0.0.1 that was free when asked (for a simulator or test server).

    Racy, and kept for the suites that use it: the port is chosen by binding port 0 and
    closing the socket, so it is only free a moment ago. Another process (an outgoing
    connection's ephemeral port, a parallel test run) can take it before your server binds
    it, and the server then fails with "address already in use", rarely, and mostly on a
    loaded CI machine. Nothing a fixture hands out as a number can close that window: the
    port is only yours once your server has bound it.

    Prefer, in this order:

    - a server that binds port 0 and tells you the port it got: the kit's Modbus device
      (:class:`~modulecontrol.testing.modbus.TcpDevice` without a port, ``dev.port`` once
      started), ``asyncio.start_server(..., port=0)``, ``modulecontrol sim serve
      --free-ports`` (the ports are in its table or ``--json`` line), a simulated run
      (``run --simulate`` serves on free ports of its own);
    - for a server that must be told its port before it binds:
      :func:`~modulecontrol.simulators.start_on_free_port` (or ``astart_on_free_port``),
      which starts it on a new free port, a few times, when the chosen one turns out taken
      (your start raises ``OSError`` with ``errno.EADDRINUSE``).
    """
    # Imported here, not at the top: this plugin loads into every pytest session of an
    # environment where modulecontrol is installed, and must not pull in the simulators.
    from modulecontrol.simulators import free_port

    return free_port()


@pytest.fixture
def control_service_factory(tmp_path: Path) -> Iterator[Callable[..., ServedLine]]:
    """Start a control service on a free loopback port: ``factory(plant, recipes=...,
    simulate=True, speed=60.0)`` returns its :class:`~modulecontrol.testing.service.ServedLine`
    (URL, database, one user per role); every service started is stopped afterwards."""
    from modulecontrol.service import ServiceOptions
    from modulecontrol.testing.service import ServiceThread

    started: list[ServiceThread] = []

    def factory(plant: Path, *, recipes: Path | None = None, simulate: bool = True,
                speed: float = 60.0) -> ServedLine:
        n = len(started)
        options = ServiceOptions(plant=Path(plant), simulate=simulate, speed=speed,
                                 db=tmp_path / f"service-{n}.db",
                                 recipes=Path(recipes) if recipes else Path(plant).parent,
                                 report_dir=tmp_path / f"reports-{n}")
        thread = ServiceThread(options)
        started.append(thread)
        return thread.start()

    yield factory
    for thread in started:
        thread.stop()

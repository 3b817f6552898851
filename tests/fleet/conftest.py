"""A real broker and a real PostgreSQL cluster per test, on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modulecontrol.testing.servers import Mosquitto, Postgres, missing


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    absent = missing("mosquitto")
    if absent:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; .ci/run does)")
    server = Mosquitto(tmp_path / "mosquitto")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    absent = missing("initdb", "pg_ctl")
    if absent:
        pytest.skip(f"PostgreSQL is not installed ({', '.join(absent)} missing; "
                    f"apt-get install postgresql; .ci/run does)")
    server = Postgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        server.remove()

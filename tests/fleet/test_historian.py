"""The fleet historian (Sparkplug host application) with a real Mosquitto and PostgreSQL:
two lines side by side, a historian crash, STATE, and the fleet status."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from modulecontrol.descriptors import load_plant
from modulecontrol.fleet import (
    MIGRATIONS,
    Broker,
    EdgeNode,
    FleetHistorian,
    device_metrics,
    fleet_status,
    migrate,
)
from modulecontrol.testing.servers import Mosquitto, Postgres

PLANT = Path(__file__).parents[2] / "recipes/lomustine/plant.yaml"


class Host:
    """The historian on its own thread, as ``modulecontrol fleet serve`` runs it."""

    def __init__(self, broker: Mosquitto, pg: Postgres) -> None:
        self.h = FleetHistorian(Broker.parse(broker.url), pg.dsn)
        self.t = threading.Thread(target=self.h.run, daemon=True)
        self.t.start()
        assert self.h.connected.wait(10)

    def stop(self, *, crash: bool = False) -> None:
        self.h.kill() if crash else self.h.stop()
        self.t.join(10)
        assert not self.t.is_alive()


@pytest.fixture
def lines(broker: Mosquitto, tmp_path: Path) -> Iterator[list[EdgeNode]]:
    cfg = load_plant(PLANT)
    out = []
    for site, line in (("Basel", "L1"), ("Cork", "L2")):
        edge = EdgeNode(Broker.parse(broker.url), site, line, tmp_path / f"{site}.db",
                        primary_host="modulecontrol-fleet")
        for m in cfg.plant.modules:
            edge.add_device(m.tag, device_metrics(cfg.type_of(m.tag)))
        out.append(edge)
    yield out
    for edge in out:
        edge.stop(drain=1.0)


def _count(pg: Postgres, where: str = "true") -> int:
    with psycopg.connect(pg.dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM sample WHERE {where}").fetchone()
    assert row is not None
    return int(row[0])


def _wait(pred: object, timeout: float = 30.0) -> bool:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return bool(pred())  # type: ignore[operator]


def test_two_lines_appear_in_the_fleet_status(broker: Mosquitto, postgres: Postgres,
                                              lines: list[EdgeNode]) -> None:
    host = Host(broker, postgres)
    try:
        for edge in lines:
            edge.start()
        lines[0].update("R1", "T", 60.25, 1_760_000_000.0)
        lines[1].update("R1", "T", 71.5, 1_760_000_001.0)
        assert _wait(lambda: _count(postgres) >= 2)
        assert all(e.wait_drained(20) for e in lines)
    finally:
        host.stop()
    status = fleet_status(postgres.dsn)
    assert {(s.site, s.line) for s in status} == {("Basel", "L1"), ("Cork", "L2")}
    modules = {s.module for s in status if s.site == "Cork"}
    assert {"P1", "R1", "CR1"} <= modules
    temps = {(s.site, s.metric): (s.value, s.unit) for s in status if s.module == "R1"}
    assert temps[("Basel", "T")] == (60.25, "degC")
    assert temps[("Cork", "T")] == (71.5, "degC")
    assert all(s.line_online for s in status)  # the lines are still running


def test_a_historian_crash_loses_nothing(broker: Mosquitto, postgres: Postgres,
                                         lines: list[EdgeNode]) -> None:
    edge = lines[0]
    host = Host(broker, postgres)
    edge.start()
    assert _wait(lambda: edge.online, 10)
    for i in range(20):
        edge.update("P1", "Flow", float(i), 1_760_000_000.0 + i)
    assert _wait(lambda: _count(postgres) >= 20)
    host.stop(crash=True)  # the will says STATE offline; the edge holds its data
    assert _wait(lambda: not edge.online, 10)
    for i in range(20, 60):
        edge.update("P1", "Flow", float(i), 1_760_000_000.0 + i)
    assert len(edge.buffer) == 40  # buffered, not sent to nobody
    host = Host(broker, postgres)
    try:
        assert edge.wait_drained(30)
        assert _wait(lambda: _count(postgres) >= 60)
    finally:
        host.stop()
    with psycopg.connect(postgres.dsn) as conn:
        rows = conn.execute(
            "SELECT (s.value)::float, extract(epoch FROM s.ts), s.historical FROM sample s "
            "JOIN metric x ON x.id = s.metric_id WHERE x.name = 'Flow' ORDER BY s.ts"
        ).fetchall()
    assert [r[0] for r in rows] == [float(i) for i in range(60)]  # all, once each
    assert [round(r[1]) for r in rows] == [1_760_000_000 + i for i in range(60)]
    # replayed samples are marked historical; the newest is also the current value of the
    # DBIRTH that opened the new session, and it is stored once, from there
    assert [r[2] for r in rows] == [False] * 20 + [True] * 39 + [False]


def test_migrations_are_versioned_and_idempotent(postgres: Postgres) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        assert migrate(conn) == len(MIGRATIONS)
        assert migrate(conn) == len(MIGRATIONS)  # a second start changes nothing
        versions = conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'sample'").fetchone()
    assert [v[0] for v in versions] == list(range(1, len(MIGRATIONS) + 1))
    assert kind == ("p",)  # the samples table is partitioned


def test_a_broker_restart_loses_nothing_end_to_end(broker: Mosquitto, postgres: Postgres,
                                                   lines: list[EdgeNode]) -> None:
    edge = lines[0]
    host = Host(broker, postgres)
    try:
        edge.start()
        assert _wait(lambda: edge.online, 10)
        for i in range(30):
            edge.update("P1", "Flow", float(i), 1_760_000_000.0 + i)
        assert _wait(lambda: _count(postgres) >= 30)
        broker.stop()
        for i in range(30, 90):  # the broker is down: the edge buffers
            edge.update("P1", "Flow", float(i), 1_760_000_000.0 + i)
        broker.start()  # the historian reconnects by itself; the edge replays
        assert edge.wait_drained(60)
        assert _wait(lambda: _count(postgres) >= 90, 60)
    finally:
        host.stop()
    with psycopg.connect(postgres.dsn) as conn:
        rows = conn.execute(
            "SELECT (s.value)::float FROM sample s JOIN metric x ON x.id = s.metric_id "
            "WHERE x.name = 'Flow' ORDER BY s.ts").fetchall()
    assert [r[0] for r in rows] == [float(i) for i in range(90)]


def test_a_historian_killed_with_a_batch_pending_loses_nothing(
        broker: Mosquitto, postgres: Postgres, lines: list[EdgeNode]) -> None:
    """Messages received but not yet committed are not acknowledged: the broker delivers
    them again to the next historian (the batch waits up to 3 s here, so it is pending)."""
    edge = lines[0]
    host = FleetHistorian(Broker.parse(broker.url), postgres.dsn, max_latency=3.0)
    t = threading.Thread(target=host.run, daemon=True)
    t.start()
    assert host.connected.wait(10)
    edge.start()
    assert _wait(lambda: edge.online, 10)
    for i in range(40):
        edge.update("P1", "Flow", float(i), 1_760_000_000.0 + i)
        edge.update("R1", "T", 20.0 + i, 1_760_000_000.0 + i)  # two devices: many messages
    assert edge.wait_drained(20)
    assert _wait(lambda: len(host._pending) > 0, 5)
    host.kill()
    t.join(10)
    assert _count(postgres) < 80  # not all stored: the batch was pending at the kill
    again = Host(broker, postgres)
    try:
        assert _wait(lambda: _count(postgres, "ts < to_timestamp(1760000040)") >= 80, 30)
    finally:
        again.stop()
    with psycopg.connect(postgres.dsn) as conn:
        rows = conn.execute(
            "SELECT x.name, (s.value)::float FROM sample s JOIN metric x ON x.id = s.metric_id "
            "WHERE x.name IN ('Flow', 'T') ORDER BY x.name, s.ts").fetchall()
    assert [v for n, v in rows if n == "Flow"] == [float(i) for i in range(40)]
    assert [v for n, v in rows if n == "T"] == [20.0 + i for i in range(40)]


class _Client:
    """What the historian's connect callback uses of paho's client."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def subscribe(self, topics: object) -> tuple[int, int]:
        return 0, 7  # paho: (result, message id)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.published.append(topic)


@pytest.mark.parametrize(("granted", "connected"), [((1,), True), ((0x80,), False)])
def test_the_historian_is_connected_once_its_subscription_is_confirmed(
        broker: Mosquitto, postgres: Postgres, granted: tuple[int, ...],
        connected: bool) -> None:
    """Not at CONNACK: an edge's message published between CONNACK and SUBACK does not
    reach a first session, and who waits for ``connected`` publishes next (a test of the
    sequence order lost its first sample that way on a loaded machine). A refused
    subscription (an ACL) never counts as connected, and stops the historian: it would
    record nothing."""
    h = FleetHistorian(Broker.parse(broker.url), postgres.dsn)
    c = _Client()
    h._on_connect(c, None, {}, 0)
    assert not h.connected.is_set() and c.published  # the STATE birth went out
    h._on_subscribe(c, None, 6, (1,))  # another subscription's SUBACK
    assert not h.connected.is_set()
    if connected:
        h._on_subscribe(c, None, 7, granted)
    else:
        with pytest.raises(PermissionError, match="the broker refused the subscription"):
            h._on_subscribe(c, None, 7, granted)
    assert h.connected.is_set() is connected

"""Issue #20: a fleet historian working through a backlog keeps its MQTT session.

paho sends a PINGREQ every keepalive even on a busy connection and closed the connection
itself when the PINGRESP was not processed one keepalive later; behind a backlog the
PINGRESP waits behind every message the broker queued before it (Mosquitto 2.0.11 lets
the whole backlog into flight once acknowledgements come in bursts, as the historian's do
after each commit). So a historian that was behind dropped its connection every two
keepalives, resumed its session and had everything in flight delivered again: the
session resumptions under which the bench lost samples.

Here a real PostgreSQL made slow by a trigger (every batch waits 0.2 s in the database)
and a backlog of 2 500 messages queued for the historian's persistent session in a real
Mosquitto keep the historian busy for many keepalives (3 s here, to keep the test short).
It must store the backlog on **one** connection (the broker's log tells), each sample once,
in the order the broker delivered it.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import psycopg

from modulecontrol.fleet import (
    Broker,
    DataType,
    FleetHistorian,
    Metric,
    encode,
    mqtt_client,
    topic,
)
from modulecontrol.testing.servers import Mosquitto, Postgres

_BACKLOG = 2500
_BATCH = 50
"""Messages per batch: 50 batches of 0.2 s at least, over 3 keepalives."""
_KEEPALIVE = 3
_T0 = 1_780_000_000_000  # ms


def _run(h: FleetHistorian) -> threading.Thread:
    t = threading.Thread(target=h.run, daemon=True)
    t.start()
    assert h.connected.wait(20), "the historian did not connect"
    return t


def _stop(h: FleetHistorian, t: threading.Thread) -> None:
    h.stop()
    t.join(30)
    assert not t.is_alive()
    assert h.error is None


def _queue_backlog(url: str) -> None:
    """NBIRTH, DBIRTH and ``_BACKLOG`` DDATA (QoS 1) while the historian is away."""
    c = mqtt_client("backlog-pub", Broker.parse(url))
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", Broker.parse(url).port)
    c.loop_start()
    try:
        now = int(time.time() * 1000)
        c.publish(topic("Backlog", "NBIRTH", "L1"), encode(
            [Metric("bdSeq", DataType.INT64, 0, now)], timestamp=now, seq=0), qos=1)
        c.publish(topic("Backlog", "DBIRTH", "L1", "D"), encode(
            [Metric("n", DataType.DOUBLE, None, now)], timestamp=now, seq=1), qos=1)
        infos = [c.publish(topic("Backlog", "DDATA", "L1", "D"), encode(
            [Metric("n", DataType.DOUBLE, float(i), _T0 + i)], timestamp=now,
            seq=(i + 2) % 256), qos=1) for i in range(_BACKLOG)]
        for info in infos:
            info.wait_for_publish(60)
            assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


def _stored(dsn: str) -> list[float]:
    """The backlog's values in the order they were stored."""
    with psycopg.connect(dsn) as conn:
        return [float(v) for v, in conn.execute(
            "SELECT (s.value)::float FROM sample s JOIN metric x ON x.id = s.metric_id "
            "JOIN module m ON m.id = x.module_id JOIN line l ON l.id = m.line_id "
            "WHERE l.name = 'L1' AND x.name = 'n' "
            "ORDER BY s.received_at, s.ctid").fetchall()]


def _sessions(log: Path) -> int:
    return len(re.findall(r"New client connected .* as fleet-modulecontrol-fleet ",
                          log.read_text()))


def test_a_historian_behind_a_backlog_keeps_its_connection(broker: Mosquitto,
                                                           postgres: Postgres) -> None:
    url = Broker.parse(broker.url)
    first = FleetHistorian(url, postgres.dsn, keepalive=_KEEPALIVE)
    _stop(first, _run(first))  # its schema and its persistent session exist now
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:  # a slow database
        conn.execute("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN PERFORM pg_sleep(0.2); RETURN NULL; END $$")
        conn.execute("CREATE TRIGGER slow AFTER UPDATE ON line FOR EACH STATEMENT "
                     "EXECUTE FUNCTION slow()")
    _queue_backlog(broker.url)
    log = broker.folder / "mosquitto.log"
    before = _sessions(log)
    h = FleetHistorian(url, postgres.dsn, keepalive=_KEEPALIVE, batch_messages=_BATCH)
    t = _run(h)
    try:
        end = time.monotonic() + 50
        while h.rows < _BACKLOG and time.monotonic() < end and t.is_alive():
            time.sleep(0.2)
        assert h.rows >= _BACKLOG, f"{h.rows} of {_BACKLOG} stored"
        assert h.batches >= 3 * _KEEPALIVE / 0.2  # it really was behind for 3 keepalives
    finally:
        _stop(h, t)
        broker.stop()  # its log complete
    assert _sessions(log) - before == 1, "the historian reconnected while behind"
    assert _stored(postgres.dsn) == [float(i) for i in range(_BACKLOG)]  # once, in order


def test_a_silent_broker_still_costs_the_connection(broker: Mosquitto,
                                                    postgres: Postgres) -> None:
    """Traffic answers a ping, silence does not: a broker that stops answering (frozen
    with SIGSTOP: its port still accepts, nothing comes back) is noticed within a few
    keepalives and the historian goes on trying to reconnect."""
    h = FleetHistorian(Broker.parse(broker.url), postgres.dsn, keepalive=1)
    t = _run(h)
    proc = broker._proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        end = time.monotonic() + 20
        while h.connected.is_set() and time.monotonic() < end:
            time.sleep(0.1)
        assert not h.connected.is_set(), "a silent broker went unnoticed"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert h.connected.wait(20), "the historian did not come back"
    _stop(h, t)

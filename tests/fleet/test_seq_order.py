"""Issue #20: no spurious Sparkplug rebirths, against a real Mosquitto (and PostgreSQL).

The fleet bench saw the historian ask an edge node for a rebirth where none was due: the
``seq`` it saw was out of order. Each test here is one cause, reproduced on purpose:

* an edge's **lost connection**: paho resends the previous connection's unacknowledged
  QoS 1 messages on the next one, so a message with a ``seq`` of the old session followed
  the new NBIRTH (and the same sample went out twice: the buffer replays it too);
* a **redelivery to the historian** (the MQTT DUP flag) that is in fact the next ``seq``:
  ignored, so the next message looked like a gap;
* a **stale NDEATH**, the will of an earlier connection arriving after the new NBIRTH: it
  reset the historian's ``seq`` of that line, so the next data looked like a line without
  a birth;
* **births overtaking queued data**: for a historian that is behind, Mosquitto sends a
  QoS 0 birth at once but queues QoS 1 data, so the previous session's data arrived after
  the new NBIRTH (births now go at QoS 1, ``EdgeNode.BIRTH_QOS``).

A link is broken with :class:`~modulecontrol.testing.relay.TcpRelay` between a client and
the broker, so the broker (and the recorder, connected to it directly) stay up and see
everything in order.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from modulecontrol.fleet import (
    Broker,
    DataType,
    EdgeNode,
    FleetHistorian,
    Metric,
    MetricSpec,
    decode,
    encode,
    mqtt_client,
    topic,
)
from modulecontrol.testing.relay import TcpRelay
from modulecontrol.testing.servers import Mosquitto, Postgres
from tests._poll import wait_until
from tests.fleet._sub import Recorder


class Relay:
    """A :class:`TcpRelay` on an event loop of its own thread, for these threaded tests."""

    def __init__(self, port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.relay = TcpRelay(port)
        self._call(self.relay.start())
        self.url = f"mqtt://127.0.0.1:{self.relay.port}"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _do(self, fn: Callable[[], None]) -> None:
        async def run() -> None:
            fn()
        self._call(run())

    def stall(self) -> None:
        """Every byte is held back from now on, both ways (read, not delivered)."""
        self._do(self.relay.stalled.clear)

    def resume(self) -> None:
        """Deliver what was held back, in order, and go on relaying."""
        self._do(self.relay.stalled.set)

    def cut_and_restore(self) -> None:
        """Close the open connections (what was held back is gone), accept new ones."""
        def go() -> None:
            self.relay.cut()
            self.relay.stalled.set()
            self.relay.restore()
        self._do(go)

    def close(self) -> None:
        self._call(self.relay.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def relay(broker: Mosquitto) -> Iterator[Relay]:
    r = Relay(broker.port)
    yield r
    r.close()


def _wait(pred: Callable[[], object], timeout: float = 20.0) -> bool:
    """The tests' shared poll (tests/_poll.py); AssertionError when it never holds."""
    wait_until("the condition of this step", pred, timeout, 0.05)
    return True


def _node_messages(rec: Recorder, node: str) -> list[tuple[str, Any]]:
    """(message type, decoded payload) of one edge node, in the order the broker sent them."""
    out = []
    for t, p in list(rec.messages):
        parts = t.split("/")
        if len(parts) >= 4 and parts[3] == node and parts[2] not in ("NCMD", "DCMD"):
            out.append((parts[2], decode(p)))
    return out


class Host:
    """The historian on a thread of its own, as ``modulecontrol fleet serve`` runs it."""

    def __init__(self, url: str, pg: Postgres) -> None:
        self.h = FleetHistorian(Broker.parse(url), pg.dsn)
        self.t = threading.Thread(target=self.h.run, daemon=True)
        self.t.start()
        assert self.h.connected.wait(10)

    def stop(self) -> None:
        self.h.stop()
        self.t.join(10)
        assert not self.t.is_alive()


def test_a_lost_connection_sends_nothing_of_the_old_session_again(
        broker: Mosquitto, relay: Relay, postgres: Postgres, tmp_path: Path) -> None:
    host = Host(broker.url, postgres)  # the historian's own link is not broken
    rec = Recorder(broker.url)
    edge = EdgeNode(Broker.parse(relay.url), "SiteA", "Line1", tmp_path / "buf.db",
                    ack_timeout=30.0)
    edge.add_device("R1", [MetricSpec("N", DataType.INT64)])
    edge.start()
    try:
        assert _wait(lambda: edge.online)
        for i in range(3):
            edge.update("R1", "N", i, 1000.0 + i)
        assert edge.wait_drained(20)
        relay.stall()
        edge.update("R1", "N", 3, 1003.0)  # published, never acknowledged
        time.sleep(0.3)  # let paho write it (the relay holds it back)
        relay.cut_and_restore()
        assert _wait(lambda: len(rec.of("NBIRTH")) == 2)
        edge.update("R1", "N", 4, 1004.0)
        assert edge.wait_drained(30)
        assert rec.wait(lambda: any(m.value == 4 for _, p in rec.of("DDATA")
                                    for m in decode(p).metrics))
        time.sleep(1.0)  # a resend of the old connection's message would come by now
    finally:
        edge.stop()
        rec.close()
        host.stop()
    assert host.h.rebirths_requested == 0
    msgs = _node_messages(rec, "Line1")
    values = [m.value for kind, d in msgs if kind == "DDATA" for m in d.metrics]
    assert values == [0, 1, 2, 3, 4]  # each sample once, in order
    # every session's seq: 0 on its NBIRTH, one more on every later message; nothing
    # between a session's death (the will, on the lost connection) and the next birth
    expected: int | None = None
    for kind, d in msgs:
        if kind == "NDEATH":
            expected = None
            continue
        if kind == "NBIRTH":
            assert d.seq == 0
        else:
            assert expected is not None, f"{kind} seq {d.seq} before any NBIRTH"
            assert d.seq == expected, f"{kind} seq {d.seq}, expected {expected}"
        expected = (d.seq + 1) % 256


class Publisher:
    """A plain MQTT client publishing hand-made Sparkplug messages, QoS 1, one at a time
    (each acknowledged before the next), so the broker delivers them in this order."""

    def __init__(self, broker: Mosquitto) -> None:
        self.c = mqtt_client("seq-order-publisher", Broker.parse(broker.url))
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()

    def send(self, kind: str, metrics: list[Metric], seq: int | None,
             device: str | None = None, qos: int = 1) -> None:
        info = self.c.publish(topic("S", kind, "L", device), encode(
            metrics, timestamp=int(time.time() * 1000), seq=seq), qos=qos)
        info.wait_for_publish(10)
        assert info.is_published()

    def birth(self, bd_seq: int, value: float, qos: int = 1) -> None:
        now = int(time.time() * 1000)
        self.send("NBIRTH", [Metric("bdSeq", DataType.INT64, bd_seq, now),
                             Metric("Node Control/Rebirth", DataType.BOOLEAN, False, now)], 0,
                  qos=qos)
        self.send("DBIRTH", [Metric("V", DataType.DOUBLE, value, now)], 1, "D", qos=qos)

    def data(self, seq: int, value: float) -> None:
        self.send("DDATA", [Metric("V", DataType.DOUBLE, value, 1_790_000_000_000
                                   + int(value) * 1000)], seq, "D")

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _values(pg: Postgres) -> list[float]:
    with psycopg.connect(pg.dsn) as conn:
        rows = conn.execute("SELECT (value)::float FROM sample ORDER BY ts").fetchall()
    return [float(r[0]) for r in rows]


def test_a_redelivery_that_is_the_next_seq_moves_the_order_on(
        broker: Mosquitto, relay: Relay, postgres: Postgres) -> None:
    host = Host(relay.url, postgres)  # the historian's link goes through the relay
    pub = Publisher(broker)
    try:
        pub.birth(1, 0.0)
        pub.data(2, 1.0)
        assert _wait(lambda: 1.0 in _values(postgres))
        time.sleep(0.3)  # its PUBACK reaches the broker
        relay.stall()
        pub.data(3, 2.0)  # the broker sends it; the relay holds it back: never received
        time.sleep(0.3)
        relay.cut_and_restore()
        # the historian resumes its session: the broker sends seq 3 again, flagged DUP
        assert _wait(lambda: 2.0 in _values(postgres), 30)
        pub.data(4, 3.0)
        assert _wait(lambda: 3.0 in _values(postgres))
    finally:
        pub.close()
        host.stop()
    assert sorted(_values(postgres)) == [0.0, 1.0, 2.0, 3.0]
    assert host.h.rebirths_requested == 0


def test_a_stale_death_does_not_reset_the_order(broker: Mosquitto,
                                                postgres: Postgres) -> None:
    host = Host(broker.url, postgres)
    pub = Publisher(broker)
    try:
        pub.birth(5, 0.0)
        pub.data(2, 1.0)
        pub.birth(6, 10.0)  # a new session of the line ...
        now = int(time.time() * 1000)
        # ... and the will of the one before it, delivered after the new birth
        pub.send("NDEATH", [Metric("bdSeq", DataType.INT64, 5, now)], None)
        pub.data(2, 11.0)
        assert _wait(lambda: 11.0 in _values(postgres))
    finally:
        pub.close()
        host.stop()
    assert host.h.rebirths_requested == 0
    with psycopg.connect(postgres.dsn) as conn:
        row = conn.execute("SELECT online, bd_seq FROM line WHERE name = 'L'").fetchone()
    assert row == (True, 6)  # the stale death did not take the line offline either


def test_births_overtaking_queued_data_cost_no_rebirth(
        broker: Mosquitto, relay: Relay, postgres: Postgres) -> None:
    """For a subscriber that is behind (its in-flight window of 20 full), Mosquitto queues
    QoS 1 messages but sends a QoS 0 one at once: births at QoS 0 (the specification)
    overtake the previous session's data still queued for the historian, which then
    arrive after the new NBIRTH out of its order and cost rebirths. The edge's births go
    at ``EdgeNode.BIRTH_QOS``; with 0 here this test fails (two rebirths)."""
    host = Host(relay.url, postgres)
    pub = Publisher(broker)
    try:
        pub.birth(1, 0.0, qos=EdgeNode.BIRTH_QOS)
        pub.data(2, 1.0)
        assert _wait(lambda: 1.0 in _values(postgres))
        relay.stall()  # the historian is behind: no PUBACK reaches the broker
        for seq in range(3, 43):  # 40 messages: 20 in flight, 20 queued by the broker
            pub.data(seq, float(seq - 1))
        pub.birth(2, 100.0, qos=EdgeNode.BIRTH_QOS)  # a new session (a rebirth) of the line
        pub.data(2, 101.0)
        pub.data(3, 102.0)
        relay.resume()  # the historian catches up
        assert _wait(lambda: 102.0 in _values(postgres), 30)
    finally:
        pub.close()
        host.stop()
    assert sorted(_values(postgres)) == [float(v) for v in range(42)] + [100.0, 101.0, 102.0]
    assert host.h.rebirths_requested == 0

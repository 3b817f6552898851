"""The historian's batches: one transaction for many messages, acknowledged only after the
commit, in arrival order, each row once however often it is delivered."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modulecontrol.fleet import Broker, HeldAcks, Store, mqtt_client
from modulecontrol.testing.servers import Mosquitto, Postgres


def _session(url: str, received: list[bytes]) -> Any:
    c = mqtt_client("held", Broker.parse(url), clean_session=False)
    c.on_connect = lambda cl, u, f, rc: cl.subscribe("t/#", 1)
    c.on_message = lambda cl, u, msg: received.append(msg.payload)
    return c


def _pump(c: Any, until: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not until() and time.monotonic() < end:
        c.loop(0.05)


def _publish(url: str, n: int, prefix: str) -> None:
    p = mqtt_client(f"pub-{prefix}", Broker.parse(url))
    p.connect("127.0.0.1", Broker.parse(url).port)
    p.loop_start()
    infos = [p.publish("t/x", f"{prefix}{i}".encode(), qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(10)
    p.disconnect()
    p.loop_stop()


@pytest.mark.parametrize("release", [False, True])
def test_held_acknowledgements_are_redelivered_after_a_crash(broker: Mosquitto,
                                                             release: bool) -> None:
    received: list[bytes] = []
    c = _session(broker.url, received)
    acks = HeldAcks(c)

    def on_message(cl: Any, u: Any, msg: Any) -> None:
        acks.hold(msg)
        received.append(msg.payload)

    c.on_message = on_message
    c.connect("127.0.0.1", broker.port)
    _pump(c, lambda: False, 0.5)  # subscribed
    _publish(broker.url, 5, "a")
    _pump(c, lambda: len(received) >= 5)
    assert received == [b"a0", b"a1", b"a2", b"a3", b"a4"]
    assert len(acks.held) == 5  # none acknowledged yet
    if release:
        assert acks.release() == 5
        _pump(c, lambda: False, 0.3)  # the acknowledgements go out
    c.socket().close()  # a crash: no DISCONNECT
    again: list[bytes] = []
    c2 = _session(broker.url, again)
    c2.connect("127.0.0.1", broker.port)
    _publish(broker.url, 1, "b")  # a new message after the old ones
    _pump(c2, lambda: b"b0" in again)
    c2.disconnect()
    if release:
        assert again == [b"b0"]  # acknowledged after the "commit": not delivered again
    else:
        assert again == [b"a0", b"a1", b"a2", b"a3", b"a4", b"b0"]  # held: all redelivered


_T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


@pytest.fixture
def store(postgres: Postgres) -> Any:
    s = Store(postgres.dsn)
    yield s
    s.close()


def _value(metric: str, sec: int) -> float:
    return sec * 1.5 + len(metric)


_deliveries = st.lists(  # (metric, second) of each message's rows; a message may come twice
    st.tuples(st.lists(st.tuples(st.sampled_from(["T", "Flow", "P"]),
                                 st.integers(0, 40)), min_size=1, max_size=6),
              st.booleans()),
    min_size=1, max_size=30)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(deliveries=_deliveries, cut=st.integers(1, 8))
def test_batches_store_each_row_once_in_arrival_order(store: Any, deliveries: Any,
                                                      cut: int) -> None:
    with store.conn.transaction():
        store.conn.execute("TRUNCATE sample")
        store.conn.execute("UPDATE metric SET last_value = NULL, last_ts = NULL")
    messages = []
    for rows, twice in deliveries:
        msg = ("S", "L", "M", [(m, 10, _T0 + dt.timedelta(seconds=s), _value(m, s), False)
                               for m, s in rows])
        messages += [msg, msg] if twice else [msg]
    new = 0
    for i in range(0, len(messages), cut):  # batches of ``cut`` messages
        new += store.sample_batch(messages[i:i + cut])
    first: dict[tuple[str, int], int] = {}
    for _, _, _, rows in messages:
        for m, _, ts, _, _ in rows:
            first.setdefault((m, int((ts - _T0).total_seconds())), len(first))
    assert new == len(first)  # everything once, the repeats skipped
    got = store.conn.execute(
        "SELECT x.name, extract(epoch FROM s.ts - %s)::int, (s.value)::float FROM sample s "
        "JOIN metric x ON x.id = s.metric_id ORDER BY s.received_at, s.ctid", (_T0,)
    ).fetchall()
    assert [(m, s) for m, s, _ in got] == sorted(first, key=first.__getitem__)  # in order
    assert all(v == _value(m, s) for m, s, v in got)
    latest = dict(store.conn.execute(
        "SELECT name, (last_value)::float FROM metric WHERE last_ts IS NOT NULL").fetchall())
    for m in latest:
        assert latest[m] == _value(m, max(s for n, s in first if n == m))


def test_a_value_json_cannot_hold_is_stored_as_its_name(store: Any) -> None:
    """A NaN from a failed sensor must not stop the historian (PostgreSQL's JSON has no NaN;
    a refused batch would be redelivered and refused forever)."""
    rows = [("T", 10, _T0 + dt.timedelta(seconds=i), v, False)
            for i, v in enumerate([1.0, float("nan"), float("inf")])]
    assert store.sample_batch([("S", "L", "M", rows)]) == 3
    got = store.conn.execute("SELECT value FROM sample ORDER BY ts").fetchall()
    assert [g[0] for g in got] == [1.0, "NaN", "Infinity"]

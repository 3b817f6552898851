"""The fleet historian: a Sparkplug B primary host application writing to PostgreSQL.

Per the specification (3.0, "Host Applications"): it announces itself with a retained
``spBv1.0/STATE/<host_id>`` message ``{"online": true, "timestamp": T}`` and leaves the same
topic with ``online: false`` and the same ``T`` as its MQTT will, so edge nodes that name it
as their primary host stop publishing (and buffer) while it is away and send new births when
it returns. It tracks each edge node's ``seq`` and asks for a rebirth (NCMD
``Node Control/Rebirth``) when one is missing or a node is unknown.

Its MQTT session is persistent (clean session off, QoS 1): what the broker accepted while the
historian reconnects is delivered afterwards, and a message is acknowledged only once its rows
are committed; a database error stops the historian (exit, will fires, edges buffer) rather
than acknowledging data it did not store.

Throughput: data messages (DDATA, DBIRTH values) are collected and written in batches, one
transaction per batch (``COPY`` into a staging table, :meth:`Store.sample_batch`), their
acknowledgements held back until the commit (:class:`HeldAcks`). A batch is written when it
holds ``batch_messages`` messages or its oldest message waited ``max_latency`` seconds, and
before any other message (births, deaths, events), so the database sees every message in
the order the broker delivered it. The broker does not bound a batch: Mosquitto 2.0.11
keeps ``max_inflight_messages`` (20) while acknowledgements come one at a time, but lets
many more into flight when a batch's come together (docs/fleet.md).

Behind a backlog the PINGRESP to paho's keepalive ping waits behind every message the
broker sent before it; any packet received after the ping counts as its answer
(:func:`~modulecontrol.fleet._mqtt.alive_while_receiving`), so the historian keeps its
session while it catches up (issue #20) and still notices a broker that went silent.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import threading
import time
from typing import Any

from modulecontrol.fleet._mqtt import Broker, HeldAcks, alive_while_receiving, client
from modulecontrol.fleet._payload import (
    NAMESPACE,
    DataType,
    Decoded,
    Metric,
    decode,
    encode,
    parse_topic,
    state_topic,
    topic,
)
from modulecontrol.fleet._store import Store

_log = logging.getLogger(__name__)

DEFAULT_HOST_ID = "modulecontrol-fleet"


def _time(ms: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ms / 1000.0, _dt.UTC)


class FleetHistorian:
    """``run()`` blocks until :meth:`stop`; raises if the database fails."""

    def __init__(self, broker: Broker, dsn: str, host_id: str = DEFAULT_HOST_ID, *,
                 batch_messages: int = 1000, max_latency: float = 0.05,
                 keepalive: int = 10) -> None:
        self.broker = broker
        self.keepalive = keepalive
        """MQTT keepalive, seconds: how soon the broker declares a silent historian gone
        (1.5 ×, its will: STATE offline) and the historian a silent broker."""
        self.host_id = host_id
        self.store = Store(dsn)
        self.batch_messages = batch_messages
        self.max_latency = max_latency
        self.messages = 0
        """Sparkplug messages stored."""
        self.rows = 0
        """Sample rows stored (new ones)."""
        self.duplicates = 0
        """Sample rows received again and not stored twice (redeliveries, replays)."""
        self.batches = 0
        self._pending: list[tuple[str, str, str, list[tuple[str, int, _dt.datetime, Any,
                                                            bool]]]] = []
        self._pending_since = 0.0
        self.rebirths_requested = 0
        self._seq: dict[tuple[str, str], int] = {}
        self._born = _ms()
        self._client = client(f"fleet-{host_id}", broker, clean_session=False)
        self._client.will_set(state_topic(host_id), self._state(False), qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._subscription: int | None = None
        alive_while_receiving(self._client)  # a backlog must not cost the session (#20)
        self._acks = HeldAcks(self._client)
        self._stopping = threading.Event()
        self._killed = False
        self.connected = threading.Event()
        """Set once the broker has confirmed the subscription (SUBACK), not at CONNACK: a
        message an edge publishes between the two would not reach this historian's first
        session, and whoever waits for ``connected`` expects what is published next to
        arrive."""
        self.error: BaseException | None = None

    def _state(self, online: bool) -> bytes:
        return json.dumps({"online": online, "timestamp": self._born}).encode()

    def run(self) -> None:
        self._client.connect(self.broker.host, self.broker.port,
                             keepalive=self.keepalive)
        try:
            while not self._stopping.is_set():
                rc = self._client.loop(timeout=self.max_latency / 2 if self._pending else 0.5)
                if rc == 0 and self._pending and (
                        len(self._pending) >= self.batch_messages
                        or time.monotonic() - self._pending_since >= self.max_latency):
                    self._flush()
                if rc != 0 and not self._stopping.is_set():
                    if self.connected.is_set():  # once per loss, not per failed retry
                        _log.warning("fleet historian: connection to the broker lost (paho "
                                     "rc %s); reconnecting, what was not acknowledged comes "
                                     "again", rc)
                    self.connected.clear()
                    time.sleep(1.0)
                    try:
                        self._client.reconnect()
                    except OSError as exc:
                        _log.warning("fleet historian: broker unreachable: %s", exc)
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            if self._stopping.is_set() and not self._killed:
                if self.error is None:
                    self._flush()
                info = self._client.publish(state_topic(self.host_id), self._state(False),
                                            qos=1, retain=True)
                end = time.monotonic() + 2.0
                while not info.is_published() and time.monotonic() < end:
                    self._client.loop(0.1)
                self._client.disconnect()
            elif self._killed:
                sock = self._client.socket()
                if sock is not None:
                    sock.close()  # no DISCONNECT: the broker publishes our will
            self.store.close()

    def stop(self) -> None:
        self._stopping.set()

    def kill(self) -> None:
        """Drop the connection without the orderly goodbye (tests: a crashed historian)."""
        self._killed = True
        self._stopping.set()

    # -- callbacks (in run()'s thread) -------------------------------------------------------

    def _flush(self) -> None:
        """Commit the pending data messages in one transaction, then acknowledge them."""
        if self._pending:
            n = len(self._pending)
            total = sum(len(rows) for *_, rows in self._pending)
            new = self.store.sample_batch(self._pending)
            self._pending.clear()
            self.rows += new
            self.duplicates += total - new
            self.messages += n
            self.batches += 1
        self._acks.release()

    def _on_connect(self, c: Any, userdata: Any, flags: Any, rc: int) -> None:
        # a new session: what was received but not committed is not acknowledged either;
        # the broker delivers it again (persistent session), so it is dropped here
        self._pending.clear()
        self._acks.held.clear()
        if rc != 0:
            _log.warning("fleet historian: broker refused (rc %s)", rc)
            return
        _, self._subscription = c.subscribe([(f"{NAMESPACE}/#", 1)])
        c.publish(state_topic(self.host_id), self._state(True), qos=1, retain=True)

    def _on_subscribe(self, c: Any, userdata: Any, mid: int, granted: Any) -> None:
        if mid != self._subscription:
            return
        if any(int(q) >= 0x80 for q in granted):  # the broker refused it (an ACL)
            # a historian that records nothing must stop, not only say so in its log: paho
            # raises this out of run()'s loop, which ends run() with it (the CLI: exit 5)
            raise PermissionError(f"the broker refused the subscription to {NAMESPACE}/#: "
                                  "nothing would be recorded (check the broker's ACL for "
                                  "this historian's user)")
        self.connected.set()

    def _on_message(self, c: Any, userdata: Any, msg: Any) -> None:
        self._acks.hold(msg)
        if self._handle(c, msg):  # not batched: written now, after what was pending
            self._flush()

    def _handle(self, c: Any, msg: Any) -> bool:
        """Returns False when the message joined the pending batch."""
        if msg.topic == state_topic(self.host_id):
            try:
                online = bool(json.loads(msg.payload or b"{}").get("online"))
            except ValueError:
                online = False
            if not online and not self._stopping.is_set():  # spec: a stale death of ours
                c.publish(state_topic(self.host_id), self._state(True), qos=1, retain=True)
            return True
        t = parse_topic(msg.topic)
        if t is None:
            return True
        try:
            payload = decode(msg.payload)
        except ValueError as exc:
            _log.warning("%s: %s", msg.topic, exc)
            return True
        key = (t.group, t.node)
        kind = t.message_type
        if kind in ("NCMD", "DCMD"):
            return True
        if kind == "DDATA" and t.device:
            self._check_seq(key, payload.seq, redelivered=bool(msg.dup))
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append((t.group, t.node, t.device, [
                (m.name, int(m.datatype), _time(m.timestamp), m.value, m.historical)
                for m in payload.metrics]))
            return False
        self._flush()  # everything before this message first, in order
        if kind == "NBIRTH":
            bd = _metric(payload, "bdSeq")
            station = next((m.value for m in payload.metrics if m.name == "Line/Station"
                            and isinstance(m.value, str)), None)
            self.store.node_birth(t.group, t.node, bd, _time(payload.timestamp), station)
            self._seq[key] = 0
            return True
        if kind == "NDEATH":
            # only the death of the current session ends it; the will of an earlier
            # connection can arrive after the new NBIRTH (specification 3.0, "Edge Node
            # Session Establishment": the bdSeq correlates an NDEATH with its NBIRTH) and
            # must leave the new session's order alone
            if self.store.node_death(t.group, t.node, _metric(payload, "bdSeq")):
                self._seq.pop(key, None)
            return True
        self._check_seq(key, payload.seq, redelivered=bool(msg.dup))
        if kind == "DBIRTH" and t.device:
            self.store.device_birth(t.group, t.node, t.device, _time(payload.timestamp),
                                    [(m.name, int(m.datatype), m.properties)
                                     for m in payload.metrics])
            self.rows += self.store.samples(
                t.group, t.node, t.device,
                [(m.name, int(m.datatype), _time(m.timestamp), m.value, m.historical)
                 for m in payload.metrics if m.value is not None])
        elif kind == "DDEATH" and t.device:
            self.store.device_death(t.group, t.node, t.device)
        elif kind == "NDATA":
            for m in payload.metrics:
                self._node_metric(t.group, t.node, m)
        self.messages += 1
        return True

    def _node_metric(self, site: str, line: str, m: Metric) -> None:
        if m.name not in ("Run/Event", "Run/Summary") or not isinstance(m.value, str):
            return
        try:
            data = json.loads(m.value)
        except ValueError:
            _log.warning("%s/%s: %s is not JSON", site, line, m.name)
            return
        if m.name == "Run/Event":
            self.store.event(site, line, _time(m.timestamp), data, m.historical)
        else:
            self.store.run_summary(site, line, _time(m.timestamp), data)

    def _check_seq(self, key: tuple[str, str], seq: int | None, *,
                   redelivered: bool = False) -> None:
        """Ask for a rebirth on a gap, or on data of a line without a known birth.

        A ``redelivered`` message (MQTT DUP: the broker sends again what it had sent before
        the historian's connection was lost) is usually one already seen: its seq is
        behind, and it neither is a gap nor moves the order. But the broker sets DUP on
        whatever it had *sent*, received or not; a redelivery that is the next seq was never
        seen, and it moves the order on (else the next message looks like a gap)."""
        expected = self._seq.get(key)
        if redelivered:
            if expected is not None and seq is not None and seq == (expected + 1) % 256:
                self._seq[key] = seq
            return
        if expected is None or seq is None or seq != (expected + 1) % 256:
            if expected is not None:
                _log.warning("%s/%s: seq %s after %s: asking for a rebirth", *key, seq,
                             expected)
            self._rebirth(*key)
        if seq is not None:
            self._seq[key] = seq

    def _rebirth(self, site: str, line: str) -> None:
        self.rebirths_requested += 1
        now = _ms()
        self._client.publish(topic(site, "NCMD", line), encode(
            [Metric("Node Control/Rebirth", DataType.BOOLEAN, True, now)], timestamp=now,
            seq=None), qos=1)


def _metric(payload: Decoded, name: str) -> int | None:
    for m in payload.metrics:
        if m.name == name and isinstance(m.value, int):
            return m.value
    return None


def _ms() -> int:
    return int(time.time() * 1000)

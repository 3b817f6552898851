"""A Sparkplug B edge node: one line, its modules as devices.

Threads: paho's network thread only flips flags; one publisher thread does every publish
(births, then the buffer oldest first), so ``seq`` is in publish order without a lock dance.
Samples are put into the store-and-forward :class:`Buffer` from any thread.

One paho client per MQTT connection: when a connection is lost, the publisher thread
makes a new client for the next one. paho resends a connection's unacknowledged QoS 1
messages on its next connection, whatever the clean-session flag; those carry a ``seq`` of
the session before, and went out after its will (NDEATH) or after the new NBIRTH, so the
historian saw them out of order and asked for a rebirth (issue #20), and the buffer, which
still held their samples, sent them a second time. With a fresh client the buffer is the
only path by which a sample is sent again: after the new births, with new ``seq`` numbers.

Sparkplug rules followed (specification 3.0): NDEATH is the MQTT will and carries ``bdSeq``;
NBIRTH carries the same ``bdSeq``, which increases with every new MQTT session (kept in the
buffer file, so it survives a restart); ``seq`` is 0 on NBIRTH and counts every later message
modulo 256; a device's DBIRTH lists every metric with its data type and properties before any
DDATA. If a primary host is named, publishing waits while its STATE says offline and a new
birth follows its return. Data goes with QoS 1 (the spec's QoS 0 cannot tell the buffer what
reached the broker: docs/fleet.md says why we deviate); births and deaths as the spec says.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modulecontrol.fleet._buffer import Buffer, Row
from modulecontrol.fleet._mqtt import Broker, client
from modulecontrol.fleet._payload import (
    DataType,
    Metric,
    decode,
    encode,
    parse_topic,
    state_topic,
    topic,
)

_log = logging.getLogger(__name__)

_KEEPALIVE = 10
"""MQTT keepalive of an edge's connection, seconds."""

NODE = ""
"""The device name under which node-level metrics (events, run summaries) are buffered."""


@dataclass(frozen=True)
class MetricSpec:
    """What a birth certificate says about one metric."""

    name: str
    datatype: DataType
    unit: str = ""
    low: float | None = None
    high: float | None = None
    deadband: float = 0.0
    description: str = ""

    def properties(self) -> dict[str, Any]:
        props: dict[str, Any] = {"engUnit": self.unit} if self.unit else {}
        if self.low is not None:
            props["engLow"] = float(self.low)
        if self.high is not None:
            props["engHigh"] = float(self.high)
        if self.deadband:
            props["deadband"] = float(self.deadband)
        if self.description:
            props["description"] = self.description
        return props


CommandHandler = Callable[[str | None, Metric], None]
"""Called with (device or None for the node, metric) for each NCMD/DCMD metric."""


@dataclass
class _Device:
    metrics: dict[str, MetricSpec]
    last: dict[str, tuple[Any, int]] = field(default_factory=dict)


class EdgeNode:
    """Publish one line to a broker. ``start()``, then ``update()`` from anywhere."""

    BIRTH_QOS = 1
    """NBIRTH and DBIRTH go at QoS 1, a deviation from the specification (QoS 0): for a
    historian that is behind, Mosquitto queues QoS 1 messages but sends a QoS 0 one at once,
    so a new session's births overtook the previous session's data still queued for it;
    those then arrived after the new NBIRTH, out of the new order, and cost a rebirth each
    (tests/fleet/test_seq_order.py). At QoS 1 the births wait their turn in that queue."""

    def __init__(self, broker: Broker, group: str, node: str, buffer: Path, *,
                 primary_host: str | None = None, max_buffered: int = 10_000_000,
                 commands: CommandHandler | None = None, batch: int = 500,
                 ack_timeout: float = 10.0, info: Mapping[str, str] | None = None) -> None:
        for what, name in (("site", group), ("line", node)):
            if not name or any(c in name for c in "/+#"):
                raise ValueError(f"{what} name {name!r}: must be non-empty without / + #")
        self.broker = broker
        self.group = group
        self.node = node
        self.primary_host = primary_host
        self.buffer = Buffer(buffer, max_buffered)
        self.commands = commands
        """NCMD/DCMD are ignored (and logged) unless a handler is given; Rebirth always works."""
        self.batch = batch
        self.ack_timeout = ack_timeout
        self.info = dict(info or {})
        """Fixed facts about the line, string node metrics of every NBIRTH (``Line/Station``:
        the URL of the line's own operator station, which the fleet view links to)."""
        self.devices: dict[str, _Device] = {}
        self.node_metrics: dict[str, MetricSpec] = {
            "Run/Event": MetricSpec("Run/Event", DataType.STRING),
            "Run/Summary": MetricSpec("Run/Summary", DataType.STRING),
            "Buffer/Dropped": MetricSpec("Buffer/Dropped", DataType.INT64),
        }
        self.bd_seq = self.buffer.counter("bdSeq")
        self._seq = 0
        self._connected = threading.Event()
        self._host_online = threading.Event()
        if primary_host is None:
            self._host_online.set()
        self._need_birth = True
        self._online = False
        """Births sent on the current session and the host online: live data is not
        historical."""
        self._stop = threading.Event()
        self._closed = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = self._new_client()
        self._renew = True
        """No connection, or the current client's ended: the publisher thread connects a
        new client."""
        self._failures = 0
        """Attempts in a row that ended without an accepted connection (the retry delay)."""
        self._attempt_at = 0.0
        """When the current client's connection was opened (monotonic s)."""
        self.published = 0
        """Messages acknowledged by the broker (births and data)."""

    # -- configuration -----------------------------------------------------------------------

    def add_device(self, device: str, metrics: Sequence[MetricSpec]) -> None:
        if not device or any(c in device for c in "/+#"):
            raise ValueError(f"device name {device!r}: must be non-empty without / + #")
        self.devices[device] = _Device({m.name: m for m in metrics})
        self._need_birth = True

    # -- data --------------------------------------------------------------------------------

    def update(self, device: str, name: str, value: Any, timestamp: float | None = None) -> bool:
        """Queue a value if it moved by more than the metric's deadband; True if queued.

        ``timestamp`` is when the value was taken (UNIX s); it travels with the sample.
        After :meth:`stop` nothing is queued (False): a line's last values while it shuts
        down come after its edge has said goodbye (the line's own record keeps them)."""
        if self._closed:
            return False
        ts = round((time.time() if timestamp is None else timestamp) * 1000)
        if device == NODE:
            spec = self.node_metrics.get(name)
            if spec is None:
                raise KeyError(f"unknown node metric {name!r}")
            queued = self.buffer.put(NODE, name, int(spec.datatype), value, ts,
                                     not self._online)
            self._wake.set()
            return queued
        dev = self.devices.get(device)
        spec = dev.metrics.get(name) if dev else None
        if dev is None or spec is None:
            raise KeyError(f"unknown metric {device}/{name}: add the device with it first")
        last = dev.last.get(name)
        if last is not None and not _moved(last[0], value, spec.deadband):
            return False
        dev.last[name] = (value, ts)
        queued = self.buffer.put(device, name, int(spec.datatype), value, ts, not self._online)
        self._wake.set()
        return queued

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; if the broker is down, samples wait in the buffer."""
        self._wake.set()  # the publisher thread connects first thing
        self._thread = threading.Thread(target=self._publisher, name=f"sparkplug {self.node}",
                                        daemon=True)
        self._thread.start()

    @property
    def online(self) -> bool:
        """Born on the current session and the primary host (if any) online: samples queued
        now are live; samples queued otherwise are replayed marked historical."""
        return self._online

    def drained(self) -> bool:
        return len(self.buffer) == 0

    def wait_drained(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.drained():
                return True
            time.sleep(0.05)
        return self.drained()

    def stop(self, *, drain: float = 5.0) -> int:
        """Publish what the buffer holds (up to ``drain`` s), then an orderly NDEATH.

        Only while the buffer can be published: connected, and the primary host (if any)
        online. Without its host the edge publishes nothing, so waiting ``drain`` would only
        delay the stop; what is buffered stays in the file either way.
        Returns how many samples are still in the buffer file (sent by the next start)."""
        if self._connected.is_set() and self._host_online.is_set():
            self.wait_drained(drain)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.ack_timeout + 5)
        if self._connected.is_set():
            # an intentional disconnect does not fire the will: publish the death ourselves
            info = self._client.publish(topic(self.group, "NDEATH", self.node),
                                        self._death_payload(), qos=1)
            info.wait_for_publish(self.ack_timeout)
        self._client.disconnect()
        self._end_loop(self._client)
        self._closed = True
        left = len(self.buffer)
        self.buffer.close()
        return left

    # -- the MQTT client: one per connection -------------------------------------------------

    def _new_client(self) -> Any:
        c = client(f"{self.group}-{self.node}", self.broker, reconnect=False)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        return c

    def _connect(self, c: Any) -> None:
        """Register the will with the current ``bdSeq``, open the connection (raises
        ``OSError`` if the broker cannot be reached) and run paho's network thread, which
        ends with the connection (``client(reconnect=False)``)."""
        c.will_set(topic(self.group, "NDEATH", self.node), self._death_payload(), qos=1,
                   retain=False)
        c.connect(self.broker.host, self.broker.port, keepalive=_KEEPALIVE)
        self._attempt_at = time.monotonic()
        c.loop_start()

    def _end_loop(self, c: Any) -> None:
        # paho's loop_stop joins its network thread without a bound; a shutdown must end
        # (a service that hangs on SIGTERM is worse than a daemon thread left behind)
        stopper = threading.Thread(target=c.loop_stop, daemon=True,
                                   name=f"sparkplug {self.node} loop_stop")
        stopper.start()
        stopper.join(self.ack_timeout)
        if stopper.is_alive():
            _log.error("%s/%s: the MQTT client's network thread did not end within %g s "
                       "of the disconnect; left behind", self.group, self.node,
                       self.ack_timeout)

    def _due(self) -> bool:
        """A new connection is due: the last one ended, or it was opened but the broker
        never accepted it (no CONNACK within two keepalives: a broker that hangs)."""
        return self._renew or (
            not self._connected.is_set() and self._attempt_at > 0
            and time.monotonic() - self._attempt_at > 2 * _KEEPALIVE)

    def _reconnect(self) -> None:
        """Publisher thread: connect a new client, so that nothing paho held for an earlier
        connection is sent on this one (module docstring)."""
        self._renew = False
        if self._attempt_at > 0:  # not the first: a client that was connected
            old, self._client = self._client, self._new_client()
            self._attempt_at = 0.0
            old.disconnect()
            self._end_loop(old)
        if self._failures:  # 1 s, then longer while the broker is away, at most 5 s
            self._stop.wait(min(5.0, 2.0 ** min(self._failures - 1, 3)))
        if self._stop.is_set():
            return
        try:
            self._connect(self._client)
        except Exception as exc:  # refused, unreachable, TLS failed: try again
            self._failures += 1
            self._renew = True
            if isinstance(exc, OSError):
                _log.debug("%s/%s: broker unreachable: %s", self.group, self.node, exc)
            else:
                _log.warning("%s/%s: connecting failed: %r; trying again", self.group,
                             self.node, exc)

    # -- MQTT callbacks (network thread) -----------------------------------------------------

    def _on_connect(self, c: Any, userdata: Any, flags: Any, rc: int) -> None:
        if c is not self._client:
            return  # a late callback of a client whose connection has ended
        if rc != 0:
            _log.warning("%s/%s: broker refused the connection (rc %s)", self.group,
                         self.node, rc)
            return
        c.subscribe([(topic(self.group, "NCMD", self.node), 1),
                     (topic(self.group, "DCMD", self.node, "+"), 1)])
        if self.primary_host is not None:
            c.subscribe(state_topic(self.primary_host), 1)
        self._need_birth = True
        self._failures = 0
        self._connected.set()
        self._wake.set()

    def _on_disconnect(self, c: Any, userdata: Any, rc: int) -> None:
        if c is not self._client:
            return
        self._connected.clear()
        self._online = False
        if rc != 0:
            _log.warning("%s/%s: lost the broker (rc %s); buffering", self.group, self.node, rc)
        # the next session gets the next bdSeq, in its will and in its NBIRTH
        self.bd_seq = (self.bd_seq + 1) % 256
        self.buffer.set_counter("bdSeq", self.bd_seq)
        if not self._stop.is_set():
            self._failures += 1  # reset by the next accepted connection
            self._renew = True
            self._wake.set()

    def _on_message(self, c: Any, userdata: Any, msg: Any) -> None:
        if c is not self._client:
            return
        if self.primary_host is not None and msg.topic == state_topic(self.primary_host):
            try:
                online = bool(json.loads(msg.payload or b"{}").get("online"))
            except ValueError:
                online = False  # a STATE we cannot read: do not assume the host listens
            if online and not self._host_online.is_set():
                self._need_birth = True  # spec: a returning primary host gets new births
                self._host_online.set()
            elif not online:
                self._host_online.clear()
                self._online = False
            self._wake.set()
            return
        t = parse_topic(msg.topic)
        try:
            decoded = decode(msg.payload)
        except ValueError as exc:
            _log.warning("%s: %s", msg.topic, exc)
            return
        for m in decoded.metrics:
            if t is not None and t.message_type == "NCMD" and m.name == "Node Control/Rebirth":
                if m.value:
                    self._need_birth = True
                    self._wake.set()
            elif self.commands is None:
                _log.warning("%s: command %s ignored: the command path is off", msg.topic,
                             m.name)
            else:
                self.commands(t.device if t else None, m)

    # -- publishing (publisher thread) -------------------------------------------------------

    def _death_payload(self) -> bytes:
        now = _ms()
        return encode([Metric("bdSeq", DataType.INT64, self.bd_seq, now)], timestamp=now,
                      seq=None)

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % 256
        return seq

    def _send(self, topic_: str, metrics: list[Metric], qos: int) -> bool:
        info = self._client.publish(topic_, encode(metrics, timestamp=_ms(),
                                                   seq=self._next_seq()), qos=qos)
        if info.rc != 0:  # not connected (any more): the rows stay in the buffer
            ok = False
        elif qos == 0:
            ok = True
        else:
            # the acknowledgement comes on this connection or never (the next connection
            # has a new client): stop waiting as soon as the connection is gone
            end = time.monotonic() + self.ack_timeout
            try:
                while (not info.is_published() and self._connected.is_set()
                       and time.monotonic() < end):
                    info.wait_for_publish(0.1)
            except (RuntimeError, ValueError):  # the connection went while waiting
                return False
            ok = info.is_published()
        if ok:
            self.published += 1
        return bool(ok)

    def _births(self) -> bool:
        self._seq = 0
        now = _ms()
        dropped = self.buffer.dropped
        node_metrics = [Metric("bdSeq", DataType.INT64, self.bd_seq, now),
                        Metric("Node Control/Rebirth", DataType.BOOLEAN, False, now),
                        Metric("Buffer/Dropped", DataType.INT64, dropped, now)]
        node_metrics += [Metric(s.name, s.datatype, None, now, properties=s.properties())
                         for s in self.node_metrics.values() if s.name != "Buffer/Dropped"]
        node_metrics += [Metric(k, DataType.STRING, v, now) for k, v in self.info.items()]
        if not self._send(topic(self.group, "NBIRTH", self.node), node_metrics,
                          self.BIRTH_QOS):
            return False
        for name, dev in self.devices.items():
            metrics = []
            for spec in dev.metrics.values():
                value, ts = dev.last.get(spec.name, (None, now))
                metrics.append(Metric(spec.name, spec.datatype, value, ts,
                                      properties=spec.properties()))
            if not self._send(topic(self.group, "DBIRTH", self.node, name), metrics,
                              self.BIRTH_QOS):
                return False
        return True

    def _publisher(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                if self._due():
                    self._reconnect()
                self._publish_some()
            except Exception:  # keep buffering: the data stays in the file
                _log.exception("%s/%s: publishing failed", self.group, self.node)
                time.sleep(0.5)

    def _publish_some(self) -> None:
        while (self._connected.is_set() and self._host_online.is_set()
               and not self._stop.is_set()):
            if self._need_birth:
                self._need_birth = False
                if not self._births():
                    self._need_birth = True
                    return
                self._online = True
            rows = self.buffer.peek(self.batch)
            if not rows:
                return
            for device, group in _runs(rows):
                metrics = [Metric(r.name, DataType(r.datatype), r.value, r.ts, r.historical)
                           for r in group]
                kind = "NDATA" if device == NODE else "DDATA"
                if not self._send(topic(self.group, kind, self.node, device or None),
                                  metrics, 1):
                    return  # still in the buffer: replayed after the next birth
                self.buffer.remove(group[-1].id)


def _runs(rows: list[Row]) -> list[tuple[str, list[Row]]]:
    """Consecutive rows of one device together: one message each, order kept."""
    out: list[tuple[str, list[Row]]] = []
    for r in rows:
        if out and out[-1][0] == r.device and len(out[-1][1]) < 100:
            out[-1][1].append(r)
        else:
            out.append((r.device, [r]))
    return out


def _moved(old: Any, new: Any, deadband: float) -> bool:
    if isinstance(old, float) and isinstance(new, float) and not isinstance(new, bool):
        if math.isnan(old) or math.isnan(new):
            return math.isnan(old) != math.isnan(new)
        return abs(new - old) > deadband
    return bool(old != new)


def _ms() -> int:
    return int(time.time() * 1000)

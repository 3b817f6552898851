"""A plain MQTT subscriber that records every Sparkplug message it sees, in order.

Its session is persistent (clean_session off, QoS 1) and the test broker keeps sessions
across a restart, so what the broker accepted while this subscriber was reconnecting is
delivered to it afterwards: what it misses, the broker lost."""

from __future__ import annotations

import threading
import time
from typing import Any

from modulecontrol.fleet import Broker
from modulecontrol.fleet import mqtt_client as client


class Recorder:
    def __init__(self, url: str, client_id: str = "recorder") -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.redelivered: list[bytes] = []
        """Payloads the broker sent again (DUP flag): MQTT's at-least-once, not the edge's."""
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._c = client(client_id, Broker.parse(url), clean_session=False)

        def on_connect(c: Any, u: Any, f: Any, rc: int) -> None:
            c.subscribe("spBv1.0/#", 1)

        def on_subscribe(c: Any, u: Any, mid: Any, q: Any) -> None:
            self._ready.set()

        def on_message(c: Any, u: Any, msg: Any) -> None:
            with self._lock:
                self.messages.append((msg.topic, bytes(msg.payload)))
                if msg.dup:
                    self.redelivered.append(bytes(msg.payload))

        self._c.on_connect = on_connect
        self._c.on_subscribe = on_subscribe
        self._c.on_message = on_message
        b = Broker.parse(url)
        self._c.connect(b.host, b.port, keepalive=5)
        self._c.loop_start()
        assert self._ready.wait(10), "the recorder did not subscribe"

    def of(self, kind: str) -> list[tuple[str, bytes]]:
        with self._lock:
            return [(t, p) for t, p in self.messages if t.split("/")[2] == kind]

    def wait(self, pred: Any, timeout: float = 20.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(0.05)
        return bool(pred())

    def close(self) -> None:
        self._c.disconnect()
        self._c.loop_stop()

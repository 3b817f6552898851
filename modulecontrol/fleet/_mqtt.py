"""The broker address and one MQTT client factory (paho 1.6 and 2.x alike).

``mqtt://host:port`` or ``mqtts://host:port`` (TLS). A user name may be given in the URL; the
password never is (it would show in process lists and shell history): it is read from the
environment variable ``MODULECONTROL_MQTT_PASSWORD``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

PASSWORD_ENV = "MODULECONTROL_MQTT_PASSWORD"


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None

    @classmethod
    def parse(cls, url: str, *, ca_file: Path | None = None) -> Broker:
        """Raises ``ValueError`` saying what a usable URL looks like."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"broker URL {url!r}: expected mqtt://HOST:PORT or "
                             f"mqtts://HOST:PORT")
        if parts.password:
            raise ValueError(f"broker URL: do not put the password in the URL; export "
                             f"{PASSWORD_ENV} instead")
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname, parts.port or (8883 if tls else 1883), tls,
                   parts.username, os.environ.get(PASSWORD_ENV) if parts.username else None,
                   ca_file)


def client(client_id: str, broker: Broker, *, clean_session: bool = True) -> Any:
    """A paho client configured for ``broker`` (not yet connected)."""
    kwargs: dict[str, Any] = {"client_id": client_id, "clean_session": clean_session}
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho 2.x: keep the 1.x callback signatures
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, **kwargs)
    else:
        c = mqtt.Client(**kwargs)
    if broker.username:
        c.username_pw_set(broker.username, broker.password)
    if broker.tls:
        c.tls_set(ca_certs=str(broker.ca_file) if broker.ca_file else None,
                  cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    c.reconnect_delay_set(min_delay=1, max_delay=5)
    return c


class HeldAcks:
    """Hold back the PUBACK of received QoS 1 messages until :meth:`release`.

    paho acknowledges a QoS 1 message as soon as ``on_message`` returns; a historian that
    commits many messages in one transaction must acknowledge them only after the commit,
    or a crash between the two would lose messages the broker considers delivered. paho 2.x
    has ``manual_ack_set``; paho 1.6 has not, so there the client's own ``_send_puback`` is
    wrapped (the one place paho sends it). Call everything from the client's loop thread.
    """

    def __init__(self, c: Any) -> None:
        self._c = c
        self.held: list[int] = []
        self._send: Callable[[int], Any]
        if hasattr(c, "manual_ack_set"):  # paho >= 2
            c.manual_ack_set(True)
            self._send = lambda mid: c.ack(mid, 1)
        else:
            send = c._send_puback  # bound method of paho 1.6

            def hold(mid: int) -> int:
                self.held.append(mid)
                return 0

            c._send_puback = hold
            self._send = send

    def hold(self, msg: Any) -> None:
        """paho 2.x: remember a message to acknowledge (1.6 remembers it by itself)."""
        if hasattr(self._c, "manual_ack_set") and msg.qos == 1:
            self.held.append(msg.mid)

    def release(self) -> int:
        """Acknowledge every held message; returns how many."""
        n = len(self.held)
        for mid in self.held:
            self._send(mid)
        self.held.clear()
        return n

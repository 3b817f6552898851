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


def client(client_id: str, broker: Broker, *, clean_session: bool = True,
           reconnect: bool = True) -> Any:
    """A paho client configured for ``broker`` (not yet connected).

    ``reconnect=False``: one client, one connection. paho's network thread ends when the
    connection does instead of connecting again by itself (its own retries of the *first*
    connection stay). A client that reconnects sends the previous connection's
    unacknowledged QoS 1 messages again on the new one, even with a clean session (paho
    1.6 and 2.x alike; its README says so); an edge node, whose buffer is the one path that
    sends a sample again, takes a fresh client for each connection (:class:`EdgeNode`)."""
    kwargs: dict[str, Any] = {"client_id": client_id, "clean_session": clean_session,
                              "reconnect_on_failure": reconnect}
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


def alive_while_receiving(c: Any) -> None:
    """Count any packet received after a PINGREQ as the broker's answer to it.

    paho (1.6, and 2.x alike) sends a PINGREQ every keepalive even on a busy connection (it
    never updates its time of the last packet out; paho issue #813) and closes the
    connection itself when the PINGRESP has not been *processed* one keepalive later
    (``loop_misc``, ``MQTT_ERR_KEEPALIVE``; paho issue #914). A PINGRESP travels behind every
    packet the broker had queued for the client before it, and a client working through a
    backlog of thousands of messages (the fleet historian after an outage or a restart)
    processes it later than that: it dropped its connection every two keepalives and
    resumed its session, and everything in flight was delivered again (issue #20).

    A client that keeps receiving packets from the broker knows that the connection and
    the broker are alive, which is what the ping asks (MQTT 3.1.1, 3.1.2.10: a PINGRESP
    within "a reasonable amount of time"). So before paho's check, a ping followed by any
    received packet counts as answered; a broker that sends nothing at all for a keepalive
    after a PINGREQ still gets the connection closed, as before. Wraps the client's own
    ``loop_misc`` (which ``loop()``, ``loop_forever()`` and ``loop_start()`` all call),
    as :class:`HeldAcks` wraps ``_send_puback``; raises ``RuntimeError`` if this paho lacks
    what it relies on, rather than leave the historian exposed without saying so.
    """
    for name in ("_ping_t", "_last_msg_in", "_msgtime_mutex", "loop_misc"):
        if not hasattr(c, name):
            raise RuntimeError(f"paho {getattr(mqtt, '__version__', '?')} has no {name}: "
                               f"the fleet historian's keepalive cannot be adapted")
    misc: Callable[[], int] = c.loop_misc

    def loop_misc() -> int:
        with c._msgtime_mutex:
            heard = c._last_msg_in
        if c._ping_t and heard > c._ping_t:  # a packet read after the PINGREQ went out
            c._ping_t = 0
        return misc()

    c.loop_misc = loop_misc


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

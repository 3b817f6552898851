"""A network of sites: Sparkplug B over MQTT, store-and-forward, the central historian.

A line is a Sparkplug *edge node* (``spBv1.0/<site>/…/<line>``), each module instance one of
its *devices*. :class:`EdgeNode` publishes births and data from a run (:func:`attach`),
buffering to disk while the broker or the primary host is away. :class:`FleetHistorian` is the
Sparkplug *host application* that stores every site in PostgreSQL; :func:`transfer` checks a
recipe of one plant against another. See docs/fleet.md.
"""

from modulecontrol.fleet._attach import attach, device_metrics, publish_summary
from modulecontrol.fleet._buffer import Buffer
from modulecontrol.fleet._edge import NODE, EdgeNode, MetricSpec
from modulecontrol.fleet._host import DEFAULT_HOST_ID, FleetHistorian
from modulecontrol.fleet._mqtt import PASSWORD_ENV, Broker, HeldAcks
from modulecontrol.fleet._mqtt import client as mqtt_client
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
from modulecontrol.fleet._store import (
    MIGRATIONS,
    LatestValue,
    LineView,
    ModuleView,
    Store,
    fleet_lines,
    fleet_status,
    migrate,
)
from modulecontrol.fleet._transfer import ModuleMap, TransferReport, transfer
from modulecontrol.fleet._web import FleetPage, create_fleet_app, safe_url

__all__ = [
    "DEFAULT_HOST_ID",
    "MIGRATIONS",
    "NAMESPACE",
    "NODE",
    "PASSWORD_ENV",
    "Broker",
    "Buffer",
    "DataType",
    "Decoded",
    "EdgeNode",
    "FleetHistorian",
    "FleetPage",
    "HeldAcks",
    "LatestValue",
    "LineView",
    "Metric",
    "MetricSpec",
    "ModuleMap",
    "ModuleView",
    "Store",
    "TransferReport",
    "attach",
    "create_fleet_app",
    "decode",
    "device_metrics",
    "encode",
    "fleet_lines",
    "fleet_status",
    "migrate",
    "mqtt_client",
    "parse_topic",
    "publish_summary",
    "safe_url",
    "state_topic",
    "topic",
    "transfer",
]

"""Sparkplug B payloads: topics, data types and the protobuf encoding from the spec's schema.

The generated ``_proto/sparkplug_b_pb2.py`` is committed beside the ``.proto`` it comes from,
so an install needs neither ``protoc`` nor a build step (docs/fleet.md, "Payload schema").
Everything else in the fleet package speaks :class:`Metric` and never touches protobuf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from modulecontrol.fleet._proto import sparkplug_b_pb2 as pb

NAMESPACE = "spBv1.0"


class DataType(IntEnum):
    """Sparkplug B metric data types (specification 3.0, section 6.4.16); the ones we use."""

    INT32 = 3
    INT64 = 4
    UINT64 = 8
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12


@dataclass(frozen=True)
class Metric:
    """One metric of a payload: a value with its original time (UNIX ms) and properties."""

    name: str
    datatype: DataType
    value: Any
    timestamp: int
    historical: bool = False
    properties: dict[str, Any] = field(default_factory=dict)


def topic(group: str, message_type: str, node: str, device: str | None = None) -> str:
    """``spBv1.0/<group>/<type>/<node>[/<device>]``: the spec's topic namespace."""
    parts = [NAMESPACE, group, message_type, node] + ([device] if device else [])
    return "/".join(parts)


def state_topic(host_id: str) -> str:
    """Sparkplug 3.0 STATE topic of a primary host application (retained, JSON payload)."""
    return f"{NAMESPACE}/STATE/{host_id}"


@dataclass(frozen=True)
class Topic:
    group: str
    message_type: str
    node: str
    device: str | None


def parse_topic(text: str) -> Topic | None:
    """The parts of a Sparkplug B edge topic, or None for STATE and foreign topics."""
    parts = text.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE or parts[1] == "STATE":
        return None
    return Topic(parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else None)


def _set_value(target: Any, datatype: DataType, value: Any) -> None:
    if value is None:
        target.is_null = True
    elif datatype is DataType.DOUBLE:
        target.double_value = float(value)
    elif datatype is DataType.BOOLEAN:
        target.boolean_value = bool(value)
    elif datatype is DataType.STRING:
        target.string_value = str(value)
    elif datatype in (DataType.INT64, DataType.UINT64):
        target.long_value = int(value) & 0xFFFFFFFFFFFFFFFF  # the spec's two's complement
    else:
        target.int_value = int(value) & 0xFFFFFFFF


def _property_type(value: Any) -> DataType:
    if isinstance(value, bool):
        return DataType.BOOLEAN
    if isinstance(value, int):
        return DataType.INT64
    if isinstance(value, float):
        return DataType.DOUBLE
    return DataType.STRING


def encode(metrics: list[Metric], *, timestamp: int, seq: int | None) -> bytes:
    """A Sparkplug B payload; ``seq`` None only for NDEATH (which carries none)."""
    payload = pb.Payload(timestamp=timestamp)
    if seq is not None:
        payload.seq = seq
    for m in metrics:
        out = payload.metrics.add(name=m.name, timestamp=m.timestamp, datatype=int(m.datatype))
        if m.historical:
            out.is_historical = True
        _set_value(out, m.datatype, m.value)
        for key, value in m.properties.items():
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                continue
            out.properties.keys.append(key)
            prop = out.properties.values.add(type=int(_property_type(value)))
            _set_value(prop, _property_type(value), value)
    return bytes(payload.SerializeToString())


@dataclass(frozen=True)
class Decoded:
    timestamp: int
    seq: int | None
    metrics: list[Metric]


def _value(msg: Any, datatype: int) -> Any:
    if msg.is_null:
        return None
    which = msg.WhichOneof("value")
    if which is None:
        return None
    value = getattr(msg, which)
    if which == "long_value" and datatype == DataType.INT64 and value >= 2**63:
        return value - 2**64
    if which == "int_value" and datatype == DataType.INT32 and value >= 2**31:
        return value - 2**32
    return value


def decode(data: bytes) -> Decoded:
    """Decode a payload; raises ``ValueError`` for bytes that are not one."""
    payload = pb.Payload()
    try:
        payload.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError is not part of its typed surface
        raise ValueError(f"not a Sparkplug B payload: {exc}") from exc
    metrics = []
    for m in payload.metrics:
        props = {k: _value(v, v.type) for k, v in zip(m.properties.keys, m.properties.values,
                                                       strict=False)}
        try:
            datatype = DataType(m.datatype)
        except ValueError:  # a type we do not publish (DateTime, DataSet, ...): as text
            datatype = DataType.STRING
        metrics.append(Metric(m.name, datatype, _value(m, m.datatype), int(m.timestamp),
                              bool(m.is_historical), props))
    return Decoded(int(payload.timestamp), int(payload.seq) if payload.HasField("seq") else None,
                   metrics)

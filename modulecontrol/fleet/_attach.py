"""A run's modules and events onto an edge node: the session's value and event listeners.

Each module instance is a device; its metrics are its data assemblies (with unit and limits
from the descriptor, and the assembly's deadband) and the ``StateCur`` of each service.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from modulecontrol.descriptors import ModuleType
from modulecontrol.drivers import Quality, TagValue
from modulecontrol.events import Event
from modulecontrol.fleet._edge import NODE, EdgeNode, MetricSpec
from modulecontrol.fleet._payload import DataType
from modulecontrol.orchestrator import Orchestrator
from modulecontrol.proxy import ModuleProxy
from modulecontrol.statemachine import StateChange

_log = logging.getLogger(__name__)

_TYPES = {"number": DataType.DOUBLE, "bool": DataType.BOOLEAN, "str": DataType.STRING}


def _limit(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def device_metrics(module_type: ModuleType) -> list[MetricSpec]:
    """Every metric a module's DBIRTH announces, from its type's descriptor."""
    out = [MetricSpec(da.name, _TYPES[da.kind], da.unit, _limit(da.min), _limit(da.max),
                      float(da.deadband or 0.0), da.description)
           for da in module_type.data_assemblies]
    out += [MetricSpec(f"{svc.name}.StateCur", DataType.INT32,
                       description=f"MTP state of service {svc.name}")
            for svc in module_type.services]
    return out


def attach(edge: EdgeNode, proxies: Mapping[str, ModuleProxy],
           orchestrator: Orchestrator | None = None) -> Callable[[], None]:
    """Declare every module as a device and publish its values, its services' states (the
    ``<Service>.StateCur`` metrics, from the state now and every change) and the run's
    events. Returns what detaches the proxies' listeners again."""
    for tag, proxy in proxies.items():
        edge.add_device(tag, device_metrics(proxy.type))
    detach: list[Callable[[], None]] = []

    def on_state(tag: str, change: StateChange) -> None:
        name = f"{change.service}.StateCur"
        if name in edge.devices[tag].metrics:
            edge.update(tag, name, int(change.new))

    def on_values(tag: str, values: Mapping[str, TagValue]) -> None:
        metrics = edge.devices[tag].metrics
        for name, tv in values.items():
            spec = metrics.get(name)
            if spec is None or tv.quality is not Quality.GOOD:
                continue
            value = tv.value
            if spec.datatype is DataType.DOUBLE:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                value = float(value)
            elif spec.datatype is DataType.INT32 and not isinstance(value, int):
                continue
            edge.update(tag, name, value, tv.timestamp)

    for tag, proxy in proxies.items():
        for service, machine in proxy.services.items():
            if f"{service}.StateCur" in edge.devices[tag].metrics:
                edge.update(tag, f"{service}.StateCur", int(machine.state))
        detach.append(proxy.on_values(on_values))
        detach.append(proxy.on_state(on_state))
    if orchestrator is not None:
        def on_event(ev: Event) -> None:
            edge.update(NODE, "Run/Event", json.dumps(
                {"seq": ev.seq, "kind": ev.kind.value, "source": ev.source,
                 "message": ev.message, "sim_time": ev.t}, default=str))

        orchestrator.subscribe(on_event)

    def undo() -> None:
        for d in detach:
            d()

    return undo


def publish_summary(edge: EdgeNode, summary: Mapping[str, Any]) -> None:
    """A run's summary (recipe, result, figures) as the node metric ``Run/Summary``."""
    edge.update(NODE, "Run/Summary", json.dumps(dict(summary), default=str))

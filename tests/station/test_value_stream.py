"""Value changes on the control service's stream: the assembly's deadband decides what is a
change (any change without one), a change of quality always is; booleans and strings are
not streamed as values (their changes are service states and events)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from modulecontrol.descriptors import DataAssembly
from modulecontrol.drivers import Quality, TagValue
from modulecontrol.service import ControlService, ServiceOptions

Listener = Callable[[str, Mapping[str, TagValue]], None]


def _line(*assemblies: DataAssembly) -> tuple[Any, list[Listener]]:
    listeners: list[Listener] = []
    proxy = SimpleNamespace(type=SimpleNamespace(data_assemblies=list(assemblies)),
                            on_values=listeners.append)
    return SimpleNamespace(proxies={"R1": proxy}), listeners


def _values(service: ControlService) -> list[tuple[str, Any, str]]:
    got = service.stream.since(0) or []
    return [(e.source, e.data["value"], e.data["quality"]) for e in got
            if e.kind == "value_changed"]


def test_the_deadband_decides_and_a_quality_change_always_passes(tmp_path: Path) -> None:
    service = ControlService(ServiceOptions(plant=tmp_path / "plant.yaml"))
    banded = DataAssembly.model_validate({"name": "T", "class": "AnaMon", "unit": "degC",
                                          "deadband": "0.5 K", "stale_after": 60})
    plain = DataAssembly.model_validate({"name": "JacketT", "class": "AnaView",
                                         "unit": "degC"})
    flag = DataAssembly.model_validate({"name": "Fouled", "class": "BinView"})
    line, listeners = _line(banded, plain, flag)
    service._stream_values(line)
    (feed,) = listeners
    for t, jacket, fouled in ((20.0, 20.0, False), (20.3, 20.0, True), (20.6, 20.01, True)):
        feed("R1", {"T": TagValue(t), "JacketT": TagValue(jacket), "Fouled": TagValue(fouled)})
    feed("R1", {"T": TagValue(20.6, Quality.BAD)})
    assert _values(service) == [
        ("R1.T", 20.0, "good"), ("R1.JacketT", 20.0, "good"),
        ("R1.T", 20.6, "good"), ("R1.JacketT", 20.01, "good"),  # 20.3 within 0.5 K of 20.0
        ("R1.T", 20.6, "bad"),
    ]
    ev = (service.stream.since(0) or [])[0]
    assert ev.data == {"module": "R1", "assembly": "T", "value": 20.0, "unit": "degC",
                       "quality": "good", "source_time": ev.data["source_time"]}


def test_a_value_change_carries_its_readings_source_time(tmp_path: Path) -> None:
    """The reading's own timestamp (the device's, where the transport has one) rides with
    the value, beside the event's publication time ``t``: a client can tell how old the
    value was when it came, not only how long the service took."""
    service = ControlService(ServiceOptions(plant=tmp_path / "plant.yaml"))
    flow = DataAssembly.model_validate({"name": "Flow", "class": "AnaView",
                                        "unit": "mL/min"})
    line, listeners = _line(flow)
    service._stream_values(line)
    (feed,) = listeners
    feed("R1", {"Flow": TagValue(0.5, timestamp=1_800_000_000.25)})
    feed("R1", {"Flow": TagValue(0.6, Quality.UNCERTAIN, timestamp=1_800_000_001.5)})
    got = [e.data for e in service.stream.since(0) or []]
    assert [(d["value"], d["quality"], d["source_time"]) for d in got] == [
        (0.5, "good", 1_800_000_000.25), (0.6, "uncertain", 1_800_000_001.5)]

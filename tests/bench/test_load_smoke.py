"""The load harness (``bench/load.py``) runs end to end on a small plant and its counts add
up. Speed is not asserted here (that is ``make bench``'s job); this keeps the harness from
rotting: a served plant in a child process, a session polling every protocol, figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import SMALL, measure, plant_yaml, table


@pytest.mark.slow
async def test_small_plant_runs_and_counts_are_consistent(tmp_path: Path) -> None:
    fig = await measure(SMALL, 3.0, tmp_path)
    assert fig["result"] == "completed"
    assert fig["modules"] == SMALL.modules == 7
    assert (fig["polled_modules"], fig["opcua_modules"]) == (5, 2)
    by_protocol = fig["scans_by_protocol"]
    assert set(by_protocol) == {"serial", "modbus-rtu", "modbus-tcp"}
    total = fig["scans"]
    for key in ("modules", "scans", "missed", "late", "failed"):
        assert sum(g[key] for g in by_protocol.values()) == total[key], key
    for name, g in by_protocol.items():
        assert g["scans"] > 0, name
        assert g["failed"] == 0, name  # every read of a healthy served module succeeds
        # every slot from the first to the last scan was either scanned or missed
        assert abs(g["scans"] + g["missed"] - g["slots_by_clock"]) <= g["modules"], name
        assert g["late"] <= g["scans"]
        assert g["lateness_ms"]["p50"] <= g["lateness_ms"]["p99"] <= g["lateness_ms"]["max"]
    assert fig["opcua_updates"]["updates"] >= fig["opcua_modules"]  # initial values at least
    assert fig["memory"]["samples"] >= 1
    assert fig["cpu"]["orchestrator_pct_of_core"] > 0
    text = table(fig)
    assert "all polled" in text and "opcua updates" in text


def test_generated_plant_mix() -> None:
    text = plant_yaml(SMALL)
    assert text.count("protocol: serial") == 1
    assert text.count("protocol: modbus-rtu") == 1
    assert text.count("protocol: opcua") == 2
    assert text.count("protocol: modbus-tcp") == 3

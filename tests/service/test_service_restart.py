"""``kill -9`` of ``modulecontrol serve`` during production on the simulated plant (served in
its own process): the plant keeps running, the pump never stops; the next ``serve``
reattaches to every module in its current state without writing to it, shows the pump's
service as running (read from the plant), records the gap as such, records every value
again from then on and takes up the run at the step where it was."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modulecontrol.client import Client
from modulecontrol.testing.service import (
    ServeProcess,
    kill_left_plant,
    pid_alive,
    production_recipe,
    serve_folder,
)
from tests._poll import until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"
PASSWORD = "a long enough test password"


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    serve_folder(tmp_path, {"production": production_recipe(PLANT)}, "ada", PASSWORD)
    yield tmp_path
    kill_left_plant(tmp_path)  # a plant a failed test left behind


async def _client(url: str) -> Client:
    c = Client(url)
    await c.login("ada", PASSWORD)
    return c


def _p1(plant: dict[str, Any]) -> dict[str, Any]:
    module: dict[str, Any] = next(m for m in plant["modules"] if m["tag"] == "P1")
    return module


async def test_kill_9_then_serve_reattaches_without_stopping_the_plant(folder: Path) -> None:
    first = ServeProcess(folder, PLANT, speed=60.0)
    try:
        async with await _client(first.url) as c:
            run = await c.start_run("production")
            deadline = time.monotonic() + 120
            while (await c.run(run["id"])).get("step") != "feeding":
                assert time.monotonic() < deadline, await c.run(run["id"])
                await asyncio.sleep(0.2)
            # the step starts as the pump is told; its flow follows at the next scans
            before = _p1(await c.plant())["values"]
            while not (before["Flow"]["value"] > 0.3 and before["Run"]["value"] is True):
                assert time.monotonic() < deadline, before
                await asyncio.sleep(0.2)
                before = _p1(await c.plant())["values"]
        plant_pid = first.plant_pid
        first.end(signal.SIGKILL)
    finally:
        first.end(signal.SIGKILL)
    assert pid_alive(plant_pid), "the plant died with its controller"

    second = ServeProcess(folder, PLANT, speed=60.0)
    try:
        assert second.plant_pid == plant_pid
        async with await _client(second.url) as c:
            p1 = _p1(await c.plant())
            after = p1["values"]
            # the pump never stopped and nothing was written to it: its set point and run
            # bit are as the first service left them, its flow as before; its service,
            # which the proxy runs itself, shows the state read from the plant
            assert after["Run"]["value"] is True
            assert after["FlowSetpoint"]["value"] == before["FlowSetpoint"]["value"]
            assert after["Flow"]["value"] == pytest.approx(before["Flow"]["value"], rel=0.05)
            assert p1["services"]["Dosing"] == "Execute"
            events = (await c.events_since(0))["events"]
            gap = [e for e in events if e["kind"] == "plant_reattached"]
            assert len(gap) == 1 and gap[0]["data"]["resumed"] == [run["id"]]
            assert gap[0]["data"]["interrupted"] == []
            assert gap[0]["data"]["gap_from"] < gap[0]["data"]["gap_to"]
            resumed = [e for e in events if e["kind"] == "run_resumed"]
            assert len(resumed) == 1 and resumed[0]["data"]["step"] == "feeding"
            state = await c.run(run["id"])
            assert state["state"] == "running" and state.get("step") == "feeding", state
            # every value is recorded again after the reattach: samples after the gap
            t_gap = gap[0]["data"]["gap_to"]
            deadline = time.monotonic() + 60
            while True:
                hist = await c.history("P1.Flow", t_gap, t_gap + 3600.0, 100)
                if hist["points"]:
                    break
                assert time.monotonic() < deadline, "no sample recorded after the reattach"
                await asyncio.sleep(0.5)
    finally:
        second.end(signal.SIGTERM)  # an orderly stop stops the run, then the plant too
    assert await until(lambda: not pid_alive(plant_pid), 30) is not None
    assert not (folder / "line.db.plant").exists()

"""``kill -9`` of ``modulecontrol serve`` during production on the simulated plant (served in
its own process): the plant keeps running, the pump never stops; the next ``serve``
reattaches to every module in its current state without writing to it, records the gap as
such and records every value again from then on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modulecontrol.client import Client
from tests._poll import until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"
RECIPE = f"""\
kind: Recipe
name: production
version: 1.0.0
plant: {PLANT.as_posix()}
procedure:
  - name: line
    steps:
      - name: amine_on
        service: {{module: P1, service: Dosing, parameters: {{FlowSP: 0.375}}}}
      - name: feeding
        wait: {{duration: 4 h}}
"""
PASSWORD = "a long enough test password"


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", MODULECONTROL_PASSWORD=PASSWORD)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


class Serve:
    """``modulecontrol serve --simulate`` in a process of its own."""

    def __init__(self, folder: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modulecontrol.cli", "serve", str(PLANT), "--simulate",
             "--speed", "60", "--port", "0", "--db", str(folder / "line.db"),
             "--recipes", str(folder / "recipes")],
            cwd=folder, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        assert self.proc.stdout is not None
        lines: list[str] = []
        for line in self.proc.stdout:  # the ready line names the URL
            lines.append(line)
            if " at http://" in line:
                self.url = line.split(" at ", 1)[1].split()[0]
                break
        else:
            raise AssertionError("serve did not start:\n" + "".join(lines))

    def end(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(120)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "production.yaml").write_text(RECIPE, encoding="utf-8")
    subprocess.run([sys.executable, "-m", "modulecontrol.cli", "user", "add", "ada", "--role",
                    "engineer", "--db", str(tmp_path / "line.db")], env=_env(), check=True,
                   capture_output=True)
    yield tmp_path
    state = tmp_path / "line.db.plant"  # a plant a failed test left behind
    if state.exists():
        pid = json.loads(state.read_text())["pid"]
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


async def _client(url: str) -> Client:
    c = Client(url)
    await c.login("ada", PASSWORD)
    return c


def _p1(plant: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = next(m for m in plant["modules"] if m["tag"] == "P1")["values"]
    return values


async def test_kill_9_then_serve_reattaches_without_stopping_the_plant(folder: Path) -> None:
    first = Serve(folder)
    try:
        async with await _client(first.url) as c:
            run = await c.start_run("production")
            deadline = time.monotonic() + 120
            while (await c.run(run["id"])).get("step") != "feeding":
                assert time.monotonic() < deadline, await c.run(run["id"])
                await asyncio.sleep(0.2)
            before = _p1(await c.plant())
            assert before["Flow"]["value"] > 0.3 and before["Run"]["value"] is True
        plant_pid = json.loads((folder / "line.db.plant").read_text())["pid"]
        first.end(signal.SIGKILL)
    finally:
        first.end(signal.SIGKILL)
    assert _alive(plant_pid), "the plant died with its controller"

    second = Serve(folder)
    try:
        assert json.loads((folder / "line.db.plant").read_text())["pid"] == plant_pid
        async with await _client(second.url) as c:
            after = _p1(await c.plant())
            # the pump never stopped and nothing was written to it: its set point and run
            # bit are as the first service left them, its flow as before
            assert after["Run"]["value"] is True
            assert after["FlowSetpoint"]["value"] == before["FlowSetpoint"]["value"]
            assert after["Flow"]["value"] == pytest.approx(before["Flow"]["value"], rel=0.05)
            events = (await c.events_since(0))["events"]
            gap = [e for e in events if e["kind"] == "plant_reattached"]
            assert len(gap) == 1 and gap[0]["data"]["interrupted"] == [run["id"]]
            assert gap[0]["data"]["gap_from"] < gap[0]["data"]["gap_to"]
            assert (await c.run(run["id"]))["state"] == "interrupted"
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
        second.end(signal.SIGTERM)  # an orderly stop stops the plant too
    assert await until(lambda: not _alive(plant_pid), 30) is not None
    assert not (folder / "line.db.plant").exists()

"""The simulated plant in a process of its own (``sim serve --control``): slaved to the
controller's clock over an authenticated loopback channel, faults and records over it,
pause and step, stop; a plant killed under a running recipe is a device fault the
supervision handles, not a crash of the controller."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from modulecontrol.clock import Clock
from modulecontrol.descriptors import load_plant
from modulecontrol.events import EventKind
from modulecontrol.orchestrator import RunResult
from modulecontrol.session import RunOptions, Session
from modulecontrol.simulators import FaultRecord, PlantProcess, attach_plant, spawn_plant
from modulecontrol.statemachine import Command, State
from modulecontrol.testing.service import pid_alive, production_recipe
from tests._poll import until

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="ptys and process groups")

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"


async def _spawn(tmp_path: Path, clock: Clock, *, keep: bool = False,
                 state: Path | None = None) -> PlantProcess:
    return await spawn_plant(load_plant(PLANT), clock, dt=1.0, pki=tmp_path / "pki",
                             keep=keep, state_file=state, log_file=tmp_path / "sim.log")


async def test_the_child_follows_the_clock_and_takes_faults_pause_and_step(
        tmp_path: Path) -> None:
    clock = Clock.scaled(30.0)
    proc = await _spawn(tmp_path, clock)
    try:
        assert proc.pid != os.getpid() and pid_alive(proc.pid)
        # the plant reads the controller's clock: the same anchor, not its own
        assert (await proc.call("clock"))["clock"] == clock.anchor()
        # the drivers get the ports really served, not the plant file's fixed ones
        served = {m.tag: m.endpoint for m in proc.config.plant.modules}
        written = {m.tag: m.endpoint for m in load_plant(PLANT).plant.modules}
        assert any(served[t] != written[t] for t in served if written[t] is not None)

        records: list[FaultRecord] = []
        proc.faults.on_record(records.append)
        proc.faults.inject("P1", "stall")
        assert await until(lambda: bool(records), 10.0) is not None
        assert (records[0].module, records[0].fault, records[0].event) == ("P1", "stall",
                                                                            "start")
        with pytest.raises(Exception, match=r"stall2"):
            await proc.call("inject", module="P1", fault="stall2", params={})

        with pytest.raises(Exception, match="pause the plant first"):
            await proc.call("step", n=1)
        t0 = (await proc.call("pause"))["time"]
        assert (await proc.call("step", n=7))["time"] == pytest.approx(t0 + 7.0)
        assert (await proc.call("ping"))["time"] == pytest.approx(t0 + 7.0)  # frozen
        await proc.call("resume")

        clock.rescale(60.0)  # a new speed: the plant follows the new anchor
        assert (await proc.call("follow", clock=clock.anchor()))["clock"] == clock.anchor()
    finally:
        await proc.stop()
    assert not pid_alive(proc.pid)


async def test_the_channel_refuses_a_wrong_secret(tmp_path: Path) -> None:
    state = tmp_path / "plant.json"
    proc = await _spawn(tmp_path, Clock.scaled(10.0), keep=True, state=state)
    try:
        assert oct(state.stat().st_mode & 0o777) == "0o600"  # it holds the secret
        saved = json.loads(state.read_text())
        reader, writer = await asyncio.open_connection("127.0.0.1", saved["control"])
        writer.write(json.dumps({"secret": "guessed", "owner": True}).encode() + b"\n")
        answer = json.loads(await asyncio.wait_for(reader.readline(), 5.0))
        writer.close()
        assert answer == {"ok": False, "error": "not authenticated"}
        state.write_text(json.dumps({**saved, "secret": "guessed"}))
        assert await attach_plant(load_plant(PLANT), state) is None
        assert pid_alive(proc.pid)
    finally:
        await proc.stop()


async def test_a_kept_plant_outlives_its_controller_and_is_reattached(tmp_path: Path) -> None:
    state = tmp_path / "plant.json"
    clock = Clock.scaled(10.0)
    proc = await _spawn(tmp_path, clock, keep=True, state=state)
    try:
        await proc.detach()  # what a kill -9 of the controller leaves: a dropped channel
        await asyncio.sleep(0.5)
        assert pid_alive(proc.pid)
        again = await attach_plant(load_plant(PLANT), state)
        assert again is not None and again.pid == proc.pid
        assert again.config == proc.config
        assert (await again.call("clock"))["clock"] == clock.anchor()
        await again.stop()
        assert await until(lambda: not pid_alive(proc.pid), 15.0) is not None
    finally:
        if pid_alive(proc.pid):
            os.kill(proc.pid, signal.SIGKILL)


async def test_a_plant_not_kept_stops_when_its_controller_goes(tmp_path: Path) -> None:
    proc = await _spawn(tmp_path, Clock.scaled(10.0))
    await proc.detach()
    assert await until(lambda: not pid_alive(proc.pid), 15.0) is not None, \
        "an orphaned plant of `run` kept serving"


RECIPE = production_recipe(PLANT, name="plant-crash", duration="2 h")


async def test_a_crashed_plant_is_a_device_fault_not_a_crash(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE, encoding="utf-8")
    session = Session.load(recipe, None, RunOptions(
        simulate=True, speed=60.0, db=tmp_path / "r.db", report_dir=None,
        auto_answer="__first__", pki=tmp_path / "pki"))
    task = asyncio.create_task(session.run())
    try:
        assert await until(lambda: session.orchestrator is not None or task.done(),
                           120.0) is not None
        orch = session.orchestrator
        assert orch is not None, task.result().message
        sim = session.simulation
        assert isinstance(sim, PlantProcess)
        await asyncio.wait_for(orch.machine.wait_for(State.EXECUTE), 60)
        assert await until(lambda: any(e.source == "feeding" for e in orch.log.events
                                       if e.kind is EventKind.STEP_STARTED), 60) is not None
        os.kill(sim.pid, signal.SIGKILL)  # the simulator dies under the running recipe
        await asyncio.wait_for(orch.machine.wait_for(State.HELD), 60)
        assert not task.done()
        assert any(e.kind is EventKind.MODULE_FAULT for e in orch.log.events)
        orch.command(Command.STOP, "test: the plant has gone")
        outcome = await asyncio.wait_for(task, 120)
    finally:
        if not task.done():
            task.cancel()
    assert outcome.result is RunResult.STOPPED

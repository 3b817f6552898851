"""The orchestrator runs recipes against proxies over real Modbus servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modulecontrol.clock import Clock
from modulecontrol.events import EventKind
from modulecontrol.orchestrator import OperatorChannel, Orchestrator, RunResult
from modulecontrol.proxy import ProxyOptions, proxies_for
from modulecontrol.recipe import load_recipe
from modulecontrol.statemachine import Command, State
from modulecontrol.testing.modbus import RecordingStore, TcpDevice

PLANT = """\
kind: Plant
name: test-line
modules:
  - tag: P1
    type: HPLCPump
    endpoint: {{protocol: modbus-tcp, port: {p1}, timeout: 0.3, reconnect_max_delay: 0.2}}
  - tag: V1
    type: DivertValve
    endpoint: {{protocol: modbus-tcp, port: {v1}, timeout: 0.3, reconnect_max_delay: 0.2}}
connections:
  - {{from: P1.outlet, to: V1.inlet, volume: 1 mL}}
"""

RECIPE = """\
kind: Recipe
name: test-recipe
version: 1.2.0
plant: plant.yaml
parameters:
  flow: {{unit: mL/min, default: 1, min: 0.1, max: 5}}
  run_time: {{type: duration, default: {run_time}}}
interlocks:
  - {{name: overpressure, when: "P1.Pressure > 50 bar", action: hold, resume: {resume}}}
procedure:
  - name: start
    steps:
      - name: feed
        service: {{module: P1, service: Dosing, procedure: Continuous,
                   parameters: {{FlowSP: "${{flow}}"}}}}
      - name: to_product
        service: {{module: V1, service: Divert, procedure: ToProduct}}
      - name: campaign
        wait: {{duration: "${{run_time}}"}}
  - name: shutdown
    steps:
      - name: stop_feed
        service: {{module: P1, service: Dosing, command: stop}}
      - name: confirm
        prompt: {{message: "Feed stopped. Close the run?"}}
"""


def _regs(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


def _f32(regs: list[int]) -> float:
    return float(struct.unpack(">f", struct.pack(">HH", *regs))[0])


@dataclass
class Rig:
    pump: TcpDevice
    valve: TcpDevice
    folder: Path

    def write(self, run_time: str = "10 min", resume: str = "auto") -> Path:
        (self.folder / "plant.yaml").write_text(
            PLANT.format(p1=self.pump.port, v1=self.valve.port))
        path = self.folder / "recipe.yaml"
        path.write_text(RECIPE.format(run_time=run_time, resume=resume))
        return path


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    pump, valve = TcpDevice(RecordingStore()), TcpDevice(RecordingStore())
    await pump.start()
    await valve.start()
    try:
        yield Rig(pump, valve, tmp_path)
    finally:
        await pump.stop()
        await valve.stop()


async def _orchestrator(path: Path, speed: float = 600.0,
                        operator: OperatorChannel | None = None) -> Orchestrator:
    vr = load_recipe(path)
    proxies = proxies_for(vr.plant, options=ProxyOptions(poll_interval=0.02, complete_poll=0.01))
    for p in proxies.values():
        await p.start()
    return Orchestrator(vr, proxies, clock=Clock.scaled(speed), tick=2.0,
                        operator=operator or OperatorChannel(auto_answer="ok"))


async def _close(orch: Orchestrator) -> None:
    for p in orch.proxies.values():
        await p.close()


async def test_recipe_runs_to_completion(rig: Rig) -> None:
    orch = await _orchestrator(rig.write())
    try:
        result = await asyncio.wait_for(orch.run(), 20)
    finally:
        await _close(orch)
    assert result is RunResult.COMPLETED
    kinds = [e.kind for e in orch.log.events]
    assert kinds[0] is EventKind.RUN_STARTED and kinds[-1] is EventKind.RUN_ENDED
    started = [e.source for e in orch.log.of_kind(EventKind.STEP_STARTED)]
    assert started == ["feed", "to_product", "campaign", "stop_feed", "confirm"]
    assert _f32(rig.pump.store.get(1, "holding", 0, 2)) == pytest.approx(1.0)
    assert rig.pump.store.get(1, "coil", 0) == [0]  # stopped at the end
    states = [e.message for e in orch.log.of_kind(EventKind.RECIPE_STATE)]
    assert states[0] == "Idle -> Starting" and states[-1] == "Completing -> Completed"
    # the campaign wait took its 10 simulated minutes: never less. (On a 600x scaled clock a
    # late wake-up of a busy machine shows as simulated seconds more, so no upper bound.)
    ev = {e.source: e for e in orch.log.events if e.kind is EventKind.STEP_FINISHED}
    start = next(e for e in orch.log.of_kind(EventKind.STEP_STARTED) if e.source == "campaign")
    assert ev["campaign"].t - start.t >= 600
    assert orch.log.of_kind(EventKind.OPERATOR_ACTION)[0].data["answer"] == "ok"


async def test_interlock_holds_and_resumes(rig: Rig) -> None:
    orch = await _orchestrator(rig.write("20 min"), speed=300.0)
    task = asyncio.create_task(orch.run())
    try:
        for _ in range(500):
            if orch.progress.step == "campaign":
                break
            await asyncio.sleep(0.01)
        assert rig.pump.store.get(1, "coil", 0) == [1]
        rig.pump.store.set(1, "input", 2, _regs(80.0))  # 80 bar: over the interlock
        await asyncio.wait_for(orch.machine.wait_for(State.HELD), 5)
        assert rig.pump.store.get(1, "coil", 0) == [0]  # pump held: Run off
        assert orch.proxies["P1"].services["Dosing"].state is State.HELD
        rig.pump.store.set(1, "input", 2, _regs(10.0))
        await asyncio.wait_for(orch.machine.wait_for(State.EXECUTE), 5)
        await asyncio.sleep(0.1)
        assert rig.pump.store.get(1, "coil", 0) == [1]  # unheld: running again
        assert await asyncio.wait_for(task, 20) is RunResult.COMPLETED
    finally:
        if not task.done():
            task.cancel()
        await _close(orch)
    kinds = [e.kind for e in orch.log.events]
    assert kinds.index(EventKind.INTERLOCK_TRIPPED) < kinds.index(EventKind.INTERLOCK_CLEARED)
    msgs = [e.message for e in orch.log.of_kind(EventKind.RECIPE_STATE)]
    assert "Execute -> Holding" in msgs and "Unholding -> Execute" in msgs


async def test_abort_drives_safe_state(rig: Rig) -> None:
    orch = await _orchestrator(rig.write("60 min"), speed=100.0)
    task = asyncio.create_task(orch.run())
    try:
        for _ in range(500):
            if orch.progress.step == "campaign":
                break
            await asyncio.sleep(0.01)
        for _ in range(500):  # the step may end before the valve's write lands (under load)
            if rig.valve.store.get(1, "coil", 0) == [1]:
                break
            await asyncio.sleep(0.01)
        assert rig.valve.store.get(1, "coil", 0) == [1]  # to product
        orch.command(Command.ABORT, "test")
        assert await asyncio.wait_for(task, 10) is RunResult.ABORTED
    finally:
        if not task.done():
            task.cancel()
        await _close(orch)
    assert rig.pump.store.get(1, "coil", 0) == [0]
    assert rig.valve.store.get(1, "coil", 0) == [0]  # valve fails safe to waste
    assert orch.proxies["P1"].services["Dosing"].state is State.ABORTED
    assert orch.log.of_kind(EventKind.SAFE_STATE)


async def test_operator_ack_after_interlock(rig: Rig) -> None:
    op = OperatorChannel()
    orch = await _orchestrator(rig.write("20 min", resume="ack"), speed=300.0, operator=op)
    task = asyncio.create_task(orch.run())
    try:
        for _ in range(500):
            if orch.progress.step == "campaign":
                break
            await asyncio.sleep(0.01)
        rig.pump.store.set(1, "input", 2, _regs(80.0))
        await asyncio.wait_for(orch.machine.wait_for(State.HELD), 5)
        rig.pump.store.set(1, "input", 2, _regs(10.0))
        for _ in range(300):
            if op.pending:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert orch.machine.state is State.HELD  # waits for the operator
        (pid,) = op.pending
        op.answer(pid, "stop")
        assert await asyncio.wait_for(task, 10) is RunResult.STOPPED
    finally:
        if not task.done():
            task.cancel()
        await _close(orch)


async def test_abort_fan_out_waits_for_aborted_modules(rig: Rig) -> None:
    """The recipe reaches Aborted only after its modules have: an Abort fan-out is not
    satisfied by a module that is still Aborting."""
    from modulecontrol.proxy import LocalService
    from modulecontrol.statemachine import StateChange, WorkContext

    orch = await _orchestrator(rig.write("60 min"), speed=100.0)
    recipe_aborted = asyncio.Event()
    seen_while_aborting: list[State] = []

    def on_recipe(change: StateChange) -> None:
        if change.new is State.ABORTED:
            recipe_aborted.set()

    orch.machine.subscribe(on_recipe)
    dosing = orch.proxies["P1"].services["Dosing"]
    assert isinstance(dosing, LocalService)

    async def slow_abort(ctx: WorkContext) -> None:
        # A module that takes its time to abort: give the recipe every chance to run ahead.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(recipe_aborted.wait(), 1.0)
        seen_while_aborting.append(orch.machine.state)

    dosing.machine.set_work(State.ABORTING, slow_abort)
    task = asyncio.create_task(orch.run())
    try:
        for _ in range(500):
            if orch.progress.step == "campaign":
                break
            await asyncio.sleep(0.01)
        assert orch.progress.step == "campaign"
        orch.command(Command.ABORT, "test")
        assert await asyncio.wait_for(task, 10) is RunResult.ABORTED
    finally:
        if not task.done():
            task.cancel()
        await _close(orch)
    assert seen_while_aborting == [State.ABORTING]  # the recipe was still Aborting
    assert dosing.state is State.ABORTED
    order = [(e.source, e.message)
             for e in orch.log.of_kind(EventKind.SERVICE_STATE, EventKind.RECIPE_STATE)]
    assert order.index(("P1.Dosing", "Aborting -> Aborted")) < order.index(
        ("recipe", "Aborting -> Aborted"))


async def test_a_run_started_on_a_lost_module_holds_until_it_is_back(rig: Rig) -> None:
    """A module whose link was already lost when the run started: the fault is recorded
    and the recipe holds before it commands anything; the module's return resumes it. The
    service bench's records showed the recipe starting SP0.Dosing on a link reported lost
    (the fault was never recorded: 'communication restored' came with was ''), and the
    link's recovery then aborted the service the run had started."""
    vr = load_recipe(rig.write("20 min"))
    proxies = proxies_for(vr.plant, options=ProxyOptions(poll_interval=0.02, complete_poll=0.01))
    for p in proxies.values():
        await p.start()
    p1 = proxies["P1"]
    await rig.pump.stop()
    for _ in range(1000):
        if p1.faulted:
            break
        await asyncio.sleep(0.02)
    assert p1.fault == "communication lost"
    # the run's orchestrator comes after the fault, as a service's next run does
    orch = Orchestrator(vr, proxies, clock=Clock.scaled(300.0), tick=2.0,
                        operator=OperatorChannel(auto_answer="ok"))
    task: asyncio.Task[RunResult] | None = None
    try:
        task = asyncio.create_task(orch.run())
        await asyncio.wait_for(orch.machine.wait_for(State.HELD), 10)
        assert "P1: communication lost" in orch.holds.reasons()
        status = orch.status()  # held by a cause that resumes it by itself
        assert status["held_by"] == orch.holds.reasons() and not status["awaits_operator"]
        (fault,) = orch.log.of_kind(EventKind.MODULE_FAULT)
        assert fault.source == "P1"
        assert not [e for e in orch.log.of_kind(EventKind.COMMAND) if e.source == "P1.Dosing"]
        await rig.pump.start()
        for _ in range(1000):
            if orch.progress.step == "campaign":
                break
            await asyncio.sleep(0.02)
        assert orch.progress.step == "campaign"
        assert p1.services["Dosing"].state is State.EXECUTE
        assert rig.pump.store.get(1, "coil", 0) == [1]
    finally:
        if task is not None and not task.done():
            orch.command(Command.ABORT, "end of test")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 20)
        await _close(orch)

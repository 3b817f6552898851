"""The ``optimize`` step runs its campaign on a line: set points through the proxies, the
recipe's steady-state detector, window means, events; a restart continues the campaign."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from modulecontrol.clock import Clock
from modulecontrol.events import EventKind
from modulecontrol.optimize import ExperimentRecord, recorded_experiments
from modulecontrol.orchestrator import OperatorChannel, Orchestrator, RunResult
from modulecontrol.proxy import ProxyOptions, proxies_for
from modulecontrol.recipe import load_recipe
from modulecontrol.records import AuditTrail, report, verify_audit
from modulecontrol.session import RunOptions, Session
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

# The pump's pressure grows with its flow (10 bar per mL/min): the most flow within
# 20 bar is 2 mL/min, on the constraint.
RECIPE = """\
kind: Recipe
name: optimise-flow
plant: plant.yaml
steady_state:
  - {name: flow, signal: P1.Flow, band: 0.01 mL/min, residence_times: 1, path: [P1, V1]}
optimize:
  name: most_flow
  variables: [{name: flow, set: [P1.FlowSetpoint], unit: mL/min, min: 0.5, max: 4, start: 1}]
  objective: {maximize: throughput, product: P1.Flow}
  constraints: ["P1.Pressure <= 20 bar"]
  experiments: EXPERIMENTS
  steady: flow
  window: 30 s
  settle_timeout: 1 h
procedure:
  - name: campaign
    steps:
      - service: {module: P1, service: Dosing, procedure: Continuous, parameters: {FlowSP: 1}}
      - name: search
        optimize: most_flow
"""


def _regs(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


def _f32(regs: list[int]) -> float:
    return float(struct.unpack(">f", struct.pack(">HH", *regs))[0])


async def _physics(pump: TcpDevice) -> None:
    """Flow follows the set point at once; pressure is 10 bar per mL/min."""
    while True:
        sp = _f32(pump.store.get(1, "holding", 0, 2))
        pump.store.set(1, "input", 0, _regs(sp))
        pump.store.set(1, "input", 2, _regs(10.0 * sp))
        await asyncio.sleep(0.005)


@pytest.fixture
async def line(tmp_path: Path) -> AsyncIterator[tuple[TcpDevice, Path]]:
    pump, valve = TcpDevice(RecordingStore()), TcpDevice(RecordingStore())
    await pump.start()
    await valve.start()
    (tmp_path / "plant.yaml").write_text(PLANT.format(p1=pump.port, v1=valve.port))
    task = asyncio.create_task(_physics(pump))
    try:
        yield pump, tmp_path
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pump.stop()
        await valve.stop()


async def _orchestrate(path: Path, history: Sequence[ExperimentRecord] = ()
                      ) -> tuple[Orchestrator, RunResult]:
    vr = load_recipe(path)
    proxies = proxies_for(vr.plant, options=ProxyOptions(poll_interval=0.02, complete_poll=0.01))
    for p in proxies.values():
        await p.start()
    orch = Orchestrator(vr, proxies, clock=Clock.scaled(600.0), tick=2.0,
                        operator=OperatorChannel(auto_answer="ok"))
    orch.interpreter.optimize_history = lambda name: list(history)
    try:
        result = await asyncio.wait_for(orch.run(), 60)
    finally:
        for p in orch.proxies.values():
            await p.close()
    return orch, result


async def _run(folder: Path, experiments: int,
               history: Sequence[ExperimentRecord] = ()) -> Orchestrator:
    path = folder / "recipe.yaml"
    path.write_text(RECIPE.replace("EXPERIMENTS", str(experiments)))
    orch, result = await _orchestrate(path, history)
    assert result is RunResult.COMPLETED
    return orch


def _records(orch: Orchestrator) -> list[ExperimentRecord]:
    return [ExperimentRecord.from_payload(e.data)
            for e in orch.log.of_kind(EventKind.OPTIMIZE_EXPERIMENT)]


async def test_optimize_step_finds_the_most_flow_within_the_pressure_limit(
        line: tuple[TcpDevice, Path]) -> None:
    _, folder = line
    orch = await _run(folder, 8)
    records = _records(orch)
    assert 3 <= len(records) <= 8  # COBYLA converges on this 1-D problem before the budget
    first = records[0]
    assert first.setpoints == {"P1.FlowSetpoint": pytest.approx(1.0)}
    # the window means are what the line measured at that set point
    assert first.means["P1.Flow"] == pytest.approx(1e-6 / 60, rel=1e-3)
    assert first.means["P1.Pressure"] == pytest.approx(10e5, rel=1e-3)
    best = max((r for r in records if r.feasible), key=lambda r: r.objective or 0.0)
    assert best.setpoints["P1.FlowSetpoint"] == pytest.approx(2.0, abs=0.1)
    writes = [e for e in orch.log.of_kind(EventKind.PARAMETER_WRITE)
              if e.source == "P1.FlowSetpoint"]
    # each experiment's point, then the best one: where the line runs on after the search
    assert [w.data["value"] for w in writes] == pytest.approx(
        [r.setpoints["P1.FlowSetpoint"] for r in records] + [best.setpoints["P1.FlowSetpoint"]])
    (done,) = orch.log.of_kind(EventKind.OPTIMIZE_BEST)
    assert done.data["index"] == best.index and done.data["experiments"] == len(records)
    assert done.seq > writes[-1].seq  # recorded once the line has taken the point


async def test_optimize_step_continues_a_recorded_campaign(
        line: tuple[TcpDevice, Path]) -> None:
    _, folder = line
    straight = _records(await _run(folder, 8))
    assert len(straight) >= 3
    resumed = _records(await _run(folder, 8, history=straight[:2]))
    # only the missing experiments are made, at the points the uninterrupted run chose
    assert [r.index for r in resumed] == list(range(2, len(straight)))
    assert [r.x for r in resumed] == [r.x for r in straight[2:]]


async def test_a_service_parameter_the_module_takes_only_at_start_fails_the_step(
        line: tuple[TcpDevice, Path]) -> None:
    """FlowSP is applied when Dosing starts; while it runs, writing it changes nothing on
    the pump, so experiments would record the unchanged plant as new points."""
    _, folder = line
    path = folder / "recipe.yaml"
    path.write_text(RECIPE.replace("EXPERIMENTS", "3").replace("set: [P1.FlowSetpoint]",
                                                               "set: [P1.FlowSP]")
                    .replace("optimize: most_flow", "optimize: most_flow\n"
                             "        on_error: abort"))
    orch, result = await _orchestrate(path)
    assert result is RunResult.ABORTED
    (failed,) = orch.log.of_kind(EventKind.STEP_FAILED)
    assert "P1.FlowSP is a service parameter" in failed.message
    assert "FlowSetpoint" in failed.message
    assert not orch.log.of_kind(EventKind.OPTIMIZE_EXPERIMENT)


async def test_a_campaign_without_a_feasible_experiment_fails_its_step(
        line: tuple[TcpDevice, Path]) -> None:
    """A bound no point meets (10 bar at the least flow): the search ends with nothing to
    run the line at, and the step says so instead of leaving it at the last point asked."""
    _, folder = line
    path = folder / "recipe.yaml"
    path.write_text(RECIPE.replace("EXPERIMENTS", "3").replace("<= 20 bar", "<= 1 bar")
                    .replace("optimize: most_flow", "optimize: most_flow\n"
                             "        on_error: abort"))
    orch, result = await _orchestrate(path)
    assert result is RunResult.ABORTED
    (failed,) = orch.log.of_kind(EventKind.STEP_FAILED)
    assert "optimize most_flow: no feasible experiment in 3; the line stays at the last " \
        "one's set points" in failed.message
    assert not orch.log.of_kind(EventKind.OPTIMIZE_BEST)


async def test_a_campaign_continues_in_the_next_run_from_the_records_database(
        line: tuple[TcpDevice, Path]) -> None:
    """Two runs of the recipe on one records database: the second makes only the
    experiments the budget has left, and every experiment is audited and chained."""
    _, folder = line
    path = folder / "recipe.yaml"
    db = folder / "run.db"
    opts = RunOptions(db=db, report_dir=None, poll_interval=0.02, speed=600.0, tick=2.0)
    path.write_text(RECIPE.replace("EXPERIMENTS", "2"))
    first = await Session.load(path, None, opts).run()
    assert first.result is RunResult.COMPLETED, first
    path.write_text(RECIPE.replace("EXPERIMENTS", "8"))
    second = await Session.load(path, None, opts).run()
    assert second.result is RunResult.COMPLETED, second
    made = [ExperimentRecord.from_payload(e.data) for e in second.events
            if e.kind is EventKind.OPTIMIZE_EXPERIMENT]
    assert made and made[0].index == 2
    recorded = recorded_experiments(db, "most_flow")
    assert [r.index for r in recorded] == list(range(len(recorded)))
    assert [r.x for r in recorded[2:]] == [r.x for r in made]
    with AuditTrail(db) as trail:
        audited = list(trail.entries("most_flow"))
    assert {e.user for e in audited} == {"optimizer"}
    # every experiment's set points, and after each run's campaign the best point's
    assert [e.action for e in audited if e.action == "optimize_setpoints"] == \
        ["optimize_setpoints"] * len(recorded)
    assert [e.action for e in audited if e.action == "optimize_best"] == ["optimize_best"] * 2
    assert verify_audit(db).ok
    # each run's batch report shows its own experiments, the set points as written
    assert first.run_id is not None and second.run_id is not None
    doc = json.loads(report(db, second.run_id, "json"))
    (campaign,) = doc["optimisation"]
    shown = campaign["experiments"]
    assert campaign["campaign"] == "most_flow"
    assert [e["index"] for e in shown] == [r.index for r in made]
    assert [e["setpoints"]["P1.FlowSetpoint"] for e in shown] == [
        f"{r.setpoints['P1.FlowSetpoint']!r} mL/min" for r in made]
    assert [e["objective"] for e in shown] == [r.objective for r in made]
    feasible = [r for r in made if r.feasible]
    assert campaign["best"] == max(feasible, key=lambda r: r.objective or 0.0).index
    # shown as people read it: a flow in the product signal's unit, not m3/s
    unit, factor = campaign["units"]["objective"]
    assert unit == "mL/min" and factor == pytest.approx(6e7)
    page = report(db, second.run_id, "html")
    assert "<h2>Optimisation</h2><h3>Campaign most_flow</h3>" in page
    best_made = next(r for r in made if r.index == campaign["best"])
    assert best_made.objective is not None
    assert f"objective {best_made.objective * factor:.4g} mL/min" in page
    assert "objective (SI)" not in page
    assert f"{len(made)} experiments in this run; best feasible: experiment " \
        f"{campaign['best'] + 1}" in page
    # the line ran on at the campaign's best, which may be one of the first run's
    every = recorded
    overall = max((r for r in every if r.feasible), key=lambda r: r.objective or 0.0)
    assert campaign["applied"] == overall.index
    assert f"the line ran on at experiment {overall.index + 1}" in page
    assert [e["index"] for e in json.loads(report(db, first.run_id, "json"))
            ["optimisation"][0]["experiments"]] == [0, 1]

"""A pressure transmitter frozen at a plausible value, end to end over Modbus TCP.

A simulated HPLC pump (with measurement noise on its pressure, as a real transmitter has)
runs behind its Modbus TCP server; a whole Session drives it (proxy, orchestrator,
historian). The pressure sensor is then frozen at its current, perfectly plausible reading:
no interlock and no range check can see that. The stale-value watchdog (``stale_after`` on
``P1.Pressure``) must fault the module no earlier than ``stale_after`` of simulated time,
the recipe must hold, and both must recover when the sensor moves again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from modulecontrol.clock import Clock
from modulecontrol.descriptors import PlantConfig
from modulecontrol.events import EventKind
from modulecontrol.orchestrator import Orchestrator
from modulecontrol.proxy import ModuleProxy
from modulecontrol.session import RunOptions, Session
from modulecontrol.simulators import ServedPlant, serve_plant
from modulecontrol.statemachine import Command, State
from tests._poll import until

STALE_AFTER = 20.0
SPEED = 100.0

PLANT = f"""\
kind: Plant
name: stale-rig
modules:
  - tag: P1
    type: HPLCPump
    simulated: true
    endpoint: {{protocol: modbus-tcp, port: 15021, timeout: 0.3, reconnect_max_delay: 0.2}}
    overrides:
      simulator: {{feed: {{THF: 12.33 mol/L}}}}
      simulator_noise: {{Pressure: 0.02 bar}}
      assemblies: {{Pressure: {{stale_after: {STALE_AFTER:g} s}}}}
  - {{tag: W1, type: DivertValve, simulated: true,
     endpoint: {{protocol: modbus-tcp, port: 15029, unit_id: 2}}}}
connections:
  - {{from: P1.outlet, to: W1.inlet, volume: 1 mL}}
"""

RECIPE = """\
kind: Recipe
name: stale-rig
version: 1.0.0
plant: plant.yaml
procedure:
  - name: main
    steps:
      - name: start
        service: {module: P1, service: Dosing, procedure: Continuous,
                  parameters: {FlowSP: 1}}
      - name: run
        wait: {duration: 20 h}
"""


def _fault(proxy: ModuleProxy) -> str | None:
    """Read through a call: the value changes behind the test's back."""
    return proxy.fault


def _state(orch: Orchestrator) -> State:
    return orch.machine.state


@pytest.mark.slow
async def test_frozen_pressure_holds_the_recipe_and_recovers(tmp_path: Path) -> None:
    (tmp_path / "plant.yaml").write_text(PLANT)
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    served: list[ServedPlant] = []

    async def factory(cfg: PlantConfig, clock: Clock) -> ServedPlant:
        served.append(await serve_plant(cfg, clock, dt=1.0))
        return served[-1]

    opts = RunOptions(simulate=True, speed=SPEED, db=tmp_path / "run.db", report_dir=None,
                      poll_interval=0.05)
    session = Session.load(tmp_path / "recipe.yaml", None, opts, factory)
    task = asyncio.create_task(session.run())
    try:
        assert await until(lambda: session.orchestrator is not None, 20) is not None
        orch = session.orchestrator
        assert orch is not None
        assert await until(lambda: orch.progress.step == "run", 20) is not None
        proxy = session.proxies["P1"]
        clock = session.clock
        plant = served[0].plant

        # A noisy live value is never stale: three times stale_after without a fault.
        t_live = clock.now()
        assert await until(lambda: clock.now() - t_live > 3 * STALE_AFTER, 10) is not None
        assert _fault(proxy) is None and _state(orch) is State.EXECUTE
        assert not [e for e in orch.log.events if e.kind is EventKind.MODULE_FAULT]
        live = proxy.value("Pressure")
        assert isinstance(live, float) and 0.5 < live < 2.0  # a plausible ~1 bar

        # Freeze the transmitter at its present (plausible) reading.
        n_events = len(orch.log.events)
        t_freeze = clock.now()
        plant.faults.inject("P1", "stuck", variable="Pressure")
        assert await until(lambda: proxy.fault is not None, 10) is not None, (
            "frozen value not detected")
        t_detect = clock.now()
        assert _fault(proxy) == f"stale value: P1.Pressure unchanged for {STALE_AFTER:g} s"
        assert t_detect - t_freeze >= STALE_AFTER  # never before stale_after has passed
        assert proxy.value("Pressure") is None  # conditions no longer see the frozen value
        assert await until(lambda: orch.machine.state is State.HELD, 10) is not None
        assert proxy.services["Dosing"].state is State.HELD  # the recipe held its pump
        faults = [e for e in orch.log.events[n_events:] if e.kind is EventKind.MODULE_FAULT]
        assert faults and faults[0].source == "P1" and "stale value" in faults[0].message

        # The sensor moves again: the fault clears and the recipe resumes by itself.
        plant.faults.clear("P1", "stuck")
        assert await until(lambda: proxy.fault is None, 10) is not None
        assert await until(lambda: orch.machine.state is State.EXECUTE, 10) is not None
        assert await until(lambda: proxy.services["Dosing"].state is State.EXECUTE,
                           10) is not None
        orch.try_command(Command.STOP, "test done")
        outcome = await asyncio.wait_for(task, 20)
    finally:
        if not task.done():
            task.cancel()
    assert outcome.run_id is not None
    with sqlite3.connect(tmp_path / "run.db") as conn:
        kinds = [k for (k,) in conn.execute(
            "SELECT kind FROM events WHERE run_id=? AND source='P1'", (outcome.run_id,))]
        bad = conn.execute(
            "SELECT COUNT(*) FROM samples s JOIN tags g ON g.id = s.tag_id "
            "WHERE g.name = 'P1.Pressure' AND s.quality = 0").fetchone()[0]
    assert "fault" in kinds  # the module fault is in the record
    assert bad > 0  # and the frozen samples are recorded as not good

"""A third-party transport, end to end: the toy 'acme' plug-in distribution.

``tests/plugins/acme_driver`` is a separate distribution installed into the test environment
(``make .venv/.installed-test``). It brings a driver with its own binding and endpoint models,
a device that speaks its protocol, and a module type as package data, all registered by
entry point. Nothing here imports the driver: the composition root finds it. A plant says
``protocol: acme``, a recipe is validated against it and run through a whole Session.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from modulecontrol.descriptors import installed_types, load_plant, transports
from modulecontrol.drivers import available_drivers
from modulecontrol.errors import ConfigError
from modulecontrol.orchestrator import RunResult
from modulecontrol.recipe import load_recipe
from modulecontrol.session import RunOptions, Session

acme_device = pytest.importorskip(
    "acme_modulecontrol.device",
    reason="the toy plug-in is not installed: run `make .venv/.installed-test`",
)

PLANT = """\
kind: Plant
name: acme-rig
modules:
  - tag: H1
    type: AcmeHeater
    endpoint: {{protocol: acme, port: {port}, timeout: 1 s}}
"""

RECIPE = """\
kind: Recipe
name: acme-heat
version: 1.0.0
plant: plant.yaml
procedure:
  - name: main
    steps:
      - name: heat
        service: {module: H1, service: Heating, parameters: {TempSP: 60 degC}}
      - name: warm
        wait: {until: "H1.T > 59 degC"}
        timeout: 10 min
        on_timeout: abort
      - name: cool
        service: {module: H1, service: Heating, command: stop}
"""


def test_the_plugin_is_found_by_entry_point() -> None:
    ep = available_drivers()["acme"]
    assert ep.dist is not None and ep.dist.name == "acme-modulecontrol"
    assert transports()["acme"].endpoints.keys() == {"acme"}
    assert "AcmeHeater" in installed_types()


async def test_recipe_runs_on_the_plugin_device(tmp_path: Path) -> None:
    device = acme_device.AcmeHeaterDevice()
    await device.start()
    try:
        (tmp_path / "plant.yaml").write_text(PLANT.format(port=device.port))
        (tmp_path / "recipe.yaml").write_text(RECIPE)
        plant = load_plant(tmp_path / "plant.yaml")
        assert plant.plant.module("H1").transport == "acme"
        assert load_recipe(tmp_path / "recipe.yaml").recipe.name == "acme-heat"

        opts = RunOptions(db=tmp_path / "run.db", report_dir=None, poll_interval=0.05)
        session = Session.load(tmp_path / "recipe.yaml", None, opts)
        outcome = await session.run()
    finally:
        await device.stop()

    assert outcome.result is RunResult.COMPLETED, outcome
    driver = session.proxies["H1"].driver
    assert type(driver).__module__ == "acme_modulecontrol.driver"  # loaded by entry point
    # the service's actions went over the wire: setpoint, heat on, then heat off (stop)
    assert device.writes[:2] == [("SP", 60.0), ("RUN", 1.0)]
    assert ("RUN", 0.0) in device.writes[2:] and device.registers["RUN"] == 0.0
    with sqlite3.connect(tmp_path / "run.db") as conn:
        hot = conn.execute(
            "SELECT MAX(s.value) FROM samples s JOIN tags g ON g.id = s.tag_id "
            "WHERE g.name = 'H1.T'").fetchone()[0]
    assert hot is not None and hot > 59.0  # the recorded temperature saw the wait condition


def test_unknown_protocol_names_the_installed_ones(tmp_path: Path) -> None:
    (tmp_path / "plant.yaml").write_text(PLANT.format(port=15400).replace("acme,", "acmee,"))
    with pytest.raises(ConfigError) as info:
        load_plant(tmp_path / "plant.yaml")
    (problem,) = info.value.problems
    assert problem.location is not None
    assert (problem.location.line, problem.location.col) == (6, 26)  # the value of protocol:
    assert "unknown protocol 'acmee' (did you mean 'acme'?)" in problem.message
    assert "installed: acme, modbus-rtu, modbus-tcp, opcua, serial" in problem.message

"""The composition root: wiring happens in ``configure()``, never as a side effect of import."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from modulecontrol.bootstrap import QuietAsyncua, Wiring, configure
from modulecontrol.descriptors import document_kinds, installed_types, transports

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: in this one, the suite has imported and wired everything.
PROBE = r"""
import json, logging, sys

def loggers():
    out = {}
    for name, lg in sorted(logging.Logger.manager.loggerDict.items()):
        if isinstance(lg, logging.Logger):
            out[name] = [lg.level, len(lg.filters), len(lg.handlers), lg.disabled, lg.propagate]
    root = logging.getLogger()
    out[""] = [root.level, len(root.filters), len(root.handlers), False, True]
    return out

def registries():
    from modulecontrol.descriptors import document_kinds, transports
    return {"kinds": sorted(document_kinds()), "transports": sorted(transports())}

def plugin_types():  # the built-in types are parsed (and kept) while transports are wired
    from modulecontrol.descriptors import builtin_types, installed_types
    return sorted(set(installed_types()) - set(builtin_types()))

# Libraries set up their own loggers on import (NullHandlers): that is their business, so
# they are imported before the baseline; what is compared is modulecontrol's doing.
import asyncua, asyncua.client.client, asyncua.client.ua_client, pymodbus, transitions
import scipy.integrate, serial_asyncio_fast
import modulecontrol.descriptors
before_reg, before_log = registries(), loggers()
import modulecontrol.recipe, modulecontrol.simulators, modulecontrol.drivers.opcua
after_reg, after_log = registries(), loggers()
changed = {n: (before_log.get(n), v) for n, v in after_log.items()
           if n in before_log and before_log[n] != v
           or n not in before_log and v != [logging.NOTSET, 0, 0, False, True]}
from modulecontrol.descriptors import load_plant
from modulecontrol.errors import ConfigError
try:
    load_plant(sys.argv[1])
    unwired = "loaded"
except ConfigError as exc:
    unwired = str(exc.problems[0])
from modulecontrol.bootstrap import configure
wiring = configure()
wired = {**registries(), "types": plugin_types()}
wiring.undo()
undone = {**registries(), "types": plugin_types()}
print(json.dumps({"before": before_reg, "after": after_reg, "changed_loggers": changed,
                  "unwired": unwired, "wired": wired, "undone": undone}))
"""


def test_importing_changes_no_registry_and_no_logger() -> None:
    plant = ROOT / "recipes/lomustine/plant.yaml"
    out = subprocess.run([sys.executable, "-c", PROBE, str(plant)], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    empty: dict[str, list[str]] = {"kinds": [], "transports": []}
    assert got["before"] == empty
    assert got["after"] == empty, "importing registered something"
    assert got["changed_loggers"] == {}, "importing configured a logger"
    # without the composition root, a plant is refused with what to do, not a KeyError
    assert "call modulecontrol.bootstrap.configure()" in got["unwired"]
    assert got["wired"]["kinds"] == ["Recipe", "Scenario"]
    assert {"modbus", "opcua", "serial"} <= set(got["wired"]["transports"])
    assert "AcmeHeater" in got["wired"]["types"]
    assert got["undone"] == {**empty, "types": []}, "configure().undo() left something"


def test_configure_is_idempotent_and_undoes_only_its_own() -> None:
    kinds, known = document_kinds(), transports()
    wiring = configure()  # the suite is wired already: nothing new to add
    assert wiring.kinds == [] and wiring.transports == [] and wiring.module_types == []
    wiring.undo()
    assert document_kinds() == kinds and transports() == known
    assert "AcmeHeater" in installed_types()


def _record(name: str, level: int) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, "message", None, None)


def test_cli_logging_quietens_asyncua_with_a_handler_it_removes() -> None:
    root = logging.getLogger()
    levels = {n: lg.level for n, lg in logging.Logger.manager.loggerDict.items()
              if isinstance(lg, logging.Logger)}
    handlers = list(root.handlers)
    wiring = configure(cli_logging=True)
    try:
        assert wiring.handler in root.handlers
        assert not wiring.handler.filter(_record("asyncua.server.server", logging.WARNING))
        assert wiring.handler.filter(_record("asyncua.client", logging.ERROR))
        assert wiring.handler.filter(_record("modulecontrol.session", logging.WARNING))
        assert wiring.handler.filter(_record("asyncuax", logging.WARNING))  # another library
    finally:
        wiring.undo()
    assert root.handlers == handlers
    assert {n: lg.level for n, lg in logging.Logger.manager.loggerDict.items()
            if isinstance(lg, logging.Logger) and n in levels} == levels


def test_quiet_asyncua_passes_its_errors() -> None:
    f = QuietAsyncua()
    assert f.filter(_record("asyncua", logging.CRITICAL))
    assert not f.filter(_record("asyncua", logging.INFO))


def test_the_pytest_plugin_fixture_wires_a_driver_package_suite(
    modulecontrol_wiring: Wiring,
) -> None:
    assert modulecontrol_wiring.problems == {}  # every installed driver loaded
    assert {"acme", "modbus", "opcua", "serial"} <= set(transports())


def test_the_pytest_plugin_free_tcp_port_stays_a_port_number(free_tcp_port: int) -> None:
    # public API, kept for driver suites that use it; racy (its docstring says why and what
    # to use instead), so the suite's own tests do not
    assert isinstance(free_tcp_port, int) and 1024 <= free_tcp_port <= 65535

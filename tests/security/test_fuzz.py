"""Garbage in: loaders answer with a model or a clear error, servers keep serving.

Property tests feed random YAML-ish structures and raw text to the Scenario loader (must
give a Scenario or a ConfigError whose every problem is located in the file) and to the
species-table loader (a SpeciesTable or ValueError: its documented error). Raw garbage
bytes go to a simulated Modbus TCP server and to an asyncua server port (bad headers,
truncated chunks, huge lengths); afterwards a well-behaved client must still work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modulecontrol.clock import Clock
from modulecontrol.descriptors import load_plant
from modulecontrol.drivers.modbus import ModbusDriver
from modulecontrol.errors import ConfigError
from modulecontrol.simulators import PlantServer, SimulatedPlant
from modulecontrol.simulators._faults import Scenario, scenario_from_doc
from modulecontrol.simulators.models._species import SpeciesTable
from modulecontrol.yamlio import load_yaml_text

_WORDS = ["kind", "Scenario", "name", "faults", "at", "module", "fault", "duration", "params",
          "stall", "stuck", "noise", "silent", "P1", "R1", "variable", "T", "1 h", "-5 s",
          "10 min", "value", "species", "molar_mass", "density", "viscosity", "heat_capacity",
          "18 g/mol", "1000 kg/m**3", "0.9 mPa*s", "nan", "inf", "", "THF", "x" * 40]
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                     st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(_WORDS),
                     st.text(max_size=12))
_keys = st.one_of(st.sampled_from(_WORDS), st.text(max_size=8))
_trees = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=5)), max_leaves=25)


def _scenario_like() -> st.SearchStrategy[Any]:
    fault = st.fixed_dictionaries({}, optional={
        "at": _scalars, "module": st.sampled_from(["P1", "R1", "Q", 3]),
        "fault": st.sampled_from(["stall", "stuck", "noise", "slow", "bogus", None]),
        "duration": _scalars, "params": _trees})
    return st.fixed_dictionaries({"kind": st.sampled_from(["Scenario", "Plant", 1])}, optional={
        "name": _scalars, "description": _scalars, "faults": st.one_of(
            st.lists(fault, max_size=4), _trees)})


def _species_like() -> st.SearchStrategy[Any]:
    sp = st.fixed_dictionaries({}, optional={
        "name": st.one_of(st.sampled_from(["THF", "water", ""]), _scalars),
        "molar_mass": _scalars, "density": _scalars, "viscosity": _scalars,
        "heat_capacity": _scalars, "extra": _scalars})
    return st.one_of(st.fixed_dictionaries({"species": st.one_of(st.lists(sp, max_size=4),
                                                                   _trees)}), _trees)


def _check_scenario(text: str) -> None:
    try:
        doc = load_yaml_text(text, "fuzz.yaml")
        result = scenario_from_doc(doc)
    except ConfigError as exc:
        assert exc.problems and all(p.location is not None and p.location.file == "fuzz.yaml"
                                    for p in exc.problems), str(exc)
        return
    assert isinstance(result, Scenario)


_fuzz = settings(max_examples=150, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])


@_fuzz
@given(st.one_of(_scenario_like(), _trees))
def test_scenario_loader_structures(data: Any) -> None:
    _check_scenario(json.dumps(data, allow_nan=True))


@_fuzz
@given(st.text(alphabet=string.printable + "{}[]:-&*!|>'\"#%@`", max_size=120))
def test_scenario_loader_text(text: str) -> None:
    _check_scenario(text)


@_fuzz
@given(st.one_of(_species_like(), st.text(max_size=80)))
def test_species_loader(data: Any) -> None:
    text = data if isinstance(data, str) else json.dumps(data, allow_nan=True)
    try:
        table = SpeciesTable.from_yaml(text + "\n")
    except ValueError as exc:  # the documented error (ConfigError is not expected here)
        assert str(exc)
        return
    assert isinstance(table, SpeciesTable) and len(table) >= 0


# ------------------------------------------------------------------------------- servers

_PLANT = """\
kind: Plant
name: fuzz
modules:
  - tag: P0
    type: HPLCPump
    simulated: true
    endpoint: {protocol: modbus-tcp, port: 15028, unit_id: 1, timeout: 1.0}
    overrides: {simulator: {feed: {THF: 12.33 mol/L}}}
  - tag: P1
    type: CoilReactor
    simulated: true
    endpoint: {protocol: opcua, url: "opc.tcp://127.0.0.1:14841/p1", security_policy: "None",
               security_mode: "None", timeout: 2.0}
  - {tag: W1, type: DivertValve, simulated: true,
     endpoint: {protocol: modbus-tcp, port: 15029, unit_id: 2}}
connections:
  - {from: P0.outlet, to: P1.inlet, volume: 1 mL}
  - {from: P1.outlet, to: W1.inlet, volume: 1 mL}
"""


def _garbage(rng: random.Random, kind: str) -> list[bytes]:
    """Payloads for one connection each: random bytes and protocol-shaped lies."""
    rand = [rng.randbytes(rng.randrange(1, 300)) for _ in range(6)]
    if kind == "modbus":
        mbap = [
            b"\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x7d",  # valid read, then junk
            b"\x00\x01\x00\x00\xff\xff\x01\x03",  # length 65535, truncated
            b"\x00\x01\x12\x34\x00\x02\x01",  # wrong protocol id, truncated
            b"\x00\x01\x00\x00\x00\x01\x01",  # no function code
            b"\x00\x01\x00\x00\x00\x06\x01\x10\x00\x00\xff\xff",  # write 65535 registers
            b"\x00\x01\x00\x00\x00\x03\x01\x99\x00",  # unknown function
        ]
        return rand + mbap
    ua = [
        b"HELF" + (8).to_bytes(4, "little"),  # hello with a length too short
        b"HELF" + (2**31).to_bytes(4, "little") + b"\x00" * 20,  # huge length
        b"HEL" + b"\x00" * 5,  # truncated type
        b"OPNF" + (100).to_bytes(4, "little") + b"\x00" * 10,  # truncated chunk
        b"MSGF" + (24).to_bytes(4, "little") + rng.randbytes(16),  # message before hello
        b"XYZF" + (16).to_bytes(4, "little") + b"\x00" * 8,  # unknown type
        b"HELF" + (60).to_bytes(4, "little") + b"\xff" * 52,  # hello full of 0xff
    ]
    return rand + ua


async def _spray(port: int, payloads: list[bytes]) -> None:
    for data in payloads:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), 2.0)
        except OSError:
            continue
        try:
            writer.write(data)
            await writer.drain()
            # take whatever the server answers, or its closing, without waiting long
            await asyncio.wait_for(reader.read(4096), 0.3)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


@pytest.mark.timeout(60)
async def test_servers_survive_garbage(tmp_path: Path) -> None:
    (tmp_path / "plant.yaml").write_text(_PLANT)
    cfg = load_plant(tmp_path / "plant.yaml")
    server = PlantServer(SimulatedPlant.from_config(cfg, Clock.realtime()), free_ports=True,
                         insecure=True)  # the plant says None: raw frames, no handshake
    await server.start()
    try:
        served = server.served_config()
        ep0 = served.instance("P0").endpoint
        ep1 = served.instance("P1").endpoint
        modbus_port = int(ep0.port)  # type: ignore[union-attr]
        url: str = ep1.url  # type: ignore[union-attr]
        ua_port = int(url.rsplit(":", 1)[1].split("/")[0])
        rng = random.Random(20261123)
        await asyncio.gather(_spray(modbus_port, _garbage(rng, "modbus")),
                             _spray(ua_port, _garbage(rng, "opcua")))
        # a good client still works on both
        drv = ModbusDriver(served.instance_types["P0"], served.instance("P0"))
        async with drv:
            await drv.write("FlowSetpoint.VMan", 1.25)
            got = await drv.read(["FlowSetpoint.VMan"])
            assert got["FlowSetpoint.VMan"].value == pytest.approx(1.25)
        from modulecontrol.drivers.opcua import OpcUaDriver

        odrv = OpcUaDriver(served.instance_types["P1"], served.instance("P1"))
        async with odrv:
            await odrv.write("TempSP.VExt", 33.0)
            assert (await odrv.read(["TempSP.VExt"]))["TempSP.VExt"].value == 33.0
    finally:
        await server.stop()

"""Handshake policies (issue 15) against real asyncua PEAs built to bend the standard.

Each PEA is the tests' independent MiniPea with one quirk seen in the wild: CommandEn 0
until the first transition, parameters taken over only at Start, Resetting reported as
32678. The standard policy refuses each with a message that names the policy to declare;
the declared policy drives it, and every tolerance it used is reported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pydantic import ValidationError

from modulecontrol.descriptors import Handshake
from modulecontrol.drivers import ValueRefused
from modulecontrol.drivers.opcua import OpcUaDriver
from modulecontrol.mtpcore import (
    Command,
    CommandNotEnabled,
    HandshakePolicy,
    ModeRefused,
    MtpError,
    ServiceClient,
    State,
)
from modulecontrol.simulators.opcua_pea import build_pea_server
from tests.drivers._opcua_pea import MiniPea, coil_reactor, instance


@asynccontextmanager
async def bent_pea(*quirks: str, transient: float | None = 0.05
                   ) -> AsyncIterator[tuple[MiniPea, OpcUaDriver]]:
    server = await build_pea_server(coil_reactor())
    mini = MiniPea(server, transient=transient, quirks=frozenset(quirks))
    await mini.install()
    drv = OpcUaDriver(coil_reactor(), instance(server.url))
    async with server, drv:
        yield mini, drv


STANDARD = HandshakePolicy()


def client(driver: OpcUaDriver, policy: HandshakePolicy = STANDARD, *,
           notes: list[str] | None = None, timeout: float = 10.0) -> ServiceClient:
    svc = driver.module_type.service("Tempering")
    return ServiceClient(driver, svc.name, now=time.monotonic, sleep=asyncio.sleep,
                         timeout=timeout, poll=0.02,
                         procedures={p.name: p.id for p in svc.procedures},
                         default_procedure=svc.default_procedure.id, module="R1",
                         policy=policy, on_deviation=None if notes is None else notes.append)


async def test_late_command_en_is_refused_by_default_naming_the_policy() -> None:
    async with bent_pea("command_en_late") as (mini, drv):
        with pytest.raises(CommandNotEnabled) as exc:
            await client(drv).run(Command.START)
        assert "enabled commands: none" in str(exc.value)
        assert "handshake: {command_en: advisory} for module R1 in the plant" in str(exc.value)
        assert mini.commands == []  # nothing was sent


async def test_advisory_command_en_drives_the_pea_and_says_so() -> None:
    async with bent_pea("command_en_late") as (_, drv):
        notes: list[str] = []
        c = client(drv, HandshakePolicy(command_en="advisory"), notes=notes)
        assert await c.run(Command.START) is State.EXECUTE
        assert notes == ["Tempering: Start sent although CommandEn (0) does not enable it in "
                         "Idle (command_en: advisory)"]
        assert await c.run(Command.STOP) is State.STOPPED  # enabled now: no further note
        assert len(notes) == 1


async def test_command_edge_repeats_a_command_the_pea_did_not_clear() -> None:
    async with bent_pea("command_edge") as (mini, drv):
        # a Start written while the service was not in Automatic is ignored, and stays
        await drv.write("Tempering.CommandExt", int(Command.START))
        with pytest.raises(MtpError):  # the same Start again: the PEA sees no change
            await client(drv, timeout=0.5).run(Command.START)
        assert await client(drv).state() is State.IDLE
        notes: list[str] = []
        edge = client(drv, HandshakePolicy(command="edge"), notes=notes)
        assert await edge.run(Command.START) is State.EXECUTE
        assert mini.commands[-1] == ("Tempering", "Start")
        assert notes == ["Tempering: CommandExt still held Start: written 0 first, so the PEA "
                         "sees a change (command: edge)"]


async def test_parameters_taken_at_start() -> None:
    async with bent_pea("apply_at_start") as (mini, drv):
        with pytest.raises(ModeRefused, match=r"parameter TempSP was not applied within 0.5 s: "
                           r"VFbk is 25.0, wanted 61.0"):
            await client(drv, timeout=0.5).run(Command.START, parameters={"TempSP": 61.0})
        assert mini.commands == []  # Start was not sent on an unconfirmed parameter

        notes: list[str] = []
        c = client(drv, HandshakePolicy(parameters="at_start"), notes=notes)
        assert await c.run(Command.START, parameters={"TempSP": 62.0}) is State.EXECUTE
        assert mini.pea.get("TempSP.VFbk") == 62.0
        assert notes == ["Tempering: TempSP taken over at Start, confirmed after it "
                         "(parameters: at_start)"]
        with pytest.raises(MtpError, match="takes parameters over only at Start, so TempSP "
                           "cannot be changed with Stop; set them before Start"):
            await c.run(Command.STOP, parameters={"TempSP": 63.0})


async def test_parameter_out_of_the_peas_range_is_located_before_start() -> None:
    async with bent_pea("apply_at_start") as (mini, drv):
        await mini.pea.set("TempSP.VMax", 100.0)  # narrower than the type's 150 degC
        c = client(drv, HandshakePolicy(parameters="at_start"), timeout=0.5)
        with pytest.raises(ValueRefused, match=r"R1.TempSP = 120 degC refused by the device "
                           r"\(OPC UA BadOutOfRange\)"):
            await c.run(Command.START, parameters={"TempSP": 120.0})
        assert mini.commands == []
        assert mini.pea.get("TempSP.VReq") == 25.0


async def test_declared_state_code_reads_as_its_state_with_one_note() -> None:
    async with bent_pea("resetting_32678", transient=None) as (mini, drv):
        notes: list[str] = []
        c = client(drv, HandshakePolicy(state_codes={32678: State.RESETTING}), notes=notes)
        await c.send_command(Command.START)  # the PEA holds every transient state
        await mini.finish_transient("Tempering")
        assert await c.run(Command.STOP, wait_for=[State.STOPPING]) is State.STOPPING
        await mini.finish_transient("Tempering")
        assert await c.run(Command.RESET, wait_for=[State.RESETTING]) is State.RESETTING
        assert (await c.status()).state_code == 32678
        assert notes == ["Tempering: StateCur 32678 is no 2658-4 state code; read as "
                         "Resetting (declared in the handshake policy's state_codes)"]
        standard = client(drv, timeout=0.3)
        assert (await standard.status()).state is None  # undeclared: an unknown code
        await mini.finish_transient("Tempering")
        assert await c.wait_for_state([State.IDLE]) is State.IDLE
        assert len(notes) == 1


def test_policy_timeout_and_poll_win() -> None:
    policy = HandshakePolicy(timeout=60.0, poll=0.5)
    sc = ServiceClient(object(), "S", now=time.monotonic, sleep=asyncio.sleep,  # type: ignore[arg-type]
                       timeout=5.0, poll=0.05, policy=policy)
    assert (sc.timeout, sc.poll) == (60.0, 0.5)
    assert policy.state_of(32678) is None and policy.state_of(16) is State.IDLE


def test_plant_declaration_is_the_policy_and_refuses_standard_codes() -> None:
    hs = Handshake.model_validate({"command_en": "advisory", "parameters": "at_start",
                                   "state_codes": {32678: "resetting"}, "timeout": "1 min"})
    assert hs.policy() == HandshakePolicy(command_en="advisory", parameters="at_start",
                                          state_codes={32678: State.RESETTING}, timeout=60.0)
    with pytest.raises(ValidationError, match="16 is the standard code of Idle"):
        Handshake.model_validate({"state_codes": {16: "Idle"}})
    with pytest.raises(ValidationError, match="unknown state 'Resting'"):
        Handshake.model_validate({"state_codes": {3: "Resting"}})
    with pytest.raises(ValidationError, match="command_en"):
        Handshake.model_validate({"command_en": "lenient"})

"""The vendor manifest (HC30) served as a virtual PEA: address space, live check, a full
service cycle through our own stack, security rules, and the live check catching faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaStatusCodeError

from modulecontrol.descriptors import ModuleInstance, OpcUaEndpoint, builtin_types
from modulecontrol.mtp import (
    CheckResult,
    LiveOptions,
    VirtualPea,
    check_manifest_async,
    export_manifest,
    format_results,
    serve_manifest,
)
from modulecontrol.proxy import ModuleProxy, ProxyOptions
from modulecontrol.simulators import SecurityError
from modulecontrol.statemachine import Command, State

HC30 = Path(__file__).parent / "data" / "HC30_Stirring_V8.aml"
SIEMENS_NS = "http://www.siemens.com/simatic-s7-opcua"
LIVE = ("live-connect", "live-nodes", "live-operation-mode", "live-source-mode",
        "live-procedures", "live-parameters", "live-commands")
COMMAND_STATES = ("Idle", "Execute", "Paused", "Held", "Completed", "Stopped", "Aborted")

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hc30() -> AsyncIterator[VirtualPea]:
    async with await serve_manifest(HC30, insecure=True, self_complete_after=0.3) as pea:
        yield pea


def _failures(results: list[CheckResult]) -> str:
    return format_results([r for r in results if r.status != "pass"])


async def test_address_space_is_the_manifests(hc30: VirtualPea) -> None:
    """Namespace by URI, the vendor's string node ids, types and access levels."""
    async with Client(hc30.url, timeout=5) as client:
        ns = (await client.get_namespace_array()).index(SIEMENS_NS)
        state = client.get_node(f'ns={ns};s="Stirring"."MTP"."ServiceControl"."StateCur"')
        assert await state.read_data_type_as_variant_type() == ua.VariantType.UInt32
        assert await state.read_value() == State.IDLE
        level = await state.read_attribute(AttributeIds.AccessLevel)
        assert level.Value is not None
        assert level.Value.Value & ua.AccessLevel.CurrentWrite.mask == 0  # Access 1
        with pytest.raises(UaStatusCodeError):
            await state.write_value(ua.Variant(4, ua.VariantType.UInt32))
        vext = client.get_node(f'ns={ns};s="ProcedureParameters_DB"."MTPAnalog"'
                               '[0]."VExt"')
        vext_level = (await vext.read_attribute(AttributeIds.AccessLevel)).Value
        assert vext_level is not None
        assert vext_level.Value & ua.AccessLevel.CurrentWrite.mask  # Access 3


async def test_hc30_passes_the_live_check(hc30: VirtualPea) -> None:
    results = await check_manifest_async(HC30, live=LiveOptions(hc30.url, insecure=True))
    assert all(r.status == "pass" for r in results), _failures(results)
    seen = {r.check for r in results}
    assert set(LIVE) <= seen
    subjects = [r.subject for r in results if r.check == "live-commands"]
    assert subjects == [f"Stirring in {s}" for s in COMMAND_STATES]
    procs = [r.subject for r in results if r.check == "live-procedures"]
    assert procs == ["Stirring.HC30_Stirring_Duration", "Stirring.HC30_Stirring_Continous",
                     "Stirring id 3"]
    params = [r for r in results if r.check == "live-parameters"]
    assert [r.subject for r in params] == ["Stirring.HC30_Duration_Stirring_Durration"]
    assert "limits 0..60" in params[0].detail


async def test_full_service_cycle_through_a_proxy(hc30: VirtualPea) -> None:
    """Our stack (ModuleProxy -> OPC UA driver -> RemoteService) runs the imported type."""
    ep = OpcUaEndpoint(protocol="opcua", url=hc30.url, security_policy="None",
                       security_mode="None", sampling_interval=0.02)
    proxy = ModuleProxy(hc30.module_type,
                        ModuleInstance(tag="HC30", type=hc30.module_type.name, endpoint=ep),
                        options=ProxyOptions(poll_interval=0.02, complete_poll=0.01))
    runtime = hc30.runtime
    await proxy.start()
    try:
        svc = proxy.services["Stirring"]
        # the self-completing procedure with its parameter: Start, Execute, Completed, Reset
        await svc.command(Command.START, procedure="HC30_Stirring_Duration",
                          parameters={"HC30_Duration_Stirring_Durration": 12.5})
        assert runtime.params["HC30_Duration_Stirring_Durration"] == pytest.approx(12.5)
        assert runtime.machines["Stirring"].procedure_cur == 2
        await svc.wait_for(State.COMPLETED, timeout=5)
        await svc.command(Command.RESET)
        await svc.wait_for(State.IDLE, timeout=5)
        # the continuous one runs until commanded: Start, Execute, Stop, Reset
        await svc.command(Command.START, procedure="HC30_Stirring_Continous")
        await svc.wait_for(State.EXECUTE, timeout=5)
        assert runtime.machines["Stirring"].state_cur == State.EXECUTE
        await svc.command(Command.STOP)
        await svc.wait_for(State.STOPPED, timeout=5)
        await svc.command(Command.RESET)
        await svc.wait_for(State.IDLE, timeout=5)
        assert runtime.machines["Stirring"].state_cur == State.IDLE
        assert hc30.pea.get("Stirring.CommandExt") == 0  # cleared after execution
    finally:
        await proxy.close()


async def test_live_check_catches_a_pea_that_misbehaves(tmp_path: Path) -> None:
    """CommandExt not cleared after Reset, a declared-writable node read-only: reported."""
    mt = builtin_types().get("PATAnalyzer")
    aml = tmp_path / "pat.aml"
    aml.write_bytes(export_manifest(mt))
    # transients kept 50 ms, not 0.2 s (the default is test_hc30_passes_the_live_check's)
    async with await serve_manifest(aml, insecure=True, transient_dwell=0.05) as pea:
        async def sticky(tag: str, value: Any) -> None:
            if tag == "Measure.CommandExt" and value == Command.RESET:
                await pea.pea.set(tag, value)  # after the runtime cleared it

        pea.pea.on_write(sticky)
        await pea.pea.set_read_only("Measure.ProcParamApplyExt")
        results = await check_manifest_async(aml, live=LiveOptions(pea.url, insecure=True,
                                                                   settle=0.2))
    failed = {(r.check, r.subject): r.detail for r in results if r.status == "fail"}
    assert "ProcParamApplyExt access r (declared readwrite)" in failed[("live-nodes", "Measure")]
    assert "Reset: CommandExt not cleared" in failed[("live-commands", "Measure in Idle")]
    assert "Reset: CommandExt not cleared" in failed[("live-commands", "Measure in Stopped")]
    assert ("live-nodes", "Interval") not in failed


async def test_unreachable_endpoint_is_one_failed_row() -> None:
    results = await check_manifest_async(
        HC30, live=LiveOptions("opc.tcp://127.0.0.1:1/none", insecure=True, timeout=1))
    live = [r for r in results if r.check.startswith("live")]
    assert [(r.check, r.status) for r in live] == [("live-connect", "fail")]


async def test_security_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SecurityError, match="--insecure"):
        await serve_manifest(HC30, pki=tmp_path)
    monkeypatch.setenv("PEA_PW", "admin")
    with pytest.raises(SecurityError, match="default"):
        await serve_manifest(HC30, username="op", password_env="PEA_PW", pki=tmp_path)
    monkeypatch.setenv("PEA_PW", "op")
    with pytest.raises(SecurityError, match="default"):
        await serve_manifest(HC30, username="op", password_env="PEA_PW", pki=tmp_path)
    monkeypatch.delenv("PEA_PW")
    with pytest.raises(SecurityError, match="not set"):
        await serve_manifest(HC30, username="op", password_env="PEA_PW", pki=tmp_path)
    with pytest.raises(ValueError, match="loopback"):
        await serve_manifest(HC30, host="0.0.0.0", insecure=True)
    monkeypatch.setenv("PEA_PW", "stir-8f2c-long")
    async with await serve_manifest(HC30, username="op", password_env="PEA_PW",
                                    pki=tmp_path) as pea:
        assert pea.secure and pea.certificate is not None
        ok = await check_manifest_async(HC30, checks=["live-connect", "live-nodes"], live=(
            LiveOptions(pea.url, username="op", password_env="PEA_PW", pki=tmp_path,
                        server_certificate=pea.certificate)))
        assert all(r.status == "pass" for r in ok), _failures(ok)
        assert {r.check for r in ok} == {"well-formed", "live-connect", "live-nodes"}
        anonymous = await check_manifest_async(HC30, checks=["live-connect"], live=(
            LiveOptions(pea.url, insecure=True, timeout=2)))
        assert [(r.check, r.status) for r in anonymous][1:] == [("live-connect", "fail")]
        monkeypatch.setenv("PEA_PW", "wrong-password")
        wrong = await check_manifest_async(HC30, checks=["live-connect"], live=(
            LiveOptions(pea.url, username="op", password_env="PEA_PW", pki=tmp_path,
                        server_certificate=pea.certificate, timeout=2)))
        assert [(r.check, r.status) for r in wrong][1:] == [("live-connect", "fail")]


"""An independent open-source PEA (MTPPy, see ``peer_pea.py``) driven by our POL (issue 15).

The peer is fresh for each test, generates its own MTP 1.0 manifest, and is imported without
a hand repair. Its deviations from 2658-4 are declared in the plant (``handshake:``), never
patched in the manifest; the standard policy refuses it with a message naming the policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import pytest_asyncio
from typer.testing import CliRunner

from modulecontrol.clock import Clock
from modulecontrol.descriptors import (
    Handshake,
    ModuleInstance,
    OpcUaBinding,
    OpcUaEndpoint,
    dump_model,
    load_handshake,
)
from modulecontrol.events import EventKind
from modulecontrol.mtp import (
    LiveOptions,
    check_manifest,
    check_manifest_async,
    import_manifest_report,
)
from modulecontrol.mtp.cli import app as mtp_app
from modulecontrol.mtpcore import CommandNotEnabled, HandshakePolicy
from modulecontrol.orchestrator import OperatorChannel, Orchestrator, RunResult
from modulecontrol.proxy import ModuleProxy, ProxyOptions, proxies_for
from modulecontrol.recipe import load_recipe
from modulecontrol.simulators import start_on_free_port
from modulecontrol.statemachine import Command
from tests.mtp.peer_pea import PeerPea

PARAM = "services_Dosing_procedures_Dose_procedure_parameters_FlowSP"
REPORT = "services_Dosing_procedures_Dose_report_values_Flow"
IDLE, COMPLETED = 16, 131072

RECIPE = f"""\
kind: Recipe
name: peer-cycle
plant: plant.yaml
procedure:
  - name: dosing
    steps:
      - name: dose
        service: {{module: PEER, service: Dosing, procedure: Dose,
                  parameters: {{{PARAM}: 2.5 L/min}}}}
      - name: flow_follows
        wait: {{until: "PEER.{REPORT} > 2.4 L/min"}}
        timeout: 1 min
      - name: complete
        service: {{module: PEER, service: Dosing, command: complete}}
      - name: reset
        service: {{module: PEER, service: Dosing, command: reset}}
"""
HANDSHAKE = ("{command_en: advisory, parameters: at_start, procedure: edge, "
             "state_codes: {32678: Resetting}}")


def _started(folder: Path, port: int) -> PeerPea:
    pea = PeerPea(folder, port)
    pea.start()
    return pea


@pytest_asyncio.fixture
async def peer(tmp_path: Path) -> AsyncIterator[PeerPea]:
    # MTPPy must be told its port: a free one, and another if it was taken before the bind
    pea = await asyncio.to_thread(start_on_free_port, partial(_started, tmp_path))
    try:
        yield pea
    finally:
        await asyncio.to_thread(pea.stop)


def endpoint(pea: PeerPea) -> OpcUaEndpoint:
    return OpcUaEndpoint(protocol="opcua", url=pea.url, security_policy="None",
                         security_mode="None", sampling_interval=0.05)


async def test_peer_manifest_imports_without_repair(peer: PeerPea) -> None:
    report = import_manifest_report(peer.manifest)
    mt = report.module_type
    assert report.manifest_version == "1.0.0"
    svc = mt.service("Dosing")
    proc = svc.procedure("Dose")
    assert (proc.id, proc.self_completing, proc.parameters, proc.report_values) == (
        1, False, [PARAM], [REPORT])
    param = mt.assembly(PARAM)
    assert (param.class_, param.min, param.max, param.unit) == ("AnaServParam", 0, 10, "L/min")
    binding = svc.bindings["CommandExt"].by_transport["opcua"]
    assert isinstance(binding, OpcUaBinding)
    assert binding.identifier == "ns=3;s=services.Dosing.state_machine.CommandExt"
    # MTPPy writes Access 1 for every item; the inputs the POL writes are widened, said once
    widened = [w.message for w in report.warnings if "imported as readwrite" in w.message]
    assert any("CommandExt" in w and "(ServiceControl)" in w for w in widened), widened
    assert binding.access == "readwrite"
    report_v = mt.assembly(REPORT).bindings["V"].by_transport["opcua"]
    assert isinstance(report_v, OpcUaBinding) and report_v.access == "read"


async def test_standard_command_en_refuses_the_peer_naming_the_policy(peer: PeerPea) -> None:
    mt = import_manifest_report(peer.manifest).module_type
    inst = ModuleInstance(tag="PEER", type=mt.name, endpoint=endpoint(peer),
                          handshake=Handshake(procedure="edge"))
    proxy = ModuleProxy(mt, inst, options=ProxyOptions(poll_interval=0.05, complete_poll=0.02))
    await proxy.start()
    try:
        with pytest.raises(CommandNotEnabled, match=r"handshake: \{command_en: advisory\} "
                           "for module PEER in the plant"):
            await proxy.services["Dosing"].command(Command.START)
    finally:
        await proxy.close()
    assert peer.state() == IDLE


async def run_recipe(peer: PeerPea, tmp_path: Path, recipe: str, handshake: str
                     ) -> tuple[Orchestrator, RunResult]:
    mt = import_manifest_report(peer.manifest).module_type
    (tmp_path / "peer.yaml").write_text(dump_model(mt))
    (tmp_path / "plant.yaml").write_text(
        "kind: Plant\nname: peer-rig\ntypes: [peer.yaml]\nmodules:\n"
        f"  - tag: PEER\n    type: {mt.name}\n{handshake}"
        f"    endpoint: {{protocol: opcua, url: '{peer.url}', security_policy: 'None', "
        "security_mode: 'None', sampling_interval: 0.05}\n")
    (tmp_path / "recipe.yaml").write_text(recipe)
    vr = load_recipe(tmp_path / "recipe.yaml")
    proxies = proxies_for(vr.plant, options=ProxyOptions(poll_interval=0.05,
                                                         complete_poll=0.02))
    for p in proxies.values():
        await p.start()
    try:
        orch = Orchestrator(vr, proxies, clock=Clock.scaled(1), tick=0.1,
                            operator=OperatorChannel(auto_answer="ok"))
        result = await asyncio.wait_for(orch.run(), 120)
    finally:
        for p in proxies.values():
            await p.close()
    return orch, result


async def test_refused_start_fails_the_step_with_what_to_do(peer: PeerPea,
                                                            tmp_path: Path) -> None:
    """Issue 15: the refused Start was no step failure, so the run could not hold or end."""
    recipe = RECIPE.replace("      - name: flow_follows", "        on_error: abort\n"
                            "      - name: flow_follows")
    orch, result = await run_recipe(peer, tmp_path, recipe,
                                    "    handshake: {procedure: edge}\n")
    assert result is RunResult.ABORTED
    [failed] = [e.message for e in orch.log.events if e.kind is EventKind.STEP_FAILED]
    assert "PEER.Dosing Start: " in failed
    assert "declare handshake: {command_en: advisory} for module PEER in the plant" in failed
    assert peer.state() == IDLE


async def test_recipe_runs_a_full_cycle_on_the_peer(peer: PeerPea, tmp_path: Path) -> None:
    orch, result = await run_recipe(peer, tmp_path, RECIPE, f"    handshake: {HANDSHAKE}\n")
    assert result is RunResult.COMPLETED, [e.message for e in orch.log.events][-10:]
    assert peer.state() == IDLE
    assert peer.service.flow_sp.get_v_out() == 2.5  # taken over at Start
    seen = [str(e.data["new"]) for e in orch.log.events
            if e.kind is EventKind.SERVICE_STATE and e.source == "PEER.Dosing"]
    steady = [s for s in seen if s in ("Execute", "Completed", "Idle")]
    assert steady == ["Execute", "Completed", "Idle"], seen
    notes = [e.message for e in orch.log.events if e.kind is EventKind.HANDSHAKE_DEVIATION]
    assert any("Start sent although CommandEn (0)" in n for n in notes), notes
    assert any(f"{PARAM} taken over at Start" in n for n in notes), notes


async def test_static_check_passes_the_peer_manifest(peer: PeerPea) -> None:
    results = check_manifest(peer.manifest)
    assert [r for r in results if r.status == "fail"] == []
    [health] = [r for r in results if r.check == "mandatory-attributes"
                and r.subject.startswith("ProcedureHealthView")]
    assert health.status == "pass" and "CommandInfo not required, added in 2022" in health.detail
    assert any(r.check == "namespace-uris" and r.status == "warn" for r in results)


async def test_live_check_names_the_peers_deviations_and_passes_with_its_policy(
        peer: PeerPea, tmp_path: Path) -> None:
    """The live check against an independent PEA: with the standard handshake it names where
    the peer departs from 2658-4; with the policy a plant would declare for it (the file
    ``mtp check --handshake`` reads), every check passes and each tolerance is a warning."""
    def options(handshake: str | None) -> LiveOptions:
        policy = tmp_path / "peer-handshake.yaml"
        policy.write_text(f"{handshake}\n")
        # settle: how long each refused command (some 50 in the full check) is given to
        # show an effect, since with command: edge CommandExt is not cleared to watch. The
        # peer sees writes every 50 ms (peer_pea.WRITES_SEEN) and MTPPy drops a command its
        # CommandEn does not permit there and then, so three of its write cycles are ample;
        # a late effect would still upset the commands sent after it
        return LiveOptions(peer.url, insecure=True, timeout=3, settle=0.15,
                           handshake=HandshakePolicy() if handshake is None
                           else load_handshake(policy).policy())

    few = ["live-parameter-handshake", "live-transients"]
    plain = await check_manifest_async(peer.manifest, checks=few, live=options(None))
    fails = {(r.check, r.subject): r.detail for r in plain if r.status == "fail"}
    # a fresh peer enables no command in Idle: the check says which policy would drive it
    assert "declare handshake: {command_en: advisory}" in fails[("live-transients", "Dosing")]
    param, beyond = sorted((r for r in plain if r.check == "live-parameter-handshake"),
                           key=lambda r: r.subject)
    assert param.status == "pass" and "VReq follows VExt" in param.detail, param
    # MTPPy answers a VExt beyond VMax with a good status, though it never takes it over
    assert beyond.status == "warn" and beyond.subject.endswith("out of range"), beyond
    assert "VExt=20.0 outside 0.0..10.0 accepted with a good status (not applied)" in (
        beyond.detail)

    lenient = ("{command_en: advisory, parameters: at_start, procedure: edge, "
               "command: edge}")
    [cycle] = [r for r in await check_manifest_async(
        peer.manifest, checks=["live-transients"], live=options(lenient))
        if r.check == "live-transients"]
    # 32678 is no state code: without the policy's state_codes, Resetting is never seen
    assert cycle.status == "fail" and "Resetting (Completed -> Idle)" in cycle.detail, cycle

    declared = await check_manifest_async(peer.manifest, live=options(
        HANDSHAKE.replace("procedure: edge,", "procedure: edge, command: edge,")))
    assert [r for r in declared if r.status == "fail"] == []  # out of range: a warning
    checks = {r.check for r in declared if r.status == "pass"}
    assert {"live-commands", "live-procedures", "live-transients",
            "live-parameter-handshake"} <= checks, checks
    used = " ".join(r.detail for r in declared if r.check == "live-handshake")
    for tolerance in ("command: edge", "state_codes", "parameters: at_start"):
        assert tolerance in used, (tolerance, used)


def test_handshake_file_errors_are_located(tmp_path: Path) -> None:
    policy = tmp_path / "h.yaml"
    policy.write_text("command_en: advisory\ncommand: pulse\n")
    result = CliRunner().invoke(mtp_app, ["check", str(tmp_path / "x.aml"), "--endpoint",
                                          "opc.tcp://127.0.0.1:1", "--insecure",
                                          "--handshake", str(policy)])
    assert result.exit_code == 1
    assert f"{policy}:2" in result.output and "command" in result.output, result.output


def test_handshake_needs_the_live_check(tmp_path: Path) -> None:
    policy = tmp_path / "h.yaml"
    policy.write_text("command_en: advisory\n")
    result = CliRunner().invoke(mtp_app, ["check", str(tmp_path / "x.aml"),
                                          "--handshake", str(policy)])
    assert result.exit_code == 2 and "give --endpoint too" in result.output, result.output

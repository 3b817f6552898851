"""Every built-in OPC UA module type, served by the simulators (serve_pea with its process
model) and served virtually from its exported manifest, passes the live check."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from modulecontrol.clock import Clock
from modulecontrol.descriptors import OpcUaEndpoint, load_plant
from modulecontrol.mtp import (
    CheckResult,
    LiveOptions,
    check_manifest_async,
    export_manifest,
    format_results,
    serve_manifest,
)
from modulecontrol.simulators import Credentials, SimulatedPlant, astart_on_free_port
from modulecontrol.simulators._opcua_server import serve_pea
from tests.mtp.checks import not_clean

PLANT = Path(__file__).resolve().parents[2] / "recipes" / "lomustine" / "plant.yaml"
MODULES = {"R1": "CoilReactor", "PAT1": "PATAnalyzer", "CR1": "MSMPRCrystallizer"}


def _bad(results: list[CheckResult]) -> str:
    return format_results([r for r in results if r.status != "pass"])


async def _simulated_then_virtual(plant: SimulatedPlant, tag: str, tmp: Path,
                                  monkeypatch: pytest.MonkeyPatch
                                  ) -> tuple[list[CheckResult], list[CheckResult]]:
    view = plant.view(tag)
    ep = plant.config.instance(tag).endpoint
    assert isinstance(ep, OpcUaEndpoint) and ep.username is not None
    pki = tmp / "pki"
    pea, runtime = await astart_on_free_port(  # a port taken before the bind: another
        lambda port: serve_pea(view, ep, "127.0.0.1", port, f"/modulecontrol/{tag}", pki))
    try:
        # the simulated PEA is secured (the reference plant's default): log in as its
        # controller with the password generated into the pki folder
        creds = Credentials(pki)
        monkeypatch.setenv(f"MC_T_{tag}", creds.password(tag, ep.username))
        aml = tmp / f"{tag}.aml"
        aml.write_bytes(export_manifest(view.module_type, endpoint_url=pea.url))
        simulated = await check_manifest_async(aml, live=LiveOptions(
            pea.url, username=ep.username, password_env=f"MC_T_{tag}", pki=tmp / "client",
            server_certificate=creds.server_certificate(tag)[0]))
    finally:
        await runtime.close()
        await pea.stop()
    # the virtual PEA keeps its transient states 50 ms, not 0.2 s: the live check's
    # subscription queues every state it publishes (test_mtp_serve.py checks the default)
    async with await serve_manifest(aml, insecure=True, transient_dwell=0.05) as virtual:
        assert virtual.url.endswith(f"/modulecontrol/{tag}")  # the manifest's endpoint path
        served = await check_manifest_async(aml, live=LiveOptions(virtual.url, insecure=True))
    return simulated, served


async def test_builtin_opcua_types_pass_the_live_check(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    plant = SimulatedPlant.from_config(load_plant(PLANT), Clock.fast())
    assert {t: plant.view(t).module_type.name for t in MODULES} == MODULES
    outcomes = await asyncio.gather(
        *(_simulated_then_virtual(plant, tag, tmp_path, monkeypatch) for tag in MODULES))
    for tag, (simulated, virtual) in zip(MODULES, outcomes, strict=True):
        for results in (simulated, virtual):
            assert not not_clean(results), f"{tag}:\n{_bad(not_clean(results))}"
            checks = {r.check for r in results}
            assert {"live-nodes", "live-commands", "live-parameters"} <= checks
            states = [r.subject.split(" in ")[1] for r in results if r.check == "live-commands"]
            assert states == ["Idle", "Execute", "Paused", "Held", "Completed", "Stopped",
                              "Aborted"], tag
        # the simulator's runtime drove its model: same verdicts as the virtual PEA
        def rows(results: list[CheckResult]) -> list[tuple[str, str]]:
            return [(r.check, r.subject) for r in results if r.check != "live-connect"]

        assert rows(simulated) == rows(virtual)


@pytest.mark.parametrize("tag", list(MODULES))
def test_exported_manifest_names_every_service(tag: str) -> None:
    """A guard for the loop above: the export carries services, procedures, parameters."""
    plant_cfg = load_plant(PLANT)
    mt = plant_cfg.type_of(tag)
    text = export_manifest(mt).decode()
    for svc in mt.services:
        assert f'Name="{svc.name}"' in text
        for proc in svc.procedures:
            assert f'Name="{proc.name}"' in text

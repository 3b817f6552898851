"""A vendor module plugged in by its manifest alone: HC30 imported, served as a virtual PEA,
and driven through a full service cycle by a recipe run by our orchestrator."""

from __future__ import annotations

import asyncio
from pathlib import Path

from modulecontrol.clock import Clock
from modulecontrol.descriptors import dump_model
from modulecontrol.events import EventKind
from modulecontrol.mtp import import_manifest, serve_manifest
from modulecontrol.orchestrator import OperatorChannel, Orchestrator, RunResult
from modulecontrol.proxy import ProxyOptions, proxies_for
from modulecontrol.recipe import load_recipe

HC30 = Path(__file__).parent / "data" / "HC30_Stirring_V8.aml"

RECIPE = """\
kind: Recipe
name: hc30-cycle
plant: plant.yaml
procedure:
  - name: stirring
    steps:
      - name: timed_stirring
        service: {module: HC30, service: Stirring, procedure: HC30_Stirring_Duration,
                  parameters: {HC30_Duration_Stirring_Durration: 12.5}}
        timeout: 5 min
      - name: reset_after_timed
        service: {module: HC30, service: Stirring, command: reset}
      - name: continuous_stirring
        service: {module: HC30, service: Stirring, procedure: HC30_Stirring_Continous}
      - name: stir
        wait: {duration: 2 min}
      - name: stop
        service: {module: HC30, service: Stirring, command: stop}
      - name: reset
        service: {module: HC30, service: Stirring, command: reset}
"""


async def test_recipe_drives_imported_vendor_pea(tmp_path: Path) -> None:
    mt = import_manifest(HC30)
    (tmp_path / "hc30.yaml").write_text(dump_model(mt))
    async with await serve_manifest(HC30, insecure=True, self_complete_after=0.3) as pea:
        (tmp_path / "plant.yaml").write_text(
            "kind: Plant\nname: vendor-rig\ntypes: [hc30.yaml]\nmodules:\n"
            f"  - tag: HC30\n    type: {mt.name}\n    endpoint: {{protocol: opcua, "
            f"url: '{pea.url}', security_policy: 'None', security_mode: 'None', "
            "sampling_interval: 0.02}\n")
        (tmp_path / "recipe.yaml").write_text(RECIPE)
        vr = load_recipe(tmp_path / "recipe.yaml")
        proxies = proxies_for(vr.plant, options=ProxyOptions(poll_interval=0.02,
                                                             complete_poll=0.01))
        for p in proxies.values():
            await p.start()
        try:
            orch = Orchestrator(vr, proxies, clock=Clock.scaled(60), tick=1.0,
                                operator=OperatorChannel(auto_answer="ok"))
            result = await asyncio.wait_for(orch.run(), 60)
        finally:
            for p in proxies.values():
                await p.close()
        runtime = pea.runtime
        assert result is RunResult.COMPLETED
        assert runtime.params["HC30_Duration_Stirring_Durration"] == 12.5
        seen = [str(e.data["new"]) for e in orch.log.events
                if e.kind is EventKind.SERVICE_STATE and e.source == "HC30.Stirring"]
        # the proxy sees the PEA's states as it polls them: a transient state (Starting,
        # Completing, ...) may or may not be caught, the quiescent ones must all be, in order
        transient = {"Starting", "Completing", "Stopping", "Resetting", "Aborting", "Holding",
                     "Unholding", "Pausing", "Resuming"}
        steady = [s for s in seen if s not in transient]
        assert steady == ["Execute", "Completed", "Idle", "Execute", "Stopped", "Idle"], seen
        assert pea.pea.get("Stirring.CommandExt") == 0

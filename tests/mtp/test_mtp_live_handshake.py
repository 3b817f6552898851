"""The live check's parameter handshake and transient states against PEAs that get them
right (our virtual PEA) and wrong (the same PEA with its behaviour bent on the server side).

What 2658-4 says and a POL written from it relies on: ApplyEn is true while an apply is
possible, VReq follows VExt on write, nothing is applied before ApplyExt, a VExt outside
VMin..VMax is refused and never applied, and the transient states are published.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from modulecontrol.descriptors import builtin_types
from modulecontrol.mtp import (
    LiveOptions,
    VirtualPea,
    check_manifest_async,
    export_manifest,
    serve_manifest,
)
from modulecontrol.mtp._results import CheckResult
from modulecontrol.mtpcore import HandshakePolicy

CHECKS = ["live-parameter-handshake", "live-transients"]


@pytest_asyncio.fixture
async def coil(tmp_path: Path) -> AsyncIterator[tuple[VirtualPea, Path]]:
    path = tmp_path / "coil.aml"
    path.write_bytes(export_manifest(builtin_types().get("CoilReactor")))
    async with await serve_manifest(path, insecure=True, self_complete_after=0) as pea:
        yield pea, path


async def check(pea: VirtualPea, path: Path) -> dict[str, CheckResult]:
    results = await check_manifest_async(
        path, checks=CHECKS, live=LiveOptions(pea.url, insecure=True, timeout=3, settle=0.4))
    return {f"{r.check} {r.subject}": r for r in results if r.check in CHECKS}


async def test_the_virtual_pea_passes(coil: tuple[VirtualPea, Path]) -> None:
    pea, path = coil
    results = await check(pea, path)
    bad = {k: r.detail for k, r in results.items() if r.status != "pass"}
    assert bad == {}
    temp = results["live-parameter-handshake Tempering.TempSP"].detail
    assert "ApplyEn true" in temp and "VReq follows VExt" in temp
    assert "not applied before ApplyExt" in temp and "refused" in temp
    cycle = results["live-transients Tempering"].detail
    assert "Starting -> Execute" in cycle and "Resetting -> Idle" in cycle


async def test_a_pea_that_bends_the_parameter_handshake_fails(
        coil: tuple[VirtualPea, Path]) -> None:
    pea, path = coil
    server = pea.pea
    await server.set("TempSP.VMax", 10_000.0)  # its own range wider than its manifest's

    async def bent(tag: str, value: Any) -> None:
        if tag.startswith("TempSP."):  # never enables an apply
            await server.set("TempSP.ApplyEn", False)
        if tag == "TempSP.VExt":  # applied at once, VReq left behind
            await server.set("TempSP.VReq", -1.0)
            await server.set("TempSP.VOut", value)
            await server.set("TempSP.VFbk", value)

    server.on_write(bent)
    results = await check(pea, path)
    detail = results["live-parameter-handshake Tempering.TempSP"]
    assert detail.status == "fail"
    assert "ApplyEn is False" in detail.detail
    assert "VReq stays -1.0 after VExt=" in detail.detail
    assert "without ApplyExt" in detail.detail
    assert "outside -20.0..150.0 taken" in detail.detail, detail.detail


async def test_a_command_clearing_that_cannot_be_watched_is_waited_only_after_a_refusal(
        tmp_path: Path) -> None:
    """With ``command: edge`` the PEA leaves CommandExt set: a refused command is given
    ``settle`` to show an effect, an accepted one has shown its effect (its state) and is
    not waited on (the live check against MTPPy spent a third of its time there)."""
    path = tmp_path / "coil.aml"
    path.write_bytes(export_manifest(builtin_types().get("CoilReactor")))
    settle = 0.011  # told from the check's other waits by its value
    settled: list[float] = []

    async def sleep(seconds: float) -> None:
        if seconds == settle:
            settled.append(seconds)
        await asyncio.sleep(seconds)

    async with await serve_manifest(path, insecure=True, self_complete_after=0,
                                    transient_dwell=0) as pea:
        results = await check_manifest_async(path, checks=["live-commands"], live=LiveOptions(
            pea.url, insecure=True, timeout=3, settle=settle, sleep=sleep,
            handshake=HandshakePolicy(command="edge")))
    commands = [r for r in results if r.check == "live-commands"]
    assert [r for r in commands if r.status != "pass"] == []
    refused = [int(m.group(1)) for r in commands
               if (m := re.search(r"; (\d+) others ignored", r.detail))]
    assert len(refused) == len(commands) == 7
    assert len(settled) == sum(refused) > 0

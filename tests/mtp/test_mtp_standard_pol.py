"""A POL written only from VDI/VDE/NAMUR 2658 drives our virtual PEA (issue 15, "done when").

Nothing of modulecontrol's MTP side is used on the client's side: the manifest is read with
ElementTree (data assembly -> attribute -> ID link -> OPCUAItem), the handshake is raw asyncua
writes and a subscription, as an independent POL would do it. So the test proves the served
PEA behaves as the standard says, not as our own ServiceClient happens to expect:

* VReq follows VExt on write (Automatic/External), before any Apply;
* ApplyEn is true while an apply is possible, and ApplyExt carries VReq over to VOut/VFbk;
* a VExt outside VMin..VMax is refused with BadOutOfRange and changes nothing;
* the transient states (Starting, Completing, Resetting) are published, not skipped.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.uaerrors import BadOutOfRange

from modulecontrol.descriptors import builtin_types
from modulecontrol.mtp import VirtualPea, export_manifest, serve_manifest
from tests._poll import until

pytestmark = pytest.mark.asyncio(loop_scope="module")

CAEX = "{http://www.dke.de/CAEX}"
# 2658-4 codes, written here from the standard rather than imported
IDLE, STARTING, EXECUTE, COMPLETING, COMPLETED, RESETTING = 16, 8, 64, 65536, 131072, 32768
START, COMPLETE, RESET = 4, 1024, 2
ID_KINDS = {"xs:string": "s", "xs:int": "i", "xs:unsignedInt": "i", "xs:ID": "g",
            "xs:base64Binary": "b"}  # an OPCUAItem's Identifier type -> node id kind
WAIT = 10.0  # seconds any single confirmation may take (bounds a hang, asserts no timing)


def manifest_items(data: bytes) -> dict[str, tuple[str, str]]:
    """``Assembly.Attribute`` -> (namespace URI, identifier), read the way 2658 links them."""
    root = ET.fromstring(data)
    items: dict[str, tuple[str, str]] = {}
    by_id: dict[str, tuple[str, str]] = {}
    for ei in root.iter(f"{CAEX}ExternalInterface"):
        if ei.get("RefBaseClassPath", "").endswith("OPCUAItem"):
            attrs = {a.get("Name"): a for a in ei.findall(f"{CAEX}Attribute")}
            ident = attrs["Identifier"]
            kind = ID_KINDS[ident.get("AttributeDataType", "xs:string")]
            by_id[ei.get("ID", "")] = (attrs["Namespace"].findtext(f"{CAEX}Value") or "",
                                       f"{kind}={ident.findtext(f'{CAEX}Value')}")
    for ie in root.iter(f"{CAEX}InternalElement"):
        if "/DataAssembly/" not in ie.get("RefBaseSystemUnitPath", ""):
            continue
        for a in ie.findall(f"{CAEX}Attribute"):
            link = a.findtext(f"{CAEX}Value") or ""
            if link in by_id:
                items[f"{ie.get('Name')}.{a.get('Name')}"] = by_id[link]
    return items


class StandardPol:
    """Reads and writes manifest items by name over a plain asyncua session."""

    def __init__(self, client: Client, items: dict[str, tuple[str, str]]) -> None:
        self.client = client
        self.items = items
        self._ns: list[str] = []

    async def node(self, tag: str) -> Node:
        if not self._ns:
            self._ns = await self.client.get_namespace_array()
        uri, identifier = self.items[tag]
        return self.client.get_node(f"ns={self._ns.index(uri)};{identifier}")

    async def read(self, tag: str) -> Any:
        return await (await self.node(tag)).read_value()

    async def write(self, tag: str, value: Any) -> None:
        node = await self.node(tag)
        vtype = await node.read_data_type_as_variant_type()
        await node.write_value(ua.DataValue(ua.Variant(value, vtype)))

    async def until(self, tag: str, want: Any) -> None:
        async with asyncio.timeout(WAIT):
            while True:
                if await self.read(tag) == want:
                    return
                await asyncio.sleep(0.02)

    async def to_automatic_external(self, obj: str) -> None:
        """2658-4 with StateChannel/SrcChannel false: edge requests on the operator channel."""
        await self.write(f"{obj}.StateAutOp", True)
        await self.until(f"{obj}.StateAutAct", True)
        await self.write(f"{obj}.SrcExtOp", True)
        await self.until(f"{obj}.SrcExtAct", True)


class StateLog:
    """Every StateCur the PEA publishes (queued server side, so none is lost to timing)."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        if not self.seen or self.seen[-1] != val:
            self.seen.append(int(val))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def coil(tmp_path_factory: pytest.TempPathFactory
               ) -> AsyncIterator[tuple[VirtualPea, dict[str, tuple[str, str]]]]:
    data = export_manifest(builtin_types().get("CoilReactor"))
    path = tmp_path_factory.mktemp("pol") / "coil.aml"
    path.write_bytes(data)
    async with await serve_manifest(path, insecure=True, self_complete_after=0) as pea:
        yield pea, manifest_items(data)


async def test_parameter_handshake_as_the_standard_says(
        coil: tuple[VirtualPea, dict[str, tuple[str, str]]]) -> None:
    pea, items = coil
    async with Client(pea.url, timeout=5) as client:
        pol = StandardPol(client, items)
        await pol.to_automatic_external("TempSP")
        assert await pol.read("TempSP.ApplyEn") is True
        before = await pol.read("TempSP.VOut")
        await pol.write("TempSP.VExt", 60.0)
        await pol.until("TempSP.VReq", 60.0)  # VReq follows VExt on write
        assert await pol.read("TempSP.VOut") == before  # not applied before ApplyExt
        await pol.write("TempSP.ApplyExt", True)
        await pol.until("TempSP.VFbk", 60.0)
        assert await pol.read("TempSP.VOut") == 60.0
        vmax = await pol.read("TempSP.VMax")
        assert vmax == 150.0
        with pytest.raises(BadOutOfRange):
            await pol.write("TempSP.VExt", 500.0)
        await pol.write("TempSP.ApplyExt", True)
        await pol.until("TempSP.ApplyExt", False)
        for attr in ("VExt", "VReq", "VOut", "VFbk"):
            assert await pol.read(f"TempSP.{attr}") == 60.0, attr


async def test_service_cycle_publishes_transient_states(
        coil: tuple[VirtualPea, dict[str, tuple[str, str]]]) -> None:
    pea, items = coil
    async with Client(pea.url, timeout=5) as client:
        pol = StandardPol(client, items)
        await pol.to_automatic_external("Tempering")
        await pol.to_automatic_external("TempSP")
        await pol.write("TempSP.VExt", 42.0)
        await pol.write("TempSP.ApplyExt", True)
        await pol.until("TempSP.VFbk", 42.0)
        log = StateLog()
        sub = await client.create_subscription(50, log)
        await sub.subscribe_data_change(await pol.node("Tempering.StateCur"), queuesize=20)
        await pol.until("Tempering.StateCur", IDLE)
        await pol.write("Tempering.ProcedureExt", 1)
        await pol.until("Tempering.ProcedureReq", 1)
        for command, final in ((START, EXECUTE), (COMPLETE, COMPLETED), (RESET, IDLE)):
            assert await pol.read("Tempering.CommandEn") & command
            await pol.write("Tempering.CommandExt", command)
            await pol.until("Tempering.StateCur", final)
        assert await pol.read("Tempering.ProcedureCur") in (0, 1)
        await until(lambda: log.seen[-1:] == [IDLE] and len(log.seen) >= 7, WAIT)
        await sub.delete()
        assert log.seen == [IDLE, STARTING, EXECUTE, COMPLETING, COMPLETED, RESETTING, IDLE]

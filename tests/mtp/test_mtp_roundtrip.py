"""Export -> import gives the MTP projection of a module type; exported files are sound CAEX.

There is no CAEX 3.0 XSD on this machine, so structure is checked here directly: well-formed,
the required CAEX elements and attributes, unique IDs, every RefID / IDLink / class path
resolving inside the file.
"""

from __future__ import annotations

import re
import string
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modulecontrol.descriptors import ModuleType, OpcUaBinding, builtin_types
from modulecontrol.mtp import (
    check_manifest,
    export_manifest,
    format_results,
    import_manifest,
    mtp_projection,
)
from modulecontrol.mtpcore import (
    DA_ATTRIBUTES,
    PARAM_CLASSES,
    SERVICE_CONTROL_ATTRIBUTES,
    value_kind,
)
from tests.mtp.checks import not_clean

NS = "{http://www.dke.de/CAEX}"
BUILTIN = builtin_types()
OPCUA_TYPES = [n for n in BUILTIN if BUILTIN.get(n).opcua is not None]


def _roundtrip(mt: ModuleType, tmp: Path) -> ModuleType:
    path = tmp / f"{mt.name}.aml"
    path.write_bytes(export_manifest(mt, endpoint_url="opc.tcp://127.0.0.1:4999"))
    return import_manifest(path)


def _structure(data: bytes) -> None:
    """Assert what the CAEX 3.0 schema and the MTP linking rules require of our output."""
    root = ET.fromstring(data)
    assert root.tag == f"{NS}CAEXFile"
    assert root.get("SchemaVersion") == "3.0"
    assert root.get("FileName", "").endswith(".aml")
    sdi = root.find(f"{NS}SourceDocumentInformation")
    assert sdi is not None
    for attr in ("OriginName", "OriginID", "OriginVersion", "LastWritingDateTime"):
        assert sdi.get(attr), attr
    order = [c.tag.removeprefix(NS) for c in root]
    rank = [
        "AdditionalInformation",
        "SuperiorStandardVersion",
        "SourceDocumentInformation",
        "InstanceHierarchy",
        "InterfaceClassLib",
        "SystemUnitClassLib",
        "AttributeTypeLib",
    ]
    assert [rank.index(t) for t in order] == sorted(rank.index(t) for t in order)

    ids: list[str] = []
    for el in root.iter():
        tag = el.tag.removeprefix(NS)
        if tag in ("InternalElement", "ExternalInterface", "InstanceHierarchy"):
            assert el.get("Name"), tag
            assert el.get("ID"), tag
            ids.append(el.get("ID", ""))
        if tag in ("Attribute", "SystemUnitClass", "InterfaceClass", "AttributeType"):
            assert el.get("Name"), tag
    assert len(ids) == len(set(ids)), "duplicate IDs"

    defined: set[str] = set()

    def walk(node: ET.Element, prefix: str, cls_tag: str) -> None:
        for c in node.findall(f"{NS}{cls_tag}"):
            path = f"{prefix}/{c.get('Name')}"
            defined.add(path)
            walk(c, path, cls_tag)

    for lib_tag, cls_tag in (
        ("SystemUnitClassLib", "SystemUnitClass"),
        ("InterfaceClassLib", "InterfaceClass"),
    ):
        for lib in root.findall(f"{NS}{lib_tag}"):
            walk(lib, lib.get("Name", ""), cls_tag)

    items: dict[str, ET.Element] = {}
    refids_da: set[str] = set()
    idlinks: list[str] = []
    refids_used: list[tuple[str, str]] = []
    for ih in root.findall(f"{NS}InstanceHierarchy"):
        for el in ih.iter():
            path = el.get("RefBaseSystemUnitPath") or el.get("RefBaseClassPath")
            if path:
                assert path in defined, f"class path {path} does not resolve"
            if path and path.endswith("/OPCUAItem"):
                items[el.get("ID", "")] = el
            for a in el.findall(f"{NS}Attribute"):
                ref_type = a.get("RefAttributeType", "")
                value = a.findtext(f"{NS}Value") or ""
                if ref_type.endswith("IDLinkAttributeType"):
                    idlinks.append(value)
                elif ref_type.endswith("RefIDAttributeType"):
                    if path and "/DataAssembly/" in path:
                        refids_da.add(value)
                    else:
                        refids_used.append((path or "", value))
    assert bool(items) == bool(idlinks)
    assert all(i in items for i in idlinks), "an IDLink does not resolve"
    for path, ref in refids_used:
        assert ref in refids_da, f"RefID of {path} does not resolve"
    for item in items.values():
        got = {a.get("Name"): a.findtext(f"{NS}Value") for a in item.findall(f"{NS}Attribute")}
        assert got.get("Namespace") and got.get("Identifier")
        assert got.get("Access") in ("1", "2", "3")
    endpoint = [
        a.findtext(f"{NS}Value") for a in root.iter(f"{NS}Attribute") if a.get("Name") == "Endpoint"
    ]
    assert endpoint == ["opc.tcp://127.0.0.1:4999"]


@pytest.mark.parametrize("name", list(BUILTIN))
def test_builtin_types_round_trip(name: str, tmp_path: Path) -> None:
    mt = BUILTIN.get(name)
    back = _roundtrip(mt, tmp_path)
    assert back == mtp_projection(mt)
    _structure(export_manifest(mt, endpoint_url="opc.tcp://127.0.0.1:4999"))
    results = check_manifest(tmp_path / f"{mt.name}.aml")
    assert not not_clean(results), format_results(not_clean(results))
    rules = {r.subject for r in results if r.check == "structure" and r.status == "pass"}
    wanted = {"2658-1 table 36 #7a", "2658-1 table 36 #9", "2658-1 tables 26/29"}
    if any(s.procedures for s in mt.services):
        wanted.add("2658-4 table 30")
    assert wanted <= rules


def test_opcua_builtins_present() -> None:
    assert {"CoilReactor", "MSMPRCrystallizer", "PATAnalyzer"} <= set(OPCUA_TYPES)


def test_projection_makes_default_bindings_explicit() -> None:
    mt = BUILTIN.get("CoilReactor")
    proj = mtp_projection(mt)
    tsp = proj.assembly("TempSP")
    assert set(tsp.bindings) == set(DA_ATTRIBUTES["AnaServParam"]) - {"TagName", "TagDescription"}
    vext = tsp.bindings["VExt"].get("opcua", OpcUaBinding)
    assert vext is not None
    assert (vext.namespace_uri, vext.identifier, vext.access) == (
        "urn:modulecontrol:pea:coilreactor",
        "s=TempSP.VExt",
        "readwrite",
    )
    vout = tsp.bindings["VOut"].get("opcua", OpcUaBinding)
    assert vout is not None and vout.access == "read"
    svc = proj.service("Tempering")
    assert set(svc.bindings) == set(SERVICE_CONTROL_ATTRIBUTES) - {"TagName", "TagDescription"}
    assert proj.simulator is None and proj.ports == []
    assert (tsp.unit, tsp.min, tsp.max, tsp.default) == ("degC", -20.0, 150.0, 25.0)


def test_export_is_deterministic_apart_from_the_timestamp() -> None:
    mt = BUILTIN.get("PATAnalyzer")
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert export_manifest(mt, written=when) == export_manifest(mt, written=when)
    assert b'LastWritingDateTime="2026-01-02T03:04:05+00:00"' in export_manifest(mt, written=when)


def test_export_refuses_control_characters() -> None:
    mt = BUILTIN.get("PATAnalyzer").model_copy(update={"description": "bad\x01text"})
    with pytest.raises(ValueError, match="control characters"):
        export_manifest(mt)


def _as_manifest_1_0(data: bytes) -> str:
    """Rewrite our 1.1.0 output the way older (manifest 1.0.0, CAEX 2.15) generators write:
    no namespace, SchemaVersion 2.15, braces around IDs, ``ProcedureID``."""
    text = data.decode("utf-8")
    text = text.replace(' xmlns="http://www.dke.de/CAEX"', "")
    text = text.replace('SchemaVersion="3.0"', 'SchemaVersion="2.15"')
    text = text.replace('Version="1.1.0"', 'Version="1.0.0"')
    text = text.replace('Name="ProcedureId"', 'Name="ProcedureID"')
    return re.sub(r'ID="([0-9a-f-]{36})"', r'ID="{\1}"', text)


@pytest.mark.parametrize("name", OPCUA_TYPES)
def test_manifest_1_0_0_reads_the_same(name: str, tmp_path: Path) -> None:
    mt = BUILTIN.get(name)
    path = tmp_path / "old.aml"
    path.write_text(_as_manifest_1_0(export_manifest(mt)), encoding="utf-8")
    assert import_manifest(path) == mtp_projection(mt)
    results = check_manifest(path)
    assert not not_clean(results), format_results(not_clean(results))
    assert [r.status for r in results if r.check == "structure"] == ["skip"]
    assert results[1].detail == "CAEX 2.15, manifest 1.0.0"


# ---------------------------------------------------------------- generated module types

_NAMES = st.from_regex(r"[A-Z][A-Za-z0-9_]{0,8}", fullmatch=True)
_TEXT = st.text(alphabet=string.ascii_lowercase + " <>&'\"äß°µ", max_size=24)
_CLASSES = sorted(
    {
        "AnaView",
        "BinView",
        "DIntView",
        "StringView",
        "AnaMon",
        "BinMon",
        "AnaDrv",
        "BinVlv",
        "AnaVlv",
        "PIDCtrl",
        "AnaMan",
        "BinMan",
        "MonBinDrv",
        "BinProcessValueIn",
        "ProcedureHealthView",
        "PeaInformationLabel",
    }
    | PARAM_CLASSES
)
_UNITS = ["", "degC", "mL/min", "bar", "s", "%", "K/min", "rpm"]
_FLOATS = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
_BINDING = st.builds(
    lambda ns, ident, access: {
        "opcua": {"namespace_uri": ns, "identifier": ident, "access": access}
    },
    st.sampled_from(["urn:pea:a", "http://example.org/UA/", None]),
    st.one_of(
        st.from_regex(r"s=[A-Za-z][A-Za-z0-9.\"\[\]_]{0,20}", fullmatch=True),
        st.integers(1, 10**6).map(lambda i: f"i={i}"),
        st.uuids().map(lambda u: f"g={u}"),
        st.from_regex(r"ns=[0-9];s=[A-Za-z]{1,8}", fullmatch=True),
    ),
    st.sampled_from(["read", "write", "readwrite"]),
)


@st.composite
def _assembly(draw: st.DrawFn, name: str) -> dict[str, Any]:
    cls = draw(st.sampled_from(_CLASSES))
    da: dict[str, Any] = {"name": name, "class": cls, "description": draw(_TEXT)}
    kind = value_kind(cls)
    if kind == "number":
        da["unit"] = draw(st.sampled_from(_UNITS))
        lo, hi = sorted([draw(_FLOATS), draw(_FLOATS)])
        if draw(st.booleans()):
            da["min"], da["max"] = lo, hi
            if cls in PARAM_CLASSES:
                if cls == "DIntServParam":
                    da["default"] = float(int(lo)) if lo <= int(lo) <= hi else None
                else:
                    da["default"] = draw(st.floats(min_value=lo, max_value=hi))
        if draw(st.booleans()):
            da["scale_min"], da["scale_max"] = lo, hi
    elif kind == "bool":
        da["state0"], da["state1"] = draw(st.sampled_from([("off", "on"), ("closed", "open")]))
        if cls in PARAM_CLASSES:
            da["default"] = draw(st.booleans())
    elif cls in PARAM_CLASSES:
        da["default"] = draw(_TEXT)
    attrs = DA_ATTRIBUTES[cls]
    chosen = draw(st.lists(st.sampled_from(attrs), unique=True, max_size=3))
    da["bindings"] = {a: draw(_BINDING) for a in chosen}
    return {k: v for k, v in da.items() if v is not None}


@st.composite
def module_types(draw: st.DrawFn) -> ModuleType:
    names = draw(st.lists(_NAMES, min_size=1, max_size=6, unique=True))
    das = [draw(_assembly(n)) for n in names]
    params = [d["name"] for d in das if d["class"] in PARAM_CLASSES]
    services = []
    snames = draw(st.lists(_NAMES, max_size=2, unique=True))  # may equal assembly names
    for s in snames:
        # procedure names drawn partly from assembly names, so some link a health view
        pnames = draw(
            st.lists(st.one_of(_NAMES, st.sampled_from(names)), min_size=1, max_size=3, unique=True)
        )
        ids = draw(
            st.lists(
                st.integers(1, 2**31 - 1), min_size=len(pnames), max_size=len(pnames), unique=True
            )
        )
        default_at = draw(st.integers(-1, len(pnames) - 1))
        procs = [
            {
                "name": p,
                "id": i,
                "description": draw(_TEXT),
                "self_completing": draw(st.booleans()),
                "default": k == default_at,
                "parameters": draw(st.lists(st.sampled_from(params), unique=True))
                if params
                else [],
                "report_values": draw(st.lists(st.sampled_from(names), unique=True, max_size=3)),
            }
            for k, (p, i) in enumerate(zip(pnames, ids, strict=True))
        ]
        chosen = draw(
            st.lists(st.sampled_from(SERVICE_CONTROL_ATTRIBUTES), unique=True, max_size=3)
        )
        services.append(
            {
                "name": s,
                "description": draw(_TEXT),
                "procedures": procs,
                "config_parameters": draw(st.lists(st.sampled_from(params), unique=True))
                if params
                else [],
                "bindings": {a: draw(_BINDING) for a in chosen},
            }
        )
    doc: dict[str, Any] = {
        "name": draw(_NAMES),
        "version": draw(st.sampled_from(["1.0.0", "0.0.1", "2.3"])),
        "vendor": draw(_TEXT),
        "description": draw(_TEXT),
        "data_assemblies": das,
        "services": services,
    }
    if draw(st.booleans()):
        doc["opcua"] = {
            "namespace_uri": "urn:generated:pea",
            "node_id_template": draw(
                st.sampled_from(["{assembly}.{attribute}", "PEA/{assembly}/{attribute}"])
            ),
        }
    return ModuleType.model_validate(doc)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(module_types())
def test_generated_module_types_round_trip(tmp_path: Path, mt: ModuleType) -> None:
    data = export_manifest(mt, endpoint_url="opc.tcp://127.0.0.1:4999")
    _structure(data)
    path = tmp_path / "gen.aml"
    path.write_bytes(data)
    assert import_manifest(path) == mtp_projection(mt)
    failed = [r for r in check_manifest(path) if r.status == "fail"]
    assert failed == []

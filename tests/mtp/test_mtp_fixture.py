"""Importing and checking a real manifest written by SIMATIC MTP Creator 5.0 (manifest 1.1.0).

Expected names and counts were read off the file by hand (see the comments)."""

from __future__ import annotations

import re
from pathlib import Path

from modulecontrol.descriptors import OpcUaBinding
from modulecontrol.mtp import (
    check_manifest,
    format_results,
    import_manifest,
    import_manifest_report,
)

HC30 = Path(__file__).parent / "data" / "HC30_Stirring_V8.aml"

SIEMENS_NS = "http://www.siemens.com/simatic-s7-opcua"


def test_lists_services_procedures_and_parameters() -> None:
    mt = import_manifest(HC30)
    assert [s.name for s in mt.services] == ["Stirring"]
    stirring = mt.service("Stirring")
    procs = [(p.name, p.id, p.self_completing, p.default) for p in stirring.procedures]
    assert procs == [
        ("HC30_Stirring_Duration", 2, True, False),
        ("HC30_Stirring_Continous", 1, False, False),
    ]
    assert stirring.procedure(2).parameters == ["HC30_Duration_Stirring_Durration"]
    assert stirring.procedure(1).parameters == []
    assert stirring.config_parameters == []
    assert all(p.report_values == [] for p in stirring.procedures)


def test_lists_data_assemblies_with_their_classes() -> None:
    report = import_manifest_report(HC30)
    mt = report.module_type
    # InstanceList: 10 assemblies, one of them the ServiceControl of "Stirring"
    assert [(d.name, d.class_) for d in mt.data_assemblies] == [
        ("HC30_Self_Full", "BinView"),
        ("HC30_Target_Full", "BinProcessValueIn"),
        ("HC30_FlowView_F13", "AnaView"),
        ("HC30_LevelView_L10", "AnaView"),
        ("HC30_Duration_Stirring_Durration", "AnaServParam"),
        ("HC30_Stirring_Duration", "ProcedureHealthView"),
        ("HC30_Stirring_Continous", "ProcedureHealthView"),
        ("HC30N11_DB_MTPMonBinDrv_Instance", "MonBinDrv"),
        ("PeaInformationLabel", "PeaInformationLabel"),
    ]
    assert report.renamed == {
        "HC30N11_DB.MTPMonBinDrv_Instance": "HC30N11_DB_MTPMonBinDrv_Instance"
    }
    assert report.endpoints == {"HC30": "opc.tcp://134.130.125.142:4840"}
    assert report.manifest_version == "1.1.0"
    assert report.schema_version == "3.0"
    assert report.warnings == []
    assert "procedure HC30_Stirring_Duration (id 2, self-completing)" in report.summary()


def test_every_opcua_item_becomes_a_binding() -> None:
    hc30_text = HC30.read_text(encoding="utf-8-sig")
    mt = import_manifest(HC30)
    items = len(
        re.findall(r'RefBaseClassPath="MTPCommunicationICLib/DataItem/OPCUAItem"', hc30_text)
    )
    assert items == 158
    bound = sum(len(d.bindings) for d in mt.data_assemblies)
    bound += sum(len(s.bindings) for s in mt.services)
    assert bound == items
    assert len(mt.service("Stirring").bindings) == 42
    assert len(mt.assembly("HC30_Duration_Stirring_Durration").bindings) == 35


def test_bindings_carry_namespace_identifier_and_access() -> None:
    mt = import_manifest(HC30)
    v = mt.assembly("HC30_FlowView_F13").bindings["V"].get("opcua", OpcUaBinding)
    assert v is not None
    assert v.namespace_uri == SIEMENS_NS
    assert v.identifier == 's="ProcessValues_DB"."MTPAnalogOut"[1]."V"'
    assert v.access == "read"
    duration = mt.assembly("HC30_Duration_Stirring_Durration")
    vext = duration.bindings["VExt"].get("opcua", OpcUaBinding)
    assert vext is not None and vext.access == "readwrite"
    cmd = mt.service("Stirring").bindings["CommandExt"].get("opcua", OpcUaBinding)
    assert cmd is not None
    assert cmd.identifier.startswith('s="Stirring"')
    assert {"StateCur", "CommandEn", "ProcedureExt", "ProcedureCur"} <= set(
        mt.service("Stirring").bindings
    )


def test_static_facts_from_default_values() -> None:
    mt = import_manifest(HC30)
    duration = mt.assembly("HC30_Duration_Stirring_Durration")
    assert (duration.unit, duration.min, duration.max, duration.default) == ("s", 0.0, 60.0, 6.0)
    assert mt.assembly("HC30_FlowView_F13").unit == "L/min"  # VUnit code 1352
    assert mt.assembly("HC30_LevelView_L10").unit == "cm"  # VUnit code 1012


def test_static_check_passes_every_check() -> None:
    results = check_manifest(HC30)
    assert results and all(r.status == "pass" for r in results), [
        r for r in results if r.status != "pass"
    ]
    checks = {r.check for r in results}
    assert {
        "well-formed",
        "mandatory-attributes",
        "attribute-links",
        "opcua-items",
        "service-control",
        "procedure-ids",
        "parameter-links",
        "unique-ids",
        "importable",
    } <= checks
    assert format_results(results).splitlines()[-1] == (
        f"{len(results)} passed, 0 warnings, 0 skipped, 0 failed"
    )
    mandatory = [r.subject for r in results if r.check == "mandatory-attributes"]
    assert len(mandatory) == 10

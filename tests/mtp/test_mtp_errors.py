"""Bad, incomplete and hostile manifests: located ConfigErrors, never a traceback."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from modulecontrol.descriptors import OpcUaBinding
from modulecontrol.errors import ConfigError
from modulecontrol.mtp import _xml, check_manifest, import_manifest, import_manifest_report

HC30 = Path(__file__).parent / "data" / "HC30_Stirring_V8.aml"
TEXT = HC30.read_text(encoding="utf-8-sig")


def _write(tmp_path: Path, text: str, name: str = "m.aml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def _remove_attribute(text: str, element_start: str, attr: str) -> str:
    """Drop one <Attribute Name=attr> block from the element starting at ``element_start``."""
    start = text.index(element_start)
    a = text.index(f'<Attribute Name="{attr}"', start)
    end = text.index("</Attribute>", a) + len("</Attribute>")
    return text[:a] + text[end:]


def _errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        import_manifest(path)
    return [str(p) for p in info.value.problems]


FLOW = '<InternalElement Name="HC30_FlowView_F13" ID="fb7da52e'


def test_missing_mandatory_attributes_are_named_at_the_assembly(tmp_path: Path) -> None:
    text = _remove_attribute(_remove_attribute(TEXT, FLOW, "VUnit"), FLOW, "V")
    path = _write(tmp_path, text)
    errors = _errors(path)
    assert len(errors) == 1
    line = _line_of(text, FLOW)
    assert errors[0].startswith(f"{path}:{line}:")
    assert "'HC30_FlowView_F13' (AnaView) lacks mandatory attributes V, VUnit" in errors[0]
    assert "InternalElement[@Name='HC30_FlowView_F13']" in errors[0]
    failed = [r for r in check_manifest(path) if r.status == "fail"]
    assert [(r.check, r.subject) for r in failed] == [
        ("mandatory-attributes", "AnaView HC30_FlowView_F13"),
        ("importable", "file"),
    ]
    assert failed[0].detail == "missing V, VUnit"


def test_dangling_idlink_is_located_at_the_attribute(tmp_path: Path) -> None:
    old = "<Value>d984448c-c9e9-473c-ab6a-3dd03d7f7b9e</Value>"
    text = TEXT.replace(old, "<Value>00000000-dead-beef-0000-000000000000</Value>", 1)
    path = _write(tmp_path, text)
    errors = _errors(path)
    assert len(errors) == 1
    assert "attribute V of data assembly 'HC30_FlowView_F13' links to" in errors[0]
    start = text.index(FLOW)
    attr_line = text[: text.index('<Attribute Name="V" ', start)].count("\n") + 1
    assert errors[0].startswith(f"{path}:{attr_line}:")
    assert any(
        r.check == "attribute-links" and r.status == "fail" and "unresolved: V" in r.detail
        for r in check_manifest(path)
    )


def test_service_refid_must_reach_a_service_control(tmp_path: Path) -> None:
    # the Service element's RefID (the ServiceControl's RefID is the first occurrence)
    ref = "eafec7c5-508c-4e3f-94ab-8c9b3ccc78c6"
    first = TEXT.index(ref)
    service_at = TEXT.index('RefBaseSystemUnitPath="MTPServiceSUCLib/Service"')
    assert first < service_at
    head, tail = TEXT[:service_at], TEXT[service_at:]
    text = head + tail.replace(ref, "11111111-2222-3333-4444-555555555555")
    path = _write(tmp_path, text)
    errors = _errors(path)
    assert any("service 'Stirring': RefID '11111111" in e for e in errors)
    failed = {r.check for r in check_manifest(path) if r.status == "fail"}
    assert "service-control" in failed


def test_bad_procedure_id(tmp_path: Path) -> None:
    text = re.sub(
        r'(<Attribute Name="ProcedureID" AttributeDataType="xs:unsignedInt">\s*'
        r"<Description>[^<]*</Description>\s*<Value>)2(</Value>)",
        r"\1two\2",
        TEXT,
    )
    assert text != TEXT
    path = _write(tmp_path, text)
    errors = _errors(path)
    assert any("ProcedureId 'two' is not a whole number" in e for e in errors)
    results = check_manifest(path)
    assert any(r.check == "procedure-ids" and r.status == "fail" for r in results)


def test_duplicate_procedure_ids(tmp_path: Path) -> None:
    text = TEXT.replace(
        "<Value>2</Value>\n        </Attribute>", "<Value>1</Value>\n        </Attribute>", 1
    )
    assert text != TEXT
    path = _write(tmp_path, text)
    assert any("procedure id 1 is used twice" in e for e in _errors(path))
    assert any(
        r.check == "procedure-ids" and r.status == "fail" and "id 1 used 2 times" in r.detail
        for r in check_manifest(path)
    )


def test_truncated_file_is_located(tmp_path: Path) -> None:
    text = TEXT[: len(TEXT) // 2]
    path = _write(tmp_path, text)
    errors = _errors(path)
    assert len(errors) == 1
    assert "not well-formed XML" in errors[0]
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: ", errors[0])
    [result] = check_manifest(path)
    assert (result.check, result.status) == ("well-formed", "fail")


def test_not_a_caex_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "<root><x/></root>")
    assert any("not <CAEXFile>" in e for e in _errors(path))


def test_no_module_type_package(tmp_path: Path) -> None:
    text = TEXT.replace('RefBaseSystemUnitPath="MTPSUCLib/ModuleTypePackage"', "")
    path = _write(tmp_path, text)
    assert any(
        "no InternalElement of class MTPSUCLib/ModuleTypePackage" in e for e in _errors(path)
    )


@pytest.mark.parametrize(
    "doctype",
    [
        # entity expansion ("billion laughs")
        '<!DOCTYPE CAEXFile [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>',
        # external entity
        '<!DOCTYPE CAEXFile [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
        # external DTD
        '<!DOCTYPE CAEXFile SYSTEM "http://127.0.0.1/evil.dtd">',
    ],
)
def test_dtds_and_entities_are_refused(tmp_path: Path, doctype: str) -> None:
    path = _write(tmp_path, f'<?xml version="1.0"?>\n{doctype}\n<CAEXFile>&x;</CAEXFile>')
    errors = _errors(path)
    assert len(errors) == 1
    assert "must not declare DTDs or entities" in errors[0]
    assert errors[0].startswith(f"{path}:2:")


def test_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_xml, "MAX_MANIFEST_BYTES", 1000)
    errors = _errors(HC30)
    assert "manifests above 1000 bytes are refused" in errors[0]
    with pytest.raises(ConfigError, match="refused"):
        _xml.parse_bytes(b"<a/>" * 300, "mem")


def test_missing_file(tmp_path: Path) -> None:
    assert "cannot read manifest" in _errors(tmp_path / "nope.aml")[0]


def test_types_are_found_by_class_path_not_by_name(tmp_path: Path) -> None:
    """Element names are free text; renaming them changes nothing, while a vendor class
    derived from AnaView (defined in the file's own library) is followed to AnaView."""
    text = TEXT.replace('<InstanceHierarchy Name="Services"', '<InstanceHierarchy Name="Dienste"')
    text = text.replace('<InternalElement Name="Sources"', '<InternalElement Name="Quellen"')
    text = text.replace(
        'RefBaseSystemUnitPath="MTPDataObjectSUCLib/DataAssembly/IndicatorElement/AnaView">\n'
        "            <Description>HC30_LevelView_L10",
        'RefBaseSystemUnitPath="VendorLib/MyFlowView">\n'
        "            <Description>HC30_LevelView_L10",
    )
    vendor_lib = (
        '  <SystemUnitClassLib Name="VendorLib">\n'
        '    <SystemUnitClass Name="MyFlowView" '
        'RefBaseClassPath="MTPDataObjectSUCLib/DataAssembly/IndicatorElement/AnaView" />\n'
        "  </SystemUnitClassLib>\n</CAEXFile>"
    )
    text = text.replace("</CAEXFile>", vendor_lib)
    path = _write(tmp_path, text)
    mt = import_manifest(path)
    assert mt.assembly("HC30_LevelView_L10").class_ == "AnaView"
    assert [s.name for s in mt.services] == ["Stirring"]
    # and an element that is *named* like an assembly but has no MTP class is ignored
    assert len(mt.data_assemblies) == 9


def test_unsupported_class_is_skipped_with_a_warning(tmp_path: Path) -> None:
    text = TEXT.replace(
        'MTPDataObjectSUCLib/DataAssembly/IndicatorElement/BinView">\n'
        "            <Description>HC30_Self_Full",
        'MTPDataObjectSUCLib/DataAssembly/DiagnosticElement/LockView4">\n'
        "            <Description>HC30_Self_Full",
    )
    assert text != TEXT
    path = _write(tmp_path, text)
    report = import_manifest_report(path)
    assert "HC30_Self_Full" not in [d.name for d in report.module_type.data_assemblies]
    assert any("LockView4 is not supported" in str(w) for w in report.warnings)


def test_identifier_holding_a_whole_node_id(tmp_path: Path) -> None:
    old = '<Value>"ProcessValues_DB"."MTPAnalogOut"[1]."V"</Value>'
    assert TEXT.count(old) == 1
    path = _write(tmp_path, TEXT.replace(old, "<Value>ns=3;i=1234</Value>"))
    v = import_manifest(path).assembly("HC30_FlowView_F13").bindings["V"].get("opcua", OpcUaBinding)
    assert v is not None and v.identifier == "i=1234"


def test_mtp_zip_package(tmp_path: Path) -> None:

    pkg = tmp_path / "HC30.mtp"
    with zipfile.ZipFile(pkg, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("readme.txt", "x")
        z.write(HC30, "manifest.aml")
    mt = import_manifest(pkg)
    assert [s.name for s in mt.services] == ["Stirring"]
    assert all(r.status == "pass" for r in check_manifest(pkg))
    empty = tmp_path / "empty.mtp"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("readme.txt", "x")
    assert "holds no .aml manifest" in _errors(empty)[0]


def test_zip_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setattr(_xml, "MAX_MANIFEST_BYTES", 10_000)
    pkg = tmp_path / "bomb.mtp"
    with zipfile.ZipFile(pkg, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.aml", "<CAEXFile>" + " " * 100_000 + "</CAEXFile>")
    assert "manifests above 10000 bytes are refused" in _errors(pkg)[0]


def test_derived_class_without_binding_support_maps_to_its_base(tmp_path: Path) -> None:
    text = TEXT.replace(
        'RefBaseSystemUnitPath="MTPDataObjectSUCLib/DataAssembly/IndicatorElement/AnaView">\n'
        "            <Description>HC30_LevelView_L10",
        'RefBaseSystemUnitPath="MTPDataObjectSUCLib/DataAssembly/IndicatorElement/DIntView/'
        'DIntMon">\n            <Description>HC30_LevelView_L10',
    )
    assert text != TEXT
    report = import_manifest_report(_write(tmp_path, text))
    assert report.module_type.assembly("HC30_LevelView_L10").class_ == "DIntView"
    assert report.assembly_classes["HC30_LevelView_L10"] == "DIntMon"
    assert any("imported as its base class DIntView" in str(w) for w in report.warnings)


def test_inconsistent_defaults_are_dropped_with_a_warning(tmp_path: Path) -> None:
    # VMin above VMax in the parameter's DefaultValues: limits ignored, import still works
    start = TEXT.index('<InternalElement Name="HC30_Duration_Stirring_Durration"')
    vmin = TEXT.index('<Attribute Name="VMin"', start)
    dv = TEXT.index("<DefaultValue>0.0</DefaultValue>", vmin)
    text = TEXT[:dv] + "<DefaultValue>99.0</DefaultValue>" + TEXT[dv + 32 :]
    report = import_manifest_report(_write(tmp_path, text))
    da = report.module_type.assembly("HC30_Duration_Stirring_Durration")
    assert (da.min, da.max, da.unit) == (None, None, "s")
    [warning] = report.warnings
    assert "greater than max" in str(warning) and "limits and scale not imported" in str(warning)


def test_modulecontrol_data_cannot_override_names(tmp_path: Path) -> None:
    extra = (
        "<AdditionalInformation>"
        'modulecontrol:{"name": "Evil", "unit": "bar"}'
        "</AdditionalInformation>"
    )
    text = TEXT.replace(
        "<Description>HC30_FlowView_F13</Description>",
        "<Description>HC30_FlowView_F13</Description>" + extra,
        1,
    )
    mt = import_manifest(_write(tmp_path, text))
    assert mt.assembly("HC30_FlowView_F13").unit == "bar"

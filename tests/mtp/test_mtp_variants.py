"""Vendors' variants of the standard: each is imported, checked and served."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from asyncua.client.client import Client

from modulecontrol.descriptors import OpcUaBinding, builtin_types, module_type_from_text
from modulecontrol.errors import ConfigError
from modulecontrol.mtp import (
    LiveOptions,
    check_manifest,
    check_manifest_async,
    export_manifest,
    format_results,
    import_manifest_report,
    serve_manifest,
)
from modulecontrol.yamlio import dump_yaml
from tests.mtp import mtp10
from tests.mtp.variants import HC30, STRING_VIEW, STRING_VIEW_NODE, with_string_view_text


def test_string_view_text_is_its_value(tmp_path: Path) -> None:
    """The fixture's own class library defines StringView with ``Text``: it binds as V."""
    report = import_manifest_report(with_string_view_text(tmp_path))
    da = report.module_type.assembly(STRING_VIEW)
    assert da.class_ == "StringView"
    binding = da.bindings["V"].get("opcua", OpcUaBinding)
    assert binding is not None
    assert binding.identifier == f"s={STRING_VIEW_NODE}"
    assert report.warnings == []


def test_string_view_text_passes_the_static_check(tmp_path: Path) -> None:
    results = check_manifest(with_string_view_text(tmp_path))
    assert all(r.status == "pass" for r in results), format_results(results)


async def test_string_view_text_is_served_at_the_manifests_node(tmp_path: Path) -> None:
    path = with_string_view_text(tmp_path)
    # transients kept 50 ms, not 0.2 s: the live check's subscription queues every state it
    # publishes (tests/mtp/test_mtp_serve.py checks the default)
    async with await serve_manifest(path, insecure=True, transient_dwell=0.05) as pea:
        async with Client(pea.url, timeout=5) as client:
            ns = (await client.get_namespace_array()).index(
                "http://www.siemens.com/simatic-s7-opcua"
            )
            node = client.get_node(f"ns={ns};s={STRING_VIEW_NODE}")
            assert isinstance(await node.read_value(), str)
        results = await check_manifest_async(path, live=LiveOptions(pea.url, insecure=True))
    assert all(r.status == "pass" for r in results), format_results(results)


# ---------------------------------------------------------------- MTP 1.0 (CAEX 2.15)


def _mtp10(tmp: Path, **kw: str) -> Path:
    path = tmp / "dosing10.aml"
    path.write_text(mtp10.manifest_1_0(**kw), encoding="utf-8")
    return path


def test_mtp_1_0_imports_with_services_and_procedures(tmp_path: Path) -> None:
    report = import_manifest_report(_mtp10(tmp_path))
    assert (report.manifest_version, report.schema_version) == ("1.0.0", "2.15")
    svc = report.module_type.service(mtp10.SERVICE)
    proc = svc.procedure(1)
    assert (proc.name, proc.self_completing, proc.default) == (mtp10.PROCEDURE, True, True)
    assert proc.parameters == [mtp10.PARAMETER]
    assert proc.report_values == [mtp10.REPORT]
    assert report.skipped == []
    state = svc.bindings["StateCur"].get("opcua", OpcUaBinding)
    assert state is not None
    # the index is kept as written (no URI to look it up by), with the ns= prefix
    assert state.namespace_uri is None
    assert state.identifier == f"ns={mtp10.NS_INDEX};s={mtp10.SERVICE}.ServiceControl.StateCur"


def test_a_namespace_uri_beside_an_ns_prefix_wins(tmp_path: Path) -> None:
    report = import_manifest_report(_mtp10(tmp_path, namespace="urn:pea:dosing"))
    da = report.module_type.assembly(mtp10.PARAMETER)
    vext = da.bindings["VExt"].get("opcua", OpcUaBinding)
    assert vext is not None
    assert (vext.namespace_uri, vext.identifier) == ("urn:pea:dosing", f"s={mtp10.PARAMETER}.VExt")
    results = check_manifest(_mtp10(tmp_path, namespace="urn:pea:dosing"))
    assert [r.status for r in results if r.check == "namespace-uris"] == ["pass"]


def test_static_check_flags_a_namespace_index_as_not_portable(tmp_path: Path) -> None:
    results = check_manifest(_mtp10(tmp_path))
    flagged = [r for r in results if r.check == "namespace-uris"]
    assert [r.status for r in flagged] == ["warn"]
    assert "namespace index 3" in flagged[0].detail and "URI" in flagged[0].detail
    assert flagged[0].location is not None
    assert not [r for r in results if r.status == "fail"], format_results(results)
    assert format_results(results).splitlines()[-1].endswith(
        f"{sum(r.status == 'warn' for r in results)} warnings, 1 skipped, 0 failed"
    )


async def test_mtp_1_0_is_served_and_passes_the_live_check(tmp_path: Path) -> None:
    """Served at the manifest's own node ids (index 3) and driven by the live check, which
    resolves the index against the server's namespace array."""
    path = _mtp10(tmp_path)
    async with await serve_manifest(path, insecure=True, self_complete_after=0.3) as pea:
        async with Client(pea.url, timeout=5) as client:
            node = client.get_node(
                f"ns={mtp10.NS_INDEX};s={mtp10.SERVICE}.ServiceControl.StateCur"
            )
            assert await node.read_value() == 16
        results = await check_manifest_async(path, live=LiveOptions(pea.url, insecure=True))
    assert not [r for r in results if r.status == "fail"], format_results(results)
    assert any(r.check == "live-parameters" and r.status == "pass" for r in results)


# ---------------------------------------------------------------- nothing dropped silently


def test_process_values_of_procedures_are_kept_and_exported(tmp_path: Path) -> None:
    report = import_manifest_report(_mtp10(tmp_path))
    key = f"{mtp10.SERVICE}.{mtp10.PROCEDURE}"
    assert report.process_values == {key: [mtp10.PROCESS_VALUE]}
    assert f"      process value {mtp10.PROCESS_VALUE}" in report.summary().splitlines()
    proc = report.module_type.service(mtp10.SERVICE).procedure(mtp10.PROCEDURE)
    assert (proc.process_values_in, proc.process_values_out) == ([mtp10.PROCESS_VALUE], [])
    # exported as the 2022 library writes it, and read back unchanged
    again = tmp_path / "again.aml"
    again.write_bytes(export_manifest(report.module_type))
    text = again.read_text(encoding="utf-8")
    assert 'RefBaseSystemUnitPath="MTPProcessValueSUCLib/ProcessValue/ProcessValueIn"' in text
    back = import_manifest_report(again).module_type
    assert back.service(mtp10.SERVICE).procedure(mtp10.PROCEDURE) == proc
    assert [r for r in check_manifest(again) if r.status == "fail"] == []


def test_a_process_value_naming_no_assembly_is_located() -> None:
    mt = builtin_types().get("CoilReactor").model_dump(mode="json", exclude_none=True)
    mt["services"][0]["procedures"][0]["process_values_out"] = ["Tempp"]
    with pytest.raises(ConfigError) as exc:
        module_type_from_text(dump_yaml(mt), "coil.yaml")
    [problem] = exc.value.problems
    assert "process value 'Tempp' is not a data assembly" in problem.message
    assert problem.location is not None and problem.location.line is not None


def test_every_unused_element_is_counted_with_its_place() -> None:
    """The fixture's HMI pictures, texts and process value set are not read: each is listed
    with its line, and the count closes the summary and the importable check."""
    report = import_manifest_report(HC30)
    text = HC30.read_text(encoding="utf-8").splitlines()
    for u in report.unused:
        assert u.location is not None
        cls, name = re.fullmatch(r"(\S+) '([^']*)'.*", u.message).groups()  # type: ignore[union-attr]
        line = text[u.location.line - 1]
        assert f'Name="{name}"' in line and f'RefBaseSystemUnitPath="{cls}"' in line, line
    assert {u.message.split(" ", 1)[0] for u in report.unused} == {
        "MTPHMISUCLib/HMISet", "MTPTextSUCLib/TextSet", "MTPProcessValueSUCLib/ProcessValueSet",
        "MTPHMISUCLib/Picture", "MTPProcessValueSUCLib/ProcessValue/ProcessValueOut",
        "MTPProcessValueSUCLib/ProcessValue/ProcessValueIn",
    }
    assert report.summary().splitlines()[-1] == (
        f"0 warnings, 0 skipped, {len(report.unused)} elements not used"
    )
    importable = [r for r in check_manifest(HC30) if r.check == "importable"]
    assert f"{len(report.unused)} elements not used" in importable[0].detail


@pytest.mark.parametrize(
    ("code", "unit"), [("1007", "arcsec"), ("1040", "mL"), ("1349", "m**3/h"), ("1342", "%")]
)
def test_unit_codes_of_the_table(tmp_path: Path, code: str, unit: str) -> None:
    path = _mtp10(tmp_path)
    path.write_text(_with_default(path, mtp10.REPORT, "VUnit", code), encoding="utf-8")
    report = import_manifest_report(path)
    assert report.module_type.assembly(mtp10.REPORT).unit == unit
    assert report.warnings == []


def test_unit_code_1999_names_no_unit_and_says_so(tmp_path: Path) -> None:
    path = _mtp10(tmp_path)
    path.write_text(_with_default(path, mtp10.REPORT, "VUnit", "1999"), encoding="utf-8")
    report = import_manifest_report(path)
    assert report.module_type.assembly(mtp10.REPORT).unit == ""
    [warning] = report.warnings
    assert "unit code 1999" in warning.message and "special" in warning.message
    assert warning.location is not None and warning.location.line > 0


def test_a_default_below_its_minimum_is_a_warning_and_the_limits_stay(tmp_path: Path) -> None:
    path = _mtp10(tmp_path)
    path.write_text(_with_default(path, mtp10.PARAMETER, "VExt", "-1"), encoding="utf-8")
    report = import_manifest_report(path)
    param = report.module_type.assembly(mtp10.PARAMETER)
    assert (param.min, param.max, param.default) == (0.0, 500.0, None)
    [warning] = report.warnings
    assert "outside its limits" in warning.message and "default not imported" in warning.message


def _with_default(path: Path, assembly: str, attribute: str, value: str) -> str:
    """The manifest with one attribute default of one assembly replaced."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f'<InternalElement Name="{assembly}"')
    at = text.index(f'<Attribute Name="{attribute}"', start)
    lo = text.index("<DefaultValue>", at) + len("<DefaultValue>")
    hi = text.index("</DefaultValue>", lo)
    return text[:lo] + value + text[hi:]

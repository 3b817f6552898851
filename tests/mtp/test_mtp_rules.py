"""The strict structural rules: each fails, named, on the mistake our export used to make,
and passes on the vendor fixture and on our export."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from modulecontrol.descriptors import builtin_types
from modulecontrol.mtp import check_manifest, export_manifest
from tests.mtp.checks import HEALTH_VIEW_RULE
from tests.mtp.variants import HC30


def _export() -> str:
    return export_manifest(builtin_types().get("CoilReactor")).decode("utf-8")


def _one(text: str, old: str, new: str) -> str:
    assert text.count(old) >= 1, old
    return text.replace(old, new)


MISTAKES: dict[str, tuple[str, Callable[[str], str], str]] = {
    "package attributes": (
        "2658-1 table 36 #7a",
        lambda t: re.sub(r'<Attribute Name="(DeviceRevision|ManufacturerUri|ProductCode)"'
                         r"[^>]*>\s*<Value>[^<]*</Value>\s*</Attribute>", "", t),
        "lacks DeviceRevision, ManufacturerUri, ProductCode",
    ),
    "sets without MTPSet": (
        "2658-1 table 36 #9",
        lambda t: _one(t, 'RefBaseClassPath="MTPSUCLib/MTPSet"', ""),
        "the standard says MTPSUCLib/MTPSet",
    ),
    "procedure derived from service": (
        "2658-4 table 30",
        lambda t: re.sub(r'(<SystemUnitClass Name="Procedure" ID="[^"]+" )'
                         r'RefBaseClassPath="MTPSUCLib/LinkedObject"',
                         r'\1RefBaseClassPath="MTPServiceSUCLib/Service"', t),
        "derives from 'MTPServiceSUCLib/Service'",
    ),
    "plain TagName": (
        "2658-1 tables 26/29",
        lambda t: _one(t, ' RefAttributeType="MTPATLib/MultiLanguageTextAttribute"', ""),
        "lack RefAttributeType",
    ),
    "ProcedureId": (
        "2658-4 table 30",
        lambda t: _one(t, 'Name="ProcedureID"', 'Name="ProcedureId"'),
        "ProcedureId is not the standard's spelling",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_rule_fails_by_name(mistake: str, tmp_path: Path) -> None:
    rule, edit, words = MISTAKES[mistake]
    text = _export()
    bad = edit(text)
    assert bad != text
    path = tmp_path / "bad.aml"
    path.write_text(bad, encoding="utf-8")
    failed = [r for r in check_manifest(path) if r.status == "fail"]
    assert failed and {r.subject for r in failed} == {rule}, failed
    assert words in failed[0].detail
    assert failed[0].location is not None


def test_a_procedure_without_health_view_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "coil.aml"
    path.write_text(_export(), encoding="utf-8")
    warned = [r for r in check_manifest(path) if r.subject == HEALTH_VIEW_RULE]
    assert [r.status for r in warned] == ["warn"]
    assert "Tempering.Hold" in warned[0].detail


def test_the_vendor_fixture_passes_every_rule() -> None:
    results = [r for r in check_manifest(HC30) if r.check == "structure"]
    assert {r.status for r in results} == {"pass"}
    assert {r.subject for r in results} == {
        "2658-1 table 36 #7a", "2658-1 table 36 #9", "2658-4 table 30",
        "2658-1 tables 26/29", HEALTH_VIEW_RULE,
    }


def test_tag_texts_are_multi_language() -> None:
    text = _export()
    assert re.search(
        r'<Attribute Name="TagName" AttributeDataType="xs:string" '
        r'RefAttributeType="MTPATLib/MultiLanguageTextAttribute">\s*<Value>[^<]+</Value>\s*'
        r'<Attribute Name="aml-lang=en-US"', text)

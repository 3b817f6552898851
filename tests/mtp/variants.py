"""Manifests with the variants real vendors write, generated from the shared fixture.

Each helper edits a copy of the SIMATIC MTP Creator fixture the way another generator (or a
later library version) writes the same thing, so a test states one variant at a time.
"""

from __future__ import annotations

from pathlib import Path

HC30 = Path(__file__).parent / "data" / "HC30_Stirring_V8.aml"
STRING_VIEW = "HC30_Batch_Text"
STRING_VIEW_NODE = '"ProcessValues_DB"."MTPString"[0]."Text"'
_SIEMENS_NS = "http://www.siemens.com/simatic-s7-opcua"
_TEXT_ITEM = "5a1e0000-0000-4000-8000-000000000001"
_WQC_ITEM = "5a1e0000-0000-4000-8000-000000000002"


def _item(name: str, item_id: str, identifier: str) -> str:
    return f"""<ExternalInterface Name="{name}" ID="{item_id}" \
RefBaseClassPath="MTPCommunicationICLib/DataItem/OPCUAItem">
  <Attribute Name="Access" AttributeDataType="xs:unsignedByte"><Value>1</Value></Attribute>
  <Attribute Name="Identifier" AttributeDataType="xs:string"><Value>{identifier}</Value>\
</Attribute>
  <Attribute Name="Namespace" AttributeDataType="xs:string"><Value>{_SIEMENS_NS}</Value>\
</Attribute>
</ExternalInterface>
"""


def _link(name: str, item_id: str, default: str) -> str:
    return f"""<Attribute Name="{name}" AttributeDataType="xs:string" \
RefAttributeType="MTPATLib/IDReferenceType/IDLinkAttributeType">
  <DefaultValue>{default}</DefaultValue><Value>{item_id}</Value>
</Attribute>
"""


def with_string_view_text(tmp: Path) -> Path:
    """The fixture plus a StringView whose value attribute is ``Text``, as the class library
    inside the fixture (and so every manifest built on it) defines StringView."""
    text = HC30.read_text(encoding="utf-8")
    items = _item(f"{STRING_VIEW}.Text", _TEXT_ITEM, STRING_VIEW_NODE) + _item(
        f"{STRING_VIEW}.WQC", _WQC_ITEM, '"ProcessValues_DB"."MTPString"[0]."WQC"'
    )
    element = (
        f'<InternalElement Name="{STRING_VIEW}" ID="5a1e0000-0000-4000-8000-000000000003" '
        'RefBaseSystemUnitPath="MTPDataObjectSUCLib/DataAssembly/IndicatorElement/StringView">\n'
        '<Attribute Name="RefID" AttributeDataType="xs:string" '
        'RefAttributeType="MTPATLib/IDReferenceType/RefIDAttributeType">'
        "<Value>5a1e0000-0000-4000-8000-000000000004</Value></Attribute>\n"
        + _link("WQC", _WQC_ITEM, "255")
        + _link("Text", _TEXT_ITEM, "batch 1")
        + "</InternalElement>\n"
    )
    anchor_item = '<ExternalInterface Name="HC30_Self_Full.V"'
    anchor_da = '<InternalElement Name="HC30_Self_Full" ID="8b10d87a'
    assert text.count(anchor_item) == 1 and text.count(anchor_da) == 1
    text = text.replace(anchor_item, items + anchor_item).replace(anchor_da, element + anchor_da)
    out = tmp / "hc30_string_view_text.aml"
    out.write_text(text, encoding="utf-8")
    return out

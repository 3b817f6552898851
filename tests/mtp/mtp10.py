"""A small MTP 1.0 manifest (CAEX 2.15), generated from the structure of the 1.0 libraries.

Written from the standard's structure, the way older generators and Python PEA toolkits lay
it out: no CAEX namespace, ``{GUID}`` IDs, the services in an InstanceHierarchy of their own,
the 1.0 class paths (``MTPServiceSUCLib/ServiceProcedure``, ``MTPSUCLib/ServicesSet``,
``MTPServiceSUCLib/ServiceParameter/ReportValue``, ``DataAssembly/ServiceControl`` and
``OperationElement/AnaServParam``), the OPC UA namespace given as an index (``3``) and every
identifier as a whole node id (``ns=3;s=...``).
"""

from __future__ import annotations

import uuid
from xml.sax.saxutils import escape

from modulecontrol.mtpcore import DA_ATTRIBUTES, SERVICE_CONTROL_ATTRIBUTES, STATIC_ATTRIBUTES

NS_INDEX = 3
SERVICE = "Dosing"
PROCEDURE = "DoseVolume"
PARAMETER = "Dosing_Volume_SP"
REPORT = "Dosing_DosedVolume"
PROCESS_VALUE = "Dosing_InletPressure"
_DA = "MTPDataObjectSUCLib/DataAssembly"


class _Ids:
    """Deterministic GUIDs, so a generated file is the same every run."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return str(uuid.UUID(int=self.n))


def _attr(name: str, value: str, *, link: bool = False, default: str | None = None) -> str:
    ref = ' RefAttributeType="MTPATLib/IDReferenceType/IDLinkAttributeType"' if link else ""
    dflt = f"<DefaultValue>{escape(default)}</DefaultValue>" if default is not None else ""
    return (
        f'<Attribute Name="{name}" AttributeDataType="xs:string"{ref}>{dflt}'
        f"<Value>{escape(value)}</Value></Attribute>"
    )


def manifest_1_0(*, namespace: str = str(NS_INDEX)) -> str:
    """The manifest text; ``namespace`` is what every OPC UA item's Namespace says."""
    ids = _Ids()
    items: list[str] = []
    elements: list[str] = []

    def assembly(name: str, path: str, attrs: tuple[str, ...], defaults: dict[str, str]) -> str:
        ref = ids()
        body = [_attr("RefID", "{" + ref + "}")]
        for a in attrs:
            if a in STATIC_ATTRIBUTES:
                body.append(_attr(a, name))
                continue
            item = ids()
            items.append(
                f'<ExternalInterface Name="{name}.{a}" ID="{{{item}}}" '
                'RefBaseClassPath="MTPCommunicationICLib/DataItem/OPCUAItem">'
                + _attr("Identifier", f"ns={NS_INDEX};s={name}.{a}")
                + _attr("Namespace", namespace)
                + _attr("Access", "3" if a.endswith(("Op", "Ext", "Aut")) else "1")
                + "</ExternalInterface>"
            )
            body.append(_attr(a, "{" + item + "}", link=True, default=defaults.get(a, "0")))
        elements.append(
            f'<InternalElement Name="{name}" ID="{{{ids()}}}" RefBaseSystemUnitPath="{path}">'
            + "".join(body)
            + "</InternalElement>"
        )
        return ref

    control = assembly(
        f"{SERVICE}.ServiceControl", f"{_DA}/ServiceControl", SERVICE_CONTROL_ATTRIBUTES,
        {"StateCur": "16"},
    )
    param = assembly(
        PARAMETER, f"{_DA}/OperationElement/AnaServParam", DA_ATTRIBUTES["AnaServParam"],
        {"VMin": "0", "VMax": "500", "VUnit": "1038", "VExt": "2.5"},
    )
    report = assembly(
        REPORT, f"{_DA}/IndicatorElement/AnaView", DA_ATTRIBUTES["AnaView"], {"VUnit": "1038"}
    )
    pv = assembly(
        PROCESS_VALUE, f"{_DA}/IndicatorElement/AnaView", DA_ATTRIBUTES["AnaView"],
        {"VUnit": "1137"},
    )

    def link(name: str, path: str, ref: str) -> str:
        return (
            f'<InternalElement Name="{name}" ID="{{{ids()}}}" RefBaseSystemUnitPath="{path}">'
            + _attr("RefID", "{" + ref + "}")
            + "</InternalElement>"
        )

    services_ih = ids()
    procedure = (
        f'<InternalElement Name="{PROCEDURE}" ID="{{{ids()}}}" '
        'RefBaseSystemUnitPath="MTPServiceSUCLib/ServiceProcedure">'
        + _attr("ProcedureID", "1")
        + _attr("IsSelfCompleting", "true")
        + _attr("IsDefault", "true")
        + link(PARAMETER, "MTPServiceSUCLib/ServiceParameter/ProcedureParameter", param)
        + link(REPORT, "MTPServiceSUCLib/ServiceParameter/ReportValue", report)
        + link(PROCESS_VALUE, "MTPServiceSUCLib/ServiceParameter/ProcessValueIn", pv)
        + "</InternalElement>"
    )
    service = (
        f'<InternalElement Name="{SERVICE}" ID="{{{ids()}}}" '
        'RefBaseSystemUnitPath="MTPServiceSUCLib/Service">'
        + _attr("RefID", "{" + control + "}")
        + procedure
        + "</InternalElement>"
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<CAEXFile FileName="Dosing10.aml" SchemaVersion="2.15">'
        "<AdditionalInformation>"
        '<Document DocumentIdentifier="VDI/VDE/NAMUR 2658-1:Manifest" Version="1.0.0"/>'
        "</AdditionalInformation>"
        f'<InstanceHierarchy Name="ModuleTypePackage" ID="{{{ids()}}}">'
        f'<InternalElement Name="Dosing10" ID="{{{ids()}}}" '
        'RefBaseSystemUnitPath="MTPSUCLib/ModuleTypePackage">'
        + _attr("Version", "1.0.0")
        + f'<InternalElement Name="Communication" ID="{{{ids()}}}" '
        'RefBaseSystemUnitPath="MTPSUCLib/CommunicationSet">'
        f'<InternalElement Name="InstanceList" ID="{{{ids()}}}" '
        'RefBaseSystemUnitPath="MTPSUCLib/CommunicationSet/InstanceList">'
        + "".join(elements)
        + "</InternalElement>"
        f'<InternalElement Name="SourceList" ID="{{{ids()}}}" '
        'RefBaseSystemUnitPath="MTPSUCLib/CommunicationSet/SourceList">'
        f'<InternalElement Name="OPCServer" ID="{{{ids()}}}" '
        'RefBaseSystemUnitPath="MTPCommunicationSUCLib/ServerAssembly/OPCUAServer">'
        + _attr("Endpoint", "opc.tcp://127.0.0.1:4840")
        + "".join(items)
        + "</InternalElement></InternalElement></InternalElement>"
        f'<InternalElement Name="Services" ID="{{{ids()}}}" '
        'RefBaseSystemUnitPath="MTPSUCLib/ServicesSet">'
        f'<ExternalInterface Name="ServiceReference" ID="{{{ids()}}}" '
        'RefBaseClassPath="AutomationMLInterfaceClassLib/AutomationMLBaseInterface/'
        'ExternalDataConnector">'
        + _attr("RefID", "{" + services_ih + "}")
        + "</ExternalInterface></InternalElement>"
        "</InternalElement></InstanceHierarchy>"
        f'<InstanceHierarchy Name="{services_ih}" ID="{{{services_ih}}}">'
        + service
        + "</InstanceHierarchy></CAEXFile>\n"
    )

"""What only a manifest needs to know about the MTP class libraries: class paths and the
numeric access codes of OPC UA items.

The attribute tables themselves (which attributes a class has, which are mandatory, who
writes them) are the MTP core's, :mod:`modulecontrol.mtpcore`.
"""

from __future__ import annotations

from modulecontrol.mtpcore import Access

DA_LIB = "MTPDataObjectSUCLib"
SERVICE_LIB = "MTPServiceSUCLib"
MTP_LIB = "MTPSUCLib"
COMM_LIB = "MTPCommunicationSUCLib"
COMM_IC_LIB = "MTPCommunicationICLib"
HMI_LIB = "MTPHMISUCLib"
IC_LIB = "MTPICLib"
AT_LIB = "MTPATLib"

STANDARD_LIBRARIES = frozenset(
    {
        DA_LIB,
        SERVICE_LIB,
        MTP_LIB,
        COMM_LIB,
        COMM_IC_LIB,
        HMI_LIB,
        IC_LIB,
        "MTPTextSUCLib",
        "MTPProcessValueSUCLib",
    }
)

_DA = f"{DA_LIB}/DataAssembly"

CLASS_PATHS: dict[str, str] = {
    "AnaView": f"{_DA}/IndicatorElement/AnaView",
    "AnaMon": f"{_DA}/IndicatorElement/AnaView/AnaMon",
    "BinView": f"{_DA}/IndicatorElement/BinView",
    "BinMon": f"{_DA}/IndicatorElement/BinView/BinMon",
    "DIntView": f"{_DA}/IndicatorElement/DIntView",
    "StringView": f"{_DA}/IndicatorElement/StringView",
    "AnaMan": f"{_DA}/OperationElement/AnaMan",
    "BinMan": f"{_DA}/OperationElement/BinMan",
    "BinVlv": f"{_DA}/ActiveElement/BinVlv",
    "MonBinVlv": f"{_DA}/ActiveElement/BinVlv/MonBinVlv",
    "AnaVlv": f"{_DA}/ActiveElement/AnaVlv",
    "BinDrv": f"{_DA}/ActiveElement/BinDrv",
    "MonBinDrv": f"{_DA}/ActiveElement/BinDrv/MonBinDrv",
    "AnaDrv": f"{_DA}/ActiveElement/AnaDrv",
    "PIDCtrl": f"{_DA}/ActiveElement/PIDCtrl",
    "ProcedureHealthView": f"{_DA}/ServiceElement/ProcedureHealthView",
    "ServiceControl": f"{_DA}/ServiceElement/ServiceControl",
    "AnaServParam": f"{_DA}/ServiceElement/ParameterElement/AnaServParam",
    "DIntServParam": f"{_DA}/ServiceElement/ParameterElement/DIntServParam",
    "BinServParam": f"{_DA}/ServiceElement/ParameterElement/BinServParam",
    "StringServParam": f"{_DA}/ServiceElement/ParameterElement/StringServParam",
    "BinProcessValueIn": f"{_DA}/InputElement/BinProcessValueIn",
    "PeaInformationLabel": f"{_DA}/PeaElement/PeaInformationLabel",
}
"""Where each data-assembly class sits in MTPDataObjectSUCLib (as manifest 1.1.0 writes it)."""

PATH_MODULE_TYPE_PACKAGE = f"{MTP_LIB}/ModuleTypePackage"
PATH_COMMUNICATION_SET = f"{MTP_LIB}/CommunicationSet"
PATH_INSTANCE_LIST = f"{MTP_LIB}/CommunicationSet/InstanceList"
PATH_SOURCE_LIST = f"{MTP_LIB}/CommunicationSet/SourceList"
PATH_OPCUA_SERVER = f"{COMM_LIB}/ServerAssembly/OPCUAServer"
PATH_OPCUA_ITEM = f"{COMM_IC_LIB}/DataItem/OPCUAItem"
PATH_SERVICE_SET = f"{SERVICE_LIB}/ServiceSet"
PATH_SERVICE = f"{SERVICE_LIB}/Service"
PATH_PROCEDURE = f"{SERVICE_LIB}/Service/Procedure"
PATH_PROCEDURE_PARAMETER = f"{SERVICE_LIB}/ServiceParameter/ProcedureParameter"
PATH_CONFIG_PARAMETER = f"{SERVICE_LIB}/ServiceParameter/ConfigurationParameter"
PATH_REPORT_VALUE = f"{SERVICE_LIB}/ReportValue"
PATH_HMI_SET = f"{HMI_LIB}/HMISet"
PATH_PICTURE = f"{HMI_LIB}/Picture"
PATH_ASPECT_REFERENCE = f"{IC_LIB}/AspectSetReference"
PATH_PROCESS_VALUE_IN = "MTPProcessValueSUCLib/ProcessValue/ProcessValueIn"
PATH_PROCESS_VALUE_OUT = "MTPProcessValueSUCLib/ProcessValue/ProcessValueOut"

LEGACY_PATHS: dict[str, str] = {
    f"{SERVICE_LIB}/ServiceProcedure": PATH_PROCEDURE,
    f"{SERVICE_LIB}/ServiceStrategy": PATH_PROCEDURE,
    f"{SERVICE_LIB}/ServiceParameter/ReportValue": PATH_REPORT_VALUE,
    f"{SERVICE_LIB}/ServiceParameter/ProcessValueIn": PATH_PROCESS_VALUE_IN,
    f"{SERVICE_LIB}/ServiceParameter/ProcessValueOut": PATH_PROCESS_VALUE_OUT,
    f"{MTP_LIB}/ServicesSet": PATH_SERVICE_SET,
    f"{DA_LIB}/DataAssembly/ServiceControl": f"{DA_LIB}/DataAssembly/ServiceElement/ServiceControl",
    f"{DA_LIB}/DataAssembly/DiagnosticElement/HealthStateView": (
        f"{DA_LIB}/DataAssembly/ServiceElement/ProcedureHealthView"
    ),
}
"""Class paths of the MTP 1.0 libraries (CAEX 2.15, as older generators and Python PEA
toolkits write them) -> the 2022 path of the same class. Data assemblies are otherwise found
by their last path segment, so ``OperationElement/AnaServParam`` needs no entry."""

PATH_MTP_SET = f"{MTP_LIB}/MTPSet"
PATH_LINKED_OBJECT = f"{MTP_LIB}/LinkedObject"

BASE_CLASSES: dict[str, str | None] = {
    PATH_COMMUNICATION_SET: PATH_MTP_SET,
    PATH_SERVICE_SET: PATH_MTP_SET,
    PATH_HMI_SET: PATH_MTP_SET,
    PATH_INSTANCE_LIST: None,
    PATH_SOURCE_LIST: None,
    f"{DA_LIB}/DataAssembly": PATH_LINKED_OBJECT,
    PATH_SERVICE: PATH_LINKED_OBJECT,
    PATH_PROCEDURE: PATH_LINKED_OBJECT,
    f"{SERVICE_LIB}/ServiceParameter": PATH_LINKED_OBJECT,
    PATH_REPORT_VALUE: PATH_LINKED_OBJECT,
    "MTPProcessValueSUCLib/ProcessValue": PATH_LINKED_OBJECT,
}
"""Base classes of the standard's classes where they are not the enclosing class (2658-1
table 36 #9: the sets derive from ``MTPSet``; services, procedures, parameters, report values,
process values and data assemblies from ``LinkedObject``; InstanceList and SourceList from
nothing). Any other nested class derives from the class it is nested in (``AnaMon`` from
``AnaView``),
a top-level one from nothing: as the libraries inside vendor manifests define them."""


def base_class(path: str) -> str | None:
    """The class ``path`` derives from in the standard's libraries (see :data:`BASE_CLASSES`)."""
    if path in BASE_CLASSES:
        return BASE_CLASSES[path]
    parent = path.rsplit("/", 1)[0]
    return parent if "/" in parent else None


AT_MULTILANGUAGE = f"{AT_LIB}/MultiLanguageTextAttribute"
TEXT_LANGUAGE = "en-US"
"""The language our multi-language texts (TagName, TagDescription) are written in."""
AT_REFID = f"{AT_LIB}/IDReferenceType/RefIDAttributeType"
AT_IDLINK = f"{AT_LIB}/IDReferenceType/IDLinkAttributeType"
AT_ASPECT_ID = f"{AT_LIB}/IDReferenceType/AspectIDAttributeType"

ACCESS_CODES: dict[int, Access] = {1: "read", 2: "write", 3: "readwrite"}
"""MTP OPCUAItem ``Access``: 0 no access, 1 read, 2 write, 3 read/write."""
ACCESS_OF: dict[str, int] = {v: k for k, v in ACCESS_CODES.items()}

"""What we know about the MTP class libraries: class paths, mandatory attributes, access codes.

Why here and not in the descriptors: these facts matter only when reading or writing a
manifest (library paths, which attributes a conformant PEA must expose), whereas
``DA_ATTRIBUTES`` lists what a descriptor may bind.
"""

from __future__ import annotations

from typing import Literal

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
AT_REFID = f"{AT_LIB}/IDReferenceType/RefIDAttributeType"
AT_IDLINK = f"{AT_LIB}/IDReferenceType/IDLinkAttributeType"
AT_ASPECT_ID = f"{AT_LIB}/IDReferenceType/AspectIDAttributeType"

_VIEW_ANA = ("V", "VSclMin", "VSclMax", "VUnit", "WQC")
_VIEW_BIN = ("V", "VState0", "VState1", "WQC")
_PARAM = ("VOp", "VInt", "VExt", "VReq", "VOut", "VFbk", "WQC")
_DRV = (
    "FwdCtrl",
    "RevCtrl",
    "FwdFbk",
    "RevFbk",
    "StopOp",
    "FwdOp",
    "RevOp",
    "StopAut",
    "FwdAut",
    "RevAut",
    "Trip",
    "WQC",
)
_VLV = ("Ctrl", "OpenOp", "CloseOp", "OpenAut", "CloseAut", "OpenFbk", "CloseFbk", "WQC")

MANDATORY_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "AnaView": _VIEW_ANA,
    "AnaMon": _VIEW_ANA,
    "DIntView": _VIEW_ANA,
    "BinView": _VIEW_BIN,
    "BinMon": _VIEW_BIN,
    "StringView": ("V", "WQC"),
    "AnaServParam": (*_PARAM, "VMin", "VMax", "VUnit"),
    "DIntServParam": (*_PARAM, "VMin", "VMax", "VUnit"),
    "BinServParam": (*_PARAM, "VState0", "VState1"),
    "StringServParam": _PARAM,
    "BinDrv": _DRV,
    "MonBinDrv": _DRV,
    "AnaDrv": (*_DRV, "Rpm", "RpmRbk", "RpmMan", "RpmUnit"),
    "BinVlv": _VLV,
    "MonBinVlv": _VLV,
    "AnaVlv": ("Pos", "PosMan", "PosRbk", "PosFbk", "PosUnit", "OpenOp", "CloseOp", "WQC"),
    "PIDCtrl": ("PV", "SP", "MV", "SPMan", "SPInt", "MVMan", "P", "Ti", "Td", "WQC"),
    "AnaMan": ("VOut", "VMan", "VRbk", "VMin", "VMax", "VUnit", "WQC"),
    "BinMan": ("VOut", "VMan", "VRbk", "VState0", "VState1", "WQC"),
    "BinProcessValueIn": ("V", "VState0", "VState1"),
    "ProcedureHealthView": ("CommandInfo",),
    "PeaInformationLabel": ("Manufacturer", "Model", "SerialNumber"),
    "ServiceControl": (
        "CommandOp",
        "CommandInt",
        "CommandExt",
        "CommandEn",
        "StateCur",
        "ProcedureOp",
        "ProcedureInt",
        "ProcedureExt",
        "ProcedureCur",
        "ProcedureReq",
        "WQC",
    ),
}
"""Attributes a conformant manifest must give each class: a subset of VDI/VDE/NAMUR 2658-4
chosen so that a process orchestration layer can operate the assembly; used by import and by
the static check."""

STATIC_ATTRIBUTES = frozenset({"TagName", "TagDescription"})
"""Attributes written as fixed values in the manifest rather than as OPC UA items."""

Access = Literal["read", "write", "readwrite"]

ACCESS_CODES: dict[int, Access] = {1: "read", 2: "write", 3: "readwrite"}
"""MTP OPCUAItem ``Access``: 0 no access, 1 read, 2 write, 3 read/write."""
ACCESS_OF: dict[str, int] = {v: k for k, v in ACCESS_CODES.items()}

_WRITABLE_SUFFIXES = ("Op", "Ext", "Aut", "Man")
_WRITABLE_EXTRA = frozenset({"ReportValueFreeze", "InteractAnswerID", "MonEn", "VFlutEn"})


def attribute_writable(da_class: str, attribute: str) -> bool:
    """Whether the orchestration layer writes ``attribute``: operator, external, automatic and
    manual inputs. Everything else (values, feedback, state) is read-only. Why a rule: the
    descriptor's default bindings carry no per-attribute access, but an exported manifest
    must say it, and a PEA server should refuse writes to feedback values."""
    if attribute in _WRITABLE_EXTRA:
        return True
    if da_class == "BinProcessValueIn" and attribute in ("V", "VQC"):
        return True
    if attribute.startswith("State") or attribute.startswith("Src"):
        return attribute.endswith(("Op", "Aut")) and not attribute.endswith("Act")
    return attribute.endswith(_WRITABLE_SUFFIXES)

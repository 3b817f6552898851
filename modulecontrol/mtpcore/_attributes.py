"""The MTP attribute tables: which attributes each data-assembly class and ServiceControl
has, who writes each one, and which carry the assembly's value.

Why one module: the descriptor validator, the driver tag tables, the proxy, the manifest
import/export, ``mtp check`` and the virtual PEA all ask these questions; when each kept its
own list they disagreed (three different sets of "value" attributes). Every attribute name
of VDI/VDE/NAMUR 2658 that code relies on is spelled here.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

Access = Literal["read", "write", "readwrite"]
"""Who may touch an attribute: the PEA's outputs are read, the POL's inputs are readwrite."""


class SCA(StrEnum):
    """ServiceControl attributes the handshake uses (``SCA.STATE_CUR == "StateCur"``)."""

    COMMAND_OP = "CommandOp"
    COMMAND_INT = "CommandInt"
    COMMAND_EXT = "CommandExt"
    COMMAND_EN = "CommandEn"
    STATE_CUR = "StateCur"
    PROCEDURE_OP = "ProcedureOp"
    PROCEDURE_INT = "ProcedureInt"
    PROCEDURE_EXT = "ProcedureExt"
    PROCEDURE_REQ = "ProcedureReq"
    PROCEDURE_CUR = "ProcedureCur"
    STATE_CHANNEL = "StateChannel"
    SRC_CHANNEL = "SrcChannel"


class PA(StrEnum):
    """Attributes of the service-parameter classes (``*ServParam``) the handshake uses."""

    V_OP = "VOp"
    V_INT = "VInt"
    V_EXT = "VExt"
    V_REQ = "VReq"
    V_OUT = "VOut"
    V_FBK = "VFbk"
    V_MIN = "VMin"
    V_MAX = "VMax"
    APPLY_EN = "ApplyEn"
    APPLY_EXT = "ApplyExt"
    APPLY_OP = "ApplyOp"
    APPLY_INT = "ApplyInt"


def mode_attribute(kind: str, which: str, suffix: str) -> str:
    """A mode attribute: ``mode_attribute("State", "Aut", "Act") == "StateAutAct"``.

    ``kind`` is ``State`` (operation mode) or ``Src`` (source mode); ``which`` is an
    :class:`~modulecontrol.mtpcore.OperationMode` or :class:`~modulecontrol.mtpcore.SourceMode`
    abbreviation, ``suffix`` one of ``Op``, ``Aut`` (requests) or ``Act`` (confirmation).
    """
    return f"{kind}{which}{suffix}"


_COMMON = ("TagName", "TagDescription", "WQC", "OSLevel")
_ANA_SCALE = ("VSclMin", "VSclMax", "VUnit")
_OP_SRC = (
    "StateChannel",
    "StateOffAut",
    "StateOpAut",
    "StateAutAut",
    "StateOffOp",
    "StateOpOp",
    "StateAutOp",
    "StateOpAct",
    "StateAutAct",
    "StateOffAct",
    "SrcChannel",
    "SrcExtAut",
    "SrcIntOp",
    "SrcIntAut",
    "SrcExtOp",
    "SrcIntAct",
    "SrcExtAct",
)
_PARAM = (
    "VOp",
    "VInt",
    "VExt",
    "VReq",
    "VOut",
    "VFbk",
    "Sync",
    "ApplyEn",
    "ApplyExt",
    "ApplyOp",
    "ApplyInt",
)
_ANA_LIMITS = (
    "VAHEn",
    "VAHLim",
    "VAHAct",
    "VWHEn",
    "VWHLim",
    "VWHAct",
    "VTHEn",
    "VTHLim",
    "VTHAct",
    "VTLEn",
    "VTLLim",
    "VTLAct",
    "VWLEn",
    "VWLLim",
    "VWLAct",
    "VALEn",
    "VALLim",
    "VALAct",
)
_DRV = (
    "SafePos",
    "SafePosAct",
    "FwdEn",
    "RevEn",
    "StopOp",
    "FwdOp",
    "RevOp",
    "StopAut",
    "FwdAut",
    "RevAut",
    "FwdCtrl",
    "RevCtrl",
    "RevFbkCalc",
    "RevFbk",
    "FwdFbkCalc",
    "FwdFbk",
    "Trip",
    "ResetOp",
    "ResetAut",
    "PermEn",
    "Permit",
    "IntlEn",
    "Interlock",
    "ProtEn",
    "Protect",
    *_OP_SRC,
)
_VLV = (
    "SafePos",
    "SafePosEn",
    "SafePosAct",
    "OpenAut",
    "CloseAut",
    "OpenOp",
    "CloseOp",
    "OpenAct",
    "CloseAct",
    "Ctrl",
    "OpenFbkCalc",
    "OpenFbk",
    "CloseFbkCalc",
    "CloseFbk",
    "ResetOp",
    "ResetAut",
    "PermEn",
    "Permit",
    "IntlEn",
    "Interlock",
    "ProtEn",
    "Protect",
    *_OP_SRC,
)

DA_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "AnaView": ("V", *_ANA_SCALE, *_COMMON),
    "BinView": ("V", "VState0", "VState1", *_COMMON),
    "DIntView": ("V", *_ANA_SCALE, *_COMMON),
    "StringView": ("V", *_COMMON),
    "AnaMon": ("V", *_ANA_SCALE, *_ANA_LIMITS, *_COMMON),
    "BinMon": ("V", "VState0", "VState1", "VFlutEn", "VFlutTi", "VFlutCnt", "VFlutAct", *_COMMON),
    "AnaServParam": (*_PARAM, "VMin", "VMax", *_ANA_SCALE, *_OP_SRC, *_COMMON),
    "DIntServParam": (*_PARAM, "VMin", "VMax", *_ANA_SCALE, *_OP_SRC, *_COMMON),
    "BinServParam": (*_PARAM, "VState0", "VState1", *_OP_SRC, *_COMMON),
    "StringServParam": (*_PARAM, *_OP_SRC, *_COMMON),
    "AnaDrv": (
        *_DRV,
        "RpmSclMax",
        "RpmSclMin",
        "RpmUnit",
        "RpmMin",
        "RpmMax",
        "RpmInt",
        "RpmMan",
        "Rpm",
        "RpmRbk",
        "RpmFbkCalc",
        "RpmFbk",
        "RpmAHEn",
        "RpmAHLim",
        "RpmALEn",
        "RpmALLim",
        *_COMMON,
    ),
    "BinDrv": (*_DRV, *_COMMON),
    "BinVlv": (*_VLV, *_COMMON),
    "MonBinVlv": (
        *_VLV,
        "MonEn",
        "MonSafePos",
        "MonStatErr",
        "MonDynErr",
        "MonStatTi",
        "MonDynTi",
        *_COMMON,
    ),
    "AnaVlv": (
        *_VLV,
        "Pos",
        "PosSclMin",
        "PosSclMax",
        "PosUnit",
        "PosMin",
        "PosMax",
        "PosInt",
        "PosMan",
        "PosRbk",
        "PosFbkCalc",
        "PosFbk",
        *_COMMON,
    ),
    "PIDCtrl": (
        "PV",
        "PVSclMin",
        "PVSclMax",
        "PVUnit",
        "SPMan",
        "SPInt",
        "SPSclMin",
        "SPSclMax",
        "SPUnit",
        "SPIntMin",
        "SPIntMax",
        "SPManMin",
        "SPManMax",
        "SP",
        "MVMan",
        "MV",
        "MVMin",
        "MVMax",
        "MVUnit",
        "MVSclMin",
        "MVSclMax",
        "P",
        "Ti",
        "Td",
        *_OP_SRC,
        *_COMMON,
    ),
    "AnaMan": ("VOut", "VMan", "VRbk", "VFbk", "VMin", "VMax", *_ANA_SCALE, *_COMMON),
    "BinMan": ("VOut", "VMan", "VRbk", "VFbk", "VState0", "VState1", *_COMMON),
    "MonBinDrv": (
        *_DRV,
        "MonEn",
        "MonSafePos",
        "MonStatErr",
        "MonDynErr",
        "MonStatTi",
        "MonDynTi",
        *_COMMON,
    ),
    "BinProcessValueIn": ("V", "VQC", "VState0", "VState1", *_COMMON),
    "ProcedureHealthView": ("CommandInfo", *_COMMON),
    "PeaInformationLabel": (
        "AssetId",
        "ComponentName",
        "DeviceClass",
        "DeviceHealth",
        "DeviceManual",
        "DeviceRevision",
        "HardwareRevision",
        "Manufacturer",
        "ManufacturerUri",
        "Model",
        "ProductCode",
        "ProductInstanceUri",
        "RevisionCounter",
        "SerialNumber",
        "SoftwareRevision",
        *_COMMON,
    ),
}
"""Attributes per data-assembly class (the subset of 2658-4 this release binds and serves)."""

DAClass = Literal[
    "AnaView",
    "BinView",
    "DIntView",
    "StringView",
    "AnaMon",
    "BinMon",
    "AnaServParam",
    "DIntServParam",
    "BinServParam",
    "StringServParam",
    "AnaDrv",
    "BinDrv",
    "BinVlv",
    "MonBinVlv",
    "AnaVlv",
    "PIDCtrl",
    "AnaMan",
    "BinMan",
    "MonBinDrv",
    "BinProcessValueIn",
    "ProcedureHealthView",
    "PeaInformationLabel",
]

PARAM_CLASSES = frozenset({"AnaServParam", "DIntServParam", "BinServParam", "StringServParam"})
VIEW_CLASSES = frozenset({"AnaView", "BinView", "DIntView", "StringView", "AnaMon", "BinMon"})
ANALOG_CLASSES = frozenset(
    {
        "AnaView",
        "DIntView",
        "AnaMon",
        "AnaServParam",
        "DIntServParam",
        "AnaMan",
        "AnaDrv",
        "AnaVlv",
        "PIDCtrl",
    }
)
BINARY_CLASSES = frozenset(
    {
        "BinView",
        "BinMon",
        "BinServParam",
        "BinMan",
        "BinDrv",
        "MonBinDrv",
        "BinVlv",
        "MonBinVlv",
        "BinProcessValueIn",
    }
)
STRING_CLASSES = frozenset({"StringView", "StringServParam", "PeaInformationLabel"})
WRITABLE_CLASSES = PARAM_CLASSES | frozenset(
    {
        "AnaMan",
        "BinMan",
        "AnaDrv",
        "BinDrv",
        "MonBinDrv",
        "BinVlv",
        "MonBinVlv",
        "AnaVlv",
        "PIDCtrl",
        "BinProcessValueIn",
    }
)

STALE_CLASSES = frozenset({"AnaView", "AnaMon", "DIntView", "AnaDrv", "AnaVlv", "PIDCtrl"})
"""Classes whose primary attribute is a measurement (``V``, ``Rpm``, ``Pos``, ``PV``), where a
stale-value watchdog (``stale_after``) makes sense."""

PRIMARY_ATTRIBUTE: dict[str, str] = {
    **{c: "V" for c in VIEW_CLASSES},
    **{c: "VOut" for c in PARAM_CLASSES},
    "AnaMan": "VOut",
    "BinMan": "VOut",
    "AnaDrv": "Rpm",
    "BinDrv": "FwdCtrl",
    "MonBinDrv": "FwdCtrl",
    "BinVlv": "Ctrl",
    "MonBinVlv": "Ctrl",
    "AnaVlv": "Pos",
    "PIDCtrl": "PV",
    "BinProcessValueIn": "V",
    "ProcedureHealthView": "CommandInfo",
    "PeaInformationLabel": "ComponentName",
}
"""The attribute that carries "the value" of an assembly when a recipe says ``P1.Flow``."""

SETPOINT_ATTRIBUTE: dict[str, str] = {
    **{c: "VExt" for c in PARAM_CLASSES},
    "AnaMan": "VMan",
    "BinMan": "VMan",
    "AnaDrv": "RpmMan",
    "BinDrv": "FwdAut",
    "MonBinDrv": "FwdAut",
    "BinVlv": "OpenAut",
    "MonBinVlv": "OpenAut",
    "AnaVlv": "PosMan",
    "PIDCtrl": "SPMan",
    "BinProcessValueIn": "V",
}
"""The attribute written when a recipe sets an assembly (the external/automatic channel)."""


def value_kind(da_class: str) -> Literal["number", "bool", "str"]:
    if da_class in BINARY_CLASSES:
        return "bool"
    if da_class in STRING_CLASSES:
        return "str"
    return "number"



SERVICE_CONTROL_ATTRIBUTES: tuple[str, ...] = (
    "CommandOp",
    "CommandInt",
    "CommandExt",
    "CommandEn",
    "StateCur",
    "ProcedureOp",
    "ProcedureInt",
    "ProcedureExt",
    "ProcedureReq",
    "ProcedureCur",
    *_OP_SRC,
    "PosTextID",
    "InteractQuestionID",
    "InteractAnswerID",
    "InteractAddInfo",
    "ProcParamApplyEn",
    "ProcParamApplyExt",
    "ProcParamApplyOp",
    "ProcParamApplyInt",
    "ConfigParamApplyEn",
    "ConfigParamApplyExt",
    "ConfigParamApplyOp",
    "ConfigParamApplyInt",
    "ReportValueFreeze",
    "WQC",
    "OSLevel",
    "TagName",
    "TagDescription",
)
"""Attributes of an MTP ServiceControl object (2658-4)."""


SERVICE_CONTROL: Final = "ServiceControl"
"""The class name of a service's control object (not a data-assembly class)."""

STATIC_ATTRIBUTES: Final = frozenset({"TagName", "TagDescription"})
"""Attributes written as fixed values in the manifest rather than as OPC UA items."""

INTEGER_ATTRIBUTES: Final = frozenset({
    SCA.STATE_CUR, SCA.COMMAND_EN, SCA.COMMAND_EXT, SCA.COMMAND_OP, SCA.COMMAND_INT,
    SCA.PROCEDURE_EXT, SCA.PROCEDURE_OP, SCA.PROCEDURE_INT, SCA.PROCEDURE_REQ,
    SCA.PROCEDURE_CUR, "PosTextID", "InteractQuestionID", "InteractAnswerID",
})
"""ServiceControl words that are integers on the wire (state and command bits, procedure and
text ids)."""


_BOOLEAN = re.compile(
    r"^(State(Off|Op|Aut)(Op|Aut|Act)|Src(Int|Ext)(Op|Aut|Act)|StateChannel|SrcChannel|"
    r"Apply(En|Ext|Op|Int))$")


def is_boolean_attribute(attribute: str) -> bool:
    """Mode switches, channels and Apply flags: Boolean on the wire in every class."""
    return _BOOLEAN.match(attribute) is not None


_M_VIEW_ANA = ("V", "VSclMin", "VSclMax", "VUnit", "WQC")
_M_VIEW_BIN = ("V", "VState0", "VState1", "WQC")
_M_PARAM = ("VOp", "VInt", "VExt", "VReq", "VOut", "VFbk", "WQC")
_M_DRV = (
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
_M_VLV = ("Ctrl", "OpenOp", "CloseOp", "OpenAut", "CloseAut", "OpenFbk", "CloseFbk", "WQC")

MANDATORY_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "AnaView": _M_VIEW_ANA,
    "AnaMon": _M_VIEW_ANA,
    "DIntView": _M_VIEW_ANA,
    "BinView": _M_VIEW_BIN,
    "BinMon": _M_VIEW_BIN,
    "StringView": ("V", "WQC"),
    "AnaServParam": (*_M_PARAM, "VMin", "VMax", "VUnit"),
    "DIntServParam": (*_M_PARAM, "VMin", "VMax", "VUnit"),
    "BinServParam": (*_M_PARAM, "VState0", "VState1"),
    "StringServParam": _M_PARAM,
    "BinDrv": _M_DRV,
    "MonBinDrv": _M_DRV,
    "AnaDrv": (*_M_DRV, "Rpm", "RpmRbk", "RpmMan", "RpmUnit"),
    "BinVlv": _M_VLV,
    "MonBinVlv": _M_VLV,
    "AnaVlv": ("Pos", "PosMan", "PosRbk", "PosFbk", "PosUnit", "OpenOp", "CloseOp", "WQC"),
    "PIDCtrl": ("PV", "SP", "MV", "SPMan", "SPInt", "MVMan", "P", "Ti", "Td", "WQC"),
    "AnaMan": ("VOut", "VMan", "VRbk", "VMin", "VMax", "VUnit"),
    "BinMan": ("VOut", "VMan", "VRbk", "VState0", "VState1"),
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



ATTRIBUTE_VARIANTS: Final[dict[str, dict[str, str]]] = {
    "StringView": {"Text": "V"},
}
"""Per class, attribute names that real class libraries use for a role this table names
otherwise (variant -> our name). The SIMATIC MTP Creator library (and the manifests built on
it) defines StringView with ``Text`` only; 2658-4 names the same role ``V``. A manifest is
read by role, so either spelling binds the value; we write the standard's name."""


def attribute_role(class_path: str, name: str) -> str:
    """Our name for attribute ``name`` of a class, given the class path (or name) so that a
    vendor class derived from a standard one finds the standard's variants."""
    for seg in reversed(class_path.split("/")):
        variant = ATTRIBUTE_VARIANTS.get(seg, {}).get(name)
        if variant is not None:
            return variant
    return name


_WRITABLE_SUFFIXES = ("Op", "Ext", "Aut", "Man")
_WRITABLE_EXTRA = frozenset({"ReportValueFreeze", "InteractAnswerID", "MonEn", "VFlutEn"})


def writable(da_class: str, attribute: str) -> bool:
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


def access(da_class: str, attribute: str) -> Access:
    """``readwrite`` for what the POL writes (see :func:`writable`), else ``read``."""
    return "readwrite" if writable(da_class, attribute) else "read"


VALUE_ATTRIBUTES: Final = frozenset({
    "V", "VOut", "VFbk", "VReq", "VExt", "VMan", "VRbk", "VOp", "VInt",
    "Ctrl", "OpenAut", "OpenFbk", "OpenOp",
    "Rpm", "RpmMan", "RpmFbk", "RpmRbk", "RpmInt",
    "Pos", "PosMan", "PosRbk", "PosFbk", "PosInt",
    "FwdCtrl", "FwdAut", "FwdFbk",
    "PV", "SP", "SPMan", "SPInt",
})
"""Attributes that carry the assembly's value (in its unit and kind, within its limits):
writes to them are coerced and limit-checked, and an ``Assembly`` link of the simulator
applies to them. Scales, limits, units, mode flags and the controller output do not."""


UNIT_ATTRIBUTES: Final = frozenset(
    {
        "V", "VOut", "VOp", "VInt", "VExt", "VReq", "VFbk", "VMan", "VRbk",
        "VMin", "VMax", "VSclMin", "VSclMax",
        "VAHLim", "VWHLim", "VTHLim", "VTLLim", "VWLLim", "VALLim",
        "PV", "SP", "SPMan", "SPInt", "SPIntMin", "SPIntMax", "SPManMin", "SPManMax",
        "PVSclMin", "PVSclMax", "SPSclMin", "SPSclMax",
        "Rpm", "RpmMan", "RpmInt", "RpmRbk", "RpmFbk", "RpmMin", "RpmMax",
        "RpmSclMin", "RpmSclMax", "RpmAHLim", "RpmALLim",
        "Pos", "PosMan", "PosInt", "PosRbk", "PosFbk", "PosMin", "PosMax",
        "PosSclMin", "PosSclMax",
    }
)  # fmt: skip
"""Attributes in the assembly's own unit or kind: the value-carrying ones plus limits and
scales (in its unit for analog assemblies, true/false for binary ones, text for string
ones). A recipe may compare them with the assembly's unit."""


_BINARY_VALUE: Final = frozenset({"Ctrl", "OpenAut", "OpenFbk", "OpenOp", "FwdCtrl", "FwdAut",
                                  "FwdFbk"})
"""Open/forward flags: the value of a binary valve or drive, a mere switch of an analog one
(an ``AnaVlv``'s value is its position, an ``AnaDrv``'s its speed)."""


def carries_value(da_class: str, attribute: str) -> bool:
    """Whether ``attribute`` of ``da_class`` carries the assembly's value."""
    if attribute not in VALUE_ATTRIBUTES or attribute not in DA_ATTRIBUTES.get(da_class, ()):
        return False
    return attribute not in _BINARY_VALUE or da_class in BINARY_CLASSES


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute of a class with its access and whether it carries the value."""

    name: str
    access: Access
    carries_value: bool


def attributes(da_class: str) -> tuple[Attribute, ...]:
    """The attributes of a data-assembly class, or of ``ServiceControl``, in table order."""
    names = SERVICE_CONTROL_ATTRIBUTES if da_class == SERVICE_CONTROL else DA_ATTRIBUTES[da_class]
    return tuple(
        Attribute(n, access(da_class, n), carries_value(da_class, n)) for n in names
    )


READ_PREFERENCE: Final[dict[str, tuple[str, ...]]] = {
    "AnaMan": ("VOut", "VRbk", "VFbk", "VMan"),
    "BinMan": ("VOut", "VRbk", "VFbk", "VMan"),
    **{c: ("VOut", "VFbk", "VExt") for c in sorted(PARAM_CLASSES)},
    "BinVlv": ("Ctrl", "OpenFbk", "OpenAut"),
    "MonBinVlv": ("Ctrl", "OpenFbk", "OpenAut"),
    "AnaVlv": ("Pos", "PosRbk", "PosFbk", "PosMan"),
    "AnaDrv": ("Rpm", "RpmRbk", "RpmFbk", "RpmMan"),
    "BinDrv": ("FwdCtrl", "FwdFbk", "FwdAut"),
    "PIDCtrl": ("PV",),
}
"""Where to read an assembly's value, best first, among the attributes a transport binds
(classes not listed: ``V``)."""

WRITE_PREFERENCE: Final[dict[str, tuple[str, ...]]] = {
    "AnaMan": ("VMan",),
    "BinMan": ("VMan",),
    **{c: ("VExt",) for c in sorted(PARAM_CLASSES)},
    "BinVlv": ("OpenAut", "Ctrl"),
    "MonBinVlv": ("OpenAut", "Ctrl"),
    "AnaVlv": ("PosMan", "PosInt"),
    "AnaDrv": ("RpmMan", "RpmInt"),
    "BinDrv": ("FwdAut",),
    "PIDCtrl": ("SPMan", "SPInt"),
}
"""Where to write an assembly's value, best first (classes not listed are not written)."""


def read_attribute(da_class: str, name: str, bound: Container[str]) -> str | None:
    """The attribute to read for assembly ``name``'s value among the ``bound`` tags."""
    for attr in READ_PREFERENCE.get(da_class, ("V",)):
        if f"{name}.{attr}" in bound:
            return attr
    return None


def write_attribute(da_class: str, name: str, bound: Container[str]) -> str | None:
    """The attribute written when a recipe or action sets assembly ``name``."""
    for attr in WRITE_PREFERENCE.get(da_class, ()):
        if f"{name}.{attr}" in bound:
            return attr
    return None

"""Which attribute carries "the value" of a data assembly, given what the descriptor binds."""

from __future__ import annotations

from collections.abc import Container

from modulecontrol.descriptors import DataAssembly

_READ_PREFERENCE: dict[str, tuple[str, ...]] = {
    "AnaMan": ("VOut", "VRbk", "VFbk", "VMan"),
    "BinMan": ("VOut", "VRbk", "VFbk", "VMan"),
    "AnaServParam": ("VOut", "VFbk", "VExt"),
    "DIntServParam": ("VOut", "VFbk", "VExt"),
    "BinServParam": ("VOut", "VFbk", "VExt"),
    "StringServParam": ("VOut", "VFbk", "VExt"),
    "BinVlv": ("Ctrl", "OpenFbk", "OpenAut"),
    "MonBinVlv": ("Ctrl", "OpenFbk", "OpenAut"),
    "AnaVlv": ("Pos", "PosRbk", "PosFbk", "PosMan"),
    "AnaDrv": ("Rpm", "RpmRbk", "RpmFbk", "RpmMan"),
    "BinDrv": ("FwdCtrl", "FwdFbk", "FwdAut"),
    "PIDCtrl": ("PV",),
}

_WRITE_PREFERENCE: dict[str, tuple[str, ...]] = {
    "AnaMan": ("VMan",),
    "BinMan": ("VMan",),
    "AnaServParam": ("VExt",),
    "DIntServParam": ("VExt",),
    "BinServParam": ("VExt",),
    "StringServParam": ("VExt",),
    "BinVlv": ("OpenAut", "Ctrl"),
    "MonBinVlv": ("OpenAut", "Ctrl"),
    "AnaVlv": ("PosMan", "PosInt"),
    "AnaDrv": ("RpmMan", "RpmInt"),
    "BinDrv": ("FwdAut",),
    "PIDCtrl": ("SPMan", "SPInt"),
}


def read_attribute(da: DataAssembly, bound: Container[str]) -> str | None:
    """The attribute to read for the assembly's value, among those the transport reaches."""
    for attr in _READ_PREFERENCE.get(da.class_, ("V",)):
        if f"{da.name}.{attr}" in bound:
            return attr
    return None


def write_attribute(da: DataAssembly, bound: Container[str]) -> str | None:
    """The attribute written when a recipe or action sets the assembly."""
    for attr in _WRITE_PREFERENCE.get(da.class_, ()):
        if f"{da.name}.{attr}" in bound:
            return attr
    return None

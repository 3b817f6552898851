"""MTP ``VUnit`` codes for the engineering units a small continuous-flow plant uses.

MTP (VDI/VDE/NAMUR 2658-3) gives units as integer codes from the PROFIBUS PA profile unit
table. This is a deliberately partial table: an unknown code leaves the descriptor's unit
empty and the import report says so, rather than guessing.
"""

from __future__ import annotations

from modulecontrol.units import UnitError, parse_unit

UNIT_CODES: dict[int, str] = {
    1000: "K",
    1001: "degC",
    1010: "m",
    1012: "cm",
    1013: "mm",
    1034: "m**3",
    1038: "L",
    1054: "s",
    1058: "min",
    1059: "h",
    1088: "kg",
    1089: "g",
    1130: "Pa",
    1133: "kPa",
    1137: "bar",
    1138: "mbar",
    1342: "%",
    1351: "L/s",
    1352: "L/min",
    1353: "L/h",
}


def unit_for_code(code: str | None) -> str | None:
    """The pint unit string for an MTP unit code, or ``None`` if unknown."""
    try:
        return UNIT_CODES.get(int((code or "").strip()))
    except ValueError:
        return None


def code_for_unit(unit: str) -> int | None:
    """The MTP code of a unit, compared as units (``l/min`` equals ``L/min``), or ``None``."""
    if not unit:
        return None
    try:
        wanted = parse_unit(unit)
    except UnitError:
        return None
    for code, text in UNIT_CODES.items():
        if parse_unit(text) == wanted:
            return code
    return None

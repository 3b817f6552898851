"""MTP ``VUnit`` codes for the engineering units a small continuous-flow plant uses.

MTP (VDI/VDE/NAMUR 2658-3) gives units as integer codes from the PROFIBUS PA profile unit
table (the unit codes FOUNDATION fieldbus and PROFIBUS PA share). This table holds the
codes of that list that a process plant uses (temperature, angle, length, volume, time,
speed, mass, force, pressure, electrical, flow, ratio) and the codes that name no unit; any
other code leaves the descriptor's unit empty and the import report warns, rather than
guessing.
"""

from __future__ import annotations

from modulecontrol.units import UnitError, parse_unit

UNIT_CODES: dict[int, str] = {
    # temperature, angle
    1000: "K", 1001: "degC", 1002: "degF", 1003: "degR",
    1004: "rad", 1005: "deg", 1006: "arcmin", 1007: "arcsec",
    # length
    1010: "m", 1011: "km", 1012: "cm", 1013: "mm", 1014: "um", 1018: "ft", 1019: "inch",
    # volume
    1034: "m**3", 1035: "dm**3", 1036: "cm**3", 1037: "mm**3",
    1038: "L", 1039: "cL", 1040: "mL", 1041: "hL",
    # time
    1054: "s", 1055: "ks", 1056: "ms", 1057: "us", 1058: "min", 1059: "h", 1060: "d",
    # speed, frequency
    1061: "m/s", 1062: "mm/s", 1063: "m/h", 1064: "km/h", 1077: "Hz",
    # mass, force, pressure
    1088: "kg", 1089: "g", 1090: "mg", 1092: "t", 1120: "N",
    1130: "Pa", 1131: "GPa", 1132: "MPa", 1133: "kPa", 1134: "mPa", 1135: "uPa",
    1136: "hPa", 1137: "bar", 1138: "mbar",
    # electrical
    1209: "A", 1211: "mA", 1240: "V", 1242: "mV", 1281: "ohm",
    # mass flow, ratio, volume flow
    1318: "g/s", 1319: "g/min", 1320: "g/h", 1322: "kg/s", 1323: "kg/min", 1324: "kg/h",
    1325: "kg/d", 1342: "%",
    1347: "m**3/s", 1348: "m**3/min", 1349: "m**3/h", 1350: "m**3/d",
    1351: "L/s", 1352: "L/min", 1353: "L/h",
}  # fmt: skip

NO_UNIT_CODES: dict[int, str] = {
    0: "no unit given",
    1997: "none",
    1998: "unknown",
    1999: "special (manufacturer-specific)",
}
"""Codes of the table that name no engineering unit: the descriptor's unit stays empty, and
the import says so for every one but 0 (which generators write for "not set")."""


def unit_for_code(code: str | None) -> str | None:
    """The pint unit string for an MTP unit code, or ``None`` if unknown."""
    try:
        return UNIT_CODES.get(int((code or "").strip()))
    except ValueError:
        return None


def no_unit_meaning(code: str | None) -> str | None:
    """What a code that names no unit means (``1999`` -> special), or ``None``."""
    try:
        return NO_UNIT_CODES.get(int((code or "").strip()))
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

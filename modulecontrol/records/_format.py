"""Figures and times in the units an engineer reads: h:mm:ss, mg/h, %, never raw seconds.

Why by key suffix: every figure's key already says its unit (``_s``, ``_g_per_h``, ``_pct``,
``_ml``, ``_g``, ``_mol``), in the JSON export as in the run summary, so one table of suffixes
formats the HTML report and the terminal summary alike, and the stored figures stay in base
units for machines.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["format_elapsed", "format_figure"]


def format_elapsed(seconds: float | None, *, signed: bool = False) -> str:
    """``h:mm:ss`` of a duration or of a time since the start of a run (``-`` when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    sign = "-" if seconds < 0 else ("+" if signed else "")
    h, rem = divmod(round(abs(seconds)), 3600)
    m, s = divmod(rem, 60)
    return f"{sign}{h:d}:{m:02d}:{s:02d}"


def _number(x: float) -> str:
    """Four significant digits, without an exponent in the range a plant figure lives in."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    if 1e-3 <= abs(x) < 1e7:
        digits = max(0, 3 - math.floor(math.log10(abs(x))))
        return f"{x:,.{digits}f}".replace(",", "\u2009")  # thin space groups thousands
    return f"{x:.3e}"


# (suffix, ladder of (factor, unit) from the largest: the first whose value is >= 1 is used)
_LADDERS: list[tuple[str, list[tuple[float, str]]]] = [
    ("_g_per_h", [(1e-3, "kg/h"), (1.0, "g/h"), (1e3, "mg/h"), (1e6, "\u00b5g/h")]),
    ("_ml", [(1e-3, "L"), (1.0, "mL"), (1e3, "\u00b5L")]),
    ("_g", [(1e-3, "kg"), (1.0, "g"), (1e3, "mg"), (1e6, "\u00b5g")]),
    ("_mol", [(1.0, "mol"), (1e3, "mmol"), (1e6, "\u00b5mol")]),
    ("_mol_per_l", [(1.0, "mol/L"), (1e3, "mmol/L"), (1e6, "\u00b5mol/L"), (1e9, "nmol/L")]),
]


def format_figure(key: str, value: Any) -> str:
    """One batch figure as text with its unit, chosen from the figure key's suffix.

    Durations and times after start (``*_s``) read ``h:mm:ss``; masses, volumes, amounts and
    throughputs take the prefix that keeps the number at or above 1 (0.0789 g/h reads
    "78.89 mg/h"); percentages read "45.57 %". Interval figures (``changeover.duration_s``)
    are formatted by their own part. Anything else is shown as it is.
    """
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    name = key.rsplit(".", 1)[-1]
    x = float(value)
    if name.endswith("_s"):
        return format_elapsed(x)
    if name.endswith("_pct"):
        return f"{_number(x)} %"
    for suffix, ladder in _LADDERS:
        if name.endswith(suffix):
            base = next(r for r in ladder if r[0] == 1.0)
            # below the smallest prefix by far (a carry-over of 1e-70 mol/L): the base unit
            # with an exponent says "nothing" better than a huge negative power of nano
            tiny = abs(x * ladder[-1][0]) < 1e-3
            factor, unit = next(((f, u) for f, u in ladder if abs(x * f) >= 1),
                                base if not x or tiny else ladder[-1])
            return f"{_number(x * factor)} {unit}"
    return _number(x) if isinstance(value, float) else str(value)

"""Units: one pint registry for the whole process, and helpers to go to and from SI.

Why one registry: pint quantities from different registries cannot be combined, so every
module (descriptors, recipes, simulators) must share this one.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import pint

from modulecontrol.cachedir import user_cache_folder

CACHE_ENV = "MODULECONTROL_UNIT_CACHE"
"""Where pint's parsed unit definitions are cached: a directory, or ``off``. Default:
``$XDG_CACHE_HOME/modulecontrol/units`` (``~/.cache/...``)."""


def unit_cache_folder() -> Path | None:
    """The cache directory for pint's parsed definitions, or None not to cache.

    Why a cache: building the registry parses pint's definitions file, about 0.2 s of every
    command (``validate`` answers within a second). pint stores the parsed result as a pickle
    keyed by the definitions' content; a pickle runs code when loaded, so the directory is
    used only if it is the user's own and no one else may write to it
    (:func:`modulecontrol.cachedir.user_cache_folder`).
    """
    return user_cache_folder("units", CACHE_ENV)


def _registry() -> pint.UnitRegistry[Any]:
    folder = unit_cache_folder()
    if folder is not None:
        try:
            return pint.UnitRegistry(autoconvert_offset_to_baseunit=True, cache_folder=folder)
        except Exception:  # a cache file half written by a process that was killed...
            for stale in (*folder.glob("*.pickle"), *folder.glob("*.json")):
                stale.unlink(missing_ok=True)  # ...is dropped, for the next process to redo
            # this one goes on uncached: the cache costs at most its time, never the registry
    return pint.UnitRegistry(autoconvert_offset_to_baseunit=True)


ureg: pint.UnitRegistry[Any] = _registry()
ureg.define("percent = 0.01 = %")
ureg.define("ppm = 1e-6")
Quantity = ureg.Quantity


class UnitError(ValueError):
    """A unit could not be parsed or is not compatible with the one expected."""


@lru_cache(maxsize=1024)
def parse_unit(text: str) -> pint.Unit:
    """Parse a unit string such as ``mL/min`` or ``degC``; ``""`` and ``1`` mean dimensionless."""
    t = text.strip()
    if t in ("", "1", "-"):
        return ureg.dimensionless
    try:
        unit = ureg.Unit(t)
        exponents = list(unit.dimensionality.values())
    except Exception as exc:
        # pint parses unit text with Python's tokenizer and evaluates it: malformed text
        # raises whatever that raises (TokenError for "(", ZeroDivisionError for "1/0",
        # UndefinedUnitError, ...). Every one of them means "not a unit".
        raise UnitError(f"unknown unit '{text}'") from exc
    if not all(math.isfinite(abs(complex(e))) for e in exponents):
        raise UnitError(f"unit '{text}' has an exponent that is not a finite number")
    return unit


def parse_quantity(value: Any, default_unit: str | None = None) -> Any:
    """Parse ``'0.5 mL/min'``, ``'60 degC'`` or a bare number (in ``default_unit``).

    Rejects NaN and infinity: a setpoint or limit that is not a finite number is always a
    mistake in process control.
    """
    if isinstance(value, bool):
        raise UnitError(f"expected a quantity, got boolean {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise UnitError(f"value must be finite, got {value!r}")
        return Quantity(float(value), parse_unit(default_unit or ""))
    if not isinstance(value, str):
        raise UnitError(f"expected a number or a quantity string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise UnitError("empty quantity")
    number, _, unit = text.partition(" ")
    try:
        magnitude = float(number)
    except ValueError:
        raise UnitError(f"cannot read a number in '{value}' (write e.g. '0.5 mL/min')") from None
    if not math.isfinite(magnitude):
        raise UnitError(f"value must be finite, got '{value}'")
    unit = unit.strip()
    return Quantity(magnitude, parse_unit(unit if unit else (default_unit or "")))


def convert(value: Any, to_unit: str, default_unit: str | None = None) -> float:
    """Magnitude of ``value`` in ``to_unit``; raises :class:`UnitError` when incompatible."""
    q = parse_quantity(value, default_unit if default_unit is not None else to_unit)
    try:
        result = float(q.to(parse_unit(to_unit)).magnitude)
    except pint.errors.DimensionalityError as exc:
        raise UnitError(f"'{value}' is not compatible with unit '{to_unit}'") from exc
    return _finite(result, value, to_unit)


def _finite(result: float, value: Any, unit: str) -> float:
    """A conversion of a finite value can still overflow (``1e308 km`` in mm): refused too."""
    if not math.isfinite(result):
        raise UnitError(f"'{value}' is out of range in {unit or 'SI units'}")
    return result


def compatible(unit_a: str, unit_b: str) -> bool:
    """True when quantities in the two units can be converted into each other."""
    try:
        return bool(parse_unit(unit_a).dimensionality == parse_unit(unit_b).dimensionality)
    except UnitError:
        return False


def to_si(value: Any, default_unit: str | None = None) -> float:
    """Magnitude in the SI base units (temperatures in kelvin)."""
    return _finite(float(parse_quantity(value, default_unit).to_base_units().magnitude), value, "")

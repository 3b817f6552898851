"""Unit-aware parameter types: every value is stored in SI, and written with its unit.

Two callers, two rules, one meaning:

* **Files** (a module type's or plant's ``simulator`` section) are validated with the context
  ``{"units_required": True}`` (see :data:`UNITS_REQUIRED`): a bare number where a dimension
  is expected is refused with the expected dimension and an example (``k_ref needs a unit of
  dimension [volume]/([substance][time]), e.g. '0.299 L/(mol*s)'``), so ``volume: 2`` can
  never silently mean 2 m**3 (docs/descriptors.md, "Units").
* **Python** callers build ``Params`` directly and pass SI floats; quantity strings
  (``"60 degC"``) work there too. The models never guess a unit from a magnitude.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationInfo

from modulecontrol.units import UnitError, convert, parse_quantity

UNITS_REQUIRED: dict[str, Any] = {"units_required": True}
"""Validation context for parameters read from files: dimensional values must carry units."""

DIMENSIONS: dict[str, tuple[str, str]] = {
    "m**3/s": ("[volume]/[time]", "mL/min"),
    "m**3": ("[volume]", "mL"),
    "m": ("[length]", "mm"),
    "m**2": ("[area]", "cm**2"),
    "K": ("[temperature]", "degC"),
    "delta_degC": ("[temperature] difference", "K"),
    "Pa": ("[pressure]", "bar"),
    "s": ("[time]", "s"),
    "W": ("[power]", "W"),
    "N": ("[force]", "N"),
    "kg/mol": ("[mass]/[substance]", "g/mol"),
    "kg/m**3": ("[mass]/[volume]", "kg/m**3"),
    "Pa*s": ("[viscosity]", "mPa*s"),
    "J/(kg*K)": ("[energy]/([mass][temperature])", "J/(kg*K)"),
    "J/(m**3*K)": ("[energy]/([volume][temperature])", "J/(m**3*K)"),
    "J/K": ("[energy]/[temperature]", "J/K"),
    "W/K": ("[power]/[temperature]", "W/K"),
    "W/(m**2*K)": ("[power]/([area][temperature])", "W/(m**2*K)"),
    "J/mol": ("[energy]/[substance]", "kJ/mol"),
    "mol/m**3": ("[substance]/[volume]", "mol/L"),
    "m**2/s": ("[area]/[time]", "m**2/s"),
    "m/s": ("[length]/[time]", "m/s"),
    "m**3/s**2": ("[volume]/[time]**2", "mL/min/s"),
    "1/s": ("1/[time]", "1/s"),
    "1/(m**3*s)": ("1/([volume][time])", "1/(m**3*s)"),
}
"""SI unit of a parameter -> (its dimension in words, an example unit) for error messages."""


def needs_unit(field: str | None, value: Any, dimension: str, example: str) -> str:
    """The error text for a bare number where a dimension is expected (``field`` is left out
    where the error's location already names it)."""
    return (f"{field + ' ' if field else ''}needs a unit of dimension {dimension}, e.g. "
            f"'{value} {example}' (bare numbers are only for dimensionless parameters; "
            "docs/descriptors.md, Units)")


def is_bare(value: Any) -> bool:
    """True for a number, or a string that is only a number, i.e. a value without a unit."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if isinstance(value, str):
        try:
            float(value.strip())
        except ValueError:
            return False
        return True
    return False


def si(value: Any, unit: str) -> float:
    """``value`` (number in SI, or quantity string) converted to the SI ``unit``."""
    if isinstance(value, bool):
        raise UnitError(f"expected a quantity in {unit}, got boolean {value!r}")
    return convert(value, unit, default_unit=unit)


def units_required(info: ValidationInfo | None) -> bool:
    """Whether this validation reads a file, where dimensional values must carry units."""
    return bool(info is not None and info.context and info.context.get("units_required"))


def _si_validator(unit: str) -> BeforeValidator:
    dimension, example = DIMENSIONS[unit]

    def check(value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        # zero is zero in every unit but an offset one (0 degC is not 0 K)
        if units_required(info) and is_bare(value) and (float(value) != 0 or unit == "K"):
            parse_quantity(value)  # NaN and infinity are named as such
            raise ValueError(needs_unit(None, value, dimension, example))
        return si(value, unit)

    return BeforeValidator(check)


Flow = Annotated[float, _si_validator("m**3/s")]
Volume = Annotated[float, _si_validator("m**3")]
Length = Annotated[float, _si_validator("m")]
Area = Annotated[float, _si_validator("m**2")]
Temperature = Annotated[float, _si_validator("K")]
TemperatureDifference = Annotated[float, _si_validator("delta_degC")]
Pressure = Annotated[float, _si_validator("Pa")]
Time = Annotated[float, _si_validator("s")]
Power = Annotated[float, _si_validator("W")]
Force = Annotated[float, _si_validator("N")]
MolarMass = Annotated[float, _si_validator("kg/mol")]
Density = Annotated[float, _si_validator("kg/m**3")]
Viscosity = Annotated[float, _si_validator("Pa*s")]
HeatCapacity = Annotated[float, _si_validator("J/(kg*K)")]
VolumetricHeatCapacity = Annotated[float, _si_validator("J/(m**3*K)")]
HeatCapacityTotal = Annotated[float, _si_validator("J/K")]
Conductance = Annotated[float, _si_validator("W/K")]
HeatTransferCoefficient = Annotated[float, _si_validator("W/(m**2*K)")]
MolarEnergy = Annotated[float, _si_validator("J/mol")]
Concentration = Annotated[float, _si_validator("mol/m**3")]
Diffusivity = Annotated[float, _si_validator("m**2/s")]
Velocity = Annotated[float, _si_validator("m/s")]
FlowRamp = Annotated[float, _si_validator("m**3/s**2")]
Rate = Annotated[float, _si_validator("1/s")]
NucleationRate = Annotated[float, _si_validator("1/(m**3*s)")]

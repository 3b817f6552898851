"""Unit-aware parameter types: every value is stored in SI, but may be written with units.

A bare number is taken to be already in SI (kelvin for temperatures, Pa for pressures): the
models never guess a unit from a magnitude. Write ``"60 degC"`` or ``"1 mL/min"`` to be explicit.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

from modulecontrol.units import UnitError, convert


def si(value: Any, unit: str) -> float:
    """``value`` (number in SI, or quantity string) converted to the SI ``unit``."""
    if isinstance(value, bool):
        raise UnitError(f"expected a quantity in {unit}, got boolean {value!r}")
    return convert(value, unit, default_unit=unit)


def _si_validator(unit: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if value is None:
            return None
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

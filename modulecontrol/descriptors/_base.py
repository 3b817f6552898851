"""Base model for every descriptor: strict, finite, and helpful when keys are wrong."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from modulecontrol.units import UnitError, parse_quantity, parse_unit

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Model(BaseModel):
    """Strict base: unknown keys rejected, NaN and infinity rejected, assignment validated."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        populate_by_name=True,
        validate_assignment=True,
        str_strip_whitespace=True,
        use_enum_values=True,
    )


def _check_ident(v: str) -> str:
    if not _IDENT.match(v):
        raise ValueError(
            f"'{v}' is not a valid name: use letters, digits and '_', not starting with a digit"
        )
    return v


def _check_unit(v: str) -> str:
    try:
        parse_unit(v)
    except UnitError as exc:
        raise ValueError(str(exc)) from None
    return v


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError("value must be a finite number")
    return v


Ident = Annotated[str, AfterValidator(_check_ident)]
UnitStr = Annotated[str, AfterValidator(_check_unit)]


def quantity_in(unit: str, value: Any) -> float:
    """Convert a number or quantity string into ``unit``; errors say what was expected."""
    try:
        q = parse_quantity(value, unit)
        return float(q.to(parse_unit(unit)).magnitude)
    except UnitError as exc:
        raise ValueError(str(exc)) from None
    except Exception as exc:  # pint's DimensionalityError and friends
        raise ValueError(f"'{value}' cannot be expressed in '{unit or 'dimensionless'}'") from exc


def delta_in(unit: str, value: Any) -> float:
    """Convert a *difference* (a deadband, a noise level) into ``unit``.

    Why not :func:`quantity_in`: for offset units a difference is not a temperature. ``0.5 K``
    as a deadband of a ``degC`` signal is 0.5, not -272.65; the zero of the value's own unit
    is subtracted after converting.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a number or a quantity like '0.5 {unit or '%'}'")
    try:
        q = parse_quantity(value, unit)
        target = parse_unit(unit)
        zero = parse_quantity(0.0, str(q.units))
        return float(q.to(target).magnitude - zero.to(target).magnitude)
    except UnitError as exc:
        raise ValueError(str(exc)) from None
    except Exception as exc:  # pint's DimensionalityError and friends
        raise ValueError(f"'{value}' cannot be expressed in '{unit or 'dimensionless'}'") from exc


def _seconds(v: Any) -> Any:
    if isinstance(v, str):
        return quantity_in("s", v)
    return v


Seconds = Annotated[float, BeforeValidator(_seconds)]
"""A duration: a number of seconds or a string such as ``'500 ms'`` or ``'2 min'``."""

"""MTP data assemblies (VDI/VDE/NAMUR 2658-3/-4) as descriptor data.

Bindings and actions are checked against the class attribute tables of
:mod:`modulecontrol.mtpcore`: binding ``VExt`` on an ``AnaView`` is an error with a
suggestion, not a silent no-op.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from modulecontrol.descriptors._base import Ident, Model, Seconds, UnitStr, delta_in, quantity_in
from modulecontrol.descriptors._bindings import AttributeBinding
from modulecontrol.errors import did_you_mean
from modulecontrol.mtpcore import (
    DA_ATTRIBUTES,
    STALE_CLASSES,
    WRITABLE_CLASSES,
    DAClass,
    value_kind,
)
from modulecontrol.units import compatible


class DataAssembly(Model):
    """One MTP data assembly of a module type: a measured value, parameter, drive or valve."""

    name: Ident
    class_: DAClass = Field(alias="class")
    description: str = ""
    unit: UnitStr = ""
    min: Any = None
    max: Any = None
    scale_min: Any = None
    scale_max: Any = None
    default: Any = None
    safe_value: Any = None
    state0: str = "false"
    state1: str = "true"
    idempotent: bool = False
    """Whether writing the same value twice is harmless, so a timed-out write may be retried."""
    stale_after: Seconds | None = Field(default=None, gt=0)
    """Stale-value watchdog (off when None): the module is faulted when this measured value
    has not moved by more than ``deadband`` for this long (simulated seconds) although the
    module answers. Off by default, because many values are legitimately constant."""
    deadband: Any = None
    """Changes up to this size (in ``unit``; a difference, so ``0.5 K`` on a ``degC`` value is
    0.5) do not count as movement for ``stale_after``: quantisation or last-digit flicker of
    a frozen transmitter. Default 0: any change counts."""
    pressure_reference: Literal["absolute", "gauge", "differential"] | None = None
    """What a pressure is measured against: vacuum (absolute), ambient (gauge) or another
    point of the line (differential, e.g. a regulator's set point above its outlet). Reports
    print it with the unit (``barg``, ``bara``, ``kPa, differential``) and never put
    pressures of different references on one axis. Only for assemblies whose unit is a
    pressure."""
    bindings: dict[str, AttributeBinding] = Field(default_factory=dict)

    @field_validator("min", "max", "scale_min", "scale_max", mode="before")
    @classmethod
    def _limit(cls, v: Any) -> Any:
        if v is None or isinstance(v, bool):
            if isinstance(v, bool):
                raise ValueError("a limit must be a number or a quantity like '10 mL/min'")
            return v
        if not isinstance(v, int | float | str):
            raise ValueError("a limit must be a number or a quantity like '10 mL/min'")
        return v

    @model_validator(mode="after")
    def _check(self) -> DataAssembly:
        kind = value_kind(self.class_)
        for fname in ("min", "max", "scale_min", "scale_max"):
            raw = getattr(self, fname)
            if raw is None:
                continue
            if kind != "number":
                raise ValueError(f"'{fname}' applies only to analog assemblies, not {self.class_}")
            object.__setattr__(self, fname, quantity_in(self.unit, raw))
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        self._check_watchdog(kind)
        if self.pressure_reference is not None and not compatible(self.unit, "Pa"):
            raise ValueError(f"'pressure_reference' applies only to pressures, and the unit of"
                             f" {self.name} is '{self.unit or 'dimensionless'}'")
        for fname in ("default", "safe_value"):
            raw = getattr(self, fname)
            if raw is None:
                continue
            object.__setattr__(self, fname, self.coerce(raw, what=fname))
        allowed = DA_ATTRIBUTES[self.class_]
        for attr in self.bindings:
            if attr not in allowed:
                raise ValueError(
                    f"'{attr}' is not an attribute of {self.class_}{did_you_mean(attr, allowed)}"
                )
        return self

    def _check_watchdog(self, kind: str) -> None:
        if self.stale_after is None and self.deadband is None:
            return
        if kind != "number" or self.class_ not in STALE_CLASSES:
            raise ValueError(
                f"'stale_after' and 'deadband' apply to measured analog values "
                f"({', '.join(sorted(STALE_CLASSES))}), not {self.class_}: a set point or "
                "parameter is constant by design")
        if self.deadband is None:
            return
        if self.stale_after is None:
            raise ValueError("'deadband' has no effect without 'stale_after'")
        try:
            band = delta_in(self.unit, self.deadband)
        except ValueError as exc:
            raise ValueError(f"deadband of {self.name}: {exc}") from None
        if not band >= 0:
            raise ValueError(f"deadband of {self.name} must not be negative, "
                             f"got {self.deadband!r}")
        object.__setattr__(self, "deadband", band)

    def coerce(self, raw: Any, what: str = "value") -> Any:
        """Convert a YAML or recipe value to this assembly's kind and unit, checking limits."""
        kind = value_kind(self.class_)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if raw in (0, 1):
                return bool(raw)
            if isinstance(raw, str) and raw in (self.state0, self.state1):
                return raw == self.state1
            raise ValueError(f"{what} of {self.name} must be true/false, got {raw!r}")
        if kind == "str":
            return str(raw)
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError(f"{what} of {self.name} must be a number, got {raw!r}")
        value = quantity_in(self.unit, raw)
        lo, hi = self.min, self.max
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(
                f"{what} {raw!r} of {self.name} is outside its limits "
                f"[{_fmt(lo)}, {_fmt(hi)}] {self.unit}".rstrip()
            )
        if self.class_ in ("DIntView", "DIntServParam"):
            if not float(value).is_integer():
                raise ValueError(f"{what} of {self.name} must be a whole number, got {raw!r}")
            return int(value)
        return value

    @property
    def writable(self) -> bool:
        return self.class_ in WRITABLE_CLASSES

    @property
    def kind(self) -> Literal["number", "bool", "str"]:
        return value_kind(self.class_)


def _fmt(v: float | None) -> str:
    return "-inf" if v is None else f"{v:g}"

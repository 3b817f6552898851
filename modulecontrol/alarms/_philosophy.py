"""The alarm philosophy: the plant's declared rules for shelving, re-alarming, chattering,
standing and stale alarms and floods (``alarm_philosophy:`` of the plant file).

Why in the plant file: ISA-18.2 makes the philosophy a document of the site, not of a recipe;
every recipe run on the line, and the KPIs of every day, are judged by the same rules.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from modulecontrol.units import convert

__all__ = ["AlarmPhilosophy", "Chattering", "Duration", "seconds"]


def seconds(v: Any) -> float:
    """``'10 min'``, ``90`` (s) -> seconds; a negative or non-time value is refused."""
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ValueError(f"{v!r} is not a duration (give e.g. '10 min' or 600)")
    s = convert(v, "s", "s")
    if s < 0:
        raise ValueError(f"a duration must not be negative, got {v!r}")
    return s


Duration = Annotated[float, BeforeValidator(seconds)]
"""A duration in seconds, written with a unit (``'10 min'``) or as a number of seconds."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Chattering(_Model):
    """An alarm is chattering at ``activations`` or more within ``window``; ``policy`` says
    what is done: ``flag`` marks it (the KPIs and the station say so), ``shelve`` shelves it
    for ``shelve_for`` by the program (user ``auto``), with the reason saying why."""

    activations: int = Field(default=3, ge=2)
    window: Duration = 60.0
    policy: Literal["flag", "shelve"] = "flag"
    shelve_for: Duration = 600.0


class AlarmPhilosophy(_Model):
    """The rules every alarm of the line follows, unless an alarm declares its own."""

    max_shelve: Duration = 8 * 3600.0
    """The longest time an alarm may be shelved; a longer request is refused."""
    realarm_after: Duration | None = None
    """Default re-alarm time of standing acknowledged alarms (None: no re-alarm)."""
    chattering: Chattering = Field(default_factory=lambda: Chattering())
    standing_after: Duration = 1800.0
    """An alarm active longer than this is *standing* (KPI)."""
    stale_after: Duration = 24 * 3600.0
    """An alarm active longer than this is *stale* (KPI)."""
    flood_alarms: int = Field(default=10, ge=1)
    """More than this many alarms within ``flood_window`` is a flood (ISA-18.2: 10 / 10 min)."""
    flood_window: Duration = 600.0
    operators: int = Field(default=1, ge=1)
    """Operator positions sharing the alarms (for alarms per 10 minutes per operator)."""
    out_of_service_roles: tuple[str, ...] = ("engineer", "admin")
    """Roles that may take an alarm out of service or return it."""

"""The outcome of a conformance check: shared by the static checks (``_check``) and the live
ones (``_live``), which therefore do not import each other both ways."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modulecontrol.errors import Location

Status = Literal["pass", "fail", "warn", "skip"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one subject (a data assembly, a service, the file)."""

    check: str
    subject: str
    status: Status
    detail: str = ""
    location: Location | None = None

    @property
    def passed(self) -> bool:
        return self.status != "fail"

"""What a check of one of our own exports may report besides passes."""

from __future__ import annotations

from collections.abc import Sequence

from modulecontrol.mtp import CheckResult

HEALTH_VIEW_RULE = "2658-1 table 36 #4e/#4f"
"""A procedure without a ProcedureHealthView of the same name in the module type: exported
without the RefID, warned about (the built-in types have none yet)."""


def not_clean(results: Sequence[CheckResult]) -> list[CheckResult]:
    """Results other than passes, except the health-view warning and the skip of the 2022
    rules on a manifest 1.0.0."""
    return [
        r for r in results
        if r.status != "pass"
        and not (r.status == "warn" and r.subject == HEALTH_VIEW_RULE)
        and not (r.status == "skip" and r.check == "structure")
    ]

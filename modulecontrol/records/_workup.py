"""Extractive work-up recovery: one formula for the simulators and the batch report.

Why it lives here: the lomustine model (``modulecontrol.simulators.lomustine.Workup``) and the
batch report's isolated figures must use the same recovery, or a simulated campaign's report
would disagree with the model's own KPIs. Both import :func:`extraction_recovery`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


def extraction_recovery(partition_coefficient: float, phase_ratio: float, washes: int) -> float:
    """Fraction of the product left in the organic phase after ``washes`` aqueous washes.

    Each wash is an ideal equilibrium stage with Nernst partition coefficient
    K = c_org/c_aq and phase ratio r = V_org/V_aq, so it keeps K r / (1 + K r) of the product:
    recovery = (K r / (1 + K r)) ** washes.
    """
    if partition_coefficient <= 0 or phase_ratio <= 0:
        raise ValueError("partition_coefficient and phase_ratio must be > 0")
    if washes < 0:
        raise ValueError("washes must be >= 0")
    kr = partition_coefficient * phase_ratio
    return float((kr / (1.0 + kr)) ** washes)


class WorkupSpec(BaseModel):
    """Offline work-up in the report metadata (``figures.workup``); see extraction_recovery."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition_coefficient: float = Field(gt=0)
    phase_ratio: float = Field(1.0, gt=0)
    washes: int = Field(1, ge=0)

    @property
    def recovery(self) -> float:
        return extraction_recovery(self.partition_coefficient, self.phase_ratio, self.washes)

"""A campaign kept in the records database: set points audited, outcomes as chained events.

Why events and the audit trail rather than a table of its own: both are already one keyed,
anchored chain that a release depends on (docs/records.md), written by the one writer. The
set points an experiment writes are an audited action of the campaign (who: ``optimizer``;
why: which experiment), and each outcome is an ``optimize_experiment`` event whose payload is
everything the search needs to replay; a restarted campaign reads those events back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from modulecontrol.events import EventKind
from modulecontrol.records import Historian, query_events

from ._campaign import ExperimentRecord

OPTIMIZER_USER = "optimizer"
"""The user the campaign's set-point changes are audited under."""


def recorded_experiments(db: str | Path, name: str) -> list[ExperimentRecord]:
    """The experiments of campaign ``name`` in the records database, in order (every run's:
    a campaign continues across runs until its budget is spent; a new name starts anew)."""
    rows = query_events(db, EventKind.OPTIMIZE_EXPERIMENT.value, name)
    records = [ExperimentRecord.from_payload(json.loads(p)) for _, _, p in rows]
    for i, r in enumerate(records):
        if r.index != i:
            raise ValueError(f"campaign '{name}': recorded experiment {r.index} where {i} was "
                             "expected; two campaigns share this name: rename one")
    return records


class HistorianJournal:
    """Experiments of the campaign ``name`` in ``historian``'s database."""

    def __init__(self, historian: Historian, name: str, experiments: int) -> None:
        self.historian = historian
        self.name = name
        self.experiments = experiments

    def history(self) -> Sequence[ExperimentRecord]:
        self.historian.flush_sync()
        return recorded_experiments(self.historian.path, self.name)

    async def applying(self, index: int, setpoints: Mapping[str, float]) -> None:
        await asyncio.wrap_future(self.historian.record_operator_action(
            OPTIMIZER_USER, "optimize_setpoints", self.name, new_value=dict(setpoints),
            reason=f"experiment {index + 1} of {self.experiments}"))

    async def finished(self, record: ExperimentRecord) -> None:
        await self.historian.commit_event(EventKind.OPTIMIZE_EXPERIMENT, self.name,
                                          record.payload())

"""Batch records: historian, audit trail, run records and batch reports (one SQLite file).

Public API::

    Historian, TagConfig, EventKind, RunResult, AlarmPriority   # recording
    AuditTrail, AuditEntry, AuditIssue, AuditReport, verify_audit   # 21 CFR Part 11 style trail
    report, run_figures, list_runs, RunInfo, FigureSpec, StreamSpec, SteadyStateSpec,
    BalanceSpec, WorkupSpec, extraction_recovery                 # reports
    IntervalSpec
    query_tag, TagHistory                                        # historian queries

See docs/records.md for the loss rules and the figures metadata.
"""

from modulecontrol.events import EventKind  # the run's event kinds, stored by their value
from modulecontrol.records._audit import AuditEntry, AuditTrail, verify_audit
from modulecontrol.records._chain import AuditIssue, AuditReport, anchor_path_for, key_path_for
from modulecontrol.records._db import DEFAULT_DB, RecordsError
from modulecontrol.records._historian import (
    OVERFLOW_ALARM,
    QUALITY_BAD,
    QUALITY_GOOD,
    AlarmPriority,
    Historian,
    HistorianStats,
    RunResult,
    TagConfig,
    TagFilter,
    content_hash,
)
from modulecontrol.records._query import TagHistory, query_tag
from modulecontrol.records._report import (
    BalanceSpec,
    FigureSpec,
    IntervalSpec,
    RunInfo,
    SteadyStateSpec,
    StreamSpec,
    list_runs,
    report,
    run_figures,
)
from modulecontrol.records._workup import WorkupSpec, extraction_recovery

__all__ = [
    "DEFAULT_DB",
    "OVERFLOW_ALARM",
    "QUALITY_BAD",
    "QUALITY_GOOD",
    "AlarmPriority",
    "AuditEntry",
    "AuditIssue",
    "AuditReport",
    "AuditTrail",
    "BalanceSpec",
    "EventKind",
    "FigureSpec",
    "Historian",
    "HistorianStats",
    "IntervalSpec",
    "RecordsError",
    "RunInfo",
    "RunResult",
    "SteadyStateSpec",
    "StreamSpec",
    "TagConfig",
    "TagFilter",
    "TagHistory",
    "WorkupSpec",
    "anchor_path_for",
    "content_hash",
    "extraction_recovery",
    "key_path_for",
    "list_runs",
    "query_tag",
    "report",
    "run_figures",
    "verify_audit",
]

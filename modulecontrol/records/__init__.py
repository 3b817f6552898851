"""Batch records: historian, audit trail, run records and batch reports (one SQLite file).

Public API::

    Historian, TagConfig, EventKind, RunResult, AlarmPriority   # recording
    AuditTrail, AuditEntry, AuditIssue, AuditReport, verify_audit   # 21 CFR Part 11 style trail
    report, report_images, run_figures, run_samples, RunSamples, list_runs, RunInfo,
    FigureSpec, StreamSpec, SteadyStateSpec,
    BalanceSpec, WorkupSpec, extraction_recovery                 # reports
    IntervalSpec, IntervalValue, LotSpec, lot_rows               # changeovers and lots
    format_figure, format_elapsed                               # figures in human units
    query_tag, query_events, last_event, TagHistory              # historian queries

See docs/records.md for the loss rules and the figures metadata.
"""

from modulecontrol.events import EventKind  # the run's event kinds, stored by their value
from modulecontrol.records._alarmkpis import alarm_changes, alarm_kpis_of, day_window
from modulecontrol.records._audit import AuditEntry, AuditTrail, verify_audit
from modulecontrol.records._chain import AuditIssue, AuditReport, anchor_path_for, key_path_for
from modulecontrol.records._db import DEFAULT_DB, RecordsError
from modulecontrol.records._format import format_elapsed, format_figure
from modulecontrol.records._historian import (
    DATA_LOSS_ALARM,
    OVERFLOW_ALARM,
    QUALITY_BAD,
    QUALITY_GOOD,
    AlarmPriority,
    DataLoss,
    Historian,
    HistorianStats,
    RunResult,
    TagConfig,
    TagFilter,
    content_hash,
)
from modulecontrol.records._query import TagHistory, last_event, query_events, query_tag
from modulecontrol.records._report import (
    AUTOMATIC_ANSWER,
    BalanceSpec,
    FigureSpec,
    IntervalSpec,
    IntervalValue,
    LotSpec,
    RunInfo,
    RunSamples,
    SteadyStateSpec,
    StreamSpec,
    last_sample_time,
    list_runs,
    lot_rows,
    report,
    report_images,
    run_figures,
    run_samples,
)
from modulecontrol.records._workup import WorkupSpec, extraction_recovery

__all__ = [
    "AUTOMATIC_ANSWER",
    "DATA_LOSS_ALARM",
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
    "DataLoss",
    "EventKind",
    "FigureSpec",
    "Historian",
    "HistorianStats",
    "IntervalSpec",
    "IntervalValue",
    "LotSpec",
    "RecordsError",
    "RunInfo",
    "RunResult",
    "RunSamples",
    "SteadyStateSpec",
    "StreamSpec",
    "TagConfig",
    "TagFilter",
    "TagHistory",
    "WorkupSpec",
    "alarm_changes",
    "alarm_kpis_of",
    "anchor_path_for",
    "content_hash",
    "day_window",
    "extraction_recovery",
    "format_elapsed",
    "format_figure",
    "key_path_for",
    "last_event",
    "last_sample_time",
    "list_runs",
    "lot_rows",
    "query_events",
    "query_tag",
    "report",
    "report_images",
    "run_figures",
    "run_samples",
    "verify_audit",
]

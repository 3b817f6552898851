"""Batch records: historian, audit trail, run records and batch reports (one SQLite file).

Public API::

    Historian, TagConfig, EventKind, RunResult, AlarmPriority   # recording
    AuditTrail, AuditEntry, AuditIssue, AuditReport, verify_audit   # 21 CFR Part 11 style trail
    RecipeBook, RecipeVersion, RecipeState, LIFECYCLE, Signature, Meaning   # versions, signatures
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
from modulecontrol.records._signing import (
    LIFECYCLE,
    Meaning,
    RecipeBook,
    RecipeState,
    RecipeVersion,
    Signature,
    SignatureError,
    canonical_recipe_text,
    effective_version,
    recipe_content_hash,
    run_record_digest,
)
from modulecontrol.records._workup import WorkupSpec, extraction_recovery

__all__ = [
    "AUTOMATIC_ANSWER",
    "DATA_LOSS_ALARM",
    "DEFAULT_DB",
    "LIFECYCLE",
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
    "Meaning",
    "RecipeBook",
    "RecipeState",
    "RecipeVersion",
    "RecordsError",
    "RunInfo",
    "RunResult",
    "RunSamples",
    "Signature",
    "SignatureError",
    "SteadyStateSpec",
    "StreamSpec",
    "TagConfig",
    "TagFilter",
    "TagHistory",
    "WorkupSpec",
    "alarm_changes",
    "alarm_kpis_of",
    "anchor_path_for",
    "canonical_recipe_text",
    "content_hash",
    "day_window",
    "effective_version",
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
    "recipe_content_hash",
    "report",
    "report_images",
    "run_figures",
    "run_record_digest",
    "run_samples",
    "verify_audit",
]

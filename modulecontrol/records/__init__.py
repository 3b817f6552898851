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

Why the names load on first use (PEP 562), as in :mod:`modulecontrol.simulators`:
``validate`` needs :class:`FigureSpec` only (to check a recipe's ``report:`` section), and
importing every module here (the report builder with numpy and the plots, the historian,
the signatures) cost it tens of milliseconds. ``from modulecontrol.records import report``
works as before and imports the module that defines it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modulecontrol.events import EventKind  # the run's event kinds, stored by their value
from modulecontrol.lazy import lazy_names

if TYPE_CHECKING:
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
        RunInfo,
        RunSamples,
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
    from modulecontrol.records._spec import (
        BalanceSpec,
        FigureSpec,
        IntervalSpec,
        IntervalValue,
        LotSpec,
        SteadyStateSpec,
        StreamSpec,
    )
    from modulecontrol.records._workup import WorkupSpec, extraction_recovery

_WHERE: dict[str, str] = {
    "AUTOMATIC_ANSWER": "_report",
    "AlarmPriority": "_historian",
    "AuditEntry": "_audit",
    "AuditIssue": "_chain",
    "AuditReport": "_chain",
    "AuditTrail": "_audit",
    "BalanceSpec": "_spec",
    "DATA_LOSS_ALARM": "_historian",
    "DEFAULT_DB": "_db",
    "DataLoss": "_historian",
    "FigureSpec": "_spec",
    "Historian": "_historian",
    "HistorianStats": "_historian",
    "IntervalSpec": "_spec",
    "IntervalValue": "_spec",
    "LIFECYCLE": "_signing",
    "LotSpec": "_spec",
    "Meaning": "_signing",
    "OVERFLOW_ALARM": "_historian",
    "QUALITY_BAD": "_historian",
    "QUALITY_GOOD": "_historian",
    "RecipeBook": "_signing",
    "RecipeState": "_signing",
    "RecipeVersion": "_signing",
    "RecordsError": "_db",
    "RunInfo": "_report",
    "RunResult": "_historian",
    "RunSamples": "_report",
    "Signature": "_signing",
    "SignatureError": "_signing",
    "SteadyStateSpec": "_spec",
    "StreamSpec": "_spec",
    "TagConfig": "_historian",
    "TagFilter": "_historian",
    "TagHistory": "_query",
    "WorkupSpec": "_workup",
    "alarm_changes": "_alarmkpis",
    "alarm_kpis_of": "_alarmkpis",
    "anchor_path_for": "_chain",
    "canonical_recipe_text": "_signing",
    "content_hash": "_historian",
    "day_window": "_alarmkpis",
    "effective_version": "_signing",
    "extraction_recovery": "_workup",
    "format_elapsed": "_format",
    "format_figure": "_format",
    "key_path_for": "_chain",
    "last_event": "_query",
    "last_sample_time": "_report",
    "list_runs": "_report",
    "lot_rows": "_report",
    "query_events": "_query",
    "query_tag": "_query",
    "recipe_content_hash": "_signing",
    "report": "_report",
    "report_images": "_report",
    "run_figures": "_report",
    "run_record_digest": "_signing",
    "run_samples": "_report",
    "verify_audit": "_audit",
}
"""Each public name -> the private module that defines it."""

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


if not TYPE_CHECKING:  # the checker sees the imports above; a typo stays an error for it
    __getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)

"""The historian: samples, events, alarms, operator actions and run records in SQLite.

Why a writer thread: the control loop (asyncio) must never wait for a disk. Every public
recording call only appends to an in-memory buffer under a lock held for microseconds; one
writer thread owns the database connection and commits in batches.

Loss rules (also in docs/records.md):

* Samples go into a bounded buffer (``queue_capacity``). The writer commits them at least
  every ``flush_interval`` seconds (or sooner when ``batch_size`` are waiting). When the
  buffer is full, a new sample is *not* stored: it is counted in ``stats.samples_overflowed``,
  and the first overflow of an episode raises the alarm ``historian.queue_overflow``; the
  alarm is cleared, with the number dropped, when the buffer accepts samples again.
* Events, alarms, operator actions and run records go into an unbounded list (they are rare)
  and the writer is woken at once, so they are committed within milliseconds; they are never
  dropped. ``await flush()`` returns once everything recorded before it is committed.
* A batch that cannot be written because the database is busy (another connection holds
  its write lock) is retried, whole, for up to ``write_budget`` seconds: a failed attempt is
  rolled back entirely, so a retry never duplicates a sample. After the budget its samples
  are lost, and never silently: a :class:`DataLoss` is kept in :attr:`Historian.losses` at
  once (the run reports it and ends ``completed_with_data_loss``), and the next commit that
  succeeds writes a ``data_loss`` event (samples, tags, time span) and raises the alarm
  ``historian.data_loss``. Events and run records of the batch are queued again, not lost
  (they are rare); only a batch that fails for another reason, or at close, loses them too,
  counted in the same record.
* A kill -9 therefore loses at most the samples of the last ``flush_interval`` (plus the
  duration of one commit) and only events recorded in the last few milliseconds that were
  never confirmed by ``flush()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from hashlib import sha256
from pathlib import Path
from typing import Any

from modulecontrol.events import EventKind
from modulecontrol.records._audit import append_entry, canonical_json
from modulecontrol.records._chain import RecordChain, anchor_path_for, key_path_for, load_key
from modulecontrol.records._db import DEFAULT_DB, RecordsError, connect, require_current
from modulecontrol.records._lock import WriterLease, WriterLock

log = logging.getLogger(__name__)

#: OPC UA "Good" quality code; historians and MTP both use the OPC status byte convention.
QUALITY_GOOD = 192
QUALITY_BAD = 0

OVERFLOW_ALARM = "historian.queue_overflow"
DATA_LOSS_ALARM = "historian.data_loss"
#: event kind recorded when a writer takes over the lease of one that died holding it
WRITER_TAKEOVER = "writer_takeover"


class RunResult(StrEnum):
    """How a run ended; ``interrupted`` is set only by crash recovery or an unclean close."""

    RUNNING = "running"
    COMPLETED = "completed"
    ABORTED = "aborted"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    COMPLETED_WITH_DATA_LOSS = "completed_with_data_loss"
    """The recipe completed, but records of it could not be written (see ``data_loss``)."""


class AlarmPriority(IntEnum):
    """Alarm priorities (higher is more urgent); any int 1..1000 is accepted."""

    LOW = 250
    MEDIUM = 500
    HIGH = 750
    CRITICAL = 1000


@dataclass(frozen=True)
class TagConfig:
    """How one tag is stored.

    ``period``: minimum seconds between two stored samples (faster ones are skipped).
    ``deadband``: a sample is skipped when it differs from the last *stored* value by no more
    than this (absolute, in the tag's unit); None stores every value, 0 stores changes only.
    ``max_interval``: store anyway when this long has passed since the last stored sample,
    so a flat signal still shows it is alive.
    A change of quality is always stored.
    """

    unit: str = ""
    period: float = 0.0
    deadband: float | None = None
    max_interval: float | None = None
    group: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not (self.period >= 0 and math.isfinite(self.period)):
            raise ValueError(f"period must be a finite number >= 0 s, got {self.period!r}")
        if self.deadband is not None and not (self.deadband >= 0
                                              and math.isfinite(self.deadband)):
            raise ValueError(f"deadband must be a finite number >= 0, got {self.deadband!r}")
        if self.max_interval is not None and not self.max_interval > 0:
            raise ValueError(f"max_interval must be > 0 s or None, got {self.max_interval!r}")


class TagFilter:
    """Period/deadband filter of one tag; pure and cheap so it runs on the caller's thread."""

    __slots__ = ("_cfg", "_last_q", "_last_t", "_last_v")

    def __init__(self, cfg: TagConfig) -> None:
        self._cfg = cfg
        self._last_t: float | None = None
        self._last_v = 0.0
        self._last_q = QUALITY_GOOD

    def accept(self, t: float, value: float, quality: int = QUALITY_GOOD) -> bool:
        """True when the sample must be stored; updates the filter's memory if so."""
        cfg = self._cfg
        last_t = self._last_t
        if last_t is not None and quality == self._last_q:
            dt = t - last_t
            if dt < cfg.period:
                return False
            heartbeat = cfg.max_interval is not None and dt >= cfg.max_interval
            if not heartbeat and cfg.deadband is not None:
                last_v = self._last_v
                if math.isnan(value) or math.isnan(last_v):
                    if math.isnan(value) and math.isnan(last_v):
                        return False
                elif abs(value - last_v) <= cfg.deadband:
                    return False
        self._last_t = t
        self._last_v = value
        self._last_q = quality
        return True


@dataclass
class HistorianStats:
    """Counters for monitoring the historian itself (exposed, and used by the benchmark)."""

    samples_offered: int = 0
    samples_filtered: int = 0
    samples_queued: int = 0
    samples_written: int = 0
    samples_overflowed: int = 0
    events_written: int = 0
    flushes: int = 0
    write_errors: int = 0
    queue_high_water: int = 0
    last_flush_s: float = 0.0
    max_flush_s: float = 0.0
    last_error: str = ""
    overflow_episodes: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class DataLoss:
    """One batch of records the writer could not commit within its budget."""

    run_id: int | None
    samples: int
    tags: tuple[str, ...]
    t_first: float | None
    t_last: float | None
    records: int
    """Events, alarms and run records lost with the batch (0 when they were queued again)."""
    error: str

    def payload(self) -> dict[str, Any]:
        """The ``data_loss`` event's payload."""
        return {"samples": self.samples, "tags": list(self.tags), "t_first": self.t_first,
                "t_last": self.t_last, "records": self.records, "error": self.error}

    def describe(self) -> str:
        span = ("" if self.t_first is None or self.t_last is None
                else f" over {self.t_last - self.t_first:.0f} s")
        lost = f"{self.samples} samples of {len(self.tags)} tags{span}"
        if self.records:
            lost += f" and {self.records} other records"
        return f"{lost} not written: {self.error}"


def _busy(exc: BaseException) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock; worth a retry."""
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
        or "locked" in str(exc) or "busy" in str(exc))


def content_hash(content: str | bytes) -> str:
    """SHA-256 hex of a recipe or plant file, as stored in run records."""
    data = content.encode() if isinstance(content, str) else content
    return sha256(data).hexdigest()


_Op = Callable[[sqlite3.Connection], Any]
#: a queued sample: tag, time, value, raw value, quality, run it belongs to
_Sample = tuple[str, float, float, float | None, int, int | None]


class Historian:
    """Records everything a run produces into one SQLite file, without blocking the caller.

    Use it from asyncio::

        hist = Historian("runs/modulecontrol.db")
        hist.configure_tag("R1.T", TagConfig(unit="degC", deadband=0.05))
        run = await hist.start_run("lomustine", recipe_version="1.2", recipe_text=text)
        hist.record_sample("R1.T", 59.8)
        hist.record_event(EventKind.STATE_CHANGE, "R1.Heat", {"state": "Execute"})
        await hist.end_run(run, RunResult.COMPLETED)
        await hist.close()

    ``clock`` gives sample and event times in seconds since the Unix epoch (UTC); inject the
    plant clock in simulated runs.
    """

    def __init__(self, db: str | Path = DEFAULT_DB, *, flush_interval: float = 0.5,
                 queue_capacity: int = 100_000, batch_size: int = 20_000,
                 synchronous: str = "FULL", clock: Callable[[], float] = time.time,
                 key_path: Path | None = None, anchor_path: Path | None = None,
                 write_budget: float = 30.0) -> None:
        if not 0 < flush_interval <= 60:
            raise ValueError(f"flush_interval must be in (0, 60] s, got {flush_interval!r}")
        if not (0 < write_budget <= 3600 and math.isfinite(write_budget)):
            raise ValueError(f"write_budget must be in (0, 3600] s, got {write_budget!r}")
        self.write_budget = float(write_budget)
        """Wall seconds a batch may wait for a busy database (over retries) before it is lost."""
        self.losses: list[DataLoss] = []
        """Every batch lost so far, known at once (the database may still be locked)."""
        self._unrecorded: list[DataLoss] = []
        """Losses whose ``data_loss`` event and alarm are not committed yet."""
        if queue_capacity < 1 or batch_size < 1:
            raise ValueError("queue_capacity and batch_size must be >= 1")
        self.path = Path(db)
        self.flush_interval = float(flush_interval)
        self.queue_capacity = int(queue_capacity)
        self.batch_size = int(batch_size)
        self.clock = clock
        self.stats = HistorianStats()
        self._token = uuid.uuid4().hex
        self._pid = os.getpid()
        self._host = socket.gethostname()
        self._conn = connect(self.path, synchronous=synchronous)
        try:
            require_current(self._conn, self.path)
            self._writer_lock = WriterLock(self.path, self._token)
            stale = self._writer_lock.acquire(self._conn)
        except BaseException:
            self._conn.close()
            raise
        self.key_path = key_path or key_path_for(self.path)
        self.anchor_path = anchor_path or anchor_path_for(self.path)
        try:
            self._chain = RecordChain(load_key(self.key_path, create=True), self.anchor_path)
        except BaseException:
            self._writer_lock.release(self._conn)
            self._conn.close()
            raise
        self._anchor_why = "commit"
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._samples: list[_Sample] = []
        self._ops: deque[tuple[_Op, Future[Any] | None]] = deque()
        self._filters: dict[str, TagFilter] = {}
        self._tag_ids: dict[str, int] = {}
        self._overflowing = False
        self._episode_dropped = 0
        self._stop = False
        self._closed = False
        self._pause = threading.Event()  # test hook: set() stalls the writer
        self._active_runs: list[int] = []
        #: the lease of a writer that died holding this database, taken over (None if none)
        self.took_over = stale
        try:
            self.recovered_runs = self._recover_interrupted(stale)
        except BaseException:
            self._writer_lock.release(self._conn)
            self._conn.close()
            raise
        self._thread = threading.Thread(target=self._writer, name=f"historian:{self.path.name}",
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ recording (non-blocking)

    def configure_tag(self, name: str, config: TagConfig | None = None) -> None:
        """Set the unit, filtering and group of a tag; unconfigured tags store every sample."""
        cfg = config or TagConfig()
        with self._lock:
            self._filters[name] = TagFilter(cfg)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO tags(name, unit, grp, description) VALUES (?,?,?,?) ON CONFLICT(name)"
                " DO UPDATE SET unit=excluded.unit, grp=excluded.grp,"
                " description=excluded.description",
                (name, cfg.unit, cfg.group, cfg.description))
            tid = int(conn.execute("SELECT id FROM tags WHERE name=?", (name,)).fetchone()[0])
            self._tag_ids[name] = tid
            self._chain.link_row(conn, "tags", tid)

        self._submit(op, wait=False)

    def record_sample(self, tag: str, value: float, *, t: float | None = None,
                      raw: float | None = None, quality: int = QUALITY_GOOD) -> bool:
        """Queue one sample; returns False when it was filtered out or dropped on overflow.

        Never blocks beyond a short lock; safe from any thread.
        """
        ts = self.clock() if t is None else t
        v = float(value)
        with self._lock:
            st = self.stats
            st.samples_offered += 1
            f = self._filters.get(tag)
            if f is not None and not f.accept(ts, v, quality):
                st.samples_filtered += 1
                return False
            buf = self._samples
            if len(buf) >= self.queue_capacity:
                st.samples_overflowed += 1
                self._episode_dropped += 1
                if not self._overflowing:
                    self._overflowing = True
                    self._ops.append((self._alarm_raise_op(
                        OVERFLOW_ALARM, "historian sample queue full: samples are being dropped",
                        AlarmPriority.HIGH, {"capacity": self.queue_capacity}, ts), None))
                    self._cond.notify()
                return False
            buf.append((tag, ts, v, raw, quality,
                        self._active_runs[-1] if self._active_runs else None))
            st.samples_queued += 1
            n = len(buf)
            if n > st.queue_high_water:
                st.queue_high_water = n
            if n == self.batch_size:
                self._cond.notify()
        return True

    def record_event(self, kind: EventKind | str, source: str = "",
                     payload: Mapping[str, Any] | None = None, *, run_id: int | None = None,
                     t: float | None = None) -> Future[int]:
        """Queue an event; the writer commits it at once. Never dropped.

        The returned future gives the event id once committed (``await
        asyncio.wrap_future(f)``), or call :meth:`flush`.
        """
        ts = self.clock() if t is None else t
        rid = self._default_run(run_id)
        body = canonical_json(dict(payload or {}))
        k = str(kind)

        def op(conn: sqlite3.Connection) -> int:
            return self._insert_event(conn, rid, ts, k, source, body)

        return self._submit(op)

    async def commit_event(self, kind: EventKind | str, source: str = "",
                           payload: Mapping[str, Any] | None = None, *,
                           run_id: int | None = None, t: float | None = None) -> int:
        """:meth:`record_event` and wait until it is committed; returns the event id."""
        return await asyncio.wrap_future(self.record_event(kind, source, payload, run_id=run_id,
                                                           t=t))

    def raise_alarm(self, name: str, message: str = "", priority: int = AlarmPriority.MEDIUM,
                    payload: Mapping[str, Any] | None = None, *, t: float | None = None) -> None:
        """Raise an alarm (ignored while an alarm of that name is still uncleared)."""
        if not 1 <= int(priority) <= 1000:
            raise ValueError(f"alarm priority must be 1..1000, got {priority!r}")
        ts = self.clock() if t is None else t
        self._submit(self._alarm_raise_op(name, message, int(priority), dict(payload or {}), ts))

    def acknowledge_alarm(self, name: str, user: str, *, t: float | None = None) -> None:
        """Acknowledge the newest unacknowledged alarm of that name (no-op if there is none)."""
        ts = self.clock() if t is None else t
        rid = self._default_run(None)

        def op(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE alarms SET t_acked=?, acked_by=? WHERE id = (SELECT id FROM alarms"
                " WHERE name=? AND t_acked IS NULL ORDER BY id DESC LIMIT 1) RETURNING id",
                (ts, user, name))
            row = cur.fetchone()
            if row is not None:
                self._chain.link_row(conn, "alarms", int(row[0]))
                self._insert_event(conn, rid, ts, EventKind.ALARM_ACKED, name, {"user": user})

        self._submit(op)

    def clear_alarm(self, name: str, payload: Mapping[str, Any] | None = None, *,
                    t: float | None = None) -> None:
        """Mark the active alarm of that name cleared (its condition went away)."""
        ts = self.clock() if t is None else t
        self._submit(self._alarm_clear_op(name, dict(payload or {}), ts))

    def record_audit(self, user: str, action: str, target: str, *, old_value: Any = None,
                     new_value: Any = None, reason: str) -> Future[Any]:
        """An audit-trail entry alone, in the writer's order with the events: for what the
        program or the plant did that the trail must show with its identity (an alarm shelf
        running out, an alarm going in alarm) but that no operator did."""
        if not user.strip() or not reason.strip():
            raise ValueError("an audit entry needs a user and a reason")

        def op(conn: sqlite3.Connection) -> None:
            append_entry(conn, self._chain, user=user, action=action, obj=target,
                         old_value=old_value, new_value=new_value, reason=reason,
                         in_transaction=True)

        return self._submit(op)

    def record_operator_action(self, user: str, action: str, target: str = "", *,
                               old_value: Any = None, new_value: Any = None, reason: str = "",
                               audit: bool = True, t: float | None = None) -> Future[Any]:
        """Record what an operator did; with ``audit`` also an audit-trail entry, same commit.

        The old value is kept in both records, so a changed parameter's original stays
        readable.
        """
        if not user.strip():
            raise ValueError("an operator action needs the user who did it")
        if audit and not reason.strip():
            raise ValueError("an audited operator action needs a reason")
        ts = self.clock() if t is None else t
        rid = self._default_run(None)
        old_j, new_j = canonical_json(old_value), canonical_json(new_value)

        def op(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "INSERT INTO operator_actions(run_id, t, user, action, target, old_value,"
                " new_value, reason) VALUES (?,?,?,?,?,?,?,?)",
                (rid, ts, user, action, target, old_j, new_j, reason))
            self._chain.link_row(conn, "operator_actions", int(cur.lastrowid or 0))
            self._insert_event(conn, rid, ts, EventKind.OPERATOR_ACTION, target,
                               {"user": user, "action": action, "old": old_value,
                                "new": new_value, "reason": reason})
            if audit:
                append_entry(conn, self._chain, user=user, action=action, obj=target,
                             old_value=old_value, new_value=new_value, reason=reason,
                             in_transaction=True)

        return self._submit(op)

    # ------------------------------------------------------------------ runs (awaitable)

    async def start_run(self, recipe_name: str, *, recipe_version: str = "",
                        recipe_text: str | bytes | None = None, recipe_hash: str = "",
                        plant_text: str | bytes | None = None, plant_hash: str = "",
                        parameters: Mapping[str, Any] | None = None,
                        metadata: Mapping[str, Any] | None = None, operator: str = "",
                        t: float | None = None) -> int:
        """Open a run record and return its id; later events default to this run.

        ``metadata`` may carry ``tag_groups`` ({tag: group}) and ``figures`` (see
        :class:`~modulecontrol.records.FigureSpec`) for the batch report.
        """
        return await asyncio.wrap_future(self.start_run_nowait(
            recipe_name, recipe_version=recipe_version, recipe_text=recipe_text,
            recipe_hash=recipe_hash, plant_text=plant_text, plant_hash=plant_hash,
            parameters=parameters, metadata=metadata, operator=operator, t=t))

    def start_run_nowait(self, recipe_name: str, *, recipe_version: str = "",
                         recipe_text: str | bytes | None = None, recipe_hash: str = "",
                         plant_text: str | bytes | None = None, plant_hash: str = "",
                         parameters: Mapping[str, Any] | None = None,
                         metadata: Mapping[str, Any] | None = None, operator: str = "",
                         t: float | None = None) -> Future[int]:
        """:meth:`start_run` for code without an event loop; the future gives the run id."""
        if metadata is not None:
            from modulecontrol.records._spec import FigureSpec

            if "figures" in metadata:  # fail now, not when the report is made
                try:
                    FigureSpec.model_validate(metadata["figures"])
                except ValueError as exc:
                    raise ValueError(f"run metadata 'figures' is invalid: {exc}") from None
        ts = self.clock() if t is None else t
        rh = content_hash(recipe_text) if recipe_text is not None else recipe_hash
        ph = content_hash(plant_text) if plant_text is not None else plant_hash
        params = canonical_json(dict(parameters or {}))
        meta = canonical_json(dict(metadata or {}))

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO runs(recipe_name, recipe_version, recipe_hash, plant_hash,"
                " parameters, metadata, operator, t_start, result, owner_token, owner_pid,"
                " owner_host) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (recipe_name, recipe_version, rh, ph, params, meta, operator, ts,
                 RunResult.RUNNING.value, self._token, self._pid, self._host))
            rid = int(cur.lastrowid or 0)
            self._chain.link_row(conn, "runs", rid)
            self._writer_lock.set_run(conn, rid)
            self._insert_event(conn, rid, ts, EventKind.RUN_START, "run",
                               {"recipe": recipe_name, "version": recipe_version})
            with self._lock:
                self._active_runs.append(rid)
            return rid

        return self._submit(op)

    async def end_run(self, run_id: int | None = None, result: RunResult | str =
                      RunResult.COMPLETED, note: str = "", *, t: float | None = None) -> None:
        """Close a run record with its result; waits until that is committed."""
        await asyncio.wrap_future(self.end_run_nowait(run_id, result, note, t=t))

    def end_run_nowait(self, run_id: int | None = None, result: RunResult | str =
                       RunResult.COMPLETED, note: str = "", *,
                       t: float | None = None) -> Future[None]:
        """:meth:`end_run` for code without an event loop."""
        res = RunResult(result)
        if res is RunResult.RUNNING:
            raise ValueError("end_run needs a final result, not 'running'")
        rid = self._default_run(run_id)
        if rid is None:
            raise ValueError("no run to end: start_run() first or pass run_id")
        ts = self.clock() if t is None else t

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE runs SET t_end=?, result=?, note=? WHERE id=?",
                         (ts, res.value, note, rid))
            self._chain.link_row(conn, "runs", rid)
            self._insert_event(conn, rid, ts, EventKind.RUN_END, "run",
                               {"result": res.value, "note": note})
            self._anchor_why = f"run {rid} end"
            with self._lock:
                if rid in self._active_runs:
                    self._active_runs.remove(rid)

        return self._submit(op)

    async def resume_run(self, run_id: int, payload: Mapping[str, Any], *,
                         t: float | None = None) -> None:
        """Reopen run ``run_id``, which the previous writer left and this one's recovery
        marked ``interrupted``, for a restarted controller that resumes it: the run is
        ``running`` again, owned by this writer, with a ``run_resumed`` event (``payload``:
        the gap, where it resumes) after its ``run_end`` of the interruption, so the chain
        shows the gap as such. Later events and samples default to this run again.
        Raises RecordsError if the run is not an interrupted one."""
        ts = self.clock() if t is None else t

        await self.flush()
        reader = connect(self.path, create=False)
        try:  # checked before the batch: an op that raises would cost the batch
            row = reader.execute("SELECT result FROM runs WHERE id=?", (run_id,)).fetchone()
        finally:
            reader.close()
        if row is None or row[0] != RunResult.INTERRUPTED.value:
            raise RecordsError(f"run {run_id} is not an interrupted run"
                               f" ({'no such run' if row is None else row[0]}):"
                               " only a run its writer left can be resumed")

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE runs SET result=?, t_end=NULL, note=?, owner_token=?,"
                         " owner_pid=?, owner_host=? WHERE id=?",
                         (RunResult.RUNNING.value, "resumed after an interruption",
                          self._token, self._pid, self._host, run_id))
            self._chain.link_row(conn, "runs", run_id)
            self._writer_lock.set_run(conn, run_id)
            self._insert_event(conn, run_id, ts, EventKind.RUN_RESUMED, "run", dict(payload))
            with self._lock:
                self._active_runs.append(run_id)

        await asyncio.wrap_future(self._submit(op))

    def note_lost(self, *, samples: Sequence[tuple[str, float]] = (), records: int = 0,
                  error: str) -> DataLoss:
        """Records that never reached the historian (a recorder of the caller failed to hand
        them over): counted as a loss like a batch the database refused, so a run that
        misses them cannot end as a clean ``completed``. ``samples`` are (tag, time)."""
        times = [t for _tag, t in samples]
        loss = DataLoss(run_id=self._default_run(None), samples=len(samples),
                        tags=tuple(sorted({tag for tag, _t in samples})),
                        t_first=min(times, default=None), t_last=max(times, default=None),
                        records=records, error=error)
        with self._lock:
            self.losses.append(loss)
            self._unrecorded.append(loss)
        log.error("historian: %s", loss.describe())
        return loss

    @property
    def current_run(self) -> int | None:
        """The most recently started run that has not ended (None if none)."""
        with self._lock:
            return self._active_runs[-1] if self._active_runs else None

    # ------------------------------------------------------------------ flushing and closing

    async def flush(self) -> None:
        """Wait until everything recorded before this call is committed to disk."""
        await asyncio.wrap_future(self._barrier())

    def flush_sync(self, timeout: float | None = 30.0) -> None:
        """:meth:`flush` for threads without an event loop (blocks the caller)."""
        self._barrier().result(timeout)

    async def close(self) -> None:
        """Flush, stop the writer and release the database (see :meth:`close_sync`)."""
        await asyncio.to_thread(self.close_sync)

    def close_sync(self, timeout: float | None = 30.0) -> None:
        """Flush and stop. Runs this instance left running are marked ``interrupted``.

        Why: nobody can end them any more, and a report must not show them as live.
        """
        if self._closed:
            return
        with self._lock:
            runs = list(self._active_runs)
        for rid in runs:
            self.end_run_nowait(rid, RunResult.INTERRUPTED,
                                "historian closed while the run was still active")
        with self._cond:
            self._stop = True
            self._pause.clear()
            self._cond.notify()
        self._thread.join(timeout)
        self._closed = True
        self._writer_lock.release(self._conn)
        self._conn.close()

    async def __aenter__(self) -> Historian:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ internals

    def _pause_writer(self, paused: bool) -> None:
        """Test hook: stall the writer (to exercise back-pressure) or let it go on."""
        with self._cond:
            if paused:
                self._pause.set()
            else:
                self._pause.clear()
            self._cond.notify()

    def _default_run(self, run_id: int | None) -> int | None:
        if run_id is not None:
            return run_id
        with self._lock:
            return self._active_runs[-1] if self._active_runs else None

    def _submit(self, op: _Op, wait: bool = True) -> Future[Any]:
        fut: Future[Any] = Future()
        with self._cond:
            if self._stop:
                raise RuntimeError("historian is closed: open a new Historian to record more")
            self._ops.append((op, fut))
            self._cond.notify()
        return fut

    def _barrier(self) -> Future[None]:
        return self._submit(_barrier_op)

    def _insert_event(self, conn: sqlite3.Connection, rid: int | None, t: float, kind: str,
                      source: str, payload: Mapping[str, Any] | str) -> int:
        """Insert and chain one event (in the writer's transaction); returns its id."""
        body = payload if isinstance(payload, str) else canonical_json(dict(payload))
        cur = conn.execute("INSERT INTO events(run_id, t, kind, source, payload)"
                           " VALUES (?,?,?,?,?)", (rid, t, str(kind), source, body))
        eid = int(cur.lastrowid or 0)
        self._chain.link_row(conn, "events", eid)
        self.stats.events_written += 1
        return eid

    def _alarm_raise_op(self, name: str, message: str, priority: int,
                        payload: Mapping[str, Any], t: float) -> _Op:
        rid = self._active_runs[-1] if self._active_runs else None
        body = canonical_json(dict(payload))

        def op(conn: sqlite3.Connection) -> None:
            active = conn.execute("SELECT 1 FROM alarms WHERE name=? AND t_cleared IS NULL",
                                  (name,)).fetchone()
            if active:
                return
            cur = conn.execute("INSERT INTO alarms(run_id, name, message, priority, t_raised,"
                               " payload) VALUES (?,?,?,?,?,?)",
                               (rid, name, message, priority, t, body))
            self._chain.link_row(conn, "alarms", int(cur.lastrowid or 0))
            self._insert_event(conn, rid, t, EventKind.ALARM_RAISED, name,
                               {"message": message, "priority": priority, **payload})

        return op

    def _alarm_clear_op(self, name: str, payload: Mapping[str, Any], t: float) -> _Op:
        rid = self._active_runs[-1] if self._active_runs else None

        def op(conn: sqlite3.Connection) -> None:
            ids = [int(r[0]) for r in conn.execute(
                "UPDATE alarms SET t_cleared=? WHERE name=? AND t_cleared IS NULL RETURNING id",
                (t, name)).fetchall()]
            for aid in ids:
                self._chain.link_row(conn, "alarms", aid)
            if ids:
                self._insert_event(conn, rid, t, EventKind.ALARM_CLEARED, name, dict(payload))

        return op

    def _tag_id(self, conn: sqlite3.Connection, name: str) -> int:
        tid = self._tag_ids.get(name)
        if tid is None:
            cur = conn.execute("INSERT OR IGNORE INTO tags(name) VALUES (?)", (name,))
            row = conn.execute("SELECT id FROM tags WHERE name=?", (name,)).fetchone()
            tid = int(row[0])
            if cur.rowcount:
                self._chain.link_row(conn, "tags", tid)
            self._tag_ids[name] = tid
        return tid

    def _writer(self) -> None:
        conn = self._conn
        deadline = time.monotonic() + self.flush_interval
        while True:
            with self._cond:
                while not self._stop and (self._pause.is_set() or (
                        not self._ops and len(self._samples) < self.batch_size)):
                    paused = self._pause.is_set()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 and not paused:
                        break
                    self._cond.wait(0.05 if paused else remaining)
                ops, self._ops = self._ops, deque()
                samples, self._samples = self._samples, []
                dropped = self._episode_dropped if self._overflowing else 0
                if self._overflowing:
                    self._overflowing = False
                    self._episode_dropped = 0
                stopping = self._stop
                unrecorded = bool(self._unrecorded)
            deadline = time.monotonic() + self.flush_interval
            if ops or samples or dropped or unrecorded:
                self._write(conn, ops, samples, dropped)
            if stopping:
                with self._lock:
                    if not self._ops and not self._samples:
                        return

    def _write(self, conn: sqlite3.Connection, ops: deque[tuple[_Op, Future[Any] | None]],
               samples: list[_Sample], dropped: int) -> None:
        """Commit one batch, retried whole while the database is busy, within the budget.

        Each attempt is one transaction; a failed one is rolled back entirely (and the
        writer's own memory of tag ids and active runs with it), so a retry writes every
        record exactly once. What cannot be committed is recorded as a :class:`DataLoss`.
        """
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.write_budget
        while True:
            remaining = deadline - time.monotonic()
            conn.execute(f"PRAGMA busy_timeout={max(1, int(remaining * 1000))}")
            tag_ids = dict(self._tag_ids)
            with self._lock:
                active = list(self._active_runs)
            events_written = self.stats.events_written
            unrecorded = list(self._unrecorded)
            try:
                results = self._commit(conn, ops, samples, dropped, unrecorded)
                break
            except Exception as exc:  # the writer must survive a bad batch and say so
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                self._chain.rolled_back()
                self._anchor_why = "commit"
                self._tag_ids = tag_ids
                with self._lock:
                    self._active_runs[:] = active
                self.stats.events_written = events_written
                self.stats.write_errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                if _busy(exc) and time.monotonic() < deadline:
                    time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                    continue
                self._lost(ops, samples, dropped, exc)
                return
            finally:
                conn.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            del self._unrecorded[:len(unrecorded)]
        why, self._anchor_why = self._anchor_why, "commit"
        try:
            self._chain.anchor(why)
        except OSError as exc:  # committed, but the head is not outside the database
            err = RecordsError(
                f"records committed but the chain head could not be appended to the anchor"
                f" file '{self.anchor_path}': {exc}; until it can, a truncation of this"
                " commit is not detectable: fix the anchor path (space, permissions)")
            self.stats.write_errors += 1
            self.stats.last_error = str(err)
            log.error("%s", err)
            for fut, _res in results:
                if fut is not None and not fut.done():
                    fut.set_exception(err)
            return
        st = self.stats
        st.samples_written += len(samples)
        st.flushes += 1
        if dropped:
            st.overflow_episodes.append(dropped)
        dt = time.perf_counter() - t0
        st.last_flush_s = dt
        st.max_flush_s = max(st.max_flush_s, dt)
        for fut, res in results:
            if fut is not None and not fut.done():
                fut.set_result(res)

    def _commit(self, conn: sqlite3.Connection, ops: deque[tuple[_Op, Future[Any] | None]],
                samples: list[_Sample], dropped: int,
                unrecorded: list[DataLoss]) -> list[tuple[Future[Any] | None, Any]]:
        """One attempt at a batch, in one transaction; raises on any failure (not committed)."""
        results: list[tuple[Future[Any] | None, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        for loss in unrecorded:  # first: the record of earlier losses, now that we can write
            now = self.clock()
            self._insert_event(conn, loss.run_id, now, EventKind.DATA_LOSS, "historian",
                               loss.payload())
            self._alarm_raise_op(DATA_LOSS_ALARM, f"records lost: {loss.describe()}",
                                 AlarmPriority.HIGH, {"samples": loss.samples}, now)(conn)
        for op, fut in ops:
            results.append((fut, op(conn)))
        if samples:
            ids = self._tag_ids
            missing = {s[0] for s in samples if s[0] not in ids}
            for name in missing:
                self._tag_id(conn, name)
            self._chain.link_samples(
                conn, [(ids[n], t, v, r, q, rid) for n, t, v, r, q, rid in samples])
        if dropped:
            now = self.clock()
            self._insert_event(conn, self._active_runs[-1] if self._active_runs else None,
                               now, EventKind.OVERFLOW, "historian", {"dropped": dropped})
            self._alarm_clear_op(OVERFLOW_ALARM, {"dropped": dropped}, now)(conn)
        conn.execute("COMMIT")
        return results

    def _lost(self, ops: deque[tuple[_Op, Future[Any] | None]], samples: list[_Sample],
              dropped: int, exc: Exception) -> None:
        """A batch the budget could not save: record the loss, keep what can be kept.

        Events and run records are queued again when the database was only busy (they are
        rare and promised never to be dropped), unless the historian is closing; otherwise
        their callers get the exception. The overflow count is carried to the next batch.
        """
        with self._cond:
            requeue = _busy(exc) and not self._stop
            if requeue:
                self._ops.extendleft(reversed(ops))
            if dropped:
                self._overflowing = True
                self._episode_dropped += dropped
        if not requeue:
            for _op, fut in ops:
                if fut is not None and not fut.done():
                    fut.set_exception(exc)
        records = 0 if requeue else sum(1 for op, _fut in ops if op is not _barrier_op)
        if not samples and not records:
            return
        times = [s[1] for s in samples]
        loss = DataLoss(
            run_id=next((s[5] for s in samples if s[5] is not None), self._default_run(None)),
            samples=len(samples), tags=tuple(sorted({s[0] for s in samples})),
            t_first=min(times, default=None), t_last=max(times, default=None),
            records=records, error=f"{type(exc).__name__}: {exc}")
        with self._lock:
            self.losses.append(loss)
            self._unrecorded.append(loss)
        log.error("historian: %s", loss.describe())

    def _recover_interrupted(self, stale: WriterLease | None) -> list[int]:
        """Mark runs left ``running`` as ``interrupted``; record a taken-over lease.

        Holding the writer lock proves every other writer is gone, so any run still
        ``running`` was left by a process that died. Its end is its last sign of life (last
        event or sample of that run). Returns the ids marked.
        """
        conn, by = self._conn, f"process {self._pid} on {self._host}"
        conn.execute("BEGIN IMMEDIATE")
        try:
            recovered: list[int] = []
            if stale is not None:
                self._insert_event(conn, None, self.clock(), WRITER_TAKEOVER, "historian",
                                   {"previous_writer": stale.describe(), "by": by})
            rows = conn.execute("SELECT id, owner_pid, owner_host, t_start FROM runs"
                                " WHERE result='running'").fetchall()
            for rid, pid, host, t_start in rows:
                last = conn.execute("SELECT MAX(t) FROM events WHERE run_id=?",
                                    (rid,)).fetchone()[0]
                last_sample = conn.execute("SELECT MAX(t) FROM samples WHERE run_id=?",
                                           (rid,)).fetchone()[0]
                t_end = max(x for x in (t_start, last, last_sample) if x is not None)
                note = (f"owner process {pid} on {host} ended without closing the run;"
                        f" marked at reopen by {by}")
                conn.execute("UPDATE runs SET result=?, t_end=?, note=? WHERE id=?",
                             (RunResult.INTERRUPTED.value, t_end, note, rid))
                self._chain.link_row(conn, "runs", int(rid))
                self._insert_event(conn, rid, t_end, EventKind.RUN_END, "historian",
                                   {"result": RunResult.INTERRUPTED.value, "note": note})
                recovered.append(int(rid))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self._chain.rolled_back()
            raise
        self._chain.anchor("recovery")
        return recovered


def _barrier_op(conn: sqlite3.Connection) -> None:
    """The op of :meth:`Historian.flush`: writes nothing, so losing it loses no record."""
    return None


def load_json(text: str | None) -> Any:
    """Decode a JSON column (None stays None)."""
    return None if text is None else json.loads(text)

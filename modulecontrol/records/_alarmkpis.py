"""Alarm KPIs of a run or a day, read from the recorded ``alarm_state`` events.

The definitions are the alarm package's (:func:`modulecontrol.alarms.alarm_kpis`); this
module only chooses the window and reads the changes, so the batch report, the API and the
CLI give the same figures for the same records.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from pathlib import Path
from typing import Any

from modulecontrol.alarms import AlarmKpis, AlarmPhilosophy, alarm_kpis
from modulecontrol.events import EventKind
from modulecontrol.records._db import RecordsError, connect

__all__ = ["alarm_changes", "alarm_kpis_of", "day_window"]


def day_window(day: str) -> tuple[float, float]:
    """``YYYY-MM-DD`` -> the UTC day as (start, end) in s since the epoch."""
    try:
        d = _dt.date.fromisoformat(day)
    except ValueError:
        raise ValueError(f"day '{day}' is not YYYY-MM-DD") from None
    start = _dt.datetime(d.year, d.month, d.day, tzinfo=_dt.UTC).timestamp()
    return start, start + 86400.0


def alarm_changes(conn: sqlite3.Connection, start: float, end: float
                  ) -> list[dict[str, Any]]:
    """Every recorded alarm change up to ``end`` (the earlier ones tell which alarms were
    already in alarm at ``start``), with ``t`` in s since the epoch."""
    out = []
    for t, source, payload in conn.execute(
            "SELECT t, source, payload FROM events WHERE kind=? AND t <= ? ORDER BY t, id",
            (EventKind.ALARM_STATE.value, end)):
        data = json.loads(payload)
        out.append({**data, "t": float(t), "name": source})
    return out


def alarm_kpis_of(db: str | Path | sqlite3.Connection, *, run: int | None = None,
                  day: str | None = None, philosophy: AlarmPhilosophy | None = None
                  ) -> AlarmKpis:
    """The KPIs of record run ``run`` (its start to its end, or to its last event while it
    runs) or of the UTC ``day``."""
    own = not isinstance(db, sqlite3.Connection)
    conn = connect(db, create=False) if not isinstance(db, sqlite3.Connection) else db
    try:
        if run is not None:
            row = conn.execute("SELECT t_start, t_end FROM runs WHERE id=?", (run,)).fetchone()
            if row is None:
                raise RecordsError(f"no run {run} in the records")
            start = float(row[0])
            last = conn.execute("SELECT MAX(t) FROM events WHERE run_id=?", (run,)).fetchone()
            end = float(row[1]) if row[1] is not None else float(last[0] or start)
        elif day is not None:
            start, end = day_window(day)
        else:
            raise ValueError("give a run or a day")
        return alarm_kpis(alarm_changes(conn, start, end), start, end, philosophy)
    finally:
        if own:
            conn.close()

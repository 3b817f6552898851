"""Reading a tag's history back, downsampled to a point budget (the service's historian
query; the report reads whole runs its own way).

Downsampling keeps the shape a trend needs: the time range is cut into ``max_points // 2``
buckets and each bucket gives its minimum and its maximum sample, in time order, so a spike
survives however far the range is zoomed out. Quality is the worst in the bucket.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from modulecontrol.records._db import RecordsError, connect


@dataclass(frozen=True, slots=True)
class TagHistory:
    tag: str
    unit: str
    points: list[tuple[float, float | None, int]]
    """(time in s since the epoch, value, quality) in time order."""
    downsampled: bool


def query_tag(db: str | Path | sqlite3.Connection, tag: str, start: float, end: float,
              max_points: int = 1000) -> TagHistory:
    """Samples of ``tag`` with ``start <= t <= end``; at most ``max_points`` of them."""
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, not {max_points}")
    if not end >= start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    own = not isinstance(db, sqlite3.Connection)
    conn = connect(db, create=False) if not isinstance(db, sqlite3.Connection) else db
    try:
        row = conn.execute("SELECT id, unit FROM tags WHERE name=?", (tag,)).fetchone()
        if row is None:
            raise RecordsError(f"no tag '{tag}' in the records: see GET /plant for the tags")
        tag_id, unit = int(row[0]), str(row[1])
        rows = [(float(t), None if v is None else float(v), int(q)) for t, v, q in
                conn.execute("SELECT t, value, quality FROM samples WHERE tag_id=? AND"
                             " t BETWEEN ? AND ? ORDER BY t", (tag_id, start, end))]
        if len(rows) <= max_points:
            return TagHistory(tag, unit, rows, False)
        return TagHistory(tag, unit, _min_max(rows, start, end, max_points // 2), True)
    finally:
        if own:
            conn.close()


def _min_max(rows: list[tuple[float, float | None, int]], start: float, end: float,
             buckets: int) -> list[tuple[float, float | None, int]]:
    """Per time bucket its lowest and highest sample (in time order), worst quality."""
    width = (end - start) / buckets or 1.0
    out: list[tuple[float, float | None, int]] = []
    group: list[tuple[float, float | None, int]] = []
    current = None
    for row in [*rows, None]:
        index = None if row is None else min(buckets - 1, int((row[0] - start) / width))
        if group and index != current:
            valued = [r for r in group if r[1] is not None] or group
            lo = min(valued, key=lambda r: r[1] if r[1] is not None else 0.0)
            hi = max(valued, key=lambda r: r[1] if r[1] is not None else 0.0)
            quality = min(r[2] for r in group)
            picked = sorted({lo, hi})
            out.extend((t, v, quality) for t, v, _ in picked)
            group = []
        if row is not None:
            current = index
            group.append(row)
    return out


def query_events(db: str | Path | sqlite3.Connection, kind: str,
                 source: str | None = None) -> list[tuple[float, str, str]]:
    """Events of ``kind`` (and ``source``) in the order they were recorded, as (time,
    source, payload JSON): what a restarted process reads back of its own past (an
    optimisation campaign's experiments)."""
    own = not isinstance(db, sqlite3.Connection)
    conn = connect(db, create=False) if not isinstance(db, sqlite3.Connection) else db
    try:
        sql, args = "SELECT t, source, payload FROM events WHERE kind=?", [kind]
        if source is not None:
            sql += " AND source=?"
            args.append(source)
        return [(float(t), str(s), str(p)) for t, s, p in conn.execute(sql + " ORDER BY id",
                                                                     args)]
    finally:
        if own:
            conn.close()


def last_event(db: str | Path | sqlite3.Connection, kind: str,
               run_id: int) -> tuple[float, str] | None:
    """The newest event of ``kind`` of run ``run_id`` as (time, payload JSON), None if it
    has none: what a restarted service reads of where its run was (``run_position``)."""
    own = not isinstance(db, sqlite3.Connection)
    conn = connect(db, create=False) if not isinstance(db, sqlite3.Connection) else db
    try:
        row = conn.execute("SELECT t, payload FROM events WHERE run_id=? AND kind=?"
                           " ORDER BY id DESC LIMIT 1", (run_id, kind)).fetchone()
        return None if row is None else (float(row[0]), str(row[1]))
    finally:
        if own:
            conn.close()

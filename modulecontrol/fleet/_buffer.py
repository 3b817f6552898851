"""The edge's store-and-forward buffer: an append-only queue in one SQLite file.

Every data sample goes through it, connected or not, so there is one path and one order: the
publisher drains it oldest first and deletes a row only after the broker acknowledged it
(QoS 1). A sample queued while the edge was offline is replayed marked historical, with the
time it was taken.

Overflow policy (docs/fleet.md, "Store-and-forward"): the buffer holds at most
``max_rows`` samples. When it is full the *oldest* samples are dropped, never the newest, and
every drop is counted in the file (``dropped``), logged, and published as the node metric
``Buffer/Dropped`` so the loss is visible centrally.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,          -- '' for node metrics
    name TEXT NOT NULL,
    datatype INTEGER NOT NULL,
    value TEXT NOT NULL,           -- JSON
    ts INTEGER NOT NULL,           -- UNIX ms when the value was taken
    historical INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Row:
    id: int
    device: str
    name: str
    datatype: int
    value: Any
    ts: int
    historical: bool


class Buffer:
    """Bounded, ordered, durable; safe to use from the publisher thread and the event loop."""

    def __init__(self, path: Path, max_rows: int = 10_000_000) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, not {max_rows}")
        self.path = path
        self.max_rows = max_rows
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._closed = False
        self._count = int(self._db.execute("SELECT count(*) FROM queue").fetchone()[0])

    def put(self, device: str, name: str, datatype: int, value: Any, ts: int,
            historical: bool) -> bool:
        """Queue one sample; False (nothing queued) once the buffer is closed."""
        with self._lock:
            if self._closed:
                return False
            if self._count >= self.max_rows:
                drop = self._count - self.max_rows + 1
                self._db.execute("BEGIN")
                self._db.execute("DELETE FROM queue WHERE id IN "
                                 "(SELECT id FROM queue ORDER BY id LIMIT ?)", (drop,))
                self._db.execute("INSERT INTO meta VALUES ('dropped', ?) ON CONFLICT(key) "
                                 "DO UPDATE SET value = value + excluded.value", (drop,))
                self._db.execute("COMMIT")
                self._count -= drop
                _log.warning("store-and-forward buffer %s full (%d samples): dropped the "
                             "oldest %d", self.path, self.max_rows, drop)
            self._db.execute(
                "INSERT INTO queue (device, name, datatype, value, ts, historical) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (device, name, datatype, json.dumps(value), ts, int(historical)))
            self._count += 1
        return True

    def peek(self, limit: int) -> list[Row]:
        """The oldest ``limit`` rows, in the order they were put."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, device, name, datatype, value, ts, historical FROM queue "
                "ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [Row(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], bool(r[6])) for r in rows]

    def remove(self, up_to_id: int) -> None:
        """Forget every row up to ``up_to_id`` (acknowledged by the broker)."""
        with self._lock:
            n = self._db.execute("DELETE FROM queue WHERE id <= ?", (up_to_id,)).rowcount
            self._count -= n

    def __len__(self) -> int:
        return self._count

    @property
    def dropped(self) -> int:
        return self.counter("dropped")

    def counter(self, key: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def set_counter(self, key: str, value: int) -> None:
        with self._lock:
            self._db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) "
                             "DO UPDATE SET value = excluded.value", (key, value))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._db.close()

"""One live writer per records database: an OS file lock plus a lease row in ``meta``.

Why: two runs writing one file at once interleave their samples and events, and every
figure computed from the window is wrong while both runs say "completed". The kernel
``flock`` on ``<db>.lock`` is the proof of life (released when the process dies, whatever
its pid, and exclusive even between two opens in one process); the ``meta`` lease row
says who holds it, so a refusal can name the holder, and a lease whose lock is free was
left by a writer that died: the next writer takes it over and records that.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from modulecontrol.records._db import RecordsError

_READER_GRACE_S = 0.5


@dataclass(frozen=True)
class WriterLease:
    """Who writes a records database: process, host, writer token, since when, which run."""

    pid: int
    host: str
    token: str
    since: str
    run_id: int | None = None

    def describe(self) -> str:
        run = f", run {self.run_id}" if self.run_id is not None else ""
        return f"pid {self.pid} on {self.host} (writer {self.token[:8]}{run}, since {self.since})"


def lock_path_for(db: str | Path) -> Path:
    p = Path(db)
    return p.with_name(p.name + ".lock")


def _read_lease(text: str) -> WriterLease | None:
    try:
        d = json.loads(text)
        return WriterLease(int(d["pid"]), str(d["host"]), str(d["token"]), str(d["since"]),
                           None if d.get("run_id") is None else int(d["run_id"]))
    except (ValueError, KeyError, TypeError):
        return None


def _try_flock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - no flock; one writer is not enforced
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def writer_alive(db: str | Path) -> bool:
    """True while some process holds the writer lock of ``db`` (a reader's question)."""
    path = lock_path_for(db)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        return not _try_flock(fd)
    finally:
        os.close(fd)  # closing drops a lock taken just to look


class WriterLock:
    """The writer lock of one database, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, db: Path, token: str) -> None:
        self.db = db
        self.path = lock_path_for(db)
        self.lease = WriterLease(os.getpid(), socket.gethostname(), token,
                                 datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        self._fd: int | None = None

    def acquire(self, conn: sqlite3.Connection) -> WriterLease | None:
        """Take the lock or raise naming the holder; returns a dead writer's lease taken over."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        # a reader asking writer_alive() holds the lock for microseconds: try a little while
        # before refusing (a live writer holds it for its whole life)
        deadline = time.monotonic() + _READER_GRACE_S
        while not _try_flock(fd) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not _try_flock(fd):
            holder = _read_lease(os.pread(fd, 4096, 0).decode(errors="replace"))
            os.close(fd)
            who = holder.describe() if holder else "another process (lease unreadable)"
            raise RecordsError(
                f"records database '{self.db}' is being written by {who}: one live writer"
                " per database; wait for that run to end, or pass --db with another file")
        self._fd = fd
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='writer'").fetchone()
            stale = None if row is None else _read_lease(str(row[0]))
            self._write(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self._unlock()
            raise
        return stale

    def set_run(self, conn: sqlite3.Connection, run_id: int | None) -> None:
        """Name the run being written (in the caller's transaction), for refusals."""
        self.lease = WriterLease(self.lease.pid, self.lease.host, self.lease.token,
                                 self.lease.since, run_id)
        self._write(conn)

    def _write(self, conn: sqlite3.Connection) -> None:
        text = json.dumps(asdict(self.lease), separators=(",", ":"))
        conn.execute("INSERT INTO meta(key, value) VALUES ('writer', ?) ON CONFLICT(key)"
                     " DO UPDATE SET value=excluded.value", (text,))
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text.encode(), 0)

    def release(self, conn: sqlite3.Connection | None) -> None:
        """Drop the lease row (when the connection still works) and the lock."""
        if self._fd is None:
            return
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("DELETE FROM meta WHERE key='writer' AND"
                             " json_extract(value, '$.token')=?", (self.lease.token,))
        self._unlock()

    def _unlock(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

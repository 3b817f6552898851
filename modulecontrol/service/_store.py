"""What the control service keeps in the records database: its run queue, users and tokens.

The service's tables live beside the batch records in the same SQLite file, so one file
(and one backup) holds the line's whole state. The historian stays the one writer of the
records themselves; these tables are the service's own, written in small transactions on
their own connection (SQLite serialises the two writers, WAL lets readers go on).

Token secrets are never stored: only their SHA-256, so a copy of the database does not
let anyone in. Passwords are argon2 hashes (see ``_auth.py``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS service_runs (
    id           INTEGER PRIMARY KEY,
    recipe       TEXT NOT NULL,
    parameters   TEXT NOT NULL DEFAULT '{}',
    requested_by TEXT NOT NULL,
    t_requested  REAL NOT NULL,
    state        TEXT NOT NULL DEFAULT 'queued',
    record_run   INTEGER,
    t_started    REAL,
    t_ended      REAL,
    message      TEXT NOT NULL DEFAULT '',
    mode         TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS service_users (
    name      TEXT PRIMARY KEY,
    role      TEXT NOT NULL,
    pw_hash   TEXT NOT NULL,
    t_created REAL NOT NULL,
    full_name TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS service_tokens (
    digest    TEXT PRIMARY KEY,
    user      TEXT NOT NULL REFERENCES service_users(name) ON DELETE CASCADE,
    scopes    TEXT NOT NULL,
    t_expires REAL NOT NULL
);
"""

QUEUED = "queued"
RUNNING = "running"
INTERRUPTED = "interrupted"
"""A run that was running when the service last stopped without finishing it."""
FINAL = frozenset({"completed", "stopped", "aborted", "failed", "cancelled", INTERRUPTED})


@dataclass(frozen=True, slots=True)
class QueuedRun:
    """One entry of the run queue, as stored."""

    id: int
    recipe: str
    parameters: dict[str, str]
    requested_by: str
    t_requested: float
    state: str
    record_run: int | None
    t_started: float | None
    t_ended: float | None
    message: str
    mode: str = ""
    """Run mode asked for (``production``, ``development``, ``simulation``; '' = default)."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    pw_hash: str
    full_name: str = ""

    @property
    def printed_name(self) -> str:
        """The name a signature prints (21 CFR 11.50(a)(1)): the full name, else the user's."""
        return self.full_name or self.name


@dataclass(frozen=True, slots=True)
class TokenInfo:
    user: str
    role: str
    scopes: frozenset[str]
    expires: float


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ServiceStore:
    """The service's tables; one connection, used from the event loop (small writes)."""

    def __init__(self, db: Path) -> None:
        db.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(db), timeout=30.0, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.executescript(_SCHEMA)
        cols = {str(r[1]) for r in self._conn.execute("PRAGMA table_info(service_runs)")}
        if "mode" not in cols:  # a queue from before run modes: its runs had none
            self._conn.execute("ALTER TABLE service_runs ADD COLUMN mode TEXT NOT NULL"
                               " DEFAULT ''")
        ucols = {str(r[1]) for r in self._conn.execute("PRAGMA table_info(service_users)")}
        if "full_name" not in ucols:  # users from before signatures: printed as their name
            self._conn.execute("ALTER TABLE service_users ADD COLUMN full_name TEXT NOT NULL"
                               " DEFAULT ''")

    def close(self) -> None:
        self._conn.close()

    # ------------------------------------------------------------------ the run queue
    def enqueue(self, recipe: str, parameters: dict[str, str], user: str,
                mode: str = "") -> QueuedRun:
        cur = self._conn.execute(
            "INSERT INTO service_runs(recipe, parameters, requested_by, t_requested, mode)"
            " VALUES (?,?,?,?,?)", (recipe, json.dumps(parameters, sort_keys=True), user,
                                    time.time(), mode))
        run = self.run(int(cur.lastrowid or 0))
        assert run is not None
        return run

    def run(self, run_id: int) -> QueuedRun | None:
        row = self._conn.execute(f"SELECT {_RUN_COLS} FROM service_runs WHERE id=?",
                                 (run_id,)).fetchone()
        return None if row is None else _run(row)

    def runs(self, limit: int = 100) -> list[QueuedRun]:
        """Newest first."""
        rows = self._conn.execute(
            f"SELECT {_RUN_COLS} FROM service_runs ORDER BY id DESC LIMIT ?", (limit,))
        return [_run(r) for r in rows]

    def next_queued(self) -> QueuedRun | None:
        row = self._conn.execute(
            f"SELECT {_RUN_COLS} FROM service_runs WHERE state=? ORDER BY id LIMIT 1",
            (QUEUED,)).fetchone()
        return None if row is None else _run(row)

    def set_state(self, run_id: int, state: str, *, record_run: int | None = None,
                  message: str | None = None) -> None:
        now = time.time()
        self._conn.execute(
            "UPDATE service_runs SET state=?, record_run=COALESCE(?, record_run),"
            " message=COALESCE(?, message),"
            " t_started=CASE WHEN ?='running' THEN COALESCE(t_started, ?) ELSE t_started END,"
            " t_ended=CASE WHEN ? IN ('running','queued') THEN t_ended ELSE ? END"
            " WHERE id=?", (state, record_run, message, state, now, state, now, run_id))

    def running(self) -> list[QueuedRun]:
        """Runs left 'running' by a previous life of the service (a restart resumes them)."""
        rows = self._conn.execute(f"SELECT {_RUN_COLS} FROM service_runs WHERE state=?"
                                  " ORDER BY id", (RUNNING,))
        return [_run(r) for r in rows]

    def interrupt_running(self) -> list[int]:
        """Runs left 'running' by a previous life of the service: marked interrupted (the
        service does not reattach to a run yet); returned for the log."""
        ids = [int(r[0]) for r in self._conn.execute(
            "SELECT id FROM service_runs WHERE state=?", (RUNNING,))]
        for rid in ids:
            self.set_state(rid, INTERRUPTED,
                           message="the service stopped while this run was running")
        return ids

    # ------------------------------------------------------------------ users and tokens
    def add_user(self, name: str, role: str, pw_hash: str, full_name: str = "") -> None:
        try:
            self._conn.execute(
                "INSERT INTO service_users(name, role, pw_hash, t_created, full_name)"
                " VALUES (?,?,?,?,?)", (name, role, pw_hash, time.time(), full_name))
        except sqlite3.IntegrityError:
            raise ValueError(f"user '{name}' exists already") from None

    def user(self, name: str) -> User | None:
        row = self._conn.execute(
            "SELECT name, role, pw_hash, full_name FROM service_users WHERE name=?",
            (name,)).fetchone()
        return None if row is None else User(str(row[0]), str(row[1]), str(row[2]),
                                             str(row[3]))

    def user_count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM service_users").fetchone()[0])

    def set_password(self, name: str, pw_hash: str) -> None:
        self._conn.execute("UPDATE service_users SET pw_hash=? WHERE name=?", (pw_hash, name))

    def add_token(self, token: str, user: str, scopes: frozenset[str], expires: float) -> None:
        self._conn.execute(
            "INSERT INTO service_tokens(digest, user, scopes, t_expires) VALUES (?,?,?,?)",
            (token_digest(token), user, " ".join(sorted(scopes)), expires))

    def token(self, token: str) -> TokenInfo | None:
        """The token's user, role, scopes and expiry; None if unknown (expired ones too:
        they are deleted here)."""
        now = time.time()
        self._conn.execute("DELETE FROM service_tokens WHERE t_expires <= ?", (now,))
        row = self._conn.execute(
            "SELECT t.user, u.role, t.scopes, t.t_expires FROM service_tokens t"
            " JOIN service_users u ON u.name = t.user WHERE t.digest=?",
            (token_digest(token),)).fetchone()
        if row is None:
            return None
        return TokenInfo(str(row[0]), str(row[1]), frozenset(str(row[2]).split()),
                         float(row[3]))


_RUN_COLS = ("id, recipe, parameters, requested_by, t_requested, state, record_run,"
             " t_started, t_ended, message, mode")


def _run(row: Any) -> QueuedRun:
    return QueuedRun(int(row[0]), str(row[1]), dict(json.loads(row[2])), str(row[3]),
                     float(row[4]), str(row[5]), None if row[6] is None else int(row[6]),
                     row[7], row[8], str(row[9]), str(row[10]))

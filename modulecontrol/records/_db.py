"""SQLite schema and connection setup shared by the historian, the audit trail and reports.

Why one file and no server: a batch record must survive the process that wrote it and be
readable with nothing but Python; SQLite in WAL mode gives crash-safe commits, concurrent
readers while the writer works, and a single file to archive with the batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a database is opened: `validate` opens none
    import sqlite3

DEFAULT_DB = Path("runs/modulecontrol.db")

SCHEMA_VERSION = 2
"""2: samples carry their run and chain block; the keyed ``chain`` table (docs/records.md).
A schema-1 file stays readable; nothing new is written into it. The ``recipe_versions`` and
``signatures`` tables (docs/signatures.md) are added to a schema-2 file when it is opened for
writing: they are new tables only, so the schema number stays."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    unit        TEXT NOT NULL DEFAULT '',
    grp         TEXT,
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS samples (
    tag_id  INTEGER NOT NULL REFERENCES tags(id),
    t       REAL NOT NULL,
    value   REAL,
    raw     REAL,
    quality INTEGER NOT NULL DEFAULT 192,
    run_id  INTEGER REFERENCES runs(id),
    blk     INTEGER
);
CREATE INDEX IF NOT EXISTS samples_tag_t ON samples(tag_id, t);
CREATE INDEX IF NOT EXISTS samples_blk ON samples(blk);
CREATE TABLE IF NOT EXISTS runs (
    id             INTEGER PRIMARY KEY,
    recipe_name    TEXT NOT NULL,
    recipe_version TEXT NOT NULL DEFAULT '',
    recipe_hash    TEXT NOT NULL DEFAULT '',
    plant_hash     TEXT NOT NULL DEFAULT '',
    parameters     TEXT NOT NULL DEFAULT '{}',
    metadata       TEXT NOT NULL DEFAULT '{}',
    operator       TEXT NOT NULL DEFAULT '',
    t_start        REAL NOT NULL,
    t_end          REAL,
    result         TEXT NOT NULL DEFAULT 'running',
    note           TEXT NOT NULL DEFAULT '',
    owner_token    TEXT NOT NULL DEFAULT '',
    owner_pid      INTEGER NOT NULL DEFAULT 0,
    owner_host     TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY,
    run_id  INTEGER REFERENCES runs(id),
    t       REAL NOT NULL,
    kind    TEXT NOT NULL,
    source  TEXT NOT NULL DEFAULT '',
    payload TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_run_t ON events(run_id, t);
CREATE TABLE IF NOT EXISTS alarms (
    id         INTEGER PRIMARY KEY,
    run_id     INTEGER REFERENCES runs(id),
    name       TEXT NOT NULL,
    message    TEXT NOT NULL DEFAULT '',
    priority   INTEGER NOT NULL DEFAULT 500,
    t_raised   REAL NOT NULL,
    t_acked    REAL,
    acked_by   TEXT,
    t_cleared  REAL,
    payload    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS alarms_name ON alarms(name, t_cleared);
CREATE TABLE IF NOT EXISTS operator_actions (
    id        INTEGER PRIMARY KEY,
    run_id    INTEGER REFERENCES runs(id),
    t         REAL NOT NULL,
    user      TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL DEFAULT '',
    old_value TEXT,
    new_value TEXT,
    reason    TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS audit (
    seq       INTEGER PRIMARY KEY,
    t_utc     TEXT NOT NULL,
    user      TEXT NOT NULL,
    action    TEXT NOT NULL,
    object    TEXT NOT NULL,
    old_value TEXT NOT NULL,
    new_value TEXT NOT NULL,
    reason    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_user_t ON audit(user, t_utc);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit trail is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit trail is append-only: DELETE refused'); END;
CREATE TABLE IF NOT EXISTS chain (
    seq       INTEGER PRIMARY KEY,
    t_utc     TEXT NOT NULL,
    kind      TEXT NOT NULL,
    ref       INTEGER NOT NULL,
    digest    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chain_kind_ref ON chain(kind, ref);
CREATE TRIGGER IF NOT EXISTS chain_no_update BEFORE UPDATE ON chain
BEGIN SELECT RAISE(ABORT, 'record chain is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS chain_no_delete BEFORE DELETE ON chain
BEGIN SELECT RAISE(ABORT, 'record chain is append-only: DELETE refused'); END;
CREATE TABLE IF NOT EXISTS recipe_versions (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    text         TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'draft',
    author       TEXT NOT NULL,
    t_utc        TEXT NOT NULL,
    UNIQUE(name, version)
);
CREATE INDEX IF NOT EXISTS recipe_versions_hash ON recipe_versions(content_hash);
CREATE TRIGGER IF NOT EXISTS recipe_versions_content_fixed
BEFORE UPDATE OF name, version, content_hash, text, author ON recipe_versions
BEGIN SELECT RAISE(ABORT, 'a recipe version is immutable: register a new version'); END;
CREATE TABLE IF NOT EXISTS signatures (
    id           INTEGER PRIMARY KEY,
    t_utc        TEXT NOT NULL,
    user         TEXT NOT NULL,
    printed_name TEXT NOT NULL,
    meaning      TEXT NOT NULL,
    action       TEXT NOT NULL,
    object       TEXT NOT NULL,
    signed_hash  TEXT NOT NULL,
    reason       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS signatures_object ON signatures(object);
CREATE TRIGGER IF NOT EXISTS signatures_no_update BEFORE UPDATE ON signatures
BEGIN SELECT RAISE(ABORT, 'signatures are append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS signatures_no_delete BEFORE DELETE ON signatures
BEGIN SELECT RAISE(ABORT, 'signatures are append-only: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS audit_seq_contiguous BEFORE INSERT ON audit
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit)
BEGIN SELECT RAISE(ABORT, 'audit trail sequence must be contiguous'); END;
"""


class RecordsError(RuntimeError):
    """A batch-record database could not be opened or does not hold what was asked for."""


def connect(path: str | Path, *, create: bool = True,
            synchronous: str = "FULL") -> sqlite3.Connection:
    """Open (and if needed create) a records database in WAL mode with the schema in place.

    ``synchronous=FULL`` makes each commit survive a power loss, not only a process kill;
    the historian commits in batches, so the fsync cost is paid a few times a second at most.
    """
    p = Path(path)
    if not create and not p.exists():
        raise RecordsError(
            f"no records database at '{p}': run a recipe first or pass --db with the right file"
        )
    if create:
        p.parent.mkdir(parents=True, exist_ok=True)
    if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
    import sqlite3

    conn = sqlite3.connect(str(p), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    if create and schema_version(conn) in (None, SCHEMA_VERSION):
        conn.executescript(_SCHEMA)
        conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
    return conn


def schema_version(conn: sqlite3.Connection) -> int | None:
    """The file's schema version; None for a new, empty file."""
    import sqlite3  # loaded already: ``conn`` is one

    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.OperationalError:  # no meta table: a new file
        return None
    return None if row is None else int(row[0])


def require_current(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse to write into a file of an older schema (it stays readable and verifiable)."""
    v = schema_version(conn)
    if v != SCHEMA_VERSION:
        raise RecordsError(
            f"records database '{path}' has schema {v} (before keyed, anchored records):"
            " it stays readable ('report', 'audit verify' reports its legacy chain), but new"
            " runs are not added to it; pass --db with a new file")

"""Append-only, hash-chained audit trail in the style of 21 CFR Part 11.

Why a hash chain on top of SQLite triggers: triggers stop accidents and casual edits, but
anyone holding the file can drop them. Each entry's SHA-256 covers its own content, its
sequence number and the previous entry's hash, so a changed, removed, inserted or reordered
entry breaks the chain at a place :func:`verify_audit` can name. Appending a *well-formed*
forged entry at the end needs the algorithm only; pass a secret ``key`` (HMAC-SHA256) or keep
the head hash elsewhere (``anchor``) to close that gap too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modulecontrol.records._db import RecordsError, connect

GENESIS_HASH = "0" * 64

_FIELDS = ("seq", "t_utc", "user", "action", "object", "old_value", "new_value", "reason")


def canonical_json(value: Any) -> str:
    """One byte-exact JSON form per value, so hashes do not depend on key order or spacing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=str)


def utc_now() -> str:
    """UTC timestamp with microseconds, ISO 8601 with a ``Z`` suffix."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditEntry:
    """One audit record. ``old_value``/``new_value`` are the decoded JSON values."""

    seq: int
    t_utc: str
    user: str
    action: str
    object: str
    old_value: Any
    new_value: Any
    reason: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditIssue:
    """A problem found by :func:`verify_audit`, tied to the sequence number where it shows."""

    seq: int
    problem: str
    detail: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.problem}: {self.detail}"


@dataclass
class AuditReport:
    """Result of :func:`verify_audit`: ``ok`` is true only when no issue was found."""

    entries: int
    head_hash: str
    issues: list[AuditIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


def entry_hash(content: dict[str, Any], prev_hash: str, key: bytes | None = None) -> str:
    """Hash of an entry: SHA-256 (or HMAC-SHA256 with ``key``) of its canonical JSON + prev hash.

    ``content`` holds the stored column values (old/new values as their JSON text), so the
    hash can be recomputed from the table alone.
    """
    body = {k: content[k] for k in _FIELDS}
    body["prev_hash"] = prev_hash
    data = canonical_json(body).encode()
    if key is not None:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def _row_to_entry(row: tuple[Any, ...]) -> AuditEntry:
    seq, t_utc, user, action, obj, old, new, reason, prev_hash, h = row
    return AuditEntry(int(seq), t_utc, user, action, obj, json.loads(old), json.loads(new),
                      reason, prev_hash, h)


def append_entry(conn: sqlite3.Connection, *, user: str, action: str, obj: str, old_value: Any,
                 new_value: Any, reason: str, key: bytes | None = None,
                 in_transaction: bool = False) -> AuditEntry:
    """Append one entry on ``conn``; the caller's transaction is used when ``in_transaction``.

    The next sequence number and the previous hash are read inside a write transaction
    (``BEGIN IMMEDIATE``), so two writers, even in two processes, can never take the same
    number or fork the chain.
    """
    if not user.strip():
        raise ValueError("an audit entry needs a user: who made the change?")
    if not reason.strip():
        raise ValueError("an audit entry needs a reason: why was the change made?")
    if not in_transaction:
        conn.execute("BEGIN IMMEDIATE")
    try:
        last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq = 1 if last is None else int(last[0]) + 1
        prev = GENESIS_HASH if last is None else str(last[1])
        t_utc = utc_now()
        content: dict[str, Any] = {
            "seq": seq, "t_utc": t_utc, "user": user, "action": action, "object": obj,
            "old_value": canonical_json(old_value), "new_value": canonical_json(new_value),
            "reason": reason,
        }
        h = entry_hash(content, prev, key)
        conn.execute(
            "INSERT INTO audit(seq, t_utc, user, action, object, old_value, new_value, reason,"
            " prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (*(content[k] for k in _FIELDS), prev, h),
        )
        if not in_transaction:
            conn.execute("COMMIT")
    except BaseException:
        if not in_transaction:
            conn.execute("ROLLBACK")
        raise
    return AuditEntry(seq, t_utc, user, action, obj, old_value, new_value, reason,
                      prev, h)


class AuditTrail:
    """The audit trail of one records database: append, read, and verify.

    Appends commit at once (one small transaction each): an audit entry that a caller was
    told about is never lost in a crash. Use :meth:`append_async` from the control loop.
    """

    def __init__(self, db: str | Path, *, key: bytes | None = None) -> None:
        self._path = Path(db)
        self._key = key
        self._conn = connect(self._path)

    def append(self, user: str, action: str, obj: str, *, old_value: Any = None,
               new_value: Any = None, reason: str) -> AuditEntry:
        """Record that ``user`` did ``action`` on ``obj`` (``old_value`` → ``new_value``)."""
        return append_entry(self._conn, user=user, action=action, obj=obj, old_value=old_value,
                            new_value=new_value, reason=reason, key=self._key)

    async def append_async(self, user: str, action: str, obj: str, *, old_value: Any = None,
                           new_value: Any = None, reason: str) -> AuditEntry:
        """:meth:`append` in a worker thread, so the event loop never waits on the disk."""
        import asyncio

        return await asyncio.to_thread(self.append, user, action, obj, old_value=old_value,
                                       new_value=new_value, reason=reason)

    def entries(self, obj: str | None = None) -> Iterator[AuditEntry]:
        """Entries in sequence order; with ``obj``, only those about that object (its history)."""
        sql = ("SELECT seq, t_utc, user, action, object, old_value, new_value, reason, prev_hash,"
               " hash FROM audit")
        args: tuple[Any, ...] = ()
        if obj is not None:
            sql += " WHERE object = ?"
            args = (obj,)
        for row in self._conn.execute(sql + " ORDER BY seq", args):
            yield _row_to_entry(row)

    def verify(self, anchor: tuple[int, str] | None = None) -> AuditReport:
        """See :func:`verify_audit`."""
        return verify_audit(self._conn, key=self._key, anchor=anchor)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def verify_audit(db: str | Path | sqlite3.Connection, *, key: bytes | None = None,
                 anchor: tuple[int, str] | None = None) -> AuditReport:
    """Walk the whole chain and name every entry that was changed, removed, inserted or moved.

    Checks per entry, in physical (rowid) order, which an attacker cannot make disagree with
    the sequence numbers without showing up: the sequence number follows the previous one
    (a gap means removed entries, a step back means reordered or inserted ones); the stored
    hash matches the recomputed one (content changed); ``prev_hash`` equals the previous
    entry's hash (an entry removed, inserted or moved before this one). ``anchor=(seq, hash)``
    checks a head hash kept outside the database, which also catches forged appends and a
    truncated tail.
    """
    own = not isinstance(db, sqlite3.Connection)
    conn = db if isinstance(db, sqlite3.Connection) else connect(db, create=False)
    try:
        try:
            rows = conn.execute(
                "SELECT seq, t_utc, user, action, object, old_value, new_value, reason,"
                " prev_hash, hash FROM audit ORDER BY rowid").fetchall()
        except sqlite3.DatabaseError as exc:
            raise RecordsError(f"cannot read the audit table: {exc}") from exc
    finally:
        if own:
            conn.close()
    report = AuditReport(entries=len(rows), head_hash=GENESIS_HASH)
    issues = report.issues
    expected_seq = 1
    prev_hash = GENESIS_HASH
    seen: dict[int, str] = {}
    for row in rows:
        seq = int(row[0])
        content = dict(zip(_FIELDS, row[:8], strict=True))
        stored_prev, stored_hash = str(row[8]), str(row[9])
        if seq > expected_seq:
            missing = (f"entry {expected_seq}" if seq == expected_seq + 1
                       else f"entries {expected_seq}..{seq - 1}")
            issues.append(AuditIssue(seq, "removed", f"{missing} missing before this one"))
        elif seq < expected_seq:
            issues.append(AuditIssue(seq, "out of order",
                                     f"sequence {seq} found where {expected_seq} was expected"
                                     " (inserted or reordered entry)"))
        if entry_hash(content, stored_prev, key) != stored_hash:
            issues.append(AuditIssue(seq, "changed",
                                     "content does not match its hash (entry was edited)"))
        if stored_prev != prev_hash:
            issues.append(AuditIssue(seq, "chain broken",
                                     "prev_hash does not match the hash of the entry before it"
                                     " (an entry was removed, inserted or moved here)"))
        seen[seq] = stored_hash
        prev_hash = stored_hash
        expected_seq = max(expected_seq, seq + 1)
    report.head_hash = prev_hash
    if anchor is not None:
        a_seq, a_hash = anchor
        if seen.get(a_seq) != a_hash:
            issues.append(AuditIssue(a_seq, "anchor mismatch",
                                     "the externally kept head hash is not in the trail"
                                     " (tail truncated or history rewritten)"))
    return report

"""Append-only audit trail in the style of 21 CFR Part 11, covered by the records chain.

Each entry is a link of the one keyed, anchored records chain (``_chain.py``): its
``prev_hash``/``hash`` are that link's, so an edited, removed, inserted, renumbered or
forged entry, a truncated tail and a wipe are all named by :func:`verify_audit`, which
verifies the whole chain (samples, events, runs, ... included), not the audit table alone.
Databases of schema 1 carry a plain SHA-256 chain over the audit table only; they are
verified as such and reported as a legacy unkeyed chain, never as OK.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modulecontrol.records._chain import (
    GENESIS_HASH,
    AuditIssue,
    AuditReport,
    RecordChain,
    anchor_path_for,
    key_path_for,
    load_key,
    row_digest,
    utc_now,
    verify_chain,
)
from modulecontrol.records._db import RecordsError, connect, require_current, schema_version

_FIELDS = ("seq", "t_utc", "user", "action", "object", "old_value", "new_value", "reason")


def canonical_json(value: Any) -> str:
    """One byte-exact JSON form per value, so hashes do not depend on key order or spacing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=str)


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


def legacy_entry_hash(content: dict[str, Any], prev_hash: str) -> str:
    """Hash of a schema-1 entry: SHA-256 of its canonical JSON and the previous hash.

    Only for verifying old databases: anyone can recompute it, so it proves nothing against
    a deliberate rewrite.
    """
    body = {k: content[k] for k in _FIELDS}
    body["prev_hash"] = prev_hash
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def _row_to_entry(row: tuple[Any, ...]) -> AuditEntry:
    seq, t_utc, user, action, obj, old, new, reason, prev_hash, h = row
    return AuditEntry(int(seq), t_utc, user, action, obj, json.loads(old), json.loads(new),
                      reason, prev_hash, h)


def append_entry(conn: sqlite3.Connection, chain: RecordChain, *, user: str, action: str,
                 obj: str, old_value: Any, new_value: Any, reason: str,
                 in_transaction: bool = False) -> AuditEntry:
    """Append one entry, as a link of ``chain``, on ``conn``.

    With ``in_transaction`` the caller's write transaction is used (and the caller anchors
    after its commit); otherwise this runs its own ``BEGIN IMMEDIATE`` and anchors. The
    head is read under SQLite's write lock, so two writers, even in two processes, can
    never take the same number or fork the chain.
    """
    if not user.strip():
        raise ValueError("an audit entry needs a user: who made the change?")
    if not reason.strip():
        raise ValueError("an audit entry needs a reason: why was the change made?")
    if not in_transaction:
        conn.execute("BEGIN IMMEDIATE")
    try:
        last = conn.execute("SELECT MAX(seq) FROM audit").fetchone()[0]
        seq = 1 if last is None else int(last) + 1
        t_utc = utc_now()
        values = (seq, t_utc, user, action, obj, canonical_json(old_value),
                  canonical_json(new_value), reason)
        prev = chain.head(conn).hash
        link = chain.append(conn, "audit", seq, row_digest("audit", values))
        conn.execute(
            "INSERT INTO audit(seq, t_utc, user, action, object, old_value, new_value, reason,"
            " prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)", (*values, prev, link.hash))
        if not in_transaction:
            conn.execute("COMMIT")
    except BaseException:
        if not in_transaction:
            conn.execute("ROLLBACK")
            chain.rolled_back()
        raise
    if not in_transaction:
        chain.anchor("audit")
    return AuditEntry(seq, t_utc, user, action, obj, old_value, new_value, reason, prev,
                      link.hash)


class AuditTrail:
    """The audit trail of one records database: append, read, and verify.

    Appends commit at once (one small transaction each) and anchor the chain head: an
    audit entry that a caller was told about is never lost in a crash. The key and anchor
    default to ``<db>.key`` and ``<db>.anchor``; the key is created (0600) at first use.
    Use :meth:`append_async` from the control loop.
    """

    def __init__(self, db: str | Path, *, key_path: Path | None = None,
                 anchor_path: Path | None = None) -> None:
        self._path = Path(db)
        self._key_path = key_path or key_path_for(self._path)
        self._anchor_path = anchor_path or anchor_path_for(self._path)
        self._conn = connect(self._path)
        self._chain: RecordChain | None = None

    def append(self, user: str, action: str, obj: str, *, old_value: Any = None,
               new_value: Any = None, reason: str) -> AuditEntry:
        """Record that ``user`` did ``action`` on ``obj`` (``old_value`` → ``new_value``)."""
        if self._chain is None:
            require_current(self._conn, self._path)
            self._chain = RecordChain(load_key(self._key_path, create=True), self._anchor_path)
        return append_entry(self._conn, self._chain, user=user, action=action, obj=obj,
                            old_value=old_value, new_value=new_value, reason=reason)

    async def append_async(self, user: str, action: str, obj: str, *, old_value: Any = None,
                           new_value: Any = None, reason: str) -> AuditEntry:
        """:meth:`append` in a worker thread, so the event loop never waits on the disk."""
        import asyncio

        return await asyncio.to_thread(self.append, user, action, obj, old_value=old_value,
                                       new_value=new_value, reason=reason)

    def entries(self, obj: str | None = None, *, user: str | None = None,
                since_utc: str | None = None) -> Iterator[AuditEntry]:
        """Entries in sequence order; with ``obj``, only those about that object (its
        history); with ``user``, only that user's; with ``since_utc`` (the trail's own
        ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` form), only those at or after it. The user and time
        filters are answered from an index, not by reading the whole trail (a lock-out
        check reads one user's last minutes of a trail that grows for years)."""
        sql = ("SELECT seq, t_utc, user, action, object, old_value, new_value, reason, prev_hash,"
               " hash FROM audit")
        where: list[str] = []
        args: list[Any] = []
        for clause, value in (("object = ?", obj), ("user = ?", user),
                              ("t_utc >= ?", since_utc)):
            if value is not None:
                where.append(clause)
                args.append(value)
        if where:
            sql += " WHERE " + " AND ".join(where)
        for row in self._conn.execute(sql + " ORDER BY seq", args):
            yield _row_to_entry(row)

    def verify(self) -> AuditReport:
        """See :func:`verify_audit` (with this trail's key and anchor)."""
        return verify_audit(self._conn, key_path=self._key_path, anchor_path=self._anchor_path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def verify_audit(db: str | Path | sqlite3.Connection, *, key_path: Path | None = None,
                 anchor_path: Path | None = None) -> AuditReport:
    """Verify every chained record of a database against its key and its anchor file.

    ``key_path``/``anchor_path`` default to ``<db>.key``/``<db>.anchor`` (a connection
    needs them given). ``ok`` is true only when the chain, every record it covers and
    every anchored head agree; see :func:`~modulecontrol.records._chain.verify_chain`. A
    schema-1 database is checked with its old unkeyed chain and is never ``ok``.
    """
    own = not isinstance(db, sqlite3.Connection)
    if isinstance(db, sqlite3.Connection):
        conn = db
        if key_path is None or anchor_path is None:
            raise ValueError("verify_audit on a connection needs key_path and anchor_path")
    else:
        conn = connect(db, create=False)
        key_path = key_path or key_path_for(db)
        anchor_path = anchor_path or anchor_path_for(db)
    try:
        try:
            if schema_version(conn) == 1:
                return _verify_legacy(conn)
            return verify_chain(conn, load_key(key_path, create=False), anchor_path)
        except sqlite3.DatabaseError as exc:
            raise RecordsError(f"cannot read the records chain: {exc}") from exc
    finally:
        if own:
            conn.close()


def _verify_legacy(conn: sqlite3.Connection) -> AuditReport:
    """Walk a schema-1 plain SHA-256 audit chain; always adds the 'legacy' issue."""
    rows = conn.execute(
        "SELECT seq, t_utc, user, action, object, old_value, new_value, reason,"
        " prev_hash, hash FROM audit ORDER BY rowid").fetchall()
    report = AuditReport(entries=len(rows), head_hash=GENESIS_HASH, legacy=True)
    issues = report.issues
    issues.append(AuditIssue(0, "legacy unkeyed chain",
                             "this database predates keyed, anchored records: only its audit"
                             " table is chained, with plain SHA-256, so truncation,"
                             " recomputation, forged appends, a wipe and edits of runs, events"
                             " or samples cannot be detected; do not release a batch on it"))
    expected_seq = 1
    prev_hash = GENESIS_HASH
    for row in rows:
        seq = int(row[0])
        content = dict(zip(_FIELDS, row[:8], strict=True))
        stored_prev, stored_hash = str(row[8]), str(row[9])
        if seq != expected_seq:
            issues.append(AuditIssue(seq, "out of sequence",
                                     f"sequence {seq} found where {expected_seq} was expected"))
        if legacy_entry_hash(content, stored_prev) != stored_hash:
            issues.append(AuditIssue(seq, "changed",
                                     "content does not match its hash (entry was edited)"))
        if stored_prev != prev_hash:
            issues.append(AuditIssue(seq, "chain broken",
                                     "prev_hash does not match the hash of the entry before it"))
        prev_hash = stored_hash
        expected_seq = seq + 1
    report.head_hash = prev_hash
    report.head_seq = expected_seq - 1
    return report

"""One keyed, anchored chain over every record a batch release depends on.

Why one chain and not a hash column per table: a batch is released on the run record, its
parameters and result, the events, alarms, operator actions and audit entries, and the
samples behind the figures. Each of those is covered by a *link* in the ``chain`` table:
the link holds the SHA-256 digest of the record's stored content (a run, an alarm or a tag
is linked again each time it changes; the latest link must match what is stored), and the
samples of one historian commit are linked as one block (``samples.blk`` is the link's
sequence number). Each link's hash is an HMAC-SHA256, with a key kept *outside* the
database, over its sequence number, time, what it covers, the digest and the previous
link's hash. Whoever edits the file without the key cannot write a link that verifies.

Why an anchor: with the key alone, deleting the newest links (truncation) or everything
(a wipe) leaves a chain that verifies. After each commit the writer appends the chain head
``(seq, hash)`` to an append-only anchor file outside the database; :func:`verify_chain`
requires every anchored head to be in the chain. Keep the anchor on other storage (see
docs/security.md) and a rewrite of the database alone is detected.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modulecontrol.records._db import RecordsError

GENESIS_HASH = "0" * 64

#: Columns of each chained table, in the order their digest covers them. ``audit``'s own
#: ``prev_hash``/``hash`` columns hold the hashes of the link that covers the entry.
CHAINED: dict[str, tuple[str, ...]] = {
    "runs": ("id", "recipe_name", "recipe_version", "recipe_hash", "plant_hash", "parameters",
             "metadata", "operator", "t_start", "t_end", "result", "note", "owner_token",
             "owner_pid", "owner_host"),
    "events": ("id", "run_id", "t", "kind", "source", "payload"),
    "alarms": ("id", "run_id", "name", "message", "priority", "t_raised", "t_acked",
               "acked_by", "t_cleared", "payload"),
    "operator_actions": ("id", "run_id", "t", "user", "action", "target", "old_value",
                         "new_value", "reason"),
    "tags": ("id", "name", "unit", "grp", "description"),
    "audit": ("seq", "t_utc", "user", "action", "object", "old_value", "new_value", "reason"),
    "recipe_versions": ("id", "name", "version", "content_hash", "text", "state", "author",
                        "t_utc"),
    "signatures": ("id", "t_utc", "user", "printed_name", "meaning", "action", "object",
                   "signed_hash", "reason"),
}
SAMPLES = "samples"
_SAMPLE_COLUMNS = ("tag_id", "t", "value", "raw", "quality", "run_id")
_KEY_BYTES = 32


def _id_column(table: str) -> str:
    return "seq" if table == "audit" else "id"


def key_path_for(db: str | Path) -> Path:
    """Default key file of a database: beside it, never in it."""
    p = Path(db)
    return p.with_name(p.name + ".key")


def anchor_path_for(db: str | Path) -> Path:
    """Default anchor file of a database (keep a copy elsewhere: docs/security.md)."""
    p = Path(db)
    return p.with_name(p.name + ".anchor")


def load_key(path: Path, *, create: bool) -> bytes:
    """Read the records key; with ``create``, make one (0600) if there is none yet.

    A key file that group or others can read is refused, not used: whoever reads it can
    forge records.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        if not create:
            raise RecordsError(
                f"no records key at '{path}': pass --key with the key file this database"
                " was written with") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it a moment ago
            return load_key(path, create=False)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(_KEY_BYTES) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return load_key(path, create=False)
    if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RecordsError(
            f"records key '{path}' is readable by others (mode {stat.S_IMODE(st.st_mode):04o}):"
            f" run 'chmod 600 {path}' and check who copied it")
    text = path.read_text(encoding="ascii").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise RecordsError(f"records key '{path}' is not a hex key of at least 16 bytes")
    return key


def _digest(parts: Iterable[Any]) -> str:
    """SHA-256 over ``repr`` of stored values: exact for floats, ints, text and NULL."""
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\n")
    return h.hexdigest()


def row_digest(table: str, values: Sequence[Any]) -> str:
    """Digest of one chained row's stored values (in :data:`CHAINED` column order)."""
    return _digest((table, *values))


def stored_row_digest(conn: sqlite3.Connection, table: str, rowid: int) -> str | None:
    """Digest of the row as stored now (None when it is gone)."""
    cols = ", ".join(CHAINED[table])
    row = conn.execute(f"SELECT {cols} FROM {table} WHERE {_id_column(table)}=?",
                       (rowid,)).fetchone()
    return None if row is None else row_digest(table, row)


_SampleRow = tuple[int, float, float | None, float | None, int, int | None]


def _rows_digest(blk: int, rows: Iterable[tuple[Any, ...]]) -> tuple[int, str]:
    """Order-independent digest of a block's rows (storage order is not part of a record)."""
    lines = sorted(map(repr, rows))
    h = hashlib.sha256(f"{SAMPLES}\n{blk}\n".encode())
    h.update("\n".join(lines).encode())
    return len(lines), h.hexdigest()


def block_digest(conn: sqlite3.Connection, blk: int) -> tuple[int, str]:
    """Number of samples in block ``blk`` as stored and their digest."""
    cols = ", ".join(_SAMPLE_COLUMNS)
    return _rows_digest(blk, conn.execute(f"SELECT {cols} FROM samples WHERE blk=?", (blk,)))


def _as_stored(t: float, v: float | None, raw: float | None) -> tuple[float, float | None,
                                                                        float | None]:
    """Values as SQLite returns them from REAL columns: floats, NaN stored as NULL, and -0.0
    as 0.0 (SQLite keeps no negative zero; a digest of -0.0 would read back as edited)."""
    return (float(t) + 0.0, None if v is None or v != v else float(v) + 0.0,
            None if raw is None or raw != raw else float(raw) + 0.0)


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def run_record_hash(conn: sqlite3.Connection, run_id: int) -> str | None:
    """SHA-256 of a run's whole batch record as stored: the run row, its events, alarms,
    operator actions and samples (each row's digest, in id order; samples sorted).

    What a batch record approval signs: any later change to any of them (an edit, or a
    record added to the run after it was approved) no longer matches the signature.
    None when there is no such run.
    """
    run = stored_row_digest(conn, "runs", run_id)
    if run is None:
        return None
    h = hashlib.sha256(f"run {run_id}\n{run}\n".encode())
    for table in ("events", "alarms", "operator_actions"):
        cols = ", ".join(CHAINED[table])
        for row in conn.execute(f"SELECT {cols} FROM {table} WHERE run_id=? ORDER BY id",
                                (run_id,)):
            h.update(row_digest(table, row).encode() + b"\n")
    cols = ", ".join(_SAMPLE_COLUMNS)
    rows = sorted(map(repr, conn.execute(f"SELECT {cols} FROM samples WHERE run_id=?",
                                         (run_id,))))
    h.update("\n".join(rows).encode())
    return h.hexdigest()


def signed_object_hash(conn: sqlite3.Connection, obj: str) -> str | None:
    """The hash of what a signature's ``object`` names, as stored now.

    ``recipe_version:ID`` is the version's content hash (its canonical text); ``run:ID`` is
    :func:`run_record_hash`; ``TABLE:ID`` of another chained table is that row's digest (a
    signed parameter change signs its audit entry, ``audit:SEQ``). None for an object that
    is gone or of no known kind.
    """
    kind, _, ref = obj.partition(":")
    if not ref.isdigit():
        return None
    if kind == "recipe_version":
        row = conn.execute("SELECT content_hash FROM recipe_versions WHERE id=?",
                           (int(ref),)).fetchone()
        return None if row is None else str(row[0])
    if kind == "run":
        return run_record_hash(conn, int(ref))
    if kind in CHAINED:  # one chained row, e.g. ``audit:SEQ`` for a signed change
        return stored_row_digest(conn, kind, int(ref))
    return None


def link_hash(key: bytes, seq: int, t_utc: str, kind: str, ref: int, digest: str,
              prev_hash: str) -> str:
    """HMAC-SHA256 of one link, covering its place in the chain and the previous hash."""
    body = json.dumps([seq, t_utc, kind, ref, digest, prev_hash], separators=(",", ":"))
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def utc_now() -> str:
    """UTC timestamp with microseconds, ISO 8601 with a ``Z`` suffix."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Link:
    """A chain position: what the anchor file and the batch report carry."""

    seq: int
    hash: str


class RecordChain:
    """Appends links inside the caller's write transaction and anchors the head after commit.

    Every method that appends must run inside ``BEGIN IMMEDIATE``: the head is read and the
    next link written under SQLite's write lock, so two writers cannot fork the chain.
    """

    def __init__(self, key: bytes, anchor: Path) -> None:
        self._key = key
        self.anchor_path = anchor
        self._pending: Link | None = None
        self.last_anchored: Link | None = None

    @staticmethod
    def head(conn: sqlite3.Connection) -> Link:
        row = conn.execute("SELECT seq, hash FROM chain ORDER BY seq DESC LIMIT 1").fetchone()
        return Link(0, GENESIS_HASH) if row is None else Link(int(row[0]), str(row[1]))

    def append(self, conn: sqlite3.Connection, kind: str, ref: int, digest: str) -> Link:
        """Append one link (in the open transaction) and return it."""
        head = self.head(conn)
        seq, t_utc = head.seq + 1, utc_now()
        h = link_hash(self._key, seq, t_utc, kind, ref, digest, head.hash)
        conn.execute("INSERT INTO chain(seq, t_utc, kind, ref, digest, prev_hash, hash)"
                     " VALUES (?,?,?,?,?,?,?)", (seq, t_utc, kind, ref, digest, head.hash, h))
        self._pending = Link(seq, h)
        return self._pending

    def link_row(self, conn: sqlite3.Connection, table: str, rowid: int) -> Link:
        """Link a row as it is stored now (after its INSERT or UPDATE)."""
        digest = stored_row_digest(conn, table, rowid)
        if digest is None:
            raise RecordsError(f"cannot chain {table} row {rowid}: it is not in the database")
        return self.append(conn, table, rowid, digest)

    def link_samples(self, conn: sqlite3.Connection, rows: Iterable[_SampleRow]) -> Link:
        """Insert one commit's samples as block ``blk`` = the link's seq, and link them.

        The digest is taken from the values as SQLite will return them (no read-back: it
        would halve the writer's throughput); verification reads them from the table.
        """
        blk = self.head(conn).seq + 1
        stored = [(int(tid), *_as_stored(t, v, raw), int(q), rid)
                  for tid, t, v, raw, q, rid in rows]
        conn.executemany("INSERT INTO samples(tag_id, t, value, raw, quality, run_id, blk)"
                         f" VALUES (?,?,?,?,?,?,{blk})", stored)
        link = self.append(conn, SAMPLES, blk, _rows_digest(blk, stored)[1])
        assert link.seq == blk
        return link

    def rolled_back(self) -> None:
        """Forget links of a transaction that did not commit."""
        self._pending = None

    def anchor(self, why: str = "commit") -> Link | None:
        """After a commit: append the head it produced to the anchor file (0600, fsynced)."""
        link, self._pending = self._pending, None
        if link is None:
            return None
        line = json.dumps({"seq": link.seq, "hash": link.hash, "t_utc": utc_now(), "why": why},
                          separators=(",", ":")) + "\n"
        self.anchor_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.anchor_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.last_anchored = link
        return link


@dataclass(frozen=True)
class AuditIssue:
    """A problem found by :func:`verify_chain`, tied to the link (seq) where it shows."""

    seq: int
    problem: str
    detail: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.problem}: {self.detail}"


@dataclass
class AuditReport:
    """Result of verifying a records database; ``ok`` only when no issue was found."""

    entries: int
    head_hash: str
    head_seq: int = 0
    anchors: int = 0
    legacy: bool = False
    issues: list[AuditIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


def read_anchors(path: Path) -> list[Link]:
    """The heads recorded in an anchor file, oldest first."""
    out: list[Link] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out.append(Link(int(d["seq"]), str(d["hash"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordsError(f"{path}:{n}: not an anchor line ({exc}); the anchor file"
                               " was edited or is not an anchor file") from None
    return out


def verify_chain(conn: sqlite3.Connection, key: bytes, anchor: Path) -> AuditReport:
    """Walk the chain, then every chained record, then the anchor; name each discrepancy.

    Link checks: contiguous sequence numbers, ``prev_hash`` equal to the previous link's
    hash, the HMAC. Record checks: each chained row matches the digest of its newest link
    (edited), has a link at all (inserted behind the writer's back), and each link's row is
    still there (deleted); each sample block matches its digest; samples without a block are
    named. Anchor checks: every anchored head is in the chain (truncation, wipe, rewrite).

    Safe while a writer records: the anchor file is read first (a head is anchored only
    after its commit), then the database in one read snapshot.
    """
    anchors = read_anchors(anchor) if anchor.exists() else None
    own_tx = not conn.in_transaction
    if own_tx:
        conn.execute("BEGIN")
    try:
        return _verify_snapshot(conn, key, anchor, anchors)
    finally:
        if own_tx:
            conn.execute("COMMIT")


def _verify_snapshot(conn: sqlite3.Connection, key: bytes, anchor: Path,
                     anchors: list[Link] | None) -> AuditReport:
    links = conn.execute("SELECT seq, t_utc, kind, ref, digest, prev_hash, hash FROM chain"
                         " ORDER BY rowid").fetchall()
    rep = AuditReport(entries=len(links), head_hash=GENESIS_HASH)
    issues = rep.issues
    prev, expected = GENESIS_HASH, 1
    by_seq: dict[int, str] = {}
    prev_of: dict[int, str] = {}
    latest: dict[tuple[str, int], tuple[int, str]] = {}
    for seq, t_utc, kind, ref, digest, stored_prev, stored_hash in links:
        seq = int(seq)
        if seq != expected:
            issues.append(AuditIssue(seq, "out of sequence",
                                     f"link {seq} found where {expected} was expected"
                                     " (links removed, inserted or renumbered)"))
        if stored_prev != prev:
            issues.append(AuditIssue(seq, "chain broken", "prev_hash does not match the link"
                                     " before it (a link was removed, inserted or moved)"))
        if not hmac.compare_digest(
                link_hash(key, seq, str(t_utc), str(kind), int(ref), str(digest),
                          str(stored_prev)), str(stored_hash)):
            issues.append(AuditIssue(seq, "forged or edited link",
                                     f"the HMAC of this {kind} link does not verify with the"
                                     " key (written without the key, or edited)"))
        by_seq[seq] = str(stored_hash)
        prev_of[seq] = str(stored_prev)
        latest[(str(kind), int(ref))] = (seq, str(digest))
        prev, expected = str(stored_hash), seq + 1
    rep.head_hash, rep.head_seq = prev, expected - 1

    present = _tables(conn)
    for table, cols in CHAINED.items():
        if table not in present:  # a file from before the table existed: nothing to check
            continue
        idc = _id_column(table)
        for row in conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {idc}"):
            rid = int(row[0])
            found = latest.pop((table, rid), None)
            if found is None:
                issues.append(AuditIssue(0, "unchained record", f"{table} row {rid} is not"
                                         " covered by the chain (written behind the writer)"))
            elif row_digest(table, row) != found[1]:
                issues.append(AuditIssue(found[0], "record edited", f"{table} row {rid}"
                                         " differs from what its link recorded"))
    seq_of_hash = {h: s for s, h in by_seq.items()}
    for seq, prev_h, h in conn.execute("SELECT seq, prev_hash, hash FROM audit"):
        link_seq = seq_of_hash.get(str(h))
        if link_seq is None or prev_of[link_seq] != prev_h:
            issues.append(AuditIssue(int(seq), "audit hash changed",
                                     f"audit entry {seq}'s prev_hash/hash are not those of"
                                     " the link that covers it"))
    for blk, n in conn.execute("SELECT blk, COUNT(*) FROM samples GROUP BY blk ORDER BY blk"):
        if blk is None:
            issues.append(AuditIssue(0, "unchained samples",
                                     f"{n} samples belong to no chained block"))
            continue
        found = latest.pop((SAMPLES, int(blk)), None)
        if found is None:
            issues.append(AuditIssue(int(blk), "unchained samples",
                                     f"block {blk} ({n} samples) has no link"))
        elif block_digest(conn, int(blk))[1] != found[1]:
            issues.append(AuditIssue(found[0], "samples edited",
                                     f"block {blk} ({n} samples) differs from its digest"
                                     " (a sample was changed, added or removed)"))
    for (kind, ref), (seq, _d) in sorted(latest.items(), key=lambda kv: kv[1][0]):
        what = f"sample block {ref}" if kind == SAMPLES else f"{kind} row {ref}"
        issues.append(AuditIssue(seq, "record deleted", f"{what} is linked but gone"))

    if "signatures" in present:
        _verify_signatures(conn, issues)

    if anchors is None:
        issues.append(AuditIssue(rep.head_seq, "no anchor", f"anchor file '{anchor}' not"
                                 " found: truncation and a wipe cannot be ruled out; pass"
                                 " --anchor with the copy kept outside the database"))
        return rep
    rep.anchors = len(anchors)
    bad = [a for a in anchors if by_seq.get(a.seq) != a.hash]
    if bad:
        first = bad[0]
        what = "missing" if first.seq not in by_seq else "different"
        issues.append(AuditIssue(first.seq, "anchor mismatch",
                                 f"anchored head {first.seq} is {what} in the chain"
                                 f" ({len(bad)} of {len(anchors)} anchored heads do not match:"
                                 " records truncated, wiped or rewritten)"))
    return rep



def _verify_signatures(conn: sqlite3.Connection, issues: list[AuditIssue]) -> None:
    """Each signature's ``signed_hash`` must be the hash of its object as stored now.

    Why: a signature row is chained (it cannot be edited or added without the key), and
    this check binds it to exactly what was signed: a signature moved or copied to another
    record, or a record changed after it was signed, no longer matches.
    """
    for sid, obj, signed in conn.execute(
            "SELECT id, object, signed_hash FROM signatures ORDER BY id"):
        now = signed_object_hash(conn, str(obj))
        if now is None:
            issues.append(AuditIssue(0, "signature without its record",
                                     f"signature {sid} signs '{obj}', which is not in the"
                                     " records"))
        elif not hmac.compare_digest(now, str(signed)):
            issues.append(AuditIssue(0, "signature does not match",
                                     f"signature {sid} on '{obj}' signed {str(signed)[:12]}…,"
                                     f" the record is {now[:12]}… now (copied to another"
                                     " record, or the record changed after signing)"))

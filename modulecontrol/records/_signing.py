"""Recipe versions and electronic signatures, as records of the one keyed chain.

Why here, in the records: a signature is worth only what binds it to what was signed. Each
signature row (who, printed name, meaning, time, and the SHA-256 of exactly what was
signed) is a link of the records chain, with an audit entry in the same transaction, and
:func:`~modulecontrol.records.verify_audit` recomputes the hash of the signed record: a
signature copied or moved to another record, or a record changed after signing, is named.

Who may sign is not decided here: the password check at signing time (re-authentication),
roles and the site's list of signed actions belong to the service (``service/_signing``).
This layer enforces what follows from the records alone: the life-cycle transitions, that
a version's content never changes, and the two-person rule (an approver other than the
author).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from hashlib import sha256
from pathlib import Path
from typing import Final

from modulecontrol.records._audit import append_entry
from modulecontrol.records._chain import (
    RecordChain,
    anchor_path_for,
    key_path_for,
    load_key,
    run_record_hash,
    signed_object_hash,
    utc_now,
)
from modulecontrol.records._db import RecordsError, connect, require_current


class Meaning(StrEnum):
    """What a signer declares by signing (21 CFR 11.50(a)(3))."""

    AUTHORED = "authored"
    REVIEWED = "reviewed"
    APPROVED = "approved"
    RESPONSIBLE = "responsible for"


class RecipeState(StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in review"
    APPROVED = "approved"
    EFFECTIVE = "effective"
    OBSOLETE = "obsolete"


@dataclass(frozen=True)
class Step:
    """One life-cycle action: from which states, to which state, with which meaning."""

    to: RecipeState | None
    """None: the state stays (a review signature)."""
    sources: frozenset[RecipeState]
    meaning: Meaning


LIFECYCLE: Final[dict[str, Step]] = {
    "submit": Step(RecipeState.IN_REVIEW, frozenset({RecipeState.DRAFT}), Meaning.AUTHORED),
    "review": Step(None, frozenset({RecipeState.IN_REVIEW}), Meaning.REVIEWED),
    "reject": Step(RecipeState.DRAFT, frozenset({RecipeState.IN_REVIEW}), Meaning.REVIEWED),
    "approve": Step(RecipeState.APPROVED, frozenset({RecipeState.IN_REVIEW}), Meaning.APPROVED),
    "release": Step(RecipeState.EFFECTIVE, frozenset({RecipeState.APPROVED}),
                    Meaning.RESPONSIBLE),
    "obsolete": Step(RecipeState.OBSOLETE,
                     frozenset({RecipeState.APPROVED, RecipeState.EFFECTIVE}),
                     Meaning.RESPONSIBLE),
}
"""The recipe life cycle: draft → in review → approved → effective → obsolete. ``review``
adds a reviewer's signature; ``reject`` sends a version back to draft; ``release`` makes an
approved version effective (the one effective version of that name before it becomes
obsolete); only an effective version runs in production mode."""


def canonical_recipe_text(text: str) -> str:
    """The recipe text whose hash identifies a version: LF line ends, no trailing blanks on
    a line, one final newline. Why: a file saved by another editor (CRLF, a trailing space)
    is the same recipe; anything that YAML reads differently is a different version."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n") + "\n"


def recipe_content_hash(text: str) -> str:
    """SHA-256 of :func:`canonical_recipe_text`: a recipe version's content hash."""
    return sha256(canonical_recipe_text(text).encode()).hexdigest()


@dataclass(frozen=True)
class RecipeVersion:
    id: int
    name: str
    version: str
    content_hash: str
    state: RecipeState
    author: str
    t_utc: str
    text: str

    @property
    def object(self) -> str:
        """How signatures and audit entries name this version."""
        return f"recipe_version:{self.id}"


@dataclass(frozen=True)
class Signature:
    """One electronic signature as recorded (21 CFR 11.50, 11.70)."""

    id: int
    t_utc: str
    user: str
    printed_name: str
    meaning: str
    action: str
    object: str
    signed_hash: str
    reason: str


class SignatureError(RecordsError):
    """A signature or a life-cycle step the records refuse (wrong state, two-person rule)."""


_RV_COLS = "id, name, version, content_hash, state, author, t_utc, text"
_SIG_COLS = "id, t_utc, user, printed_name, meaning, action, object, signed_hash, reason"


def _version(row: tuple[object, ...]) -> RecipeVersion:
    return RecipeVersion(int(str(row[0])), str(row[1]), str(row[2]), str(row[3]),
                         RecipeState(str(row[4])), str(row[5]), str(row[6]), str(row[7]))


def _signature(row: tuple[object, ...]) -> Signature:
    return Signature(int(str(row[0])), *(str(x) for x in row[1:]))


class RecipeBook:
    """Recipe versions and signatures of one records database.

    Every write is one transaction: the row, its chain link, its audit entry, then the chain
    head is anchored. Signatures are taken by :meth:`transition` and :meth:`sign_run` from a
    caller that has checked the signer's password at that moment (the service's
    ``Signer``); this class records who, as whom, meaning what, and the hash signed.
    """

    def __init__(self, db: str | Path, *, key_path: Path | None = None,
                 anchor_path: Path | None = None) -> None:
        self.path = Path(db)
        self._key_path = key_path or key_path_for(self.path)
        self._anchor_path = anchor_path or anchor_path_for(self.path)
        self._conn = connect(self.path)
        self._chain: RecordChain | None = None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> RecipeBook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    def versions(self, name: str | None = None) -> list[RecipeVersion]:
        sql = f"SELECT {_RV_COLS} FROM recipe_versions"
        rows = (self._conn.execute(sql + " WHERE name=? ORDER BY id", (name,)) if name
                else self._conn.execute(sql + " ORDER BY name, id"))
        return [_version(r) for r in rows]

    def version(self, ref: str | int) -> RecipeVersion:
        """A version by id, or by ``NAME@VERSION``."""
        if isinstance(ref, int) or str(ref).isdigit():
            row = self._conn.execute(f"SELECT {_RV_COLS} FROM recipe_versions WHERE id=?",
                                     (int(ref),)).fetchone()
        else:
            name, at, ver = str(ref).rpartition("@")
            if not at:
                raise RecordsError(f"'{ref}': name a recipe version as ID or NAME@VERSION")
            row = self._conn.execute(
                f"SELECT {_RV_COLS} FROM recipe_versions WHERE name=? AND version=?",
                (name, ver)).fetchone()
        if row is None:
            raise RecordsError(f"no recipe version '{ref}' in {self.path} ('modulecontrol"
                               " recipe list' lists them)")
        return _version(row)

    def effective(self, name: str, content_hash: str) -> RecipeVersion | None:
        """The effective version of ``name`` with exactly this content, if there is one."""
        row = self._conn.execute(
            f"SELECT {_RV_COLS} FROM recipe_versions WHERE name=? AND content_hash=?"
            " AND state=?", (name, content_hash, RecipeState.EFFECTIVE.value)).fetchone()
        return None if row is None else _version(row)

    def by_hash(self, content_hash: str) -> RecipeVersion | None:
        row = self._conn.execute(
            f"SELECT {_RV_COLS} FROM recipe_versions WHERE content_hash=? ORDER BY id DESC",
            (content_hash,)).fetchone()
        return None if row is None else _version(row)

    def signatures(self, obj: str | None = None) -> list[Signature]:
        sql = f"SELECT {_SIG_COLS} FROM signatures"
        rows = (self._conn.execute(sql + " WHERE object=? ORDER BY id", (obj,))
                if obj is not None else self._conn.execute(sql + " ORDER BY id"))
        return [_signature(r) for r in rows]

    # ------------------------------------------------------------------ writing
    def _begin(self) -> RecordChain:
        if self._chain is None:
            require_current(self._conn, self.path)
            self._chain = RecordChain(load_key(self._key_path, create=True), self._anchor_path)
        self._conn.execute("BEGIN IMMEDIATE")
        return self._chain

    def _commit(self, chain: RecordChain, why: str) -> None:
        self._conn.execute("COMMIT")
        chain.anchor(why)

    def _rollback(self, chain: RecordChain) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        chain.rolled_back()

    def register(self, name: str, version: str, text: str, author: str) -> RecipeVersion:
        """Store a recipe text as a new draft version (its canonical text and hash)."""
        if not author.strip():
            raise SignatureError("a recipe version needs an author")
        canonical = canonical_recipe_text(text)
        chain = self._begin()
        try:
            try:
                cur = self._conn.execute(
                    "INSERT INTO recipe_versions(name, version, content_hash, text, state,"
                    " author, t_utc) VALUES (?,?,?,?,?,?,?)",
                    (name, version, recipe_content_hash(text), canonical,
                     RecipeState.DRAFT.value, author, utc_now()))
            except sqlite3.IntegrityError:
                raise SignatureError(
                    f"recipe {name} version {version} is registered already: a changed"
                    " recipe is a new version (raise 'version:' in the file)") from None
            vid = int(cur.lastrowid or 0)
            chain.link_row(self._conn, "recipe_versions", vid)
            append_entry(self._conn, chain, user=author, action="recipe register",
                         obj=f"recipe_version:{vid}", old_value=None,
                         new_value={"name": name, "version": version,
                                    "content_hash": recipe_content_hash(text)},
                         reason="new recipe version (draft)", in_transaction=True)
        except BaseException:
            self._rollback(chain)
            raise
        self._commit(chain, "recipe register")
        return self.version(vid)

    def transition(self, ref: str | int, action: str, *, user: str, printed_name: str,
                   reason: str, two_person: bool = True) -> tuple[RecipeVersion, Signature]:
        """One signed life-cycle step (:data:`LIFECYCLE`) of a version.

        With ``two_person``, a version is reviewed, approved and released by someone other
        than its author. Releasing makes the previously effective version of the same name
        obsolete, in the same transaction.
        """
        step = LIFECYCLE.get(action)
        if step is None:
            raise SignatureError(f"'{action}' is not a recipe life-cycle action"
                                 f" ({', '.join(LIFECYCLE)})")
        rv = self.version(ref)
        if rv.state not in step.sources:
            allowed = " or ".join(sorted(s.value for s in step.sources))
            raise SignatureError(f"{action}: recipe {rv.name}@{rv.version} is {rv.state.value};"
                                 f" '{action}' takes a version that is {allowed}")
        if two_person and action in ("review", "approve", "release") and user == rv.author:
            raise SignatureError(f"{action}: {user} is the author of {rv.name}@{rv.version};"
                                 " the two-person rule needs another person to sign this")
        if action == "submit" and user != rv.author:
            raise SignatureError(f"submit: only the author ({rv.author}) submits a version")
        chain = self._begin()
        try:
            superseded: list[int] = []
            if step.to is RecipeState.EFFECTIVE:
                superseded = [int(r[0]) for r in self._conn.execute(
                    "SELECT id FROM recipe_versions WHERE name=? AND state=? AND id<>?",
                    (rv.name, RecipeState.EFFECTIVE.value, rv.id))]
                for old in superseded:
                    self._set_state(chain, old, RecipeState.OBSOLETE, user,
                                    f"superseded by {rv.name}@{rv.version}")
            sig = self._sign(chain, user=user, printed_name=printed_name,
                             meaning=step.meaning, action=f"recipe {action}", obj=rv.object,
                             reason=reason)
            if step.to is not None:
                self._set_state(chain, rv.id, step.to, user, reason)
        except BaseException:
            self._rollback(chain)
            raise
        self._commit(chain, f"recipe {action}")
        return self.version(rv.id), sig

    def sign_run(self, run_id: int, *, user: str, printed_name: str, meaning: Meaning,
                 reason: str, action: str = "batch record approval") -> Signature:
        """Sign a finished run's batch record (:func:`run_record_hash`)."""
        row = self._conn.execute("SELECT result FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise SignatureError(f"no run {run_id} in {self.path} ('modulecontrol runs')")
        if str(row[0]) == "running":
            raise SignatureError(f"run {run_id} is still running: its batch record is signed"
                                 " when it has ended")
        open_alarms = [str(r[0]) for r in self._conn.execute(
            "SELECT name FROM alarms WHERE run_id=? AND (t_cleared IS NULL OR t_acked IS NULL)"
            " ORDER BY id", (run_id,))]
        if open_alarms:  # their clearing or acknowledgement would change the signed record
            raise SignatureError(
                f"run {run_id} has alarms not yet cleared and acknowledged"
                f" ({', '.join(open_alarms)}): its batch record is signed once they are")
        chain = self._begin()
        try:
            sig = self._sign(chain, user=user, printed_name=printed_name, meaning=meaning,
                             action=action, obj=f"run:{run_id}", reason=reason)
        except BaseException:
            self._rollback(chain)
            raise
        self._commit(chain, action)
        return sig

    def sign(self, obj: str, *, user: str, printed_name: str, meaning: Meaning, action: str,
             reason: str) -> Signature:
        """Sign any record :func:`signed_object_hash` knows (``run:ID``, ``recipe_version:ID``)."""
        chain = self._begin()
        try:
            sig = self._sign(chain, user=user, printed_name=printed_name, meaning=meaning,
                             action=action, obj=obj, reason=reason)
        except BaseException:
            self._rollback(chain)
            raise
        self._commit(chain, action)
        return sig

    def record_refusal(self, user: str, action: str, obj: str, why: str) -> None:
        """A refused signature (wrong password, rate limit) in the audit trail."""
        chain = self._begin()
        try:
            append_entry(self._conn, chain, user=user or "(anonymous)",
                         action=f"refused: sign {action}", obj=obj, old_value=None,
                         new_value=None, reason=why, in_transaction=True)
        except BaseException:
            self._rollback(chain)
            raise
        self._commit(chain, "refused signature")

    def _sign(self, chain: RecordChain, *, user: str, printed_name: str, meaning: Meaning,
              action: str, obj: str, reason: str) -> Signature:
        if not user.strip() or not printed_name.strip():
            raise SignatureError("a signature needs the signer's user name and printed name")
        if not reason.strip():
            raise SignatureError("a signature needs a reason (what is being signed, and why)")
        signed = signed_object_hash(self._conn, obj)
        if signed is None:
            raise SignatureError(f"cannot sign '{obj}': no such record")
        t = utc_now()
        cur = self._conn.execute(
            "INSERT INTO signatures(t_utc, user, printed_name, meaning, action, object,"
            " signed_hash, reason) VALUES (?,?,?,?,?,?,?,?)",
            (t, user, printed_name, Meaning(meaning).value, action, obj, signed, reason))
        sid = int(cur.lastrowid or 0)
        chain.link_row(self._conn, "signatures", sid)
        append_entry(self._conn, chain, user=user, action=f"sign: {action}", obj=obj,
                     old_value=None,
                     new_value={"signature": sid, "meaning": Meaning(meaning).value,
                                "printed_name": printed_name, "signed_hash": signed},
                     reason=reason, in_transaction=True)
        return Signature(sid, t, user, printed_name, Meaning(meaning).value, action, obj,
                         signed, reason)

    def _set_state(self, chain: RecordChain, vid: int, state: RecipeState, user: str,
                   reason: str) -> None:
        old = self._conn.execute("SELECT state FROM recipe_versions WHERE id=?",
                                 (vid,)).fetchone()
        self._conn.execute("UPDATE recipe_versions SET state=? WHERE id=?", (state.value, vid))
        chain.link_row(self._conn, "recipe_versions", vid)
        append_entry(self._conn, chain, user=user, action="recipe state",
                     obj=f"recipe_version:{vid}", old_value=None if old is None else old[0],
                     new_value=state.value, reason=reason, in_transaction=True)


def run_signatures(conn: sqlite3.Connection, run_id: int) -> Iterator[Signature]:
    """The signatures on a run's batch record (for its report)."""
    try:
        rows = conn.execute(f"SELECT {_SIG_COLS} FROM signatures WHERE object=? ORDER BY id",
                            (f"run:{run_id}",)).fetchall()
    except sqlite3.OperationalError:  # a file from before signatures existed
        return
    for r in rows:
        yield _signature(r)


def run_record_digest(db: str | Path, run_id: int) -> str | None:
    """:func:`~modulecontrol.records._chain.run_record_hash` of a database file."""
    conn = connect(db, create=False)
    try:
        return run_record_hash(conn, run_id)
    finally:
        conn.close()


def effective_version(db: str | Path, name: str, content_hash: str) -> RecipeVersion | None:
    """The effective version of recipe ``name`` with this content hash in database ``db``;
    None when there is none (or no database yet). What production mode requires."""
    if not Path(db).exists():
        return None
    conn = connect(db, create=False)
    try:
        row = conn.execute(
            f"SELECT {_RV_COLS} FROM recipe_versions WHERE name=? AND content_hash=?"
            " AND state=?", (name, content_hash, RecipeState.EFFECTIVE.value)).fetchone()
    except sqlite3.OperationalError:  # a file from before recipe versions existed
        return None
    finally:
        conn.close()
    return None if row is None else _version(row)

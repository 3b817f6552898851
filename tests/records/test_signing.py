"""Recipe versions and electronic signatures in the records chain (docs/signatures.md).

Each test records real runs and real signatures into a real records database, then checks
what the chain and ``verify_audit`` say; tampering is done as in test_records_tamper.py
(triggers dropped, rows written without the key).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modulecontrol.records import (
    LIFECYCLE,
    AuditTrail,
    Historian,
    Meaning,
    RecipeBook,
    RecipeState,
    RunResult,
    SignatureError,
    canonical_recipe_text,
    recipe_content_hash,
    verify_audit,
)
from tests.records.test_records_tamper import _problems, _raw

T0 = 1_700_000_000.0
TEXT = "kind: Recipe\nname: demo\nversion: 1.0.0\nprocedure: []\n"


async def _run(db: Path, name: str = "demo") -> int:
    h = Historian(db, flush_interval=0.05)
    try:
        rid = await h.start_run(name, parameters={"T": "60 degC"}, t=T0)
        for i in range(10):
            h.record_sample("PAT.Purity", 91.0 + i, t=T0 + i)
        await h.flush()
        h.record_event("step_transition", "recipe", {"step": "collect"}, t=T0 + 5)
        await h.end_run(rid, RunResult.COMPLETED, t=T0 + 10)
    finally:
        await h.close()
    return rid


def test_release_needs_an_author_and_a_different_approver(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with RecipeBook(db) as book:
        rv = book.register("demo", "1.0.0", TEXT, "alice")
        assert rv.state is RecipeState.DRAFT
        assert rv.content_hash == recipe_content_hash(TEXT)
        with pytest.raises(SignatureError, match="only the author"):
            book.transition(rv.id, "submit", user="bob", printed_name="Bob B", reason="r")
        book.transition(rv.id, "submit", user="alice", printed_name="Alice A", reason="done")
        with pytest.raises(SignatureError, match="two-person rule"):
            book.transition(rv.id, "approve", user="alice", printed_name="Alice A",
                            reason="self-approval")
        with pytest.raises(SignatureError, match="in review"):
            book.transition(rv.id, "release", user="bob", printed_name="Bob B", reason="r")
        book.transition(rv.id, "approve", user="bob", printed_name="Bob B", reason="checked")
        rv2, sig = book.transition(rv.id, "release", user="bob", printed_name="Bob B",
                                   reason="for production")
        assert rv2.state is RecipeState.EFFECTIVE
        assert sig.meaning == Meaning.RESPONSIBLE and sig.signed_hash == rv.content_hash
        assert book.effective("demo", rv.content_hash) == rv2
        meanings = [s.meaning for s in book.signatures(rv.object)]
        assert meanings == ["authored", "approved", "responsible for"]
        # a second version released makes the first obsolete, in the same step
        v2 = book.register("demo", "1.1.0", TEXT + "description: new\n", "alice")
        book.transition(v2.id, "submit", user="alice", printed_name="Alice A", reason="r")
        book.transition(v2.id, "approve", user="bob", printed_name="Bob B", reason="r")
        book.transition(v2.id, "release", user="bob", printed_name="Bob B", reason="r")
        assert book.version(rv.id).state is RecipeState.OBSOLETE
        assert book.effective("demo", rv.content_hash) is None
    with AuditTrail(db) as trail:
        actions = [e.action for e in trail.entries(rv.object)]
    assert "sign: recipe approve" in actions and "recipe state" in actions
    assert verify_audit(db).ok


def test_a_version_is_immutable_and_unique(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with RecipeBook(db) as book:
        rv = book.register("demo", "1.0.0", TEXT, "alice")
        with pytest.raises(SignatureError, match="new version"):
            book.register("demo", "1.0.0", TEXT + "# changed\n", "alice")
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        conn.execute("UPDATE recipe_versions SET text='x' WHERE id=?", (rv.id,))
    conn.close()


def test_signature_copied_to_another_run_is_caught(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    first = asyncio.run(_run(db))
    second = asyncio.run(_run(db))
    with RecipeBook(db) as book:
        sig = book.sign_run(first, user="qa", printed_name="Quinn A", meaning=Meaning.APPROVED,
                            reason="batch record reviewed")
    assert verify_audit(db).ok
    conn = _raw(db)
    # copy the signature row onto the other run's record
    conn.execute("INSERT INTO signatures(t_utc, user, printed_name, meaning, action, object,"
                 " signed_hash, reason) SELECT t_utc, user, printed_name, meaning, action,"
                 " ?, signed_hash, reason FROM signatures WHERE id=?",
                 (f"run:{second}", sig.id))
    conn.close()
    assert {"unchained record", "signature does not match"} <= _problems(db)


def test_signature_moved_to_another_run_is_caught(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    first = asyncio.run(_run(db))
    second = asyncio.run(_run(db))
    with RecipeBook(db) as book:
        sig = book.sign_run(first, user="qa", printed_name="Quinn A", meaning=Meaning.APPROVED,
                            reason="batch record reviewed")
    conn = _raw(db)
    conn.execute("UPDATE signatures SET object=? WHERE id=?", (f"run:{second}", sig.id))
    conn.close()
    assert {"record edited", "signature does not match"} <= _problems(db)


def test_record_changed_after_signing_is_caught(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    rid = asyncio.run(_run(db))
    with RecipeBook(db) as book:
        book.sign_run(rid, user="qa", printed_name="Quinn A", meaning=Meaning.APPROVED,
                      reason="batch record reviewed")
    conn = _raw(db)
    conn.execute("UPDATE samples SET value = value + 1 WHERE run_id=?", (rid,))
    conn.close()
    assert "signature does not match" in _problems(db)


def test_a_running_run_is_not_signed(tmp_path: Path) -> None:
    db = tmp_path / "r.db"

    async def sign_while_running() -> None:
        h = Historian(db, flush_interval=0.05)
        try:
            rid = await h.start_run("demo", t=T0)
            await h.flush()
            with RecipeBook(db) as book, pytest.raises(SignatureError, match="still running"):
                book.sign_run(rid, user="qa", printed_name="Q", meaning=Meaning.APPROVED,
                              reason="r")
        finally:
            await h.close()

    asyncio.run(sign_while_running())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(sorted(LIFECYCLE)), max_size=8),
       st.lists(st.sampled_from(["alice", "bob"]), min_size=8, max_size=8))
def test_lifecycle_property(tmp_path: Path, actions: list[str], users: list[str]) -> None:
    """Any sequence of actions by anyone: the state only moves along the life cycle, an
    effective version always has an approval by someone other than its author, and the
    chain verifies after every step."""
    db = tmp_path / f"p{abs(hash((tuple(actions), tuple(users))))}.db"
    with RecipeBook(db) as book:
        rv = book.register("demo", "1.0.0", TEXT, "alice")
        state = rv.state
        for action, user in zip(actions, users, strict=False):
            step = LIFECYCLE[action]
            try:
                rv, _ = book.transition(rv.id, action, user=user, printed_name=user.title(),
                                        reason="property")
            except SignatureError:
                assert rv.state not in step.sources or user == "alice" or action == "submit"
                continue
            assert state in step.sources
            state = rv.state if step.to is None else step.to
            assert rv.state is state
        if rv.state in (RecipeState.APPROVED, RecipeState.EFFECTIVE):
            approvers = {s.user for s in book.signatures(rv.object) if s.meaning == "approved"}
            assert approvers and "alice" not in approvers
    assert verify_audit(db).ok
    db.unlink()


def test_canonical_text_ignores_line_ends_and_trailing_blanks() -> None:
    assert canonical_recipe_text("a: 1  \r\nb: 2") == "a: 1\nb: 2\n"
    assert recipe_content_hash("a: 1\r\n") == recipe_content_hash("a: 1\n")
    assert recipe_content_hash("a: 1\n") != recipe_content_hash("a: 2\n")


def test_a_file_from_before_versions_and_signatures_still_verifies(tmp_path: Path) -> None:
    """A schema-2 file written before these tables existed is read for verification without
    them (opened read-only, nothing is added), and verifies."""
    db = tmp_path / "r.db"
    asyncio.run(_run(db))
    conn = _raw(db)
    conn.execute("DROP TABLE signatures")
    conn.execute("DROP TABLE recipe_versions")
    conn.close()
    assert verify_audit(db).ok


def test_a_run_with_an_open_alarm_is_not_signed(tmp_path: Path) -> None:
    """Clearing or acknowledging it later would change the signed record: signed after."""
    db = tmp_path / "r.db"

    async def record() -> int:
        h = Historian(db, flush_interval=0.05)
        try:
            rid = await h.start_run("demo", t=T0)
            h.raise_alarm("R1.TH", "temperature high", t=T0 + 1)
            await h.end_run(rid, RunResult.COMPLETED, t=T0 + 2)
        finally:
            await h.close()
        return rid

    rid = asyncio.run(record())
    with RecipeBook(db) as book, pytest.raises(SignatureError, match=r"R1\.TH"):
        book.sign_run(rid, user="qa", printed_name="Q", meaning=Meaning.APPROVED, reason="r")

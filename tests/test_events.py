"""The one vocabulary of run events: every kind declared with its payload, enforced on emit,
and the kinds stored in existing run databases still read as kinds."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from modulecontrol.events import PAYLOADS, EventKind, EventLog, kind_of

DATA = Path(__file__).parent / "records" / "data"


def test_every_kind_declares_its_payload() -> None:
    assert set(PAYLOADS) == set(EventKind)
    for kind, payload in PAYLOADS.items():
        assert payload.doc, kind
        assert not set(payload.required) & set(payload.optional), kind
        assert payload.stored_as is None or payload.stored_as in EventKind


def test_emit_refuses_a_payload_its_kind_does_not_declare() -> None:
    log = EventLog(lambda: 1.5)
    ev = log.emit(EventKind.DIVERT, "V1", "to product", to_product=True)
    assert (ev.seq, ev.t, ev.kind, ev.data) == (1, 1.5, EventKind.DIVERT, {"to_product": True})
    with pytest.raises(TypeError, match="divert: payload missing to_product"):
        log.emit(EventKind.DIVERT, "V1", "to product")
    with pytest.raises(TypeError, match="undeclared valve"):
        log.emit(EventKind.DIVERT, "V1", "to product", to_product=True, valve="V1")
    assert len(log.events) == 1  # nothing half-emitted
    assert log.of_kind(EventKind.DIVERT) == [ev]


def test_stored_kinds_of_an_existing_database_read_as_kinds(tmp_path: Path) -> None:
    for db in DATA.glob("*.db"):
        copy = tmp_path / db.name
        shutil.copy(db, copy)
        with sqlite3.connect(copy) as conn:
            stored = {k for (k,) in conn.execute("SELECT DISTINCT kind FROM events")}
        assert stored
        for text in stored:
            kind = kind_of(text)
            assert kind is not None and kind.value == text, text
    assert kind_of("a free note kind") is None


def test_the_docs_list_every_kind() -> None:
    docs = Path(__file__).resolve().parents[1] / "docs"
    text = (docs / "recipes.md").read_text() + (docs / "records.md").read_text()
    missing = [k.value for k in EventKind if f"`{k.value}`" not in text]
    assert not missing, f"add to docs/recipes.md or docs/records.md: {missing}"


def test_a_failing_listener_is_an_event_and_the_others_still_listen() -> None:
    """Issue #14 finding 5: a listener's exception was only logged."""
    log = EventLog(lambda: 2.0)
    seen: list[tuple[str, int]] = []

    def broken(ev: object) -> None:
        raise RuntimeError("disk full")

    log.subscribe(broken)
    log.subscribe(lambda ev: seen.append((ev.kind.value, ev.seq)))
    log.emit(EventKind.DIVERT, "V1", "to product", to_product=True)
    (failed,) = log.of_kind(EventKind.LISTENER_FAILED)
    assert failed.data == {"listener": broken.__qualname__, "event": "divert", "seq": 1,
                           "error": "RuntimeError: disk full"}
    assert failed.seq == 2 and "disk full" in failed.message
    # the healthy listener got the event, then the failure, in sequence order; the broken
    # one is not handed its own failure (it would fail again, forever)
    assert seen == [("divert", 1), ("listener_failed", 2)]


def test_two_failing_listeners_do_not_recurse() -> None:
    log = EventLog(lambda: 0.0)

    def a(ev: object) -> None:
        raise ValueError("a")

    def b(ev: object) -> None:
        raise ValueError("b")

    log.subscribe(a)
    log.subscribe(b)
    log.emit(EventKind.DIVERT, "V1", "to waste", to_product=False)
    failures = log.of_kind(EventKind.LISTENER_FAILED)
    assert sorted(e.source for e in failures) == sorted([a.__qualname__, b.__qualname__])
    assert all(e.data["event"] == "divert" for e in failures)

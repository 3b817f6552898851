"""The service's parts on their own: the event stream's window, binding rules, roles,
login limits, users from the CLI, and the historian query's downsampling."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.client import Client
from modulecontrol.records import AuditTrail, Historian, TagConfig, query_tag
from modulecontrol.service import (
    BindOptions,
    EventStream,
    Role,
    ServiceError,
    ServiceStore,
    check_bind,
)
from modulecontrol.service._auth import LoginLimiter, granted, verify_password


@given(retain=st.integers(1, 20), published=st.integers(0, 60), since=st.integers(-2, 70))
def test_since_gives_every_event_after_n_or_asks_for_a_resync(
        retain: int, published: int, since: int) -> None:
    stream = EventStream(retain)
    for i in range(published):
        stream.publish(float(i), "message", "test", f"event {i + 1}")
    got = stream.since(since)
    oldest = max(1, published - retain + 1)
    if 0 <= since <= published and since >= oldest - 1:
        assert got is not None
        assert [e.seq for e in got] == list(range(since + 1, published + 1))
    else:
        assert got is None


async def test_waiting_clients_wake_on_publish() -> None:
    stream = EventStream()
    waiter = asyncio.create_task(stream.wait(0, 30.0))
    await asyncio.sleep(0)
    stream.publish(0.0, "message", "test", "hello")
    await asyncio.wait_for(waiter, 5.0)
    assert stream.since(0) is not None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "plant-ctrl.example"])
def test_non_loopback_address_needs_tls(host: str) -> None:
    with pytest.raises(ServiceError, match="not a loopback address"):
        check_bind(BindOptions(host=host))
    check_bind(BindOptions(host=host, tls_cert=Path("c.pem"), tls_key=Path("k.pem")))


def test_loopback_is_served_without_tls() -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        check_bind(BindOptions(host=host))


def test_serve_refuses_a_public_address_before_starting_anything(tmp_path: Path) -> None:
    db = tmp_path / "line.db"
    result = CliRunner().invoke(app, ["serve", "recipes/lomustine/plant.yaml", "--simulate",
                                      "--db", str(db), "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "--host 0.0.0.0 is not a loopback address" in result.output
    assert not db.exists()


def test_roles_grant_only_their_scopes() -> None:
    assert granted("viewer", None) == {"read:status"}
    assert granted("operator", frozenset({"write:queue", "read:status"})) == {"read:status"}
    assert "admin:users" in granted("admin", None)
    assert "admin:users" not in granted("engineer", None)


def test_login_limiter_blocks_after_five_failures_for_the_window() -> None:
    lim = LoginLimiter(attempts=5, window=60.0)
    for i in range(5):
        assert lim.blocked_for("ada", now=100.0 + i) == 0.0
        lim.failed("ada", now=100.0 + i)
    assert lim.blocked_for("ada", now=105.0) == pytest.approx(55.0)
    assert lim.blocked_for("bob", now=105.0) == 0.0
    assert lim.blocked_for("ada", now=160.5) == 0.0  # the first failure left the window


def test_user_add_makes_an_argon2_user_and_audits_it(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "line.db"
    monkeypatch.setenv("MODULECONTROL_PASSWORD", "correct horse battery")
    result = CliRunner().invoke(app, ["user", "add", "ada", "--role", "admin", "--db", str(db)])
    assert result.exit_code == 0, result.output
    store = ServiceStore(db)
    try:
        user = store.user("ada")
    finally:
        store.close()
    assert user is not None and user.role == Role.ADMIN
    assert user.pw_hash.startswith("$argon2id$")
    assert verify_password(user.pw_hash, "correct horse battery")
    assert not verify_password(user.pw_hash, "correct horse battery!")
    with AuditTrail(db) as trail:
        assert [(e.action, e.object) for e in trail.entries()] == [("user add", "user ada")]
    again = CliRunner().invoke(app, ["user", "add", "ada", "--role", "viewer", "--db", str(db)])
    assert again.exit_code == 2 and "user 'ada' exists already" in again.output


def test_user_add_refuses_short_passwords_and_unknown_roles(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "line.db"
    monkeypatch.setenv("MODULECONTROL_PASSWORD", "short")
    short = CliRunner().invoke(app, ["user", "add", "ada", "--role", "admin", "--db", str(db)])
    assert short.exit_code == 2 and "at least 10 characters" in short.output
    role = CliRunner().invoke(app, ["user", "add", "ada", "--role", "root", "--db", str(db)])
    assert role.exit_code == 2 and "'root' is not one of viewer, operator" in role.output


async def test_history_keeps_extremes_within_the_point_budget(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    t0 = 1_800_000_000.0
    hist = Historian(db, clock=lambda: t0)
    hist.configure_tag("R1.T", TagConfig(unit="degC", deadband=0.0, max_interval=600.0))
    for i in range(1000):
        hist.record_sample("R1.T", 500.0 if i == 437 else float(i % 10), t=t0 + i)
    await hist.close()
    full = query_tag(db, "R1.T", t0, t0 + 999, max_points=5000)
    assert len(full.points) == 1000 and not full.downsampled and full.unit == "degC"
    small = query_tag(db, "R1.T", t0, t0 + 999, max_points=50)
    assert small.downsampled and len(small.points) <= 50
    assert max(v for _, v, _ in small.points if v is not None) == 500.0  # the spike survives
    assert min(v for _, v, _ in small.points if v is not None) == 0.0
    times = [t for t, _, _ in small.points]
    assert times == sorted(times)


def test_the_pytest_fixture_serves_a_line(control_service_factory: Any) -> None:
    root = Path(__file__).resolve().parents[2]
    served = control_service_factory(root / "recipes" / "lomustine" / "plant.yaml",
                                     recipes=root / "recipes")
    assert served.url.startswith("http://127.0.0.1:")
    assert set(served.users) == {"viewer", "operator", "engineer", "qa", "admin"}

    async def read() -> dict[str, Any]:
        async with Client(served.url) as c:
            await c.login(*served.users["viewer"])
            return await c.plant()

    plant = asyncio.run(read())
    assert plant["simulated"] and {m["tag"] for m in plant["modules"]} >= {"P1", "P2"}


def test_a_service_database_from_before_signatures_gains_its_columns(tmp_path: Path) -> None:
    """Queue and users of an older service: opened, they gain ``mode`` and ``full_name``
    (empty: the default mode, the user name printed), and nothing is lost."""
    import sqlite3

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE service_runs (id INTEGER PRIMARY KEY, recipe TEXT NOT NULL, parameters"
        " TEXT NOT NULL DEFAULT '{}', requested_by TEXT NOT NULL, t_requested REAL NOT NULL,"
        " state TEXT NOT NULL DEFAULT 'queued', record_run INTEGER, t_started REAL, t_ended"
        " REAL, message TEXT NOT NULL DEFAULT '');"
        "CREATE TABLE service_users (name TEXT PRIMARY KEY, role TEXT NOT NULL, pw_hash TEXT"
        " NOT NULL, t_created REAL NOT NULL);"
        "INSERT INTO service_runs(recipe, requested_by, t_requested) VALUES ('a.yaml', 'eve', 1);"
        "INSERT INTO service_users VALUES ('eve', 'engineer', 'x', 1);")
    conn.commit()
    conn.close()
    store = ServiceStore(db)
    try:
        run, user = store.run(1), store.user("eve")
    finally:
        store.close()
    assert run is not None and run.recipe == "a.yaml" and run.mode == ""
    assert user is not None and user.printed_name == "eve"


async def test_a_cancelled_stream_wait_is_not_lost_when_an_event_arrives_with_it() -> None:
    """An event published, the waiting side's inner wait done, then the consumer cancelled
    before it resumes: Python 3.11's ``wait_for`` returned normally there and a consumer
    looping on the stream never ended (the Sparkplug edge's event forwarder hung the
    service's shutdown). The cancellation must reach the consumer."""
    stream = EventStream()
    waits = 0

    async def consumer() -> None:
        nonlocal waits
        while True:
            waits += 1
            await stream.wait(stream.head, 5.0)

    task = asyncio.create_task(consumer())
    await asyncio.sleep(0)  # the consumer waits
    assert waits == 1
    stream.publish(0.0, "note", "test", "an event")
    await asyncio.sleep(0)  # the stream's inner wait completes; the consumer not yet resumed
    task.cancel()
    await asyncio.wait({task}, timeout=2.0)
    assert task.done() and task.cancelled(), f"the consumer went on ({waits} waits)"


def test_the_cli_lock_out_is_read_from_the_users_recent_audit_entries(tmp_path: Path) -> None:
    """The CLI's signing lock-out is seeded from the audit trail: one user's refused
    attempts of the window count, another user's and other refusals do not."""
    from modulecontrol._signcli import limiter_from_audit
    from modulecontrol.records import AuditTrail

    db = tmp_path / "r.db"
    with AuditTrail(db) as trail:
        for _ in range(5):
            trail.append("ada", "refused: sign", "recipe:x", reason="wrong user name or password")
        for _ in range(4):
            trail.append("bob", "refused: login", "service", reason="wrong user name or password")
        for _ in range(3):
            trail.append("bob", "refused: sign", "recipe:x", reason="role may not sign")
        assert [e.user for e in trail.entries(user="bob")] == ["bob"] * 7
        assert not list(trail.entries(since_utc="9999-01-01T00:00:00.000000Z"))
    assert limiter_from_audit(db, "ada").blocked_for("ada") > 0.0
    assert limiter_from_audit(db, "bob").blocked_for("bob") == 0.0
    assert limiter_from_audit(db, "cy").blocked_for("cy") == 0.0

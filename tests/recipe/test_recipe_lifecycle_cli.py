"""``modulecontrol recipe ...``, ``records approve`` and ``run --mode production`` from the
command line: passwords typed at a hidden prompt (fed on stdin here), never an argument."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.errors import ConfigError
from modulecontrol.recipe import load_recipe
from modulecontrol.records import AuditTrail, Historian, RecipeBook, RunResult, verify_audit
from modulecontrol.service import ServiceStore, hash_password
from modulecontrol.session import RunOptions, check_run_mode

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "recipes" / "examples" / "dosing_demo.yaml"
ALICE, QUINN = "alice-password", "quinn-password"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "line.db"
    store = ServiceStore(path)
    try:
        store.add_user("alice", "engineer", hash_password(ALICE), "Alice Author")
        store.add_user("quinn", "qa", hash_password(QUINN), "Quinn Approver")
    finally:
        store.close()
    return path


def _cli(*args: str, stdin: str = "") -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args), input=stdin)
    return r.exit_code, r.output


def _recipe(tmp_path: Path) -> Path:
    """The demo recipe beside its plant, so a copy validates as the original does."""
    folder = tmp_path / "recipes" / "examples"
    folder.mkdir(parents=True)
    shutil.copytree(ROOT / "recipes" / "lomustine", tmp_path / "recipes" / "lomustine")
    return Path(shutil.copy(DEMO, folder / "dosing_demo.yaml"))


def test_recipe_life_cycle_from_the_cli(db: Path, tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    d = str(db)
    code, out = _cli("recipe", "add", str(recipe), "--user", "alice", "--db", d,
                     stdin=ALICE + "\n")
    assert code == 0, out
    assert "dosing-demo@1.0.0  draft  author alice" in out
    # three wrong passwords: not signed, each refusal audited
    code, out = _cli("recipe", "submit", "dosing-demo@1.0.0", "--user", "alice", "--reason",
                     "ready", "--db", d, stdin="no\nnope\nstill no\n")
    assert code == 1 and "3 wrong passwords" in out
    code, out = _cli("recipe", "submit", "1", "--user", "alice", "--reason", "ready", "--db", d,
                     stdin=ALICE + "\n")
    assert code == 0 and "in review" in out and "Alice Author (alice): authored" in out
    # an engineer may not approve; production refuses the version while it is not effective
    code, out = _cli("recipe", "approve", "1", "--user", "alice", "--reason", "mine", "--db",
                     d, stdin=ALICE + "\n")
    assert code == 2 and "needs sign:approve" in out
    code, out = _cli("run", str(recipe), "--mode", "production", "--db", d, "--no-live")
    assert code == 2 and "not effective" in out
    for action in ("approve", "release"):
        code, out = _cli("recipe", action, "1", "--user", "quinn", "--reason", "checked",
                         "--db", d, stdin=QUINN + "\n")
        assert code == 0, out
    assert "effective" in out and "Quinn Approver (quinn): responsible for" in out
    code, out = _cli("recipe", "list", "--db", d)
    assert "dosing-demo@1.0.0  effective" in out
    code, out = _cli("recipe", "show", "1", "--db", d)
    assert "name: dosing-demo" in out and "Quinn Approver (quinn): approved" in out
    # the effective content runs in production; one changed byte of meaning does not
    options = RunOptions(db=db, mode="production")
    version = check_run_mode(load_recipe(recipe), options)
    assert version is not None and version.id == 1
    recipe.write_text(recipe.read_text().replace("max: 5}", "max: 6}"))
    with pytest.raises(ConfigError, match="not effective"):
        check_run_mode(load_recipe(recipe), options)
    with AuditTrail(db) as trail:
        refused = [e for e in trail.entries() if e.action.startswith("refused: sign")]
    assert [e.user for e in refused] == ["alice"] * 4  # three passwords, one role
    assert verify_audit(db).ok


def test_failed_passwords_lock_out_across_commands(db: Path, tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    d = str(db)
    _cli("recipe", "add", str(recipe), "--user", "alice", "--db", d, stdin=ALICE + "\n")
    _cli("recipe", "submit", "1", "--user", "alice", "--reason", "r", "--db", d,
         stdin="a\nb\nc\n")
    _cli("recipe", "submit", "1", "--user", "alice", "--reason", "r", "--db", d,
         stdin="d\ne\n" + ALICE + "\n")  # the fifth failure locks before the right one
    code, out = _cli("recipe", "submit", "1", "--user", "alice", "--reason", "r", "--db", d,
                     stdin=ALICE + "\n")
    assert code == 1 and "too many failed" in out
    with RecipeBook(db) as book:
        assert book.version(1).state.value == "draft"


def test_batch_record_approval_from_the_cli(db: Path) -> None:
    async def record() -> int:
        h = Historian(db, flush_interval=0.05)
        try:
            rid = await h.start_run("demo", t=1_700_000_000.0)
            h.record_sample("P1.Flow", 0.5, t=1_700_000_001.0)
            await h.end_run(rid, RunResult.COMPLETED, t=1_700_000_002.0)
        finally:
            await h.close()
        return rid

    rid = asyncio.run(record())
    code, out = _cli("records", "approve", str(rid), "--user", "quinn", "--reason",
                     "batch record reviewed", "--db", str(db), stdin=QUINN + "\n")
    assert code == 0, out
    assert f"run {rid} signed by Quinn Approver (quinn)" in out
    code, out = _cli("report", str(rid), "--db", str(db), "--format", "json")
    assert '"printed_name": "Quinn Approver"' in out, out
    assert verify_audit(db).ok


def test_no_password_option_anywhere() -> None:
    for cmd in (["recipe", "submit"], ["recipe", "approve"], ["records", "approve"],
                ["recipe", "add"]):
        code, out = _cli(*cmd, "--help")
        assert code == 0 and "--password" not in out


def test_recipe_diff_in_recipe_terms(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    text = DEMO.read_text()
    a.write_text(text)
    b.write_text(text.replace("version: 1.0.0", "version: 1.1.0")
                 .replace("max: 5}", "max: 8}").replace("timeout: 10 min", "timeout: 20 min")
                 + "# a comment is no change\n")
    code, out = _cli("recipe", "diff", str(a), str(b))
    assert code == 1
    lines = out.splitlines()
    assert "recipe: changed; version 1.0.0 -> 1.1.0" in lines
    assert "parameter flow: changed; max 5 -> 8" in lines
    assert "step procedure/dose/dose_volume: changed; timeout 10 min -> 20 min" in lines
    code, out = _cli("recipe", "diff", str(a), str(a))
    assert code == 0 and "no change" in out


def test_user_add_takes_the_printed_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "line.db"
    monkeypatch.setenv("MODULECONTROL_PASSWORD", "bob-password")
    code, out = _cli("user", "add", "bob", "--role", "qa", "--name", "Bob Builder", "--db",
                     str(db))
    assert code == 0, out
    store = ServiceStore(db)
    try:
        user = store.user("bob")
    finally:
        store.close()
    assert user is not None and user.role == "qa" and user.printed_name == "Bob Builder"


def _in_a_terminal(argv: list[str], answer: str, cwd: Path, within: float = 60.0) -> tuple[int,
                                                                                             str]:
    """Run the CLI with a pseudo-terminal as its controlling terminal (what a person types
    into), type ``answer`` at the first prompt and return the exit code and the screen."""
    import os
    import pty
    import select
    import sys
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its terminal, as a login shell's is
        try:
            os.chdir(cwd)
            os.execv(sys.executable, [sys.executable, "-c",
                                      "from modulecontrol.cli import main; main()", *argv])
        finally:  # only if exec failed: never go on running the test in the child
            os._exit(127)
    screen, typed = b"", False
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child has gone and the pty is closed
                break
            if not chunk:
                break
            screen += chunk
            # click writes the prompt text, then getpass turns echo off and writes " ":
            # typing before that " " would race the echo switch
            if not typed and b"password for" in screen and screen.endswith(b": "):
                os.write(fd, answer.encode() + b"\r")
                typed = True
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace")


def test_the_password_is_typed_at_a_hidden_prompt_in_a_terminal(db: Path, tmp_path: Path) -> None:
    """A real terminal: the prompt is shown, what is typed is not echoed, and it signs."""
    async def record() -> int:
        h = Historian(db, flush_interval=0.05)
        try:
            rid = await h.start_run("demo", t=1_700_000_000.0)
            await h.end_run(rid, RunResult.COMPLETED, t=1_700_000_002.0)
        finally:
            await h.close()
        return rid

    rid = asyncio.run(record())
    code, screen = _in_a_terminal(["records", "approve", str(rid), "--user", "quinn",
                                   "--reason", "reviewed", "--db", str(db)], QUINN, tmp_path)
    assert code == 0, screen
    assert "password for quinn (signing: batch record approval)" in screen
    assert QUINN not in screen  # not echoed
    assert f"run {rid} signed by Quinn Approver (quinn)" in screen

"""docs/signatures.md's examples, run: the policy file loads, and every ``$ modulecontrol``
line of its console blocks runs in order (passwords typed at the prompt, fed on stdin) and
prints the lines the page shows."""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.errors import ConfigError
from modulecontrol.records import Historian, RunResult, verify_audit
from modulecontrol.service import ServiceStore, SignaturePolicy, hash_password

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "signatures.md"
PASSWORDS = {"alice": "alice-password", "quinn": "quinn-password"}
_BLOCK = re.compile(r"^```(?P<lang>yaml|console)\n(?P<body>.*?)^```", re.S | re.M)


def _blocks(lang: str) -> list[str]:
    return [m.group("body") for m in _BLOCK.finditer(PAGE.read_text(encoding="utf-8"))
            if m.group("lang") == lang]


def test_the_policy_example_loads(tmp_path: Path) -> None:
    (policy,) = _blocks("yaml")
    path = tmp_path / "site-signatures.yaml"
    path.write_text(policy, encoding="utf-8")
    loaded = SignaturePolicy.load(path)
    assert loaded.requires("parameter outside its normal range")
    assert loaded.outside_normal("R1.TempSP", 85.0) and not loaded.outside_normal("R1.TempSP", 50)
    assert (loaded.max_bypass, loaded.max_override) == (1800.0, 900.0)
    path.write_text(policy.replace("  - recipe release\n", "  - recipe relase\n", 1))
    with pytest.raises(ConfigError, match=r"site-signatures.yaml:3:\d+: 'recipe relase'"):
        SignaturePolicy.load(path)


def test_the_console_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    demo = tmp_path / "recipes" / "examples" / "dosing_demo.yaml"
    (demo.parent / "dosing_demo_v2.yaml").write_text(
        demo.read_text().replace("version: 1.0.0", "version: 1.1.0")
        .replace("max: 5}", "max: 8}").replace("timeout: 10 min", "timeout: 20 min"))
    db = tmp_path / "runs" / "modulecontrol.db"
    store = ServiceStore(db)
    try:
        store.add_user("alice", "engineer", hash_password(PASSWORDS["alice"]), "Alice Author")
        store.add_user("quinn", "qa", hash_password(PASSWORDS["quinn"]), "Quinn Approver")
    finally:
        store.close()

    async def one_run() -> None:
        h = Historian(db, flush_interval=0.05)
        try:
            rid = await h.start_run("dosing-demo", t=1_700_000_000.0)
            await h.end_run(rid, RunResult.COMPLETED, t=1_700_000_060.0)
        finally:
            await h.close()

    asyncio.run(one_run())
    monkeypatch.chdir(tmp_path)
    ran = 0
    for block in _blocks("console"):
        commands: list[tuple[list[str], list[str]]] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                commands.append((shlex.split(line[2:]), []))
            elif line.strip() and commands:
                commands[-1][1].append(line)
        for argv, expected in commands:
            assert argv[0] == "modulecontrol"
            user = argv[argv.index("--user") + 1] if "--user" in argv else None
            r = CliRunner().invoke(app, argv[1:],
                                   input=f"{PASSWORDS[user]}\n" if user else None)
            assert r.exit_code in (0, 1 if argv[1:3] == ["recipe", "diff"] else 0), (
                argv, r.output)
            for want in expected:
                assert want in r.output, (argv, want, r.output)
            ran += 1
    assert ran == 7
    assert verify_audit(db).ok

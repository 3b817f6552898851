"""The control service over its real API: uvicorn on a free loopback port, the simulated
lomustine plant served by the service, clients over HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.client import ApiError, Client, Resync
from modulecontrol.records import AuditTrail
from modulecontrol.service import ServiceOptions
from modulecontrol.testing.service import ServedLine, ServiceThread
from tests._poll import tasks_report

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLine]:
    folder = tmp_path_factory.mktemp("service")
    thread = ServiceThread(ServiceOptions(plant=PLANT, simulate=True, speed=60.0,
                                          db=folder / "line.db", recipes=ROOT / "recipes",
                                          report_dir=folder / "reports"))
    served = thread.start()
    yield served
    thread.stop()


async def _client(line: ServedLine, role: str) -> Client:
    c = Client(line.url)
    name, password = line.users[role]
    await c.login(name, password)
    return c


async def _until_final(c: Client, run_id: int, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        run = await c.run(run_id)
        if run["final"]:
            return run
        await asyncio.sleep(0.2)
    raise AssertionError(f"run {run_id} not final after {within} s: {await c.run(run_id)}\n"
                         f"{tasks_report()}")


async def test_run_started_over_the_api_completes(line: ServedLine) -> None:
    async with await _client(line, "engineer") as c:
        queued = await c.start_run("examples/dosing_demo", {"volume": "0.5 mL"})
        assert queued["state"] in ("queued", "running")
        assert queued["requested_by"] == "engineer-user"
        run = await _until_final(c, queued["id"], 120.0)
        assert run["state"] == "completed", run
        assert run["record_run"] is not None
        got = await c.events_since(0, 10_000)
        mine = [e for e in got["events"] if e["run"] == queued["id"]]
        kinds = [e["kind"] for e in mine]
        assert kinds[0] == "run_queued" and "run_started" in kinds and "run_ended" in kinds
        seqs = [e["seq"] for e in got["events"]]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap, no duplicate
        plant = await c.plant()
        assert plant["calibrations"] == []  # the line's plant file includes no twin overlay
        p1 = next(m for m in plant["modules"] if m["tag"] == "P1")
        assert p1["services"]["Dosing"] in ("Idle", "Completed")
        delivered = p1["values"]["DeliveredVolume"]
        assert delivered["unit"] == "mL" and delivered["quality"] == "good"
        assert delivered["value"] > 0  # how far past 0.5 mL depends on the scan at 60x


async def test_viewer_cannot_command_and_the_refusal_is_audited(line: ServedLine) -> None:
    async with await _client(line, "viewer") as c:
        await c.plant()  # reading is allowed
        with pytest.raises(ApiError) as start:
            await c.start_run("examples/dosing_demo")
        assert start.value.status == 403
        assert "lacks write:queue" in start.value.detail
        with pytest.raises(ApiError) as stop:
            await c.command(1, "abort")
        assert stop.value.status == 403
    with AuditTrail(line.db) as trail:
        refused = [e for e in trail.entries() if e.user == "viewer-user"
                   and e.action.startswith("refused:")]
    assert {e.action for e in refused} >= {"refused: POST /api/v1/runs",
                                           "refused: POST /api/v1/runs/1/abort"}
    assert all("lacks" in e.reason for e in refused)


async def test_without_a_token_nothing_is_served(line: ServedLine) -> None:
    async with Client(line.url) as c:
        with pytest.raises(ApiError) as exc:
            await c.plant()
    assert exc.value.status == 401
    assert "POST /api/v1/token" in exc.value.detail


async def test_invalid_parameters_are_problem_details_in_the_cli_wording(line: ServedLine) -> None:
    async with await _client(line, "engineer") as c:
        with pytest.raises(ApiError) as exc:
            await c.start_run("examples/dosing_demo", {"volume": "500 mL"})
        assert exc.value.status == 422
        # the CLI's wording: what `run --set volume=500 mL` prints
        assert exc.value.problems == [
            "--set volume=500 mL: parameter 'volume': '500 mL' is outside [0.1, 50] mL"]
        with pytest.raises(ApiError) as outside:
            await c.start_run("../pyproject.toml")
        assert outside.value.status == 422
        r = await c._http.post("/api/v1/runs", json={"recipe": "nope"},
                               headers={"Authorization": f"Bearer {c.token}"})
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"].startswith("no recipe 'nope' under ")


async def test_hold_resume_stop_over_the_api(line: ServedLine) -> None:
    async with await _client(line, "engineer") as eng, await _client(line, "operator") as op:
        queued = await eng.start_run("examples/prime_and_flush")
        rid = queued["id"]
        deadline = time.monotonic() + 60
        while (await op.run(rid)).get("recipe_state") != "Execute":
            assert time.monotonic() < deadline, await op.run(rid)
            await asyncio.sleep(0.1)
        await op.command(rid, "hold")
        while (await op.run(rid)).get("recipe_state") != "Held":
            assert time.monotonic() < deadline, await op.run(rid)
            await asyncio.sleep(0.1)
        with pytest.raises(ApiError) as refused:
            await op.command(rid, "hold")
        assert refused.value.status == 409
        await op.command(rid, "resume")
        await op.command(rid, "stop")
        run = await _until_final(op, rid, 60.0)
        assert run["state"] == "stopped"
        # a queued run is cancelled by stop
    with AuditTrail(line.db) as trail:
        actions = {(e.user, e.action) for e in trail.entries()}
    assert {("operator-user", "hold"), ("operator-user", "resume"),
            ("operator-user", "stop"), ("engineer-user", "queue run")} <= actions


async def test_stream_reconnect_loses_and_duplicates_nothing(line: ServedLine) -> None:
    async with await _client(line, "engineer") as c:
        seen: list[int] = []

        async def read(since: int, n: int) -> None:
            async for msg in c.events(since):
                assert not isinstance(msg, Resync)
                seen.append(msg["seq"])
                if len(seen) >= n:
                    return

        queued = await c.start_run("examples/dosing_demo", {"volume": "0.2 mL"})
        await asyncio.wait_for(read(0, 5), 30)  # first connection: 5 events, then gone
        await _until_final(c, queued["id"], 120.0)
        head = (await c.events_since(0))["head"]
        await asyncio.wait_for(read(seen[-1], head), 30)  # reconnect from the last one seen
        assert seen == list(range(1, head + 1))
        # a number the stream never gave (ahead of its head) is a resync, not silence;
        # value changes go on after the run, so the head may have moved meanwhile
        async for msg in c.events(head + 1_000_000):
            assert isinstance(msg, Resync) and msg.seq >= head
            break


async def test_login_is_rate_limited_and_failures_audited(line: ServedLine) -> None:
    name, password = line.users["admin"]
    async with Client(line.url) as c:
        for _ in range(5):
            with pytest.raises(ApiError) as wrong:
                await c.login(name, "not-the-password")
            assert wrong.value.status == 401
        with pytest.raises(ApiError) as blocked:
            await c.login(name, password)
    assert blocked.value.status == 429
    with AuditTrail(line.db) as trail:
        fails = [e for e in trail.entries() if e.user == name and e.action == "refused: login"]
    assert len(fails) == 6


def _api_examples() -> list[str]:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    marker = "<!-- api-example: runs in tests/service -->"
    return re.findall(re.escape(marker) + r"\n```python\n(.*?)^```", text, re.S | re.M)


def test_the_python_example_of_docs_api_runs(line: ServedLine) -> None:
    """docs/api.md's marked example, as written, against the simulated line: it starts a
    run, follows the stream to its end and asserts that it completed."""
    examples = _api_examples()
    assert examples, "docs/api.md lost its checked example"
    name, password = line.users["engineer"]
    for source in examples:  # a process of its own, as a reader would run it
        prelude = f"URL, USER, PASSWORD = {line.url!r}, {name!r}, {password!r}\n"
        done = subprocess.run([sys.executable, "-c", prelude + source], capture_output=True,
                              text=True, timeout=180, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "completed"


def test_a_backup_of_a_live_service_verifies(line: ServedLine, tmp_path: Path) -> None:
    """docs/operations.md's backup: the anchor first, then SQLite's online backup, then
    ``audit verify`` of the copy, all while the service holds the database."""
    anchor = tmp_path / "backup.anchor"
    shutil.copy(f"{line.db}.anchor", anchor)
    copy = tmp_path / "backup.db"
    src = sqlite3.connect(line.db)
    dst = sqlite3.connect(copy)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    result = CliRunner().invoke(app, ["audit", "verify", "--db", str(copy),
                                      "--key", f"{line.db}.key", "--anchor", str(anchor)])
    assert result.exit_code == 0, result.output


def test_the_cli_is_a_client(line: ServedLine, monkeypatch: pytest.MonkeyPatch) -> None:
    name, password = line.users["operator"]
    monkeypatch.setenv("MODULECONTROL_SERVER", line.url)
    monkeypatch.setenv("MODULECONTROL_PASSWORD", password)
    login = CliRunner().invoke(app, ["login", name])
    assert login.exit_code == 0, login.output
    monkeypatch.setenv("MODULECONTROL_TOKEN", login.output.strip())
    status = CliRunner().invoke(app, ["status"])
    assert status.exit_code == 0, status.output
    assert "plant lomustine-line" in status.output and "P1" in status.output
    missing = CliRunner().invoke(app, ["hold", "9999"])
    assert missing.exit_code == 1
    assert "no run 9999: GET /api/v1/runs lists them" in missing.output
    monkeypatch.setenv("MODULECONTROL_TOKEN", "not-a-token")
    refused = CliRunner().invoke(app, ["stop", "1"])
    assert refused.exit_code == 1 and "no valid token" in refused.output


def test_run_server_starts_a_run_and_follows_it_to_its_end(
        line: ServedLine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    name, password = line.users["engineer"]
    monkeypatch.setenv("MODULECONTROL_PASSWORD", password)
    login = CliRunner().invoke(app, ["login", name, "--server", line.url])
    assert login.exit_code == 0, login.output
    monkeypatch.setenv("MODULECONTROL_TOKEN", login.output.strip())
    done = CliRunner().invoke(app, ["run", "examples/dosing_demo", "--server", line.url,
                                    "--set", "volume=0.5 mL"])
    assert done.exit_code == 0, done.output
    out = done.output.splitlines()
    rid = int(out[0].split()[1])
    # its own events, in order, to its end; the result as the queue recorded it
    assert any(x.startswith("run_started") for x in out)
    assert out[-2].startswith("run_ended") and out[-1] == f"run {rid} completed"
    bad = CliRunner().invoke(app, ["run", "examples/dosing_demo", "--server", line.url,
                                   "--set", "volume=5 bar"])
    # rejected as a local run rejects it: exit 2, with the validator's problem
    assert bad.exit_code == 2 and "volume" in bad.output
    local = CliRunner().invoke(app, ["run", str(ROOT / "recipes/examples/dosing_demo.yaml"),
                                     "--simulate",
                                     "--set", "volume=5 bar", "--db", str(tmp_path / "r.db")])
    assert local.exit_code == bad.exit_code == 2, local.output
    missing = CliRunner().invoke(app, ["run", "examples/no_such_recipe", "--server", line.url])
    assert missing.exit_code == 2 and "no recipe" in missing.output
    ack = CliRunner().invoke(app, ["ack", str(rid), "purity_low", "--server", line.url])
    assert ack.exit_code == 1 and f"run {rid} is completed, not running" in ack.output


async def test_whatif_over_the_api_simulates_ahead_of_a_recorded_run(line: ServedLine) -> None:
    import httpx

    async with await _client(line, "engineer") as c:
        queued = await c.start_run("examples/dosing_demo", {"volume": "0.5 mL"})
        run = await _until_final(c, queued["id"], 120.0)
    name, password = line.users["viewer"]
    async with httpx.AsyncClient(base_url=line.url, timeout=120.0) as h:
        tok = (await h.post("/api/v1/token", json={"username": name, "password": password})
               ).json()["access_token"]
        auth = {"Authorization": f"Bearer {tok}"}
        res = await h.post("/api/v1/twin/whatif", headers=auth, json={
            "run": run["record_run"], "set": {"R2.TempSP": 10}, "horizon": "10min"})
        assert res.status_code == 200, res.text
        out = res.json()
        assert out["changes"] == {"R2.TempSP": 10.0} and out["horizon_s"] == 600
        assert out["purity_pct"] < out["before"]["purity_pct"]
        bad = await h.post("/api/v1/twin/whatif", headers=auth, json={
            "run": run["record_run"], "set": {"PAT1.Purity": 99}, "horizon": "10min"})
        assert bad.status_code == 422
        assert "not a simulated set point" in bad.json()["detail"]
        assert (await h.post("/api/v1/twin/whatif", json={"run": 1, "set": {}})
                ).status_code == 401


async def test_whatif_live_replays_the_run_in_progress(line: ServedLine) -> None:
    """With a run in progress, the live what-if starts from its state: the twin replays the
    run's record so far, then writes the inputs the line holds now."""
    async with await _client(line, "engineer") as c:
        queued = await c.start_run("examples/dosing_demo", {"volume": "50 mL"})
        try:
            deadline = time.monotonic() + 120  # a bound, not a timing: loaded machines
            run = await c.run(queued["id"])
            while run["record_run"] is None or run["state"] != "running":
                assert time.monotonic() < deadline and not run["final"], run
                await asyncio.sleep(0.2)
                run = await c.run(queued["id"])
            # running, and P1's run bit read back as on: the run's first step has started
            # the pump (a running run may still be in the step's Starting on a busy machine)
            while True:
                p1 = next(m for m in (await c.plant())["modules"] if m["tag"] == "P1")
                if p1["services"]["Dosing"] == "Execute" and p1["values"]["Run"]["value"]:
                    break
                assert time.monotonic() < deadline, (p1["services"], p1["values"]["Run"])
                await asyncio.sleep(0.2)
            out = await c.whatif({"R2.TempSP": 10}, "10min")
            assert out["start_from"].startswith(
                f"the state at the line's live inputs (run {run['record_run']} in progress)"
            ), out
            assert out["start"]["P1.Run"] == 1.0
        finally:
            await c.command(queued["id"], "abort")
            await _until_final(c, queued["id"], 120.0)
            await _until_idle(c, "P1", "Dosing")


async def _until_idle(c: Client, tag: str, service: str) -> None:
    """Reset ``tag``'s ``service`` once it has come to rest, for the tests that follow."""
    deadline = time.monotonic() + 120  # a bound, not a timing: loaded machines
    while True:
        state = next(m for m in (await c.plant())["modules"]
                     if m["tag"] == tag)["services"][service]
        if state == "Idle":
            return
        assert time.monotonic() < deadline, f"{tag}.{service} in {state}\n{tasks_report()}"
        if state in ("Aborted", "Stopped", "Completed"):
            await c.module_command(tag, service, "reset")
        await asyncio.sleep(0.2)


async def test_whatif_live_starts_from_the_lines_inputs_now(
        line: ServedLine, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the reagent pumps started by hand, the live what-if starts from what the line
    holds now (not the plant file's defaults), over the API, the client and the CLI."""
    async with await _client(line, "operator") as c:
        for tag, flow in (("P1", "0.3 mL/min"), ("P2", "0.3 mL/min"), ("P3", "0.36 mL/min")):
            await c.module_command(tag, "Dosing", "start", parameters={"FlowSP": flow})
        try:
            deadline = time.monotonic() + 120  # a bound, not a timing: loaded machines
            running = False
            while not running and time.monotonic() < deadline:
                mods = {m["tag"]: m for m in (await c.plant())["modules"]}
                # Execute, and the pumps' run bits read back as running (the next poll)
                running = all(mods[t]["services"]["Dosing"] == "Execute"
                              and mods[t]["values"]["Run"]["value"] for t in ("P1", "P2", "P3"))
                if not running:
                    await asyncio.sleep(0.2)
            assert running, {t: (mods[t]["services"]["Dosing"], mods[t]["values"]["Run"])
                             for t in ("P1", "P2", "P3")}
            out = await c.whatif({"R2.TempSP": 10}, "10min")
            assert out["start_from"] == "the line's live inputs", out
            assert out["start"]["P1.FlowSetpoint"] == pytest.approx(0.3)
            assert out["start"]["P1.Run"] == 1.0
            assert out["purity_pct"] < out["before"]["purity_pct"]
            with pytest.raises(ApiError) as both:
                await c._call("POST", "/twin/whatif", {"run": 1, "live": True, "set": {}})
            assert both.value.status == 422 and "either 'run'" in both.value.detail
            monkeypatch.setenv("MODULECONTROL_TOKEN", str(c.token))
            res = await asyncio.to_thread(CliRunner().invoke, app, [
                "twin", "whatif", "--live", "--server", line.url, "--set", "R2.TempSP=10",
                "--horizon", "10min", "--json"])
            assert res.exit_code == 0, res.output
            assert json.loads(res.stdout)["start"]["P1.FlowSetpoint"] == pytest.approx(0.3)
        finally:
            for tag in ("P1", "P2", "P3"):
                await c.module_command(tag, "Dosing", "stop")

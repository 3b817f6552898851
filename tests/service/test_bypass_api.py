"""Interlock bypass and manual divert override as signed actions, over the service's real
API (uvicorn on a loopback port, the simulated lomustine plant; docs/signatures.md).

The recipe gates each phase on an operator prompt, so what the test does happens at a known
point of the run, never at a guessed time: R1 is cold until the first prompt is answered,
then heats through the interlock's limit."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.client import ApiError, Client
from modulecontrol.records import AuditTrail, verify_audit
from modulecontrol.service import ServiceOptions
from modulecontrol.testing.service import ServedLine, ServiceThread
from tests.service.test_service_api import _client, _until_final

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"
RECIPE = """kind: Recipe
name: bypass-demo
version: 1.0.0
plant: {plant}
description: A hot-reactor interlock and a divert that never goes to product by itself.
interlocks:
  - name: r1_hot
    when: R1.T > 30 degC
    action: hold
    resume: auto
divert:
  valve: V1
  product_when: R1.T > 1000 degC
procedure:
  - name: main
    steps:
      - service: {{module: V1, service: Divert, procedure: ToWaste}}
      - name: cold
        prompt: {{message: "heat R1?", choices: [heat]}}
      - name: heat
        service: {{module: R1, service: Tempering, parameters: {{TempSP: 45 degC}}}}
      - name: hot
        wait: {{until: "R1.T > 33 degC"}}
        timeout: 60 min
      - name: done
        prompt: {{message: "end?", choices: [end]}}
"""
NAME = "bypass_demo.yaml"


@pytest.fixture
def line(tmp_path: Path) -> Iterator[ServedLine]:
    """A line of its own per test: R1 starts cold (a shared line would still be hot)."""
    folder = tmp_path
    recipes = folder / "recipes"
    recipes.mkdir()
    (recipes / NAME).write_text(RECIPE.format(plant=PLANT.as_posix()), encoding="utf-8")
    policy = folder / "site-signatures.yaml"
    policy.write_text("max_bypass: 2 h\nmax_override: 30 min\n", encoding="utf-8")
    thread = ServiceThread(ServiceOptions(plant=PLANT, simulate=True, speed=30.0,
                                          db=folder / "line.db", recipes=recipes,
                                          report_dir=folder / "reports", signatures=policy))
    served = thread.start()
    yield served
    thread.stop()


async def _until(c: Client, run_id: int, what: str, ok: Any, within: float = 120.0
                 ) -> dict[str, Any]:
    """Poll the run view until ``ok(view)``; the bound is generous (a busy machine), the
    test never asserts a time."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        view = await c.run(run_id)
        if ok(view):
            return view
        if view["final"]:
            raise AssertionError(f"run {run_id} ended waiting for {what}: {view}")
        await asyncio.sleep(0.2)
    raise AssertionError(f"run {run_id}: no {what} after {within} s: {await c.run(run_id)}")


async def _events(db: Path, kind: str, source: str, at_least: int = 0,
                  within: float = 60.0) -> list[dict[str, Any]]:
    """The recorded events of a kind and source (their payloads), once at least
    ``at_least`` are in the records (the historian writes in its own thread)."""
    deadline = time.monotonic() + within
    while True:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT payload FROM events WHERE kind=? AND source=? "
                                "ORDER BY id", (kind, source)).fetchall()
        finally:
            conn.close()
        if len(rows) >= at_least or time.monotonic() > deadline:
            return [json.loads(r[0]) for r in rows]
        await asyncio.sleep(0.2)


async def _prompt(c: Client, run_id: int, step: str) -> int:
    view = await _until(c, run_id, f"prompt {step}",
                        lambda v: v.get("step") == step and v.get("prompts"))
    return int(view["prompts"][0]["id"])


async def _interlock(view: dict[str, Any], name: str) -> dict[str, Any]:
    return next(i for i in view["interlocks"] if i["name"] == name)


async def test_a_bypassed_interlock_does_not_act_until_its_time_runs_out(
        line: ServedLine) -> None:
    eng_name, eng_pw = line.users["engineer"]
    op_name, op_pw = line.users["operator"]
    async with await _client(line, "engineer") as eng, await _client(line, "operator") as op:
        run = (await eng.start_run(NAME))["id"]
        prompt = await _prompt(eng, run, "cold")
        # an operator may not bypass; the token alone does not sign; a wrong password is
        # refused and audited; longer than the site's maximum is refused
        with pytest.raises(ApiError) as role:
            await op.bypass(run, "r1_hot", "10 min", op_name, op_pw, "start-up")
        assert role.value.status == 403 and "engineer or admin" in role.value.detail
        r = await eng._http.post(f"/api/v1/runs/{run}/interlocks/r1_hot/bypass",
                                 json={"duration": "10 min"},
                                 headers={"Authorization": f"Bearer {eng.token}"})
        assert r.status_code == 403 and "signed action" in r.json()["detail"]
        with pytest.raises(ApiError) as wrong:
            await eng.bypass(run, "r1_hot", "10 min", eng_name, "not-the-password", "x")
        assert wrong.value.status == 403 and "wrong user name or password" in wrong.value.detail
        with pytest.raises(ApiError) as long:
            await eng.bypass(run, "r1_hot", "3 h", eng_name, eng_pw, "too long")
        assert long.value.status == 422 and "maximum" in long.value.detail
        with pytest.raises(ApiError) as unknown:
            await eng.bypass(run, "no_such", "10 min", eng_name, eng_pw, "?")
        assert unknown.value.status == 404 and "r1_hot" in unknown.value.detail
        # long enough for R1 to heat past the limit (the step waits for it, then prompts)
        got = await eng.bypass(run, "r1_hot", "2 h", eng_name, eng_pw, "heat-up test")
        assert got["bypass"]["user"] == eng_name
        await eng.answer(run, prompt, "heat")
        await _prompt(eng, run, "done")  # R1 is above 33 degC: the condition is true
        view = await eng.run(run)
        il = await _interlock(view, "r1_hot")
        assert il["bypass"] is not None and il["condition_true"] and not il["tripped"]
        assert view["recipe_state"] == "Execute" and not view["held_by"]
        bypassed = await _events(line.db, "interlock_bypassed", "r1_hot", 1)
        assert len(bypassed) == 1 and bypassed[0]["bypassed_by"] == eng_name
        assert not await _events(line.db, "interlock_tripped", "r1_hot")
        # bypassed again, briefly: the first bypass is replaced, this one runs out on the
        # line clock and the interlock trips at once (its condition still holds)
        await eng.bypass(run, "r1_hot", "1 min", eng_name, eng_pw, "short")
        view = await _until(eng, run, "the trip after the bypass ran out",
                            lambda v: v.get("recipe_state") == "Held")
        assert "interlock r1_hot" in view["held_by"]
        il = await _interlock(view, "r1_hot")
        assert il["bypass"] is None and il["tripped"]
        ends = [e for e in await _events(line.db, "interlock_bypass", "r1_hot", 3)
                if e["bypassed"] is False]
        assert [e["reason"] for e in ends] == ["expired"]
        assert ends[0]["user"] == "auto"
        assert len(await _events(line.db, "interlock_tripped", "r1_hot", 1)) == 1
        # unbypass of an interlock that is not bypassed is refused
        with pytest.raises(ApiError) as nb:
            await op.unbypass(run, "r1_hot")
        assert nb.value.status == 409
        await eng.command(run, "abort")
        final = await _until_final(eng, run, 120.0)
        record = final["record_run"]
    with AuditTrail(line.db) as trail:
        entries = list(trail.entries())
    target = f"run:{record}/interlock:r1_hot"
    acts = [(e.user, e.action) for e in entries if e.object == target]
    assert acts.count((eng_name, "interlock bypass")) == 2
    assert ("auto", "interlock bypass ended") in acts
    signed = [e for e in entries if e.action == "sign: interlock bypass"]
    bypass_seqs = {e.seq for e in entries if e.object == target
                   and e.action == "interlock bypass"}
    assert {int(e.object.split(":")[1]) for e in signed} == bypass_seqs
    assert any(e.action == "refused: sign interlock bypass" and e.user == eng_name
               for e in entries)
    assert any(e.action == "refused: interlock bypass" and e.user == op_name for e in entries)
    report = verify_audit(line.db)
    assert not [i for i in report.issues if "signature" in i.problem], report.issues


async def test_divert_override_holds_the_valve_then_returns_to_automatic(
        line: ServedLine) -> None:
    name, pw = line.users["operator"]
    async with await _client(line, "operator") as op, await _client(line, "engineer") as eng:
        run = (await eng.start_run(NAME))["id"]
        prompt = await _prompt(op, run, "cold")
        view = await op.run(run)
        assert view["divert_control"]["to_product"] is False  # automatic: never product
        held = await op.divert_override(run, "product", "2 min", name, pw, "sample product")
        assert held["position"] == "product"
        view = await op.run(run)
        assert view["divert_control"]["to_product"] is True
        assert view["divert_control"]["override"]["to_product"] is True
        # it runs out on the line clock: automatic control sends the stream to waste again
        view = await _until(op, run, "the override's end",
                            lambda v: v["divert_control"]["override"] is None)
        view = await _until(op, run, "waste", lambda v: not v["divert_control"]["to_product"])
        # released by hand
        await op.divert_override(run, "product", "20 min", name, pw, "again")
        await op.divert_release(run)
        await _until(op, run, "waste", lambda v: not v["divert_control"]["to_product"])
        # safety: an interlock that trips ends an override to product (safe state first)
        await op.divert_override(run, "product", "20 min", name, pw, "while heating")
        await op.answer(run, prompt, "heat")
        view = await _until(op, run, "the interlock's trip",
                            lambda v: v.get("recipe_state") == "Held")
        view = await _until(op, run, "waste after the trip",
                            lambda v: not v["divert_control"]["to_product"])
        assert view["divert_control"]["override"] is None
        with pytest.raises(ApiError) as refused:  # not to product while it is tripped
            await op.divert_override(run, "product", "5 min", name, pw, "now?")
        assert refused.value.status == 409 and "r1_hot" in refused.value.detail
        moves = await _events(line.db, "divert_override", "V1", 6)
        reasons = [e["reason"] for e in moves if e["overridden"] is False][-3:]
        assert reasons[0] == "expired" and reasons[1] == "released"
        assert "r1_hot tripped" in reasons[2]
        await eng.command(run, "abort")
        final = await _until_final(eng, run, 120.0)
        # the batch report lists the signatures on the overrides
        r = await eng._http.get(f"/api/v1/runs/{run}/report",
                                headers={"Authorization": f"Bearer {eng.token}"}, timeout=300)
        assert r.status_code == 200, r.text
    assert "manual divert override" in r.text and "sample product" in r.text
    with AuditTrail(line.db) as trail:
        signed = [e for e in trail.entries() if e.action == "sign: manual divert override"]
        target = f"run:{final['record_run']}/divert:V1"
        overrides = [e for e in trail.entries(target) if e.action == "divert override"]
    assert len(overrides) == 3 and len(signed) >= 3
    report = verify_audit(line.db)
    assert not [i for i in report.issues if "signature" in i.problem], report.issues



def test_bypass_and_divert_from_the_cli(line: ServedLine) -> None:
    """``modulecontrol bypass``, ``unbypass`` and ``divert``: the password at the prompt
    (stdin here), never an option; what docs/signatures.md shows."""
    name, password = line.users["engineer"]

    async def start() -> tuple[int, str]:
        async with await _client(line, "engineer") as c:
            run = (await c.start_run(NAME))["id"]
            await _prompt(c, run, "cold")
            return run, str(c.token)

    run, token = asyncio.run(start())
    env = {"MODULECONTROL_TOKEN": token, "MODULECONTROL_SERVER": line.url}
    cli = CliRunner()
    for cmd in ("bypass", "divert"):
        assert "--password" not in cli.invoke(app, [cmd, "--help"]).output
    wrong = cli.invoke(app, ["bypass", str(run), "r1_hot", "--for", "10 min", "--reason",
                             "cli", "--user", name], input="not-it\n", env=env)
    assert wrong.exit_code == 1 and "wrong user name or password" in wrong.output
    ok = cli.invoke(app, ["bypass", str(run), "r1_hot", "--for", "10 min", "--reason",
                          "heat-up test", "--user", name], input=f"{password}\n", env=env)
    assert ok.exit_code == 0, ok.output
    assert f"interlock r1_hot BYPASSED by {name} until t=" in ok.output
    assert password not in ok.output
    back = cli.invoke(app, ["unbypass", str(run), "r1_hot"], env=env)
    assert back.exit_code == 0 and "acts again" in back.output, back.output
    held = cli.invoke(app, ["divert", str(run), "product", "--for", "5 min", "--reason",
                            "sample product", "--user", name], input=f"{password}\n",
                      env=env)
    assert held.exit_code == 0 and "V1 held at PRODUCT" in held.output, held.output
    free = cli.invoke(app, ["divert", str(run), "auto"], env=env)
    assert free.exit_code == 0 and "automatic again" in free.output, free.output
    bad = cli.invoke(app, ["divert", str(run), "product"], env=env)
    assert bad.exit_code == 2

    async def check_and_stop() -> dict[str, Any]:
        async with await _client(line, "engineer") as c:
            view = await c.run(run)
            await c.command(run, "abort")
            return view

    view = asyncio.run(check_and_stop())
    assert view["interlocks"][0]["bypass"] is None
    assert view["divert_control"]["override"] is None
    with AuditTrail(line.db) as trail:
        signed = [e.action for e in trail.entries() if e.action.startswith("sign: ")]
    assert signed == ["sign: interlock bypass", "sign: manual divert override"]

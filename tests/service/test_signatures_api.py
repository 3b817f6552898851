"""Electronic signatures, the recipe life cycle and run modes over the service's real API
(uvicorn on a loopback port, the simulated lomustine plant; docs/signatures.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modulecontrol.client import ApiError, Client
from modulecontrol.records import AuditTrail, verify_audit
from modulecontrol.service import ServiceOptions, ServiceStore, hash_password
from modulecontrol.testing.service import ServedLine, ServiceThread
from tests.service.test_service_api import _client, _until_final

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"
RECIPE = "examples/dosing_demo.yaml"


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLine]:
    folder = tmp_path_factory.mktemp("signatures")
    policy = folder / "site-signatures.yaml"
    policy.write_text("normal_ranges:\n  P1.FlowSP: [0.1, 2.0]\n", encoding="utf-8")
    thread = ServiceThread(ServiceOptions(plant=PLANT, simulate=True, speed=60.0,
                                          db=folder / "line.db", recipes=ROOT / "recipes",
                                          report_dir=folder / "reports", signatures=policy))
    served = thread.start()
    yield served
    thread.stop()


async def test_recipe_life_cycle_with_signatures_and_production_gate(line: ServedLine) -> None:
    eng_name, eng_pw = line.users["engineer"]
    qa_name, qa_pw = line.users["qa"]
    async with await _client(line, "engineer") as eng, await _client(line, "qa") as qa:
        # an unregistered recipe does not start in production mode
        with pytest.raises(ApiError) as refused:
            await eng.start_run(RECIPE, mode="production")
        assert refused.value.status == 422 and "not effective" in refused.value.detail
        rv = await eng.register_recipe(RECIPE)
        assert rv["state"] == "draft" and rv["author"] == eng_name
        files = {f["recipe"]: f for f in (await eng.recipes())["files"]}
        assert files[RECIPE]["state"] == "draft"
        assert files[RECIPE]["runs_in_production"] is False
        # re-authentication: the token alone does not sign
        with pytest.raises(ApiError) as wrong:
            await eng.recipe_step(rv["id"], "submit", eng_name, "not-the-password", "ready")
        assert wrong.value.status == 403 and "wrong user name or password" in wrong.value.detail
        got = await eng.recipe_step(rv["id"], "submit", eng_name, eng_pw, "ready for review")
        assert got["state"] == "in review"
        # the engineer role may not approve at all; qa may not sign as someone else
        with pytest.raises(ApiError) as role:
            await eng.recipe_step(rv["id"], "approve", eng_name, eng_pw, "self")
        assert role.value.status == 403
        with pytest.raises(ApiError) as other:
            await qa.recipe_step(rv["id"], "approve", eng_name, eng_pw, "as the author")
        assert other.value.status == 403
        # still not in production while only in review or approved
        with pytest.raises(ApiError):
            await eng.start_run(RECIPE, mode="production")
        approved = await qa.recipe_step(rv["id"], "approve", qa_name, qa_pw, "checked")
        assert approved["state"] == "approved"
        released = await qa.recipe_step(rv["id"], "release", qa_name, qa_pw, "for use")
        assert released["state"] == "effective"
        sigs = released["signatures"]
        assert [s["meaning"] for s in sigs] == ["authored", "approved", "responsible for"]
        assert {s["printed_name"] for s in sigs} == {eng_name, qa_name}
        assert all(s["signed_hash"] == rv["content_hash"] for s in sigs)
        files = {f["recipe"]: f for f in (await eng.recipes())["files"]}
        assert files[RECIPE]["runs_in_production"] is True
        # effective now, but this line is simulated: its record must not pass for production
        with pytest.raises(ApiError) as simulated:
            await eng.start_run(RECIPE, mode="production")
        assert "simulation mode" in simulated.value.detail
    with AuditTrail(line.db) as trail:
        actions = [(e.user, e.action) for e in trail.entries(f"recipe_version:{rv['id']}")]
    assert (eng_name, "refused: sign recipe submit") in actions
    assert (qa_name, "refused: sign recipe approve") in actions
    assert (qa_name, "sign: recipe release") in actions


async def test_batch_record_approval_is_signed_and_in_the_report(line: ServedLine) -> None:
    qa_name, qa_pw = line.users["qa"]
    async with await _client(line, "engineer") as eng, await _client(line, "qa") as qa:
        queued = await eng.start_run(RECIPE, {"volume": "0.5 mL"})
        assert queued["mode"] == "simulation"
        with pytest.raises(ApiError) as early:
            await qa.approve_run(queued["id"], qa_name, qa_pw, "too early")
        assert early.value.status == 409
        run = await _until_final(eng, queued["id"], 120.0)
        assert run["state"] == "completed"
        sig = await qa.approve_run(queued["id"], qa_name, qa_pw, "batch record reviewed")
        assert sig["meaning"] == "approved" and sig["object"] == f"run:{run['record_run']}"
        assert [s["id"] for s in await eng.run_signatures(queued["id"])] == [sig["id"]]
        # written again with the signature: a report with its figures takes its time
        r = await eng._http.get(f"/api/v1/runs/{queued['id']}/report",
                                headers={"Authorization": f"Bearer {eng.token}"}, timeout=300)
        assert r.status_code == 200, r.text
    html = r.text
    assert "Signatures" in html and qa_name in html and "batch record reviewed" in html
    assert "SIMULATION: not a production batch" in html
    report = verify_audit(line.db)
    assert not [i for i in report.issues if "signature" in i.problem], report.issues


async def test_failed_signatures_are_rate_limited_like_logins(line: ServedLine) -> None:
    store = ServiceStore(line.db)
    try:
        store.add_user("qa-two", "qa", hash_password("qa-two-password"), "Quinn Two")
    finally:
        store.close()
    async with Client(line.url) as c:
        await c.login("qa-two", "qa-two-password")
        statuses = []
        for _ in range(6):
            with pytest.raises(ApiError) as exc:
                await c.approve_run(1, "qa-two", "wrong-password", "guess")
            statuses.append(exc.value.status)
        assert statuses[:5] == [403] * 5 and statuses[5] == 429
        with pytest.raises(ApiError) as locked:  # even the right password, while locked
            await c.approve_run(1, "qa-two", "qa-two-password", "now")
        assert locked.value.status == 429
    with AuditTrail(line.db) as trail:
        refusals = [e for e in trail.entries() if e.user == "qa-two"
                    and e.action.startswith("refused: sign")]
    assert len(refusals) == 7


async def test_a_set_point_outside_its_normal_range_needs_a_signature(line: ServedLine) -> None:
    name, password = line.users["operator"]
    async with await _client(line, "operator") as op:
        auth = {"Authorization": f"Bearer {op.token}"}
        url = "/api/v1/modules/P1/values/FlowSP"
        inside = await op._http.put(url, json={"value": "1.5 mL/min"}, headers=auth)
        assert inside.status_code == 200, inside.text
        bare = await op._http.put(url, json={"value": "3 mL/min"}, headers=auth)
        assert bare.status_code == 403 and "normal range" in bare.json()["detail"]
        wrong = await op._http.put(url, json={"value": "3 mL/min", "signature": {
            "username": name, "password": "wrong", "reason": "more throughput"}}, headers=auth)
        assert wrong.status_code == 403 and "wrong" in wrong.json()["detail"]
        signed = await op._http.put(url, json={"value": "3 mL/min", "signature": {
            "username": name, "password": password, "reason": "more throughput"}},
            headers=auth)
        assert signed.status_code == 200, signed.text
        assert signed.json()["value"] == 3.0
    with AuditTrail(line.db) as trail:
        entries = [e for e in trail.entries() if e.object.startswith("audit:")
                   or e.object == "P1.FlowSP"]
    changed = [e for e in entries if e.action == "set outside normal range"]
    assert len(changed) == 1 and changed[0].user == name
    sig = [e for e in entries if e.action == "sign: parameter outside its normal range"]
    assert [e.object for e in sig] == [f"audit:{changed[0].seq}"]
    assert sig[0].new_value["meaning"] == "responsible for"
    report = verify_audit(line.db)
    assert not [i for i in report.issues if "signature" in i.problem], report.issues

"""What the operator station needs of the control service, over the real API: the station's
page and assets, the plant's topology, module commands and set points in operator mode
(CommandEn, limits, roles, audit), value changes on the stream, the audit trail and its
export. The simulated lomustine plant is served by the service on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modulecontrol.client import ApiError, Client
from modulecontrol.descriptors import load_plant
from modulecontrol.records import AuditTrail
from modulecontrol.service import ServiceOptions
from modulecontrol.station import mount
from modulecontrol.testing.service import ServedLine, ServiceThread
from tests._poll import wait_until

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLine]:
    folder = tmp_path_factory.mktemp("station")
    thread = ServiceThread(ServiceOptions(plant=PLANT, simulate=True, speed=60.0,
                                          db=folder / "line.db", recipes=ROOT / "recipes",
                                          report_dir=folder / "reports"), mounts=[mount])
    served = thread.start()
    yield served
    thread.stop()


@contextlib.contextmanager
def _as(line: ServedLine, role: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=line.url, timeout=30.0) as c:
        name, password = line.users[role]
        tok = c.post("/api/v1/token", json={"username": name, "password": password})
        c.headers["Authorization"] = f"Bearer {tok.json()['access_token']}"
        yield c



def test_the_station_page_and_assets_carry_no_data_and_only_its_own_script(
        line: ServedLine) -> None:
    with httpx.Client(base_url=line.url, follow_redirects=True) as c:
        page = c.get("/")
        assert page.status_code == 200 and page.url.path == "/station/"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert '<form id="login"' in page.text and "lomustine" not in page.text
        assert c.get("/station/station.js").headers["content-type"].startswith("text/javascript")
        assert c.get("/station/station.css").status_code == 200
        assert c.get("/station/_pages.py").status_code == 404
        assert c.get("/station/..%2F_pages.py").status_code == 404
        assert c.get("/api/v1/plant/topology").status_code == 401


def test_topology_is_the_descriptors_and_the_connections(line: ServedLine) -> None:
    with _as(line, "viewer") as c:
        topo = c.get("/api/v1/plant/topology").json()
    mods = {m["tag"]: m for m in topo["modules"]}
    assert list(mods) == [m.tag for m in load_plant(PLANT).plant.modules]
    assert {"from": "R2.outlet", "to": "BPR1.inlet"} in topo["connections"]
    assert mods["P1"]["category"] == "pump" and mods["R1"]["category"] == "reactor"
    das = {a["name"]: a for a in mods["P1"]["assemblies"]}
    assert (das["FlowSP"]["unit"], das["FlowSP"]["min"], das["FlowSP"]["max"]) == ("mL/min", 0, 10)
    assert das["FlowSP"]["settable"] and das["FlowSP"]["parameter"]
    assert not {a["name"]: a for a in mods["R1"]["assemblies"]}["T"]["settable"]
    dosing = {s["name"]: s for s in mods["P1"]["services"]}["Dosing"]
    assert any("FlowSP" in p["parameters"] for p in dosing["procedures"])


def test_a_set_point_outside_its_limits_is_refused_and_audited(line: ServedLine) -> None:
    with _as(line, "operator") as op, _as(line, "viewer") as viewer:
        out = op.put("/api/v1/modules/P1/values/FlowSP", json={"value": "20"})
        assert out.status_code == 422
        assert "outside its limits [0, 10] mL/min" in out.json()["detail"]
        assert viewer.put("/api/v1/modules/P1/values/FlowSP",
                          json={"value": "0.5"}).status_code == 403
        assert op.put("/api/v1/modules/R1/values/T", json={"value": "30"}).status_code == 409
        ok = op.put("/api/v1/modules/P1/values/FlowSP", json={"value": "0.5 mL/min"})
        assert ok.status_code == 200 and ok.json()["value"] == 0.5
        flow = op.get("/api/v1/plant").json()
    p1 = next(m for m in flow["modules"] if m["tag"] == "P1")
    assert p1["values"]["FlowSP"]["value"] == 0.5
    with AuditTrail(line.db) as trail:
        entries = [(e.user, e.action, e.object, e.reason) for e in trail.entries()]
    assert ("operator-user", "set in operator mode", "P1.FlowSP") in [e[:3] for e in entries]
    refused = [e for e in entries if e[1] == "refused: set P1.FlowSP"]
    assert refused and "outside its limits" in refused[0][3]


def test_module_commands_follow_command_en_and_stream_values(line: ServedLine) -> None:
    with _as(line, "operator") as op:
        def p1() -> dict[str, Any]:
            plant = op.get("/api/v1/plant").json()
            return next(m for m in plant["modules"] if m["tag"] == "P1")

        assert "Unhold" not in p1()["command_en"]["Dosing"]
        refused = op.post("/api/v1/modules/P1/services/Dosing/unhold", json={})
        assert refused.status_code == 409 and "not enabled in Idle" in refused.json()["detail"]
        head = op.get("/api/v1/events?since=0&limit=1").json()["head"]
        started = op.post("/api/v1/modules/P1/services/Dosing/start",
                          json={"parameters": {"FlowSP": "0.2 mL/min"}})
        assert started.status_code == 200, started.text
        wait_until("P1 dosing", lambda: p1()["services"]["Dosing"] == "Execute")
        assert "Stop" in p1()["command_en"]["Dosing"]

        def flow_event() -> list[dict[str, Any]]:
            evs = op.get(f"/api/v1/events?since={head}&limit=10000").json()["events"]
            return [e for e in evs if e["kind"] == "value_changed" and e["source"] == "P1.Flow"]

        ev = wait_until("a P1.Flow value change on the stream", flow_event)[-1]
        assert ev["data"]["unit"] == "mL/min" and ev["data"]["module"] == "P1"
        assert isinstance(ev["data"]["source_time"], float)  # the reading's UNIX time
        assert op.post("/api/v1/modules/P1/services/Dosing/stop", json={}).status_code == 200
        wait_until("P1 stopped", lambda: p1()["services"]["Dosing"] in ("Stopped", "Idle"))
    with AuditTrail(line.db) as trail:
        actions = [(e.action, e.object) for e in trail.entries() if e.user == "operator-user"]
    assert ("Start in operator mode", "P1.Dosing") in actions
    assert ("refused: unhold P1.Dosing", "P1.Dosing") in actions


def test_module_commands_are_refused_while_a_run_owns_the_line(line: ServedLine) -> None:
    with _as(line, "engineer") as eng:
        rid = eng.post("/api/v1/runs", json={"recipe": "examples/prime_and_flush"}).json()["id"]
        wait_until("the run", lambda: eng.get(f"/api/v1/runs/{rid}").json()["state"] == "running")
        r = eng.put("/api/v1/modules/P1/values/FlowSP", json={"value": "1"})
        assert r.status_code == 409 and f"run {rid} is active" in r.json()["detail"]
        eng.post(f"/api/v1/runs/{rid}/stop")
        wait_until("the run's end", lambda: eng.get(f"/api/v1/runs/{rid}").json()["final"])
        report = eng.get(f"/api/v1/runs/{rid}/report")
        assert report.status_code == 200 and "<html" in report.text.lower()


def test_the_audit_trail_filters_and_exports(line: ServedLine) -> None:
    with _as(line, "viewer") as v:
        v.put("/api/v1/modules/P1/values/FlowSP", json={"value": "1"})  # refused: audited
        mine = v.get("/api/v1/audit", params={"user": "viewer-user"}).json()["entries"]
        assert mine and all(e["user"] == "viewer-user" for e in mine)
        assert [e["seq"] for e in mine] == sorted((e["seq"] for e in mine), reverse=True)
        refused = v.get("/api/v1/audit", params={"action": "REFUSED: set"}).json()["entries"]
        assert refused and all("refused: set" in e["action"] for e in refused)
        csv = v.get("/api/v1/audit", params={"user": "viewer-user", "format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0] == "seq,t_utc,user,action,object,old_value,new_value,reason"
    assert len(lines) == len(mine) + 1


async def test_the_python_client_speaks_the_station_routes(line: ServedLine) -> None:
    async with Client(line.url) as c:
        await c.login(*line.users["operator"])
        topo = await c.topology()
        assert {"from": "P1.outlet", "to": "M1.inlet_a"} in topo["connections"]
        with pytest.raises(ApiError) as refused:
            await c.set_value("P1", "FlowSP", "11 mL/min")
        assert refused.value.status == 422
        assert (await c.set_value("P1", "FlowSP", "0.3 mL/min"))["value"] == 0.3
        with pytest.raises(ApiError) as not_enabled:
            await c.module_command("P1", "Dosing", "resume")
        assert not_enabled.value.status == 409
        mine = await c.audit(user=line.users["operator"][0], action="set")
        assert mine[0]["object"] == "P1.FlowSP" and mine[0]["new_value"] == "0.3 mL/min"


def test_operation_mode_and_source_switch_through_the_module_handshake(line: ServedLine) -> None:
    with _as(line, "operator") as op:
        def modes(tag: str) -> dict[str, Any]:
            plant = op.get("/api/v1/plant").json()
            return dict(next(m for m in plant["modules"] if m["tag"] == tag)["modes"])

        # R1 is an OPC UA PEA: its service and its parameters each have modes of their own
        assert {"Tempering", "TempSP", "RampRate"} <= set(modes("R1"))
        r = op.put("/api/v1/modules/R1/modes/Tempering", json={"operation": "Operator"})
        assert r.status_code == 200, r.text
        assert r.json()["operation"] == "Operator"  # confirmed by StateOpAct
        wait_until("R1 in Operator", lambda: modes("R1")["Tempering"]["operation"] == "Operator")
        r = op.put("/api/v1/modules/R1/modes/Tempering",
                   json={"operation": "Automatic", "source": "Internal"})
        assert r.json() == {"module": "R1", "object": "Tempering", "operation": "Automatic",
                            "source": "Internal"}, r.text
        r = op.put("/api/v1/modules/R1/modes/TempSP",
                   json={"operation": "Automatic", "source": "External"})
        assert (r.json()["operation"], r.json()["source"]) == ("Automatic", "External"), r.text
        # a source is chosen in Automatic only: the PEA does not confirm it in Operator
        op.put("/api/v1/modules/R1/modes/RampRate", json={"operation": "Operator"})
        r = op.put("/api/v1/modules/R1/modes/RampRate", json={"source": "External"})
        assert r.status_code == 409 and "did not switch" in r.json()["detail"], r.text
        # P1's service runs in the proxy (a Modbus pump): Offline only from Idle ...
        assert modes("P1")["Dosing"]["operation"] == "Automatic" and "FlowSP" not in modes("P1")

        def dosing() -> str:
            plant = op.get("/api/v1/plant").json()
            return str(next(m for m in plant["modules"] if m["tag"] == "P1")["services"]["Dosing"])

        if dosing() in ("Stopped", "Aborted", "Completed"):  # as an earlier test's run left it
            assert op.post("/api/v1/modules/P1/services/Dosing/reset", json={}).status_code == 200
        wait_until("P1 Idle", lambda: dosing() == "Idle")
        started = op.post("/api/v1/modules/P1/services/Dosing/start", json={})
        assert started.status_code == 200, started.text
        r = op.put("/api/v1/modules/P1/modes/Dosing", json={"operation": "Offline"})
        assert r.status_code == 409 and "Offline in state" in r.json()["detail"], r.text
        op.post("/api/v1/modules/P1/services/Dosing/stop", json={})
        # ... its parameters have no modes of their own, and a word that is no mode is refused
        r = op.put("/api/v1/modules/P1/modes/FlowSP", json={"source": "Internal"})
        assert r.status_code == 409 and "has no source switch" in r.json()["detail"]
        r = op.put("/api/v1/modules/P1/modes/Dosing", json={"operation": "Manual"})
        assert r.status_code == 422 and "Offline, Operator, Automatic" in r.json()["detail"]
        assert op.put("/api/v1/modules/P1/modes/Nope", json={}).status_code == 404
        # the POL's handshake takes R1 back to Automatic/External for its next command
        op.put("/api/v1/modules/R1/modes/Tempering", json={"operation": "Operator"})
        r = op.post("/api/v1/modules/R1/services/Tempering/start", json={})
        assert r.status_code == 200, r.text
        wait_until("R1 back in Automatic/External", lambda: modes("R1")["Tempering"] == {
            "operation": "Automatic", "source": "External"})
        op.post("/api/v1/modules/R1/services/Tempering/stop", json={})
        head = op.get("/api/v1/events?since=0&limit=10000").json()["events"]
        assert any(e["kind"] == "mode_changed" and e["source"] == "R1.Tempering" for e in head)
    with _as(line, "viewer") as v:
        assert v.put("/api/v1/modules/R1/modes/Tempering",
                     json={"operation": "Operator"}).status_code == 403
    with AuditTrail(line.db) as trail:
        entries = [(e.user, e.action, e.object) for e in trail.entries()]
    assert ("operator-user", "switch mode", "R1.Tempering") in entries
    assert ("operator-user", "refused: switch mode of P1.Dosing", "P1.Dosing") in entries
    assert ("viewer-user", "refused: PUT /api/v1/modules/R1/modes/Tempering",
            "/api/v1/modules/R1/modes/Tempering") in entries

"""Roles on a served PEA: who may log in, who may write what, and every refusal audited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.uaerrors import BadUserAccessDenied

from modulecontrol.clock import Clock
from modulecontrol.descriptors import load_plant
from modulecontrol.errors import ConfigError
from modulecontrol.records import AuditTrail
from modulecontrol.simulators import PlantServer, SimulatedPlant
from modulecontrol.simulators.opcua_pea import make_certificate, role_allows

amark = pytest.mark.asyncio(loop_scope="module")

USERS = {"ctrl": ("admin", "MC_T_CTRL", "ctrl-Pw-91x"),
         "vera": ("viewer", "MC_T_VIEW", "view-Pw-72q"),
         "otto": ("operator", "MC_T_OPER", "oper-Pw-53z"),
         "erin": ("engineer", "MC_T_ENG", "eng-Pw-34k")}


def _plant(folder: Path) -> Path:
    users = "".join(f"        - {{name: {n}, role: {r}, password_env: {e}}}\n"
                    for n, (r, e, _) in USERS.items() if n != "ctrl")
    path = folder / "plant.yaml"
    path.write_text(f"""\
kind: Plant
name: roles
modules:
  - tag: P0
    type: HPLCPump
    simulated: true
    endpoint: {{protocol: modbus-tcp, port: 15028, unit_id: 3}}
  - {{tag: W1, type: DivertValve, simulated: true,
     endpoint: {{protocol: modbus-tcp, port: 15029, unit_id: 2}}}}
  - tag: P1
    type: CoilReactor
    simulated: true
    endpoint:
      protocol: opcua
      url: opc.tcp://127.0.0.1:14841/p1
      security_policy: Basic256Sha256
      security_mode: SignAndEncrypt
      username: ctrl
      password_env: MC_T_CTRL
      users:
{users}connections:
  - {{from: P0.outlet, to: P1.inlet, volume: 1 mL}}
  - {{from: P1.outlet, to: W1.inlet, volume: 1 mL}}
""")
    return path


@dataclass
class Served:
    server: PlantServer
    url: str
    db: Path
    security: str


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    d = tmp_path_factory.mktemp("roles")
    mp = pytest.MonkeyPatch()
    for _, env, pw in USERS.values():
        mp.setenv(env, pw)
    cert, key = make_certificate(d / "client", "client", "urn:modulecontrol:test:client",
                                 server=False)
    cfg = load_plant(_plant(d))
    plant = SimulatedPlant.from_config(cfg, Clock.realtime())
    db = d / "records.db"
    server = PlantServer(plant, free_ports=True, pki=d / "pki", audit_db=db)
    await server.start()
    try:
        url = server.served_config().instance("P1").endpoint.url  # type: ignore[union-attr]
        yield Served(server, url, db, f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
    finally:
        await server.stop()
        mp.undo()


def _node(s: Served, tag: str) -> ua.NodeId:
    pea, _ = s.server.peas["P1"]
    return pea.node_ids[tag]


async def _client(s: Served, user: str, password: str) -> Client:
    c = Client(s.url, timeout=5)
    await c.set_security_string(s.security)
    c.set_user(user)
    c.set_password(password)
    return c


def _audit(s: Served) -> list[tuple[str, str, str, str]]:
    with AuditTrail(s.db) as trail:
        assert trail.verify().ok
        return [(e.user, e.action, e.object, e.reason) for e in trail.entries()]


def test_role_rules() -> None:
    assert not role_allows("viewer", "CommandExt")
    assert role_allows("operator", "CommandExt") and role_allows("operator", "StateAutOp")
    assert role_allows("operator", "ProcedureExt") and not role_allows("operator", "VExt")
    assert role_allows("engineer", "VExt") and role_allows("engineer", "ApplyExt")
    assert role_allows("admin", "VExt") and not role_allows("nobody", "VExt")


@amark
async def test_client_without_security_refused(served: Served) -> None:
    """Even a client that skips the endpoint check and sends its password over a None
    channel gets no service (asyncua alone would have served it)."""
    name, (_, _, pw) = "otto", USERS["otto"]
    c = Client(served.url, timeout=5)
    await c.connect_socket()
    try:
        await c.send_hello()
        await c.open_secure_channel()
        await c.uaclient.create_session(ua.CreateSessionParameters(
            ClientDescription=ua.ApplicationDescription(
                ApplicationUri="urn:x", ApplicationType=ua.ApplicationType.Client),
            SessionName="raw", RequestedSessionTimeout=10000, ClientNonce=b"0" * 32,
            EndpointUrl=served.url))
        params = ua.ActivateSessionParameters()
        params.UserIdentityToken = ua.UserNameIdentityToken(
            UserName=name, Password=pw.encode(), PolicyId="username")
        await c.uaclient.activate_session(params)
        with pytest.raises(BadUserAccessDenied):
            await c.get_node(_node(served, "TempSP.VExt")).write_value(12.0)
        with pytest.raises(BadUserAccessDenied):
            await c.get_node(_node(served, "TempSP.VExt")).read_value()
    finally:
        c.disconnect_socket()
    assert (name, "request refused", "P1", "request on a channel without security") in _audit(
        served)


@amark
async def test_anonymous_session_refused_and_audited(served: Served) -> None:
    """An anonymous session on a secured PEA is refused, and the refusal is audited (issue
    14: asyncua used to reject the token before any user check, so nothing was recorded)."""
    c = Client(served.url, timeout=5)
    await c.set_security_string(served.security)
    with pytest.raises(Exception, match=r"BadUserAccessDenied|BadIdentityToken"):
        await c.connect()
    assert ("anonymous", "login refused", "P1", "anonymous session") in _audit(served)


@amark
async def test_wrong_password_refused(served: Served) -> None:
    c = await _client(served, "erin", "not-the-password")
    with pytest.raises(Exception, match=r"BadUserAccessDenied|BadIdentityTokenRejected|denied"):
        await c.connect()
    entries = _audit(served)
    assert ("erin", "login refused", "P1", "wrong password") in entries
    assert not any("not-the-password" in str(e) for e in entries)


@amark
async def test_viewer_reads_but_cannot_write(served: Served) -> None:
    pea, _ = served.server.peas["P1"]
    before = pea.get("TempSP.VExt")
    async with await _client(served, "vera", USERS["vera"][2]) as c:
        node = c.get_node(_node(served, "TempSP.VExt"))
        assert await node.read_value() == before
        with pytest.raises(BadUserAccessDenied):
            await node.write_value(before + 7.0)
        with pytest.raises(BadUserAccessDenied):
            await c.get_node(_node(served, "Tempering.CommandExt")).write_value(
                ua.Variant(4, ua.VariantType.UInt32))
    assert pea.get("TempSP.VExt") == before
    entries = _audit(served)
    assert ("vera", "write refused", "P1.TempSP.VExt", "role viewer may not write VExt") in entries
    assert ("vera", "write refused", "P1.Tempering.CommandExt",
            "role viewer may not write CommandExt") in entries


@amark
async def test_operator_commands_engineer_sets_parameters(served: Served) -> None:
    pea, _ = served.server.peas["P1"]
    async with await _client(served, "otto", USERS["otto"][2]) as c:
        with pytest.raises(BadUserAccessDenied):
            await c.get_node(_node(served, "TempSP.VExt")).write_value(41.0)
        # a service-control write is accepted (whether the state machine takes the command
        # is the PEA's business, not the role check's)
        await c.get_node(_node(served, "Tempering.StateOffOp")).write_value(True)
    async with await _client(served, "erin", USERS["erin"][2]) as c:
        await c.get_node(_node(served, "TempSP.VExt")).write_value(41.0)
    for _ in range(50):
        if pea.get("TempSP.VExt") == 41.0:
            break
        await asyncio.sleep(0.02)
    assert pea.get("TempSP.VExt") == 41.0
    assert ("otto", "write refused", "P1.TempSP.VExt",
            "role operator may not write VExt") in _audit(served)
    assert not any(u == "erin" and a == "write refused" for u, a, _, _ in _audit(served))


def test_users_need_security_and_valid_roles(tmp_path: Path) -> None:
    text = _plant(tmp_path).read_text()
    insecure = text.replace("security_policy: Basic256Sha256", 'security_policy: "None"') \
        .replace("security_mode: SignAndEncrypt", 'security_mode: "None"')
    (tmp_path / "a.yaml").write_text(insecure)
    with pytest.raises(ConfigError, match="'users' need a secured endpoint"):
        load_plant(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text(text.replace("role: viewer", "role: superuser"))
    with pytest.raises(ConfigError, match="viewer"):
        load_plant(tmp_path / "b.yaml")
    (tmp_path / "c.yaml").write_text(text.replace("password_env: MC_T_VIEW",
                                                  "password_env: 'x; rm'"))
    with pytest.raises(ConfigError, match="password_env"):
        load_plant(tmp_path / "c.yaml")


@amark
async def test_virtual_pea_enforces_roles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modulecontrol.descriptors import PeaUser
    from modulecontrol.mtp import serve_manifest
    from modulecontrol.simulators.opcua_pea import Refusal
    from tests.drivers._opcua_pea import coil_reactor

    monkeypatch.setenv("MC_T_CTRL", "ctrl-Pw-91x")
    monkeypatch.setenv("MC_T_VIEW", "view-Pw-72q")
    refused: list[Refusal] = []
    cert, key = make_certificate(tmp_path, "client", "urn:modulecontrol:test:client",
                                 server=False)
    vpea = await serve_manifest(
        coil_reactor(), username="ctrl", password_env="MC_T_CTRL", pki=tmp_path / "pki",
        users=[PeaUser(name="vera", role="viewer", password_env="MC_T_VIEW")],
        on_refused=refused.append)
    async with vpea:
        c = Client(vpea.url, timeout=5)
        await c.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
        c.set_user("vera")
        c.set_password("view-Pw-72q")
        async with c:
            with pytest.raises(BadUserAccessDenied):
                await c.get_node(vpea.pea.node_ids["TempSP.VExt"]).write_value(5.0)
    assert [(r.user, r.action, r.object) for r in refused] == [
        ("vera", "write refused", f"{vpea.module_type.name}.TempSP.VExt")]

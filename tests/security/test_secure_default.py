"""Secure by default (issue 14, finding 9).

The reference plant, served by ``modulecontrol sim serve`` with no security option at all,
offers OPC UA only with Basic256Sha256 SignAndEncrypt, refuses anonymous sessions (and
audits the refusal), and keeps its generated credentials owner-only. Without security
(``--insecure``, asked for explicitly) anonymous sessions may read, but every write they
try is refused and audited: the finding was ``TempSP 50 -> 99`` accepted, nothing audited.
"""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.uaerrors import BadUserAccessDenied

from modulecontrol.clock import Clock
from modulecontrol.descriptors import OpcUaEndpoint, load_plant
from modulecontrol.records import AuditTrail
from modulecontrol.simulators import Credentials, PlantServer, SecurityError, SimulatedPlant
from modulecontrol.simulators.opcua_pea import make_certificate
from tests.security._proc import ROOT, cli, env, stop, wait_for_line

PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"
BASIC256SHA256 = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"


def _audit(db: Path) -> list[tuple[str, str, str, str]]:
    with AuditTrail(db) as trail:
        assert trail.verify().ok
        return [(e.user, e.action, e.object, e.reason) for e in trail.entries()]


async def _endpoints_and_anonymous_attempt(url: str, server_cert: str, folder: Path
                                           ) -> list[ua.EndpointDescription]:
    endpoints = await Client(url, timeout=5).connect_and_get_server_endpoints()
    cert, key = make_certificate(folder, "client", "urn:modulecontrol:test:client",
                                 server=False)
    anonymous = Client(url, timeout=5)  # a valid secure channel, but no user
    await anonymous.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key},"
                                        f"{server_cert}")
    with pytest.raises(Exception, match=r"BadUserAccessDenied|BadIdentityToken|anonymous"):
        await anonymous.connect()
    with pytest.raises(Exception):  # noqa: B017 - whatever asyncua raises: no session
        await anonymous.nodes.server_state.read_value()
    return list(endpoints)


@pytest.mark.timeout(120)
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_default_sim_serve_is_sign_and_encrypt_and_audits_anonymous(tmp_path: Path) -> None:
    pki, db = tmp_path / "pki", tmp_path / "records.db"
    proc = subprocess.Popen(
        cli("sim", "serve", str(PLANT), "--free-ports", "--duration", "10 min",
            "--pki", str(pki), "--db", str(db), "--json"),
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        umask=0o022)
    try:
        served = json.loads(wait_for_line(proc, "CR1", timeout=90).splitlines()[0])
        opcua = [m for m in served if m["protocol"] == "opcua"]
        assert [m["tag"] for m in opcua] == ["R1", "R2", "PAT1", "CR1"]
        for m in opcua:
            assert m["security"] == "Basic256Sha256 SignAndEncrypt", m
            secret = Path(m["password_file"]).read_text().strip()
            assert len(secret) >= 24 and secret not in json.dumps(served)  # a path, never it
        r1 = opcua[0]
        endpoints = asyncio.run(_endpoints_and_anonymous_attempt(
            r1["url"], r1["server_certificate"], tmp_path / "client"))
    finally:
        stop(proc)
    # only SignAndEncrypt, only Basic256Sha256, only users with a password
    assert endpoints
    for ep in endpoints:
        assert ep.SecurityMode == ua.MessageSecurityMode.SignAndEncrypt, ep
        assert ep.SecurityPolicyUri == BASIC256SHA256, ep
        assert [t.TokenType for t in ep.UserIdentityTokens] == [ua.UserTokenType.UserName]
    # the anonymous attempt is in the audit trail
    assert ("anonymous", "login refused", "R1", "anonymous session") in _audit(db)
    # the generated credentials are owner-only, whatever the umask
    assert stat.S_IMODE(pki.stat().st_mode) == 0o700
    files = sorted(p.name for p in pki.iterdir())
    assert {"sim-R1.pem", "sim-R1.der", "client.pem", "sim-R1-ctrl.password",
            "sim-R1-engineer.password", "sim-CR1-ctrl.password"} <= set(files), files
    for f in pki.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


_SMALL = """\
kind: Plant
name: small
modules:
  - tag: P0
    type: HPLCPump
    simulated: true
    endpoint: {protocol: modbus-tcp, port: 15028, unit_id: 3}
  - tag: R1
    type: CoilReactor
    simulated: true
    endpoint: {protocol: opcua, url: "opc.tcp://127.0.0.1:14841/r1", username: ctrl%s}
  - {tag: W1, type: DivertValve, simulated: true,
     endpoint: {protocol: modbus-tcp, port: 15029, unit_id: 2}}
connections:
  - {from: P0.outlet, to: R1.inlet, volume: 1 mL}
  - {from: R1.outlet, to: W1.inlet, volume: 1 mL}
"""


def _small(folder: Path, extra: str = "") -> SimulatedPlant:
    (folder / "plant.yaml").write_text(_SMALL % extra)
    return SimulatedPlant.from_config(load_plant(folder / "plant.yaml"), Clock.realtime())


async def test_insecure_anonymous_may_read_but_its_writes_are_refused_and_audited(
        tmp_path: Path) -> None:
    db = tmp_path / "records.db"
    server = PlantServer(_small(tmp_path), free_ports=True, pki=tmp_path / "pki",
                         audit_db=db, insecure=True)
    await server.start()
    try:
        ep = server.served_config().instance("R1").endpoint
        assert isinstance(ep, OpcUaEndpoint) and ep.security_policy == "None"
        assert ep.username == "ctrl" and ep.password_file is not None
        pea, _ = server.peas["R1"]
        node = pea.node_ids["TempSP.VExt"]
        before = pea.get("TempSP.VExt")
        async with Client(ep.url, timeout=5) as anonymous:  # no security, no user
            assert await anonymous.get_node(node).read_value() == before
            with pytest.raises(BadUserAccessDenied):
                await anonymous.get_node(node).write_value(99.0)
        assert pea.get("TempSP.VExt") == before
        # the controller, logged in with its generated password, may write
        ctrl = Client(ep.url, timeout=5)
        ctrl.set_user("ctrl")
        ctrl.set_password(Credentials(tmp_path / "pki").password("R1", "ctrl"))
        async with ctrl:
            await ctrl.get_node(node).write_value(41.0)
        for _ in range(50):
            if pea.get("TempSP.VExt") == 41.0:
                break
            await asyncio.sleep(0.02)
        assert pea.get("TempSP.VExt") == 41.0
    finally:
        await server.stop()
    with AuditTrail(db) as trail:
        refused = [(e.user, e.action, e.object, e.new_value) for e in trail.entries()]
    assert refused == [("anonymous", "write refused", "R1.TempSP.VExt", 99.0)]


async def test_security_none_is_served_only_on_request(tmp_path: Path) -> None:
    plant = _small(tmp_path, ', security_policy: "None", security_mode: "None"')
    server = PlantServer(plant, free_ports=True, pki=tmp_path / "pki")
    with pytest.raises(SecurityError, match="--insecure"):
        await server.start()
    assert not server.peas

"""The broker connection: URL rules, user name and password, TLS, against real listeners."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.fleet import PASSWORD_ENV, Broker, DataType, EdgeNode, MetricSpec
from modulecontrol.testing.servers import Mosquitto, missing
from tests.fleet._sub import Recorder

ROOT = Path(__file__).parents[2]


def test_urls() -> None:
    assert Broker.parse("mqtt://127.0.0.1:1884") == Broker("127.0.0.1", 1884)
    assert Broker.parse("mqtts://broker.example").port == 8883
    with pytest.raises(ValueError, match="MODULECONTROL_MQTT_PASSWORD"):
        Broker.parse("mqtt://line:secret@127.0.0.1:1883")
    with pytest.raises(ValueError, match=r"mqtt://HOST:PORT"):
        Broker.parse("http://127.0.0.1:1883")


def test_run_needs_a_site() -> None:
    res = CliRunner().invoke(app, ["run", str(ROOT / "recipes/examples/dosing_demo.yaml"),
                                   "--simulate", "--sparkplug", "mqtt://127.0.0.1:1"])
    assert res.exit_code == 2
    assert "--site" in res.output


def _edge(url: str, tmp_path: Path, ca: Path | None = None) -> EdgeNode:
    edge = EdgeNode(Broker.parse(url, ca_file=ca), "S", "L", tmp_path / "buf.db")
    edge.add_device("P1", [MetricSpec("Flow", DataType.DOUBLE, "mL/min")])
    return edge


@pytest.fixture
def secured(tmp_path: Path) -> Mosquitto:
    if missing("mosquitto") or not shutil.which("mosquitto_passwd"):
        pytest.skip("mosquitto (with mosquitto_passwd) is not installed")
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "line1", "s3cret"], check=True)
    pw.chmod(0o600)
    return Mosquitto(tmp_path / "mq", extra=f"password_file {pw}\n", anonymous=False)


def test_user_and_password(secured: Mosquitto, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    secured.start()
    try:
        url = f"mqtt://line1@127.0.0.1:{secured.port}"
        monkeypatch.setenv(PASSWORD_ENV, "wrong")
        refused = _edge(url, tmp_path / "a")
        refused.start()
        refused.update("P1", "Flow", 1.0)
        monkeypatch.setenv(PASSWORD_ENV, "s3cret")
        rec = Recorder(url)
        edge = _edge(url, tmp_path / "b")
        edge.start()
        try:
            edge.update("P1", "Flow", 2.0)
            assert edge.wait_drained(20)
            assert rec.wait(lambda: bool(rec.of("DDATA")))
            assert not refused.online and len(refused.buffer) == 1  # kept, not lost
        finally:
            edge.stop()
            refused.stop(drain=0)
            rec.close()
    finally:
        secured.stop()


def test_tls(tmp_path: Path) -> None:
    if missing("mosquitto") or not shutil.which("openssl"):
        pytest.skip("mosquitto or openssl is not installed")
    ca_key, ca, key, csr, cert = (tmp_path / n for n in
                                  ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem"))
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for cmd in (
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
         "-out", ca, "-days", "1", "-subj", "/CN=test-ca"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
         "-CAcreateserial", "-out", cert, "-days", "1", "-extfile", ext],
    ):
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
    broker = Mosquitto(tmp_path / "mq",
                       extra=f"certfile {cert}\nkeyfile {key}\ncafile {ca}\n")
    broker.start()
    port = broker.port
    try:
        edge = _edge(f"mqtts://127.0.0.1:{port}", tmp_path, ca=ca)
        edge.start()
        try:
            edge.update("P1", "Flow", 3.0)
            assert edge.wait_drained(20)
            assert edge.published >= 3  # NBIRTH, DBIRTH, DDATA over TLS
        finally:
            edge.stop()
    finally:
        broker.stop()


def _certs(folder: Path, *, cn: str = "test-ca") -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (cryptography), 1 day."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    srv = (x509.CertificateBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
           .issuer_name(ca_name).public_key(key.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now - dt.timedelta(minutes=5))
           .not_valid_after(now + dt.timedelta(days=1))
           .add_extension(x509.SubjectAlternativeName(
               [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
           .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
           .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "srv.pem", folder / "srv.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


def test_tls_and_password_on_one_listener_end_to_end(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The production shape: a TLS listener that also wants a user and a password. The
    fleet historian and a line both connect with mqtts:// + user + password and the data
    reaches PostgreSQL; a client that trusts another CA, one without TLS, and one with a
    wrong password get nothing through (their samples stay in their buffers)."""
    if missing("mosquitto", "initdb", "pg_ctl") or not shutil.which("mosquitto_passwd"):
        pytest.skip("mosquitto (with mosquitto_passwd) or PostgreSQL is not installed")
    import threading

    import psycopg

    from modulecontrol.fleet import FleetHistorian
    from modulecontrol.testing.servers import Postgres

    ca, cert, key = _certs(tmp_path / "pki")
    other_ca = _certs(tmp_path / "other", cn="another-ca")[0]
    pw = tmp_path / "passwd"
    for user, secret in (("line1", "line-s3cret"), ("fleet", "fleet-s3cret")):
        subprocess.run(["mosquitto_passwd", "-b", *([] if pw.exists() else ["-c"]), str(pw),
                        user, secret], check=True)
    pw.chmod(0o600)
    broker = Mosquitto(tmp_path / "mq", anonymous=False,
                       extra=f"certfile {cert}\nkeyfile {key}\npassword_file {pw}\n")
    pg = Postgres()
    broker.start()
    port = broker.port
    edges: list[EdgeNode] = []
    try:
        pg.init()
        pg.start()
        monkeypatch.setenv(PASSWORD_ENV, "fleet-s3cret")
        host = FleetHistorian(Broker.parse(f"mqtts://fleet@127.0.0.1:{port}", ca_file=ca),
                              pg.dsn)
        thread = threading.Thread(target=host.run, daemon=True)
        thread.start()
        assert host.connected.wait(20)
        monkeypatch.setenv(PASSWORD_ENV, "line-s3cret")
        good = _edge(f"mqtts://line1@127.0.0.1:{port}", tmp_path / "good", ca=ca)
        untrusted = _edge(f"mqtts://line1@127.0.0.1:{port}", tmp_path / "untrusted",
                          ca=other_ca)
        plain = _edge(f"mqtt://line1@127.0.0.1:{port}", tmp_path / "plain")
        monkeypatch.setenv(PASSWORD_ENV, "wrong-password")
        wrong = _edge(f"mqtts://line1@127.0.0.1:{port}", tmp_path / "wrong", ca=ca)
        edges = [good, untrusted, plain, wrong]
        for e in edges:
            e.start()
            e.update("P1", "Flow", 4.5, 1_760_000_000.0)
        assert good.wait_drained(30)
        end = time.monotonic() + 30
        rows: list[tuple[float]] = []
        while not rows and time.monotonic() < end:
            with psycopg.connect(pg.dsn) as conn:
                rows = conn.execute("SELECT (value)::float FROM sample").fetchall()
            time.sleep(0.2)
        assert rows == [(4.5,)]
        for e in (untrusted, plain, wrong):
            assert not e.online and len(e.buffer) == 1  # refused, and nothing lost
        host.stop()
        thread.join(10)
    finally:
        for e in edges:
            e.stop(drain=0)
        broker.stop()
        pg.stop()
        pg.remove()

"""The broker connection: URL rules, user name and password, TLS, against real listeners."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modulecontrol.cli import app
from modulecontrol.fleet import PASSWORD_ENV, Broker, DataType, EdgeNode, MetricSpec
from modulecontrol.testing.servers import Mosquitto, free_port, missing
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
    port = free_port()
    broker = Mosquitto(tmp_path / "mq", port=port,
                       extra=f"certfile {cert}\nkeyfile {key}\ncafile {ca}\n")
    broker.start()
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

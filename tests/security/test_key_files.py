"""Key files are owner-only (0600): the records key and the PEA's private key (issue 14)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from modulecontrol.records import AuditTrail, anchor_path_for, key_path_for
from modulecontrol.simulators.opcua_pea import make_certificate

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_records_key_and_anchor_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    old = os.umask(0o022)
    try:
        with AuditTrail(db) as trail:
            trail.append("alice", "write", "X", reason="r")
    finally:
        os.umask(old)
    assert _mode(key_path_for(db)) == 0o600
    assert _mode(anchor_path_for(db)) == 0o600


def test_pea_private_key_is_0600_even_over_an_old_world_readable_file(tmp_path: Path) -> None:
    (tmp_path / "pea.pem").write_text("old")
    os.chmod(tmp_path / "pea.pem", 0o644)
    old = os.umask(0o022)
    try:
        _cert, key = make_certificate(tmp_path, "pea", "urn:test:pea", server=True)
    finally:
        os.umask(old)
    assert _mode(key) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN")


def test_generated_credentials_are_owner_only_and_reused(tmp_path: Path) -> None:
    from modulecontrol.simulators import Credentials

    creds = Credentials(tmp_path / "pki")
    old = os.umask(0o022)
    try:
        cert, key = creds.server_certificate("R1")
        client = creds.client_certificate()
        password = creds.password_file("R1", "ctrl")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "pki") == 0o700
    for f in (cert, key, *client, password):
        assert _mode(f) == 0o600, f
    # first use generates, later uses reuse: a pinned certificate stays valid
    der, secret = cert.read_bytes(), creds.password("R1", "ctrl")
    assert creds.server_certificate("R1") == (cert, key) and cert.read_bytes() == der
    assert creds.password("R1", "ctrl") == secret and len(secret) >= 24
    # a key others could read is not reused: a new pair replaces it
    os.chmod(key, 0o644)
    creds.server_certificate("R1")
    assert _mode(key) == 0o600 and cert.read_bytes() != der


async def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    from modulecontrol.drivers import DriverError
    from modulecontrol.drivers.opcua import OpcUaDriver
    from tests.drivers._opcua_pea import coil_reactor, instance

    pw = tmp_path / "pw"
    pw.write_text("a-long-enough-password-0815\n")
    os.chmod(pw, 0o644)
    drv = OpcUaDriver(coil_reactor(), instance("opc.tcp://127.0.0.1:9/x", username="ctrl",
                                               password_file=str(pw)))
    with pytest.raises(DriverError, match=r"readable by group or others.*chmod 600"):
        await drv.connect()


def test_concurrent_live_checks_share_one_matching_client_pair(tmp_path: Path) -> None:
    """CI found three live checks started together on one pki folder each writing a new
    client key: one presented a certificate signed with another's key and the PEA refused
    it (InvalidSignature). The check's client pair is now made once, under the lock, reused."""
    from concurrent.futures import ThreadPoolExecutor

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_private_key,
    )

    from modulecontrol.mtp import LiveOptions
    from modulecontrol.mtp._live import _endpoint

    opts = LiveOptions("opc.tcp://127.0.0.1:4840", pki=tmp_path / "client")
    with ThreadPoolExecutor(8) as pool:
        endpoints = list(pool.map(lambda _: _endpoint(opts), range(16)))
    assert len({(e.certificate, e.private_key) for e in endpoints}) == 1
    ep = endpoints[0]
    assert ep.certificate is not None and ep.private_key is not None
    der = Path(ep.certificate).read_bytes()
    cert = x509.load_der_x509_certificate(der)
    key = load_pem_private_key(Path(ep.private_key).read_bytes(), password=None)
    spki = PublicFormat.SubjectPublicKeyInfo
    assert (key.public_key().public_bytes(Encoding.DER, spki)
            == cert.public_key().public_bytes(Encoding.DER, spki))
    _endpoint(opts)  # a later check presents the same certificate (a server may pin it)
    assert Path(ep.certificate).read_bytes() == der

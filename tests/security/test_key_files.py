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

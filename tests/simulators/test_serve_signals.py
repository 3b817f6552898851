"""``modulecontrol sim serve`` ends cleanly on SIGTERM and SIGHUP, as on Ctrl-C: exit code 0,
the reason said, every server closed (its ports free again). It used to die at once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.simulators.test_serve_cli_json import _plant, served_ports

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_serve_ends_cleanly_on_signal(tmp_path: Path, sig: signal.Signals, taken: int) -> None:
    plant = _plant(tmp_path, taken)  # served on free ports: the plant's port is held here
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "modulecontrol.cli", "sim", "serve", str(plant), "--json",
         "--free-ports", "--pki", str(tmp_path / "pki"), "--insecure"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        served = json.loads(proc.stdout.readline())  # printed once every server listens
        assert [ep["tag"] for ep in served] == ["P1", "R1", "V1"]
        modbus, opcua = served_ports(served)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert f"{sig.name} received: closing the simulated modules" in err
    assert "Traceback" not in err
    for port in (modbus, opcua):  # closed, not left to the operating system
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))

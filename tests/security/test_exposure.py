"""Network exposure: a served simulated plant listens on loopback only."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.security._proc import ROOT, cli, env, listening_sockets, stop, wait_for_line

PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"


@pytest.mark.timeout(150)
def test_sim_serve_listens_on_loopback_only(tmp_path: Path) -> None:
    # --free-ports: every TCP module on a port the OS picks, listed in the JSON line (ports
    # chosen free first and passed as an offset could be taken before the bind)
    proc = subprocess.Popen(
        cli("sim", "serve", str(PLANT), "--free-ports", "--json", "--duration", "120 s",
            "--pki", str(tmp_path / "pki")),
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        served = json.loads(wait_for_line(proc, "}]", timeout=60).splitlines()[0])
        listening = listening_sockets(proc.pid)
    finally:
        stop(proc)
    ports = {m["port"] for m in served if m["protocol"] == "modbus-tcp"}
    ports |= {int(m["url"].rsplit(":", 1)[1].split("/")[0]) for m in served
              if m["protocol"] == "opcua"}
    assert len(ports) >= 5
    bound_ports = {p for _, p in listening}
    # every endpoint of the plant is served (so the check below is not vacuous) ...
    assert ports <= bound_ports, listening
    # ... and nothing listens anywhere but on loopback
    assert all(addr in ("127.0.0.1", "::1") for addr, _ in listening), listening


def test_remote_host_of_simulated_module_refused(tmp_path: Path) -> None:
    text = PLANT.read_text().replace("host: 127.0.0.1, port: 15021", "host: 0.0.0.0, port: 15021")
    assert "0.0.0.0" in text
    variant = tmp_path / "plant.yaml"
    variant.write_text(text)
    for name in ("species.yaml",):
        (tmp_path / name).write_text((PLANT.parent / name).read_text())
    proc = subprocess.run(cli("sim", "serve", str(variant), "--duration", "1 s",
                              "--pki", str(tmp_path / "pki")),
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "host: 0.0.0.0" in t)
    assert f"plant.yaml:{line}:" in proc.stdout and "loopback (127.0.0.1) only" in proc.stdout

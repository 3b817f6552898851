"""Network exposure: a served simulated plant listens on loopback only."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from modulecontrol.descriptors import ModbusTcpEndpoint, OpcUaEndpoint, load_plant
from tests.security._proc import ROOT, cli, env, free_offset, listening_sockets, stop, wait_for_line

PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"


def _plant_ports() -> list[int]:
    cfg = load_plant(PLANT)
    ports: set[int] = set()
    for m in cfg.plant.modules:
        ep = m.endpoint
        if isinstance(ep, ModbusTcpEndpoint):
            ports.add(ep.port)
        elif isinstance(ep, OpcUaEndpoint):
            ports.add(int(ep.url.rsplit(":", 1)[1].split("/")[0]))
    return sorted(ports)


@pytest.mark.timeout(150)
def test_sim_serve_listens_on_loopback_only(tmp_path: Path) -> None:
    ports = _plant_ports()
    assert len(ports) >= 5
    for attempt in range(3):
        # The offset's ports were free when chosen; another process (a parallel test run) may
        # take one before `sim serve` binds it, which it reports as "address in use": then
        # choose again. Any other failure fails the test.
        offset = free_offset(ports)
        proc = subprocess.Popen(
            cli("sim", "serve", str(PLANT), "--port-offset", str(offset), "--duration", "120 s",
                "--pki", str(tmp_path / f"pki{attempt}")),
            cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            try:
                wait_for_line(proc, "CR1", timeout=60)
            except AssertionError as exc:
                if "address already in use" in str(exc).lower() and attempt < 2:
                    continue
                raise
            listening = listening_sockets(proc.pid)
        finally:
            stop(proc)
        break
    bound_ports = {p for _, p in listening}
    # every endpoint of the plant is served (so the check below is not vacuous) ...
    assert {p + offset for p in ports} <= bound_ports, listening
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

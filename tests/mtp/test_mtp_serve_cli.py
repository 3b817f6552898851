"""``mtp serve`` in a process of its own, ``mtp check --endpoint`` against it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from modulecontrol.mtp.cli import app

HC30 = Path(__file__).parent / "data" / "HC30_Stirring_V8.aml"


def test_cli_serve_then_check() -> None:
    root = Path(__file__).resolve().parents[2]
    # transients kept 50 ms, not the default 0.2 s (test_mtp_serve.py checks the default):
    # the live check's subscription queues every state the PEA publishes
    cmd = [sys.executable, "-m", "modulecontrol.cli", "mtp", "serve", str(HC30), "--port", "0",
           "--insecure", "--transient-dwell", "0.05"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded: the process exits on any start-up error
        assert line.startswith("serving HC30_Stirring_V8 at opc.tcp://127.0.0.1:"), line
        url = line.split(" at ", 1)[1].split()[0]
        runner = CliRunner()
        res = runner.invoke(app, ["check", str(HC30), "--endpoint", url, "--insecure"])
        assert res.exit_code == 0, res.output
        assert "live-commands" in res.output and "0 failed" in res.output
        res = runner.invoke(app, ["check", str(HC30), "--endpoint", url])
        assert res.exit_code == 2 and "--password-env" in res.output
        bad = runner.invoke(app, ["check", str(HC30), "--endpoint",
                                  "opc.tcp://127.0.0.1:1", "--insecure", "--timeout", "1"])
        assert bad.exit_code == 1 and "live-connect" in bad.output
    finally:
        proc.terminate()
        proc.wait(timeout=10)

"""The integrator kit as a user installs it: the `testing` extra, and the example device
package (docs/examples/example-devices) passing the conformance suite in pytest-asyncio's
strict mode, i.e. with no `asyncio_mode = auto` of its own.

The suite collects the example's tests too (pyproject testpaths), but under this
repository's configuration, which sets auto mode; this test runs a part of them as the
package's own configuration has them, in a pytest of their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "example-devices"


def test_testing_extra_is_the_kit_and_the_test_extra_includes_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    names = {req.split(">")[0].split("=")[0].strip() for req in extras["testing"]}
    assert names == {"pytest", "pytest-asyncio", "hypothesis"}
    assert "modulecontrol[testing]" in extras["test"]
    assert project["entry-points"]["pytest11"] == {"modulecontrol": "modulecontrol.testing.plugin"}


def test_example_package_declares_its_plugins() -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))
    eps = project["project"]["entry-points"]
    assert eps["modulecontrol.drivers"] == {"textline": "example_devices.textline:TextLineDriver"}
    assert eps["modulecontrol.module_types"] == {"example-devices": "example_devices.types"}
    assert "asyncio_mode" not in project["tool"]["pytest"]["ini_options"]


def test_example_passes_the_kit_in_strict_mode(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir",
         str(EXAMPLE), "-c", str(EXAMPLE / "pyproject.toml"), "-W", "error",
         "-k", "round_trip or out_of_range or safe_state or every_bound or timeout",
         "--basetemp", str(tmp_path / "t"), str(EXAMPLE / "tests")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)  # its files in tmp
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "asyncio: mode=Mode.STRICT" in out or "asyncio: mode=strict" in out, out
    summary = out.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary and "error" not in summary, out

"""The layers of docs/architecture.md, enforced: the contracts pass, and a violation fails them.

``make test`` runs ``lint-imports`` itself; this test proves the contracts have teeth. It copies
the package and the contract configuration into a temporary folder, breaks one rule there
(a bottom layer importing an upper one; a private module imported from another package; a
cycle inside a package) and checks that ``lint-imports`` fails and names the broken contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400"}  # one violation per line, whatever the terminal
    return subprocess.run(
        [str(LINT), "--no-cache", "--no-logo"],
        cwd=cwd, capture_output=True, text=True, timeout=240, check=False, env=env,
    )


def _copy_tree(tmp: Path) -> Path:
    shutil.copytree(ROOT / "modulecontrol", tmp / "modulecontrol",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def test_the_copied_tree_keeps_the_contracts(tmp_path: Path) -> None:
    """The baseline of the two tests below: the copy itself passes, so their failures come
    from the one import each adds."""
    result = _lint(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    _append(tree / "modulecontrol" / "units.py", "import modulecontrol.records  # deliberate")
    result = _lint(tree)
    assert result.returncode == 1, result.stdout
    assert "modulecontrol.units is not allowed to import modulecontrol.records" in result.stdout


def test_a_private_import_from_another_package_breaks_the_contract(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    _append(tree / "modulecontrol" / "session.py",
            "from modulecontrol.records._db import connect  # deliberate")
    result = _lint(tree)
    assert result.returncode == 1, result.stdout
    assert "Private modules may only be imported from within their parent package" in result.stdout
    assert "modulecontrol.session -> modulecontrol.records._db" in result.stdout


def test_a_cycle_inside_a_package_breaks_the_contract(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    _append(tree / "modulecontrol" / "records" / "_db.py",
            "from modulecontrol.records import _report  # deliberate")
    result = _lint(tree)
    assert result.returncode == 1, result.stdout
    assert "No cycles are allowed in modulecontrol.records" in result.stdout

"""Shared pieces of the twin tests: the worked examples of docs/digital-twin.md are run as
written, so every test that runs one reads the page's commands, works in a copy of the
lomustine plant and parses the fit's printed estimates the same way (imported as ``from
tests.twin.conftest import ...``; ``workdir`` is a fixture)."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLANT = ROOT / "recipes" / "lomustine" / "plant.yaml"
PAGE = ROOT / "docs" / "digital-twin.md"
ESTIMATE = re.compile(r"^(\S+) = (\S+) .*95% CI \[(\S+), (\S+)\]", re.M)
"""One line of ``twin fit``'s estimates: name, value, interval low and high."""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The lomustine plant copied to an empty directory, as the worked example assumes."""
    for name in ("plant.yaml", "species.yaml"):
        shutil.copy(PLANT.parent / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def estimates(stdout: str) -> dict[str, tuple[float, float, float]]:
    """``twin fit``'s printed estimates: name -> (value, low, high)."""
    return {m[1]: (float(m[2]), float(m[3]), float(m[4])) for m in ESTIMATE.finditer(stdout)}


def doc_block(marker: str, lang: str) -> str:
    """The first ``lang`` block after ``marker`` on the page."""
    text = PAGE.read_text(encoding="utf-8")
    return text.split(f"<!-- {marker} -->", 1)[1].split(f"```{lang}", 1)[1].split("```", 1)[0]


def doc_commands(marker: str) -> list[list[str]]:
    """The ``$ modulecontrol ...`` lines of the console block after ``marker``."""
    block = doc_block(marker, "console")
    return [shlex.split(line[2:])[1:] for line in block.splitlines() if line.startswith("$ ")]

"""docs/compliance.md: every row of every table names at least one test, and every test it
names exists (the file is there and defines that test function, read with ``ast``, so a
renamed or deleted test breaks the map here rather than silently). ``make test`` runs the
named tests themselves."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "docs" / "compliance.md"
NODE = re.compile(r"`(?P<file>tests/[\w/]+\.py)::(?P<name>[\w:]+)`")


def _rows() -> list[tuple[int, str]]:
    """Body rows of every table: ``|`` lines after a header and its ``---`` separator."""
    out: list[tuple[int, str]] = []
    lines = MAP.read_text(encoding="utf-8").splitlines()
    in_table = False
    for n, line in enumerate(lines, 1):
        if not line.startswith("|"):
            in_table = False
            continue
        if re.fullmatch(r"\|( *:?-+:? *\|)+", line.replace(" ", "")):
            in_table = True
            continue
        if in_table:
            out.append((n, line))
    return out


@cache
def _defined(file: str) -> frozenset[str]:
    """``name`` and ``Class::name`` of every test function the file defines."""
    path = ROOT / file
    if not path.is_file():
        return frozenset()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{f.name}" for f in node.body
                      if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)}
    return frozenset(n for n in names if n.split("::")[-1].startswith("test"))


ROWS = _rows()


def test_the_map_has_the_clauses_it_promises() -> None:
    text = MAP.read_text(encoding="utf-8")
    for clause in ("§11.10(a)", "§11.10(b)", "§11.10(c)", "§11.10(d)", "§11.10(e)",
                   "§11.10(f)", "§11.10(g)", "§11.10(h)", "§11.10(k)", "§11.50(a)",
                   "§11.70", "§11.100(a)", "§11.200(a)", "§11.300(a)", "§11.300(d)",
                   "Annex 11 §9", "Annex 11 §11", "Annex 11 §14"):
        assert any(clause in row for _, row in ROWS), f"no row for {clause}"
    # §11.10(i), (j) and the rest that software cannot do are named as the site's
    procedural = text[text.index("## The site's procedural responsibility"):]
    for clause in ("§11.10(i)", "§11.10(j)", "§11.100(b)", "§11.300(b)"):
        assert clause in procedural
    assert len(ROWS) >= 20


@pytest.mark.parametrize(("line", "row"), ROWS, ids=[f"compliance.md:{n}" for n, _ in ROWS])
def test_every_row_names_tests_that_exist(line: int, row: str) -> None:
    nodes = NODE.findall(row)
    assert nodes, f"docs/compliance.md:{line}: the row names no test (`tests/...py::test_...`)"
    for file, name in nodes:
        assert (ROOT / file).is_file(), f"docs/compliance.md:{line}: no file {file}"
        assert name in _defined(file), (
            f"docs/compliance.md:{line}: {file} defines no test '{name}'")


def test_the_checker_catches_a_row_without_a_test_and_a_missing_test() -> None:
    assert not NODE.findall("| §11.10(z) | something | a feature | none yet |")
    assert "test_no_such_test" not in _defined("tests/test_compliance_map.py")
    assert "test_every_row_names_tests_that_exist" in _defined("tests/test_compliance_map.py")

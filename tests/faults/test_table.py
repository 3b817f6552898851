"""The fault-matrix table check: what is drift and what is not, and that the committed
table is well formed. Runs without the matrix itself (fast); the matrix applies the same
:func:`drift` to what it measured."""

from __future__ import annotations

import dataclasses

from tests.faults._rig import TRANSPORTS
from tests.faults.conftest import TABLE, CellResult, committed_rows, drift, render
from tests.faults.test_fault_matrix import FAULTS


def _cells(limit: str = "") -> list[CellResult]:
    return [CellResult("Modbus TCP", f, f"sim fault {f}", 0.3, 0.67, detect=0.05 * (i + 1),
                       fault_text="communication lost", reaction="recipe Held", recover=0.05,
                       records="samples before yes", records_ok=True,
                       limit=limit if f == "garbage" else "", sim_before=1.0, sim_after=2.0)
            for i, f in enumerate(FAULTS)]


def test_a_table_matches_the_results_it_was_rendered_from() -> None:
    cells = _cells()
    assert drift(cells, render(cells), "t.md") == []


def test_measured_times_are_not_drift() -> None:
    committed = render(_cells(limit="framers resynchronise"))
    remeasured = [dataclasses.replace(c, detect=c.bound * (2 if c.limit else 0.9), recover=3.0)
                  for c in _cells(limit="framers resynchronise")]
    assert drift(remeasured, committed, "t.md") == []
    assert "(late)" in render(remeasured)  # shown, not compared


def test_a_changed_verdict_is_drift_and_names_the_line() -> None:
    committed = render(_cells())
    failing = _cells()
    failing[2].reaction = "recipe Execute"
    problems = drift(failing, committed, "docs/t.md")
    assert len(problems) == 1
    line = 5 + 2  # comment, blank, header, rule, then the rows
    assert problems[0].startswith(f"docs/t.md:{line}: Modbus TCP / {FAULTS[2]}, column 'result'")


def test_a_new_limit_or_bound_is_drift() -> None:
    committed = render(_cells())
    assert drift(_cells(limit="new limit"), committed, "t.md")
    assert drift([dataclasses.replace(c, bound=0.9) for c in _cells()], committed, "t.md")


def test_missing_or_extra_rows_are_drift() -> None:
    cells = _cells()
    assert drift(cells, render(cells[:-1]), "t.md")
    assert drift(cells[:-1], render(cells), "t.md")
    other = [dataclasses.replace(c, transport="OPC UA") for c in cells]
    assert drift(other, render(cells), "t.md") == ["t.md: no rows for 'OPC UA'"]


def test_the_committed_table_has_every_cell_in_order() -> None:
    rows = committed_rows(TABLE.read_text())
    got = [(r["transport"], r["fault"]) for _, r in rows]
    assert got == [(t.label, f) for t in TRANSPORTS.values() for f in FAULTS]
    assert all(r["result"].startswith("pass") for _, r in rows), "a committed FAIL"

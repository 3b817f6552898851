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

from modulecontrol.records import Historian, RunResult, run_samples

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


def copy_run_from(src: str | Path, run: int, dst: str | Path, since: float) -> int:
    """Copy run ``run`` of ``src`` into ``dst`` as a run that starts ``since`` s after it:
    what a recording begun on a line already running holds. Each signal's value held at
    the new start (its last sample before it: the set points written earlier, the outputs
    where the line was) is recorded at the start, as a session polls every tag when it
    starts recording; later samples and events are copied as they were. Returns the new
    run's id."""
    data = run_samples(src, run)
    start = data.run.t_start + since
    hist = Historian(dst, clock=lambda: start)
    try:
        new = hist.start_run_nowait(data.run.recipe_name, parameters=data.run.parameters,
                                    t=start).result()
        for s, (ts, vs) in sorted(data.series.items()):
            before = ts < start
            if before.any():
                hist.record_sample(s, float(vs[before][-1]), t=start)
            for t, v in zip(ts[~before], vs[~before], strict=True):
                hist.record_sample(s, float(v), t=float(t))
        for t, kind, source, payload in data.events:
            if t >= start and kind not in ("run_start", "run_end", "run_started",
                                           "run_ended"):
                hist.record_event(kind, source, payload, run_id=new, t=t)
        hist.end_run_nowait(new, RunResult.COMPLETED, t=data.t_end).result()
    finally:
        hist.close_sync()
    return new

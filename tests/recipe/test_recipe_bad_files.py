"""Every recipe in bad/ must fail with the located error its first line announces."""

from __future__ import annotations

from pathlib import Path

import pytest

from modulecontrol.descriptors import validate_file
from modulecontrol.errors import ConfigError

BAD = sorted((Path(__file__).parent / "bad").glob("*.yaml"))


def _expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks an '# expect:' line"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_recipe_gives_located_error(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        validate_file(path)
    got = [
        f"{p.location.line}:{p.location.col}: {p.message}" if p.location else p.message
        for p in info.value.problems
    ]
    expected = _expected(path)
    assert any(g.startswith(expected) for g in got), "\n".join(got)
    for p in info.value.problems:
        assert p.location is not None and p.location.file == str(path)
        assert p.location.line >= 1 and p.location.col >= 1


def test_there_are_bad_recipes() -> None:
    assert len(BAD) >= 40

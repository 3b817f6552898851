"""Every recipe in bad/ must fail with the located error its first line announces."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._bad_files import assert_located_error, bad_files

BAD = bad_files(Path(__file__).parent / "bad")


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_recipe_gives_located_error(path: Path) -> None:
    assert_located_error(path)


def test_there_are_bad_recipes() -> None:
    assert len(BAD) >= 40

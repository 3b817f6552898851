"""The corpus check of ``bad/`` folders (descriptors, recipes): each file must fail with the
located error its first line announces (``# expect: LINE:COL: message``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modulecontrol.descriptors import validate_file
from modulecontrol.errors import ConfigError


def bad_files(folder: Path) -> list[Path]:
    """The YAML files of ``folder``, sorted (stable test ids)."""
    return sorted(folder.glob("*.yaml"))


def _expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks an '# expect:' line"
    return first.removeprefix("# expect: ")


def assert_located_error(path: Path) -> None:
    """``path`` fails validation with its announced problem, and every problem is located in
    it (``path:line:col``, both from 1)."""
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
        assert str(p).startswith(f"{path}:")

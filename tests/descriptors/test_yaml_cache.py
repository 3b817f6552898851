"""The parsed-YAML cache (modulecontrol.yamlio, MODULECONTROL_YAML_CACHE): a document from the
cache is the document the parser gives (data, every line and column, the file named in
errors), errors are never cached, a directory others may write to is never used, a broken
entry is dropped, and the cache stays bounded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modulecontrol import yamlio
from modulecontrol.errors import ConfigError
from modulecontrol.yamlio import YamlDoc, dump_yaml, load_yaml, load_yaml_text

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted([*(ROOT / "modulecontrol" / "descriptors" / "builtin").glob("*.yaml"),
                  *(ROOT / "recipes" / "lomustine").glob("*.yaml")])


def _same(a: YamlDoc, b: YamlDoc) -> None:
    assert a.data == b.data
    assert json.dumps(a.data) == json.dumps(b.data)  # types and key order too
    assert a.values == b.values
    assert a.keys == b.keys
    assert a.file == b.file


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "yaml"
    monkeypatch.setenv(yamlio.CACHE_ENV, str(folder))
    return folder


def _uncached(path: Path, monkeypatch: pytest.MonkeyPatch) -> YamlDoc:
    with monkeypatch.context() as m:
        m.setenv(yamlio.CACHE_ENV, "off")
        return load_yaml(path)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_a_cached_document_is_the_parsed_one(path: Path, cache: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = _uncached(path, monkeypatch)
    first = load_yaml(path)     # parses and stores
    assert len(_entries(cache)) == 1
    second = load_yaml(path)    # from the cache
    _same(parsed, first)
    _same(parsed, second)
    second.data["changed"] = 1  # each load is a fresh object: no caller sees another's edits
    assert "changed" not in load_yaml(path).data


def test_the_location_of_a_problem_is_the_same_from_the_cache(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plant = ROOT / "recipes" / "lomustine" / "plant.yaml"
    parsed = _uncached(plant, monkeypatch)
    load_yaml(plant)
    cached = load_yaml(plant)
    for path in list(parsed.values)[::7]:
        assert cached.locate(path) == parsed.locate(path)
        assert cached.locate(path, key=True) == parsed.locate(path, key=True)


def test_an_error_is_never_cached(cache: Path) -> None:
    text = "name: demo\nitems:\n  - a: 1\n   b: 2\n" + "# padding\n" * 30
    messages = []
    for _ in range(2):
        with pytest.raises(ConfigError) as exc:
            load_yaml_text(text, "bad.yaml")
        messages.append(str(exc.value))
    assert messages[0] == messages[1] and "bad.yaml:4" in messages[0]
    assert _entries(cache) == []


def test_a_duplicate_key_is_refused_every_time(cache: Path) -> None:
    """The checks of the parser (here: duplicate keys) are not skipped by the cache: a text
    that fails is never stored, and a text that parsed is only ever the same text."""
    good = "a: 1\nb: 2\n" + "# padding\n" * 30
    load_yaml_text(good)
    assert len(_entries(cache)) == 1
    with pytest.raises(ConfigError, match="duplicate"):
        load_yaml_text(good + "a: 3\n")


def test_a_directory_others_may_write_is_not_used(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv(yamlio.CACHE_ENV, str(shared))
    path = ROOT / "recipes" / "lomustine" / "plant.yaml"
    _same(load_yaml(path), _uncached(path, monkeypatch))
    assert list(shared.iterdir()) == []


def test_the_default_directory_is_the_users_own(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(yamlio.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    load_yaml(ROOT / "recipes" / "lomustine" / "plant.yaml")
    folder = tmp_path / "modulecontrol" / "yaml"
    assert len(_entries(folder)) == 1
    assert (folder.stat().st_mode & 0o777) == 0o700


@pytest.mark.parametrize("damage", [
    lambda b: b[:20],                                   # a write cut short
    lambda b: b"[]",                                    # valid JSON, wrong shape
    lambda b: b'{"data": 1, "values": [[1]], "keys": []}',  # wrong shape inside
], ids=["truncated", "not-an-entry", "bad-locations"])
def test_a_broken_entry_is_dropped_and_the_text_parsed(
        damage: Any, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "recipes" / "lomustine" / "plant.yaml"
    expected = _uncached(path, monkeypatch)
    load_yaml(path)
    [entry] = _entries(cache)
    entry.write_bytes(damage(entry.read_bytes()))
    _same(load_yaml(path), expected)   # parsed again (and stored again)...
    [again] = _entries(cache)
    _same(load_yaml(path), expected)   # ...and read from the rebuilt entry
    assert again.stat().st_size > 100


def test_the_cache_keeps_at_most_its_bound(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlio, "MAX_CACHED_DOCUMENTS", 3)
    for i in range(6):
        load_yaml_text(f"index: {i}\n" + "# padding\n" * 30)
    assert len(_entries(cache)) == 3
    assert [p for p in cache.iterdir() if p.suffix != ".json"] == []  # no temporary left


def test_short_documents_are_not_stored(cache: Path) -> None:
    load_yaml_text("a: 1\n")
    assert _entries(cache) == []


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                     st.floats(allow_nan=False, allow_infinity=True),
                     st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12))
_plain = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.text("abcdefgh_", min_size=1, max_size=6), inner, max_size=4)),
    max_leaves=25)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(st.text("abcdefgh_", min_size=1, max_size=6), _plain,
                            min_size=1, max_size=6))
def test_any_document_reads_back_the_same_from_the_cache(
        data: dict[str, Any], cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = dump_yaml(data) + "# padding to be cached\n" * 10
    with monkeypatch.context() as m:
        m.setenv(yamlio.CACHE_ENV, "off")
        parsed = load_yaml_text(text, "gen.yaml")
    first = load_yaml_text(text, "gen.yaml")
    second = load_yaml_text(text, "gen.yaml")
    _same(parsed, first)
    _same(parsed, second)


def test_a_text_cached_under_wider_bounds_is_checked_again(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The composer's bounds are part of the key: narrowing one (an embedding program may)
    parses again, and refuses, what was stored under the wider one."""
    text = "a: [" + ", ".join(str(i) for i in range(100)) + "]\n"
    assert len(load_yaml_text(text).data["a"]) == 100
    assert len(_entries(cache)) == 1
    monkeypatch.setattr(yamlio, "MAX_YAML_NODES", 50)
    with pytest.raises(ConfigError, match="over 50 nodes"):
        load_yaml_text(text)

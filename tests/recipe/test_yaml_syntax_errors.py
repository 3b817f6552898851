"""YAML syntax errors say what is wrong in words (tabs, indentation) and point at the cause."""

from __future__ import annotations

import pytest

from modulecontrol.errors import ConfigError
from modulecontrol.yamlio import load_yaml_text


def _problem(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_yaml_text(text, "f.yaml")
    (p,) = info.value.problems
    return str(p)


def test_tab_is_named_and_located_at_the_tab() -> None:
    # the parser stops at line 4; the tab that broke the block is on line 4, column 2
    got = _problem("a: 1\nb:\n  c: 1\n \t d: 2\n")
    assert got.startswith("f.yaml:4:2: YAML syntax: YAML does not allow tab characters for"
                          " indentation: use spaces")


def test_tab_inside_a_quoted_value_is_fine() -> None:
    assert load_yaml_text("a: 'x\ty'\n").data == {"a": "x\ty"}


def test_dedented_key_says_indentation_and_the_columns() -> None:
    got = _problem("a:\n  b: 1\n c: 2\n")
    assert got.startswith("f.yaml:3:2: YAML syntax: check the indentation of this line"
                          " relative to the previous key")
    assert "it starts in column 2, the line above in column 3" in got
    assert "(parser: expected <block end>" in got  # the parser's words stay, after ours


def test_list_and_mapping_mixed() -> None:
    got = _problem("steps:\n  - wait: 1\n  name: x\n")
    assert "a block is a list ('- item' lines) or a mapping" in got


def test_over_indented_value_mentions_quoting() -> None:
    got = _problem("a: 1\n  b: 2\n")
    assert "indentation" in got and "quote a value that contains ': '" in got

"""Fuzzing every loader (plant, module type, recipe, fault scenario, MTP manifest) with
documents mutated from the shipped examples: no traceback, no hang, memory bounded.

``make test`` runs a short profile; ``make fuzz`` runs many more examples (docs/reliability.md).
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.descriptors import (
    PlantConfig,
    builtin_type_files,
    load_plant,
    module_type_from_text,
    plant_from_doc,
)
from modulecontrol.mtp import export_manifest, import_manifest
from modulecontrol.recipe import validate_recipe_doc
from modulecontrol.simulators import check_plant, scenario_from_doc
from modulecontrol.yamlio import dump_yaml, iter_paths, load_yaml_text
from tests.fuzz._harness import PROFILE, check_loader

ROOT = Path(__file__).resolve().parents[2]
LOMUSTINE = ROOT / "recipes" / "lomustine"
PLANT = LOMUSTINE / "plant.yaml"
RECIPE = LOMUSTINE / "campaign.yaml"
SCENARIO = LOMUSTINE / "faults" / "amine_pump_stall.yaml"
MANIFEST = ROOT / "tests" / "mtp" / "data" / "HC30_Stirring_V8.aml"
TYPE_FILES = builtin_type_files()

TOKENS = ["&a ", "*a", "<<: *a", "!!set ", "!!str ", "!custom ", "nan", ".inf", "-.inf", "1e999",
          "(", ")", "mL/min", "degC", "1/0", "m**1e400", "\\ud800", "'", '"', ":", "- ", "? ",
          "[", "]", "{", "}", "#", "|", ">", "\n", "\n  ", "\t", "~", "null", "0x10", "%YAML 1.1\n",
          "---\n", "...\n", "kind: Recipe", "kind: Plant", "\x00", "\ufeff"]
XML_TOKENS = [b"<", b">", b"</", b"/>", b"&amp;", b"&x;", b"<!DOCTYPE a>", b'encoding="UTF-7"',
              b"<InternalElement>", b"</InternalElement>", b"<Attribute Name=\"RefID\">",
              b"<Value>", b"</Value>", b"\x00", b"\xff", b"]]>", b"<![CDATA[", b"<?pi?>",
              b"nan", b'ID="x"', b'RefBaseSystemUnitPath="MTPDataObjectSUCLib/DataAssembly"']


@functools.cache
def _plant() -> PlantConfig:
    return load_plant(PLANT)


def _mutate_text(data: st.DataObject, text: str) -> str:
    """Up to three edits: delete a span, insert tokens, or duplicate a span."""
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 200)))
        op = data.draw(st.sampled_from(["delete", "insert", "duplicate"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            extra = data.draw(st.lists(st.sampled_from(TOKENS) | st.text(max_size=8),
                                       min_size=1, max_size=4))
            text = text[:i] + "".join(extra) + text[i:]
        else:
            text = text[:j] + text[i:j] * data.draw(st.integers(1, 20)) + text[j:]
    return text


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from(TOKENS)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)


def _replace_value(data: st.DataObject, text: str) -> str:
    """Replace one value of the document's data with a generated one, and dump it again."""
    tree: Any = load_yaml_text(text).data
    paths = [p for p in iter_paths(tree) if p]
    path = data.draw(st.sampled_from(paths))
    parent = tree
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = data.draw(JSONISH)
    return dump_yaml(tree)


def _document(data: st.DataObject, text: str) -> str:
    if data.draw(st.booleans()):
        return _mutate_text(data, text)
    return _replace_value(data, text)


def _fuzz(data: st.DataObject, seed: Path, load: Callable[[str], object]) -> None:
    text = _document(data, seed.read_text(encoding="utf-8"))
    check_loader(lambda: load(text))


@PROFILE
@given(st.data())
def test_fuzz_module_types(data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(TYPE_FILES))
    _fuzz(data, seed, lambda text: module_type_from_text(text, str(seed)))


@settings(PROFILE, max_examples=max(8, PROFILE.max_examples // 3))  # ~1 s a case: fewer
@given(st.data())
def test_fuzz_plant(data: st.DataObject) -> None:
    """The plant as ``validate`` and ``run --simulate`` load it: schema, types, simulation."""
    def load(text: str) -> None:  # named as the shipped file, so its species file resolves
        check_plant(plant_from_doc(load_yaml_text(text, str(PLANT))))

    _fuzz(data, PLANT, load)


@PROFILE
@given(st.data())
def test_fuzz_recipe(data: st.DataObject) -> None:
    plant = _plant()
    _fuzz(data, RECIPE, lambda text: validate_recipe_doc(load_yaml_text(text, str(RECIPE)),
                                                         plant))


@PROFILE
@given(st.data())
def test_fuzz_scenario(data: st.DataObject) -> None:
    plant = _plant()
    _fuzz(data, SCENARIO, lambda text: scenario_from_doc(load_yaml_text(text, str(SCENARIO)),
                                                         plant))


@functools.cache
def _small_manifest() -> bytes:
    return export_manifest(module_type_from_text(TYPE_FILES[0].read_text(encoding="utf-8"),
                                                 str(TYPE_FILES[0])))


@PROFILE
@given(st.data())
def test_fuzz_manifest(data: st.DataObject) -> None:
    big = data.draw(st.integers(0, 9)) == 0  # the 541 kB reference manifest now and then
    raw = MANIFEST.read_bytes() if big else _small_manifest()
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw)))
        j = data.draw(st.integers(i, min(len(raw), i + 200)))
        op = data.draw(st.sampled_from(["delete", "insert", "duplicate"]))
        if op == "delete":
            raw = raw[:i] + raw[j:]
        elif op == "insert":
            raw = raw[:i] + b"".join(data.draw(st.lists(
                st.sampled_from(XML_TOKENS) | st.binary(max_size=8), min_size=1, max_size=4))
            ) + raw[i:]
        else:
            raw = raw[:j] + raw[i:j] * data.draw(st.integers(1, 20)) + raw[j:]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.aml"
        path.write_bytes(raw)
        check_loader(lambda: import_manifest(path))

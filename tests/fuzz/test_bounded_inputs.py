"""Regression tests for issue #14 finding 7: small inputs exhausting memory, and tracebacks
instead of located errors. Each test fails on the code before the fix."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import pytest

from modulecontrol.descriptors import load_plant, validate_file
from modulecontrol.errors import ConfigError
from modulecontrol.mtp import _xml, import_manifest
from modulecontrol.simulators import check_plant
from modulecontrol.units import UnitError, convert, parse_unit
from modulecontrol.yamlio import (
    MAX_YAML_ALIASES,
    MAX_YAML_DEPTH,
    MAX_YAML_LINE,
    MAX_YAML_NODES,
    load_yaml_text,
)

ROOT = Path(__file__).resolve().parents[2]
LOMUSTINE = ROOT / "recipes" / "lomustine"


def _bomb(levels: int) -> str:
    """The classic alias bomb: each level a list of nine aliases of the level below."""
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_at_the_alias_before_expanding() -> None:
    text = _bomb(9)  # 9**10 nodes once expanded, in about 400 bytes
    assert len(text) < 600
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as err:
            load_yaml_text(text, "bomb.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    (problem,) = err.value.problems
    assert problem.location is not None and problem.location.file == "bomb.yaml"
    assert problem.location.line > 1 and problem.location.col > 1
    assert "alias '*a" in problem.message and str(MAX_YAML_NODES) in problem.message
    assert peak < 20_000_000


def test_alias_cycle_and_too_many_aliases_and_depth_are_refused() -> None:
    with pytest.raises(ConfigError, match="cycle"):
        load_yaml_text("a: &a [1, *a]\n", "c.yaml")
    many = "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_YAML_ALIASES + 1)) + "]\n"
    with pytest.raises(ConfigError, match=f"more than {MAX_YAML_ALIASES} aliases"):
        load_yaml_text(many, "m.yaml")
    deep = "a: " + "[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1) + "\n"
    with pytest.raises(ConfigError, match=f"more than {MAX_YAML_DEPTH} levels"):
        load_yaml_text(deep, "d.yaml")


def test_a_very_long_line_is_refused_before_parsing() -> None:
    """A 200 kB comment line took ruamel 4 s (more than linear in the line's length)."""
    text = "a: 1\n#" + "x" * (20 * MAX_YAML_LINE) + "\n"
    with pytest.raises(ConfigError) as err:
        load_yaml_text(text, "long.yaml")
    assert str(err.value).startswith("long.yaml:2:1: line is longer than")


def test_a_few_aliases_still_load() -> None:
    doc = load_yaml_text("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\nlist: [*b, *b]\n")
    assert doc.data["other"] == {"x": 1, "y": 2}
    assert doc.data["list"] == [{"x": 1}, {"x": 1}]


@pytest.mark.parametrize("text", ["name: !!set x\n", "a: !!python/name:os.system x\n",
                                  "a: !custom 1\n", "a: !!map x\n", "a: !!str [1]\n"])
def test_foreign_tags_are_located_errors(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_yaml_text(text, "t.yaml")
    assert str(err.value).startswith("t.yaml:1:") and ": tag '!" in str(err.value)


@pytest.mark.parametrize("unit", ["(", ")", "m)", "1/0", "m**(", "m**1e400"])
def test_malformed_units_are_unit_errors(unit: str) -> None:
    with pytest.raises(UnitError):
        parse_unit(unit)


def test_conversion_overflow_is_refused() -> None:
    with pytest.raises(UnitError, match="out of range"):
        convert("1e308 km", "mm")


def test_malformed_unit_in_a_module_type_is_located(tmp_path: Path) -> None:
    text = (ROOT / "modulecontrol" / "descriptors" / "builtin" / "syringe_pump.yaml").read_text()
    assert "unit: mL/min" in text
    path = tmp_path / "pump.yaml"
    path.write_text(text.replace("unit: mL/min", 'unit: "("', 1))
    with pytest.raises(ConfigError) as err:
        validate_file(path)
    assert all(p.location is not None and p.location.line > 0 for p in err.value.problems)


def test_manifest_in_an_undecodable_encoding_is_located(tmp_path: Path) -> None:
    path = tmp_path / "u7.aml"
    path.write_bytes(b'<?xml version="1.0" encoding="UTF-7"?>\n<CAEXFile/>')
    with pytest.raises(ConfigError) as err:
        import_manifest(path)
    assert str(err.value).startswith(f"{path}:1:")
    assert "UTF-8" in str(err.value)


def test_dense_manifest_is_refused_in_bounded_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a tree of every element, ~80x the file; now kept elements are capped."""
    monkeypatch.setattr(_xml, "MAX_MANIFEST_ELEMENTS", 20_000)
    path = tmp_path / "dense.aml"
    path.write_bytes(b"<CAEXFile><InstanceHierarchy>" + b"<InternalElement/>" * 40_000
                     + b"</InstanceHierarchy></CAEXFile>")
    with pytest.raises(ConfigError, match="more than 20000 CAEX elements") as err:
        _xml.parse_file(path)
    assert str(err.value).startswith(f"{path}:1:")


def test_only_what_the_reader_uses_is_kept(tmp_path: Path) -> None:
    """Skipped subtrees and attributes cost no memory: they never enter the tree."""
    path = tmp_path / "skipped.aml"
    path.write_bytes(b'<CAEXFile SchemaVersion="3.0"><InstanceHierarchy Name="IH">'
                     b'<InternalElement Name="E" Vendor="v">'
                     + b'<RoleRequirements RefBaseRoleClassPath="x"><Attribute Name="a"/>'
                       b"</RoleRequirements>" * 50_000
                     + b"</InternalElement></InstanceHierarchy></CAEXFile>")
    doc = _xml.parse_file(path)
    assert [n.tag for n in doc.root.iter()] == ["CAEXFile", "InstanceHierarchy",
                                                "InternalElement"]
    assert dict(doc.root.children[0].children[0].attrib) == {"Name": "E"}


def _nan_plant(tmp_path: Path) -> Path:
    for f in ("plant.yaml", "species.yaml"):
        shutil.copy(LOMUSTINE / f, tmp_path / f)
    plant = tmp_path / "plant.yaml"
    text = plant.read_text()
    assert "properties: {volume: 3.0 mL}" in text
    plant.write_text(text.replace("properties: {volume: 3.0 mL}", "properties: {volume: nan mL}"))
    return plant


def test_nan_volume_is_refused_by_validate_where_run_would_refuse_it(tmp_path: Path) -> None:
    plant = _nan_plant(tmp_path)
    with pytest.raises(ConfigError) as err:
        check_plant(load_plant(plant))
    (problem,) = err.value.problems
    assert problem.location is not None and problem.location.file == str(plant)
    assert problem.location.line > 1
    assert "volume: value must be finite" in problem.message


def test_validate_and_run_cli_refuse_nan_volume(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from modulecontrol.cli import app

    plant = _nan_plant(tmp_path)
    recipe = tmp_path / "campaign.yaml"
    shutil.copy(LOMUSTINE / "campaign.yaml", recipe)
    runner = CliRunner()
    out = runner.invoke(app, ["validate", str(plant)])
    assert out.exit_code == 1 and "must be finite" in out.output
    out = runner.invoke(app, ["run", str(recipe), "--simulate", "--db",
                              str(tmp_path / "r.db"), "--no-live", "--yes"])
    assert out.exit_code == 2, out.output
    assert f"{plant}:" in out.output and "must be finite" in out.output

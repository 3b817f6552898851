"""Descriptor models: shipped files validate, YAML round trips, limits, plants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modulecontrol.descriptors import (
    ModuleType,
    builtin_type_files,
    builtin_types,
    dump_model,
    load_plant,
    module_type_from_text,
    validate_file,
)
from modulecontrol.descriptors._plant import Plant
from modulecontrol.errors import ConfigError
from modulecontrol.mtpcore import DA_ATTRIBUTES
from modulecontrol.yamlio import load_yaml_text

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_PLANTS = sorted((ROOT / "recipes").rglob("plant*.yaml"))


def test_builtin_types_present() -> None:
    names = set(builtin_types())
    assert {
        "HPLCPump",
        "SyringePump",
        "CoilReactor",
        "MSMPRCrystallizer",
        "DivertValve",
        "PATAnalyzer",
        "Thermostat",
        "BackPressureRegulator",
        "TMixer",
    } <= names


@pytest.mark.parametrize("path", builtin_type_files(), ids=lambda p: p.stem)
def test_builtin_file_validates_and_round_trips(path: Path) -> None:
    mt = validate_file(path)
    assert isinstance(mt, ModuleType)
    again = module_type_from_text(dump_model(mt))
    assert again == mt


@pytest.mark.parametrize("path", SHIPPED_PLANTS, ids=lambda p: p.parent.name)
def test_shipped_plants_validate(path: Path) -> None:
    cfg = load_plant(path)
    assert cfg.plant.modules
    again = Plant.model_validate(load_yaml_text(dump_model(cfg.plant)).data)
    assert again == cfg.plant


def test_expected_services() -> None:
    lib = builtin_types()
    assert {p.name for p in lib.get("HPLCPump").service("Dosing").procedures} == {
        "Continuous",
        "Volume",
    }
    assert lib.get("HPLCPump").service("Dosing").procedure("Volume").self_completing
    assert lib.get("CoilReactor").service("Tempering")
    assert lib.get("MSMPRCrystallizer").service("Crystallize")
    assert lib.get("DivertValve").service("Divert")
    assert lib.get("PATAnalyzer").service("Measure")


def test_limits_and_units_are_converted() -> None:
    mt = module_type_from_text(
        "kind: ModuleType\nname: X\ndata_assemblies:\n"
        "  - {name: F, class: AnaServParam, unit: mL/min, min: 0, max: 0.5 L/h}\n"
    )
    da = mt.assembly("F")
    assert da.max == pytest.approx(0.5 * 1000 / 60)
    assert da.coerce("60 uL/min") == pytest.approx(0.06)
    with pytest.raises(ValueError, match="outside its limits"):
        da.coerce("10 mL/min")
    with pytest.raises(ValueError, match="cannot be expressed"):
        da.coerce("3 bar")


def test_min_above_max_rejected() -> None:
    with pytest.raises(ConfigError, match="greater than max"):
        module_type_from_text(
            "kind: ModuleType\nname: X\ndata_assemblies:\n"
            "  - {name: F, class: AnaServParam, unit: bar, min: 5, max: 1}\n"
        )


def test_all_problems_reported_at_once() -> None:
    text = (
        "kind: ModuleType\nname: X\ndata_assemblies:\n"
        "  - {name: A, class: AnaView, colour: red}\n"
        "  - {name: B, class: BinView, unit: furlong/fortnight, size: 3}\n"
    )
    with pytest.raises(ConfigError) as info:
        module_type_from_text(text, "x.yaml")
    lines = [str(p) for p in info.value.problems]
    assert any(line.startswith("x.yaml:4:") and "colour" in line for line in lines)
    assert any(line.startswith("x.yaml:5:") and "size" in line for line in lines)


def test_unknown_kind_suggests(tmp_path: Path) -> None:
    p = tmp_path / "k.yaml"
    p.write_text("kind: Plnat\nname: p\n")
    with pytest.raises(ConfigError, match="did you mean 'Plant'"):
        validate_file(p)


# -- property tests -----------------------------------------------------------------------

_names = st.from_regex(r"[A-Z][A-Za-z0-9]{0,8}", fullmatch=True)
_units = st.sampled_from(["", "mL/min", "bar", "degC", "mL", "%", "K/min", "mol/L"])


@st.composite
def module_types(draw: st.DrawFn) -> dict[str, Any]:
    das: list[dict[str, Any]] = []
    names = draw(st.lists(_names, min_size=1, max_size=6, unique=True))
    for i, name in enumerate(names):
        cls = draw(st.sampled_from(sorted(DA_ATTRIBUTES)))
        da: dict[str, Any] = {"name": name, "class": cls}
        if cls in ("AnaView", "AnaMon", "AnaServParam", "AnaMan"):
            da["unit"] = draw(_units)
            lo = draw(st.floats(-1e6, 1e6, allow_nan=False))
            hi = draw(st.floats(lo, lo + 1e6, allow_nan=False))
            da["min"], da["max"] = lo, hi
        if draw(st.booleans()) and cls not in ("StringView", "StringServParam"):
            attr = draw(st.sampled_from(DA_ATTRIBUTES[cls]))
            da["bindings"] = {
                attr: {"modbus": {"table": "holding", "address": i * 4, "type": "float32"}}
            }
        das.append(da)
    params = [d["name"] for d in das if d["class"].endswith("ServParam")]
    services = []
    if draw(st.booleans()):
        services.append(
            {
                "name": "Svc",
                "procedures": [
                    {"name": "P1", "id": 1, "parameters": params},
                    {"name": "P2", "id": 2, "self_completing": True},
                ],
            }
        )
    return {
        "kind": "ModuleType",
        "name": draw(_names),
        "data_assemblies": das,
        "services": services,
    }


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(module_types())
def test_yaml_round_trip_property(data: dict[str, Any]) -> None:
    mt = ModuleType.model_validate(data)
    text = dump_model(mt)
    assert module_type_from_text(text) == mt


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_loader_never_raises_anything_but_config_error(text: str) -> None:
    try:
        module_type_from_text(text)
    except ConfigError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.location is not None


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "kind",
                        "name",
                        "modules",
                        "tag",
                        "type",
                        "endpoint",
                        "protocol",
                        "connections",
                        "from",
                        "to",
                        "data_assemblies",
                        "class",
                        "x",
                    ]
                ),
                c,
                max_size=5,
            )
        ),
        max_leaves=20,
    )
)
def test_plant_loader_on_random_structures(data: Any) -> None:
    from modulecontrol.descriptors import plant_from_doc
    from modulecontrol.yamlio import YamlDoc

    try:
        plant_from_doc(YamlDoc(data, "<fuzz>"))
    except ConfigError as exc:
        assert exc.problems


@pytest.mark.parametrize(("path", "kind"), [("recipes/lomustine/plant.yaml", "Plant"),
                                             ("recipes/lomustine/campaign.yaml", "Recipe")])
def test_a_document_of_another_kind_is_one_clear_error(path: str, kind: str) -> None:
    # not a screenful of 'unknown key' errors that all follow from the wrong kind
    with pytest.raises(ConfigError) as info:
        module_type_from_text((ROOT / path).read_text(), path)
    (problem,) = info.value.problems
    assert problem.message == f"this is a {kind} document, not a ModuleType"
    assert problem.location is not None and problem.location.line > 0


@pytest.mark.parametrize("text", ["\ufeff<CAEXFile SchemaVersion='3.0'>\n  <a/>\n</CAEXFile>\n",
                                  "<?xml version='1.0'?>\n<CAEXFile/>"])
def test_xml_is_recognised_and_pointed_to_mtp(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml_text(text, "HC30.aml")
    (problem,) = info.value.problems
    assert "this is XML, not YAML" in problem.message and "mtp check" in problem.message

"""Recipes generated from the grammar validate or fail with located problems, nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modulecontrol.descriptors import PlantConfig, load_plant
from modulecontrol.errors import ConfigError
from modulecontrol.recipe import load_recipe
from modulecontrol.yamlio import dump_yaml

ROOT = Path(__file__).resolve().parents[2]
_PLANT: PlantConfig | None = None


def _plant() -> PlantConfig:
    global _PLANT
    if _PLANT is None:
        _PLANT = load_plant(ROOT / "recipes" / "lomustine" / "plant.yaml")
    return _PLANT


names = st.sampled_from(["P1", "P2", "R1", "V1", "PAT1", "P9", "Dosing", "Dose", "x", "wiat"])
modules = st.sampled_from(["P1", "P2", "P3", "R1", "BPR1", "V1", "CR1", "M1", "P9"])
services = st.sampled_from(["Dosing", "Tempering", "Regulate", "Divert", "Dose"])
commands = st.sampled_from(
    ["start", "stop", "hold", "unhold", "pause", "resume", "abort", "reset", "restart", "x"]
)
values = st.one_of(
    st.sampled_from(["1 mL/min", "60 degC", "5 bar", "${flow}", "${nope}", "${flow", "abc", ""]),
    st.integers(-5, 500),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.none(),
)
durations = st.sampled_from(["5 s", "1 min", "${t}", "-1 s", "3 bar", 0, 10, "${x}"])
conditions = st.sampled_from(
    [
        "R1.T > 60 degC",
        "R1.T > 8 bar",
        "P1.Flow > 0.9 * ${flow}",
        "PAT1.Purity > 98",
        "steady.pur",
        "divert.product",
        "R1.T >",
        "((((",
        "P1.Dosing.state == 'Execute'",
        "false",
        "R1.T > 60 degC for ${t}",
        "${",
    ]
)
assemblies = st.sampled_from(
    ["P1.FlowSetpoint", "P1.Flow", "R1.TempSP", "V1.Valve", "P1.X", "Q.Y", "P1.FlowSP.VExt"]
)
handlers = st.one_of(
    st.sampled_from(["hold", "abort", "stop", "continue", "retry"]),
    st.builds(lambda g: {"goto": g}, st.sampled_from(["cleanup_a", "nowhere"])),
)


def _with_common(d: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    d.update(extra)
    return d


common = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["s1", "s2", "s3", "bad name"]),
        "timeout": durations,
        "on_timeout": handlers,
        "on_error": handlers,
    },
)

leaf_steps = st.one_of(
    st.builds(
        lambda c, m, s, cmd, p, w: _with_common(
            c, {"service": {"module": m, "service": s, "command": cmd, "parameters": p, **w}}
        ),
        common,
        modules,
        services,
        commands,
        st.dictionaries(
            st.sampled_from(["FlowSP", "TempSP", "Foo", "MaxPressure"]), values, max_size=2
        ),
        st.sampled_from(
            [
                {},
                {"wait_for": "Completed"},
                {"procedure": "Volume"},
                {"procedure": 2},
                {"wait_for": "Idle"},
            ]
        ),
    ),
    st.builds(lambda c, a, v: _with_common(c, {"set": {a: v}}), common, assemblies, values),
    st.builds(lambda c, d: _with_common(c, {"wait": {"duration": d}}), common, durations),
    st.builds(lambda c, u: _with_common(c, {"wait": {"until": u}}), common, conditions),
    st.builds(
        lambda c, p: _with_common(c, {"wait": {"residence_times": 2, "path": p}}),
        common,
        st.lists(modules, min_size=1, max_size=3),
    ),
    st.builds(lambda c: _with_common(c, {"prompt": {"message": "go ${flow}"}}), common),
    st.builds(lambda n, v: {n: v}, st.sampled_from(["wiat", "servce", "foo"]), values),
    values,
)

steps = st.recursive(
    leaf_steps,
    lambda inner: st.one_of(
        st.builds(lambda s: {"sequence": s}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(
            lambda b: {"parallel": b},
            st.lists(st.lists(inner, min_size=1, max_size=2), min_size=2, max_size=3),
        ),
        st.builds(
            lambda t, s: {"repeat": {**t, "steps": s}},
            st.sampled_from(
                [{"times": 2}, {"times": "${n}"}, {"until": "R1.T > 60 degC"}, {"times": 0}]
            ),
            st.lists(inner, min_size=1, max_size=3),
        ),
    ),
    max_leaves=12,
)

recipes = st.builds(
    lambda params, proc, cleanup, extra: {
        "kind": "Recipe",
        "name": "fuzz",
        "plant": str(ROOT / "recipes" / "lomustine" / "plant.yaml"),
        "parameters": params,
        "procedure": proc,
        **({"cleanup": cleanup} if cleanup else {}),
        **extra,
    },
    st.fixed_dictionaries(
        {},
        optional={
            "flow": st.sampled_from([{"unit": "mL/min", "default": 1}, {"unit": "bar"}, {}]),
            "t": st.sampled_from([{"type": "duration", "default": "1 min"}, {"type": "bool"}]),
            "n": st.sampled_from([{"type": "integer", "default": 2}, {"type": "string"}]),
        },
    ),
    st.lists(
        st.builds(
            lambda n, s: {"name": n, "steps": s},
            st.sampled_from(["a", "b", "a"]),
            st.lists(steps, min_size=1, max_size=4),
        ),
        min_size=1,
        max_size=2,
    ),
    st.lists(
        st.builds(
            lambda s: {"name": "cleanup_a", "steps": s}, st.lists(steps, min_size=1, max_size=2)
        ),
        max_size=1,
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "steady_state": st.just(
                [{"name": "pur", "signal": "PAT1.Purity", "band": "0.5 %", "path": ["P1", "PAT1"]}]
            ),
            "divert": st.sampled_from(
                [
                    {"valve": "V1", "product_when": "steady.pur"},
                    {"valve": "P1", "product_when": "x >"},
                ]
            ),
            "alarms": st.just([{"name": "hot", "signal": "R1.T", "high": "80 degC"}]),
        },
    ),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=recipes)
def test_generated_recipes_validate_or_fail_located(tmp_path_factory: Any, data: Any) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "recipe.yaml"
    path.write_text(dump_yaml(data), encoding="utf-8")
    try:
        v = load_recipe(path, _plant())
    except ConfigError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.location is not None, str(p)
            assert p.location.file == str(path) or p.location.file.startswith("--set")
            assert p.location.line >= 1, str(p)
    else:
        for step, _ in v.steps():
            assert v.location(step).line >= 1


@pytest.mark.parametrize("depth", [25, 400])
def test_deep_nesting_is_rejected_not_crashing(tmp_path: Path, depth: int) -> None:
    step = "{sequence: [" * depth + "{wait: {duration: 1 s}}" + "]}" * depth
    path = tmp_path / "deep.yaml"
    path.write_text(
        f"kind: Recipe\nname: d\nprocedure:\n  - name: a\n    steps: [{step}]\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_recipe(path, _plant())
    assert all(p.location is not None for p in info.value.problems)

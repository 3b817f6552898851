"""The remaining time of a run, from the recipe's planned step durations and the position."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.bootstrap import configure
from modulecontrol.orchestrator import Progress, planned, remaining
from modulecontrol.recipe import ValidatedRecipe, load_recipe, walk_steps

CAMPAIGN = Path(__file__).resolve().parents[2] / "recipes" / "lomustine" / "campaign.yaml"


@cache
def campaign(checks: int, minutes: int) -> ValidatedRecipe:
    configure()
    return load_recipe(CAMPAIGN, overrides={"checks": str(checks),
                                            "check_interval": f"{minutes} min"})


def at(vr: ValidatedRecipe, name: str, **progress: object) -> Progress:
    """Progress as the interpreter leaves it when step ``name`` runs."""
    step = next(s for b in vr.recipe.procedure for _, s in walk_steps(b.steps)
                if s.name == name)
    return Progress(step=name, step_path=step.path, **progress)  # type: ignore[arg-type]


def production(vr: ValidatedRecipe) -> tuple[object, ...]:
    return next(s.path for b in vr.recipe.procedure for _, s in walk_steps(b.steps)
                if s.name == "production")


def test_before_the_start_the_whole_plan_and_its_unknown_steps() -> None:
    vr = campaign(3, 30)
    est = remaining(vr, Progress())
    # 3 checks of 30 min, then the 20 min flush; the rest of the recipe says no length
    assert est.known == 3 * 1800 + 20 * 60
    assert {"at_temperature", "fill_r1", "steady", "nitrite_check"} <= set(est.unknown)
    assert est.known == sum(planned(vr, s).known for b in vr.recipe.procedure
                            for s in b.steps)


def test_in_production_the_rest_of_the_iteration_the_later_ones_and_the_shutdown() -> None:
    vr = campaign(3, 30)
    p = at(vr, "hour", step_elapsed=600.0, step_duration=1800.0,
           iterations={production(vr): (2, 3)})
    est = remaining(vr, p)
    assert est.known == (1800 - 600) + 1800 + 20 * 60
    assert "steady" not in est.unknown and "at_temperature" not in est.unknown
    assert est.unknown == ["nitrite_check"]


def test_in_the_last_step_only_what_is_left_of_it() -> None:
    vr = campaign(1, 30)
    p = at(vr, "flush", step_elapsed=900.0, step_duration=1200.0)
    est = remaining(vr, p)
    assert est.known == 300.0 and est.unknown == []


@settings(max_examples=60, deadline=None)
@given(checks=st.integers(1, 12), minutes=st.sampled_from([1, 5, 30, 60]),
       fractions=st.lists(st.floats(0, 1), min_size=1, max_size=6))
def test_the_remaining_time_never_grows_as_production_goes_on(
        checks: int, minutes: int, fractions: list[float]) -> None:
    vr = campaign(checks, minutes)
    interval = 60.0 * minutes
    path = production(vr)
    last = remaining(vr, at(vr, "steady")).known
    for i in range(1, checks + 1):
        for f in sorted(fractions):
            p = at(vr, "hour", step_elapsed=f * interval, step_duration=interval,
                   iterations={path: (i, checks)})
            got = remaining(vr, p).known
            assert got <= last + 1e-9
            assert abs(got - ((checks - i + 1 - f) * interval + 1200)) < 1e-6
            last = got

"""The supervisor's interlock bypass and divert override as a state machine, against a
reference model (hypothesis): any sequence of plant values (low, high, cannot be evaluated),
bypasses, withdrawals and ticks on the line clock.

What must hold for every sequence: while a bypass is in force the action is never taken,
and each time the interlock would have tripped there is exactly one ``interlock_bypassed``
event; once the bypass ends (expired or withdrawn) the interlock acts at the next tick whose
condition is true or unknown; an action taken is always an ``interlock_tripped`` event.
The supervisor is the real one on the lomustine plant's recipe model; its action (abort) is
recorded instead of sent to modules, the only stand-in here.
"""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from modulecontrol.clock import Clock
from modulecontrol.events import EventKind, EventLog
from modulecontrol.orchestrator import OperatorChannel
from modulecontrol.orchestrator._supervisor import Supervisor
from modulecontrol.recipe import ValidatedRecipe, load_recipe
from modulecontrol.statemachine import Command, State

ROOT = Path(__file__).resolve().parents[2]
RECIPE = """kind: Recipe
name: bypass-model
version: 1.0.0
plant: {plant}
interlocks:
  - {{name: hot, when: "R1.T > 30 degC", action: abort}}
divert:
  valve: V1
  product_when: "R1.T > 20 degC"
procedure:
  - name: main
    steps:
      - wait: {{duration: 1 min}}
"""
LOW, HIGH = 293.15, 323.15  # R1.T in K (SI): 20 and 50 degC

Op = tuple[str, Any]
OPS = st.lists(st.one_of(
    st.tuples(st.just("value"), st.sampled_from([LOW, HIGH, None])),
    st.tuples(st.just("bypass"), st.floats(min_value=1.0, max_value=600.0)),
    st.tuples(st.just("unbypass"), st.none()),
    st.tuples(st.just("tick"), st.floats(min_value=0.5, max_value=300.0)),
), max_size=40)


@cache
def _recipe(folder: str) -> ValidatedRecipe:
    path = Path(folder) / "bypass_model.yaml"
    plant = (ROOT / "recipes" / "lomustine" / "plant.yaml").as_posix()
    path.write_text(RECIPE.format(plant=plant), encoding="utf-8")
    return load_recipe(path)


def _supervisor(vr: ValidatedRecipe, sent: list[Command]) -> Supervisor:
    clock = Clock.fast()

    def command(c: Command, _why: str) -> bool:
        sent.append(c)
        return True

    return Supervisor(vr, {}, clock=clock, log=EventLog(clock.now), holds=cast(Any, None),
                      operator=OperatorChannel(), command=command,
                      recipe_state=lambda: State.EXECUTE, used={}, tick=1.0,
                      on_comm_loss="ignore")


@settings(max_examples=150, deadline=None)
@given(ops=OPS)
def test_a_bypass_skips_the_action_never_silently_and_ends_on_the_line_clock(
        tmp_path_factory: Any, ops: list[Op]) -> None:
    vr = _recipe(str(tmp_path_factory.getbasetemp()))
    sent: list[Command] = []
    sup = _supervisor(vr, sent)
    il = sup.interlocks[0]

    async def play() -> None:
        now, value = 0.0, LOW
        until: float | None = None  # the model's bypass
        active = hit_seen = False
        for op, arg in ops:
            if op == "value":
                value = arg
                continue
            if op == "bypass":
                sup.bypass("hot", "erin", "test", arg)
                until, hit_seen = sup.clock.now() + arg, False
                continue
            if op == "unbypass":
                if until is None:
                    try:
                        sup.unbypass("hot", "erin")
                    except ValueError:
                        continue
                    raise AssertionError("unbypass of an interlock not bypassed")
                sup.unbypass("hot", "erin")
                until, hit_seen = None, False
                continue
            now += arg
            n_trip = len(sup.log.of_kind(EventKind.INTERLOCK_TRIPPED))
            n_skip = len(sup.log.of_kind(EventKind.INTERLOCK_BYPASSED))
            if until is not None and now >= until:
                until, hit_seen = None, False  # expired on the line clock
            await sup._interlocks(now, {"R1.T": value})
            hit = value is None or value > 303.15
            trips = len(sup.log.of_kind(EventKind.INTERLOCK_TRIPPED)) - n_trip
            skips = len(sup.log.of_kind(EventKind.INTERLOCK_BYPASSED)) - n_skip
            if until is not None and not active:
                assert trips == 0, "an action taken while bypassed"
                assert skips == (1 if hit and not hit_seen else 0)
                hit_seen = hit
            else:
                assert skips == 0
                assert trips == (1 if hit and not active else 0)
                active = hit  # trips on true or unknown, clears only on false
            assert (il.bypass is None) == (until is None)
        assert len(sent) == len(sup.log.of_kind(EventKind.INTERLOCK_TRIPPED))
        assert all(c is Command.ABORT for c in sent)

    asyncio.run(play())


def _override(sup: Supervisor) -> Any:
    return None if sup.divert is None else sup.divert.override


def test_an_override_to_product_ends_when_an_interlock_trips(tmp_path: Path) -> None:
    """Safe state first: the interlock's trip ends an override to product at the same
    tick, before the valve would be held at product again; an override to waste stays."""
    vr = _recipe(str(tmp_path))
    sup = _supervisor(vr, [])
    switched: list[bool] = []

    async def switch(d: Any, to_product: bool) -> None:
        d.to_product = to_product
        switched.append(to_product)

    sup._switch = switch  # type: ignore[method-assign]  # no valve module here

    async def play() -> None:
        await sup.override_divert(True, "erin", "sample", 600.0)
        assert switched == [True]
        await sup.supervise()  # R1.T missing: unknown, the interlock trips
        assert sup.tripped() == ["hot"]
        assert sup.divert is not None and sup.divert.override is None
        assert switched == [True, False]
        ended = sup.log.of_kind(EventKind.DIVERT_OVERRIDE)[-1]
        assert ended.data["overridden"] is False and "hot tripped" in ended.data["reason"]
        try:
            await sup.override_divert(True, "erin", "again", 60.0)
        except ValueError as exc:
            assert "safe state first" in str(exc)
        else:
            raise AssertionError("an override to product while an interlock is tripped")
        held = await sup.override_divert(False, "erin", "to waste", 60.0)
        await sup.supervise()  # still tripped: an override to waste stays
        assert _override(sup) is held and switched == [True, False]

    asyncio.run(play())

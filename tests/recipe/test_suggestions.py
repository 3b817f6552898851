"""Suggestions for unknown signals rank the module's own first; a mistyped module is reported
once, without knock-on errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from modulecontrol.descriptors import validate_file
from modulecontrol.errors import ConfigError, signal_suggestions

SIGNALS = ["R1.T", "R1.TempSP", "R1.TempSP.VOp", "R1.Pressure", "R1.PressureDrop",
           "R2.T", "R2.TempSP", "CR1.T", "CR1.TempSP", "P1.Flow"]


@pytest.mark.parametrize(("typed", "expected"), [
    ("R1.Temp", ["R1.T", "R1.TempSP"]),         # abbreviation first, then the extension
    ("r1.temp", ["R1.T", "R1.TempSP"]),         # case of the tag
    ("R1.Pres", ["R1.Pressure", "R1.PressureDrop"]),
    ("R1.TempSP.VOx", ["R1.TempSP.VOp"]),       # MTP attributes only when one was typed
    ("R9.T", ["R1.T", "R2.T"]),                 # unknown tag: close tags, same attribute
    ("P1.Flw", ["P1.Flow"]),
    ("R1.Zzz", []),
])
def test_module_own_signals_first(typed: str, expected: list[str]) -> None:
    assert signal_suggestions(typed, SIGNALS) == expected


def test_mistyped_module_is_one_error() -> None:
    """Before, the step on 'R9' left R1.Tempering Idle, so stopping it later was a second,
    knock-on error."""
    path = Path(__file__).parent / "bad" / "service_unknown_module_once.yaml"
    with pytest.raises(ConfigError) as info:
        validate_file(path)
    assert [p.message.split(" (")[0] for p in info.value.problems] == [
        "unknown module 'R9' in plant lomustine-line"]


def test_mistyped_module_in_a_parallel_branch_is_one_error(tmp_path: Path) -> None:
    plant = Path(__file__).parents[2] / "recipes" / "lomustine" / "plant.yaml"
    f = tmp_path / "r.yaml"
    f.write_text(f"""kind: Recipe
name: par
plant: {plant}
procedure:
  - name: a
    steps:
      - parallel:
          - - service: {{module: R9, service: Tempering, parameters: {{TempSP: 50 degC}}}}
          - - wait: {{duration: 1 s}}
      - service: {{module: R1, service: Tempering, command: stop}}
""")
    with pytest.raises(ConfigError) as info:
        validate_file(f)
    assert len(info.value.problems) == 1, info.value.problems

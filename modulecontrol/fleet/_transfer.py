"""Tech transfer: does a recipe written for one plant run on another?

The recipe validator is the judge (one validator, never a second): the recipe must be valid on
its own plant, and every problem the validator finds against the other plant is reported with
its ``file:line:col``, sorted into what is *missing* there (a module, service, parameter or
signal it does not have) and what is *out of range* (a value outside the other module's
limits). The module table says, tag by tag, which modules the recipe uses and what the other
plant has under that tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from modulecontrol.descriptors import load_plant
from modulecontrol.errors import ConfigError, Problem
from modulecontrol.recipe import load_recipe

_RANGE = re.compile(r"outside|out of range|limit|exceed|above|below|too (high|low)", re.I)
_MISSING = re.compile(r"unknown|no (such|module|service|procedure|parameter|signal)|"
                      r"not (found|in|on)|missing|has no|does not have", re.I)


@dataclass(frozen=True)
class ModuleMap:
    tag: str
    type_from: str
    type_to: str | None
    """None: the other plant has no module with this tag."""


@dataclass
class TransferReport:
    recipe: str
    plant_from: str
    plant_to: str
    modules: list[ModuleMap] = field(default_factory=list)
    missing: list[Problem] = field(default_factory=list)
    out_of_range: list[Problem] = field(default_factory=list)
    other: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.out_of_range or self.other)


def transfer(recipe: str | Path, plant_from: str | Path, plant_to: str | Path) -> TransferReport:
    """Check ``recipe`` (valid on ``plant_from``) against ``plant_to``.

    Raises :class:`ConfigError` if the recipe is not valid on its own plant or a plant file
    is unreadable: a transfer report starts from a recipe that works where it comes from."""
    source = load_recipe(recipe, plant_from)
    target = load_plant(plant_to)
    report = TransferReport(str(recipe), str(plant_from), str(plant_to))
    named: set[str] = set()
    for step, _ in source.steps():
        call = getattr(step, "service", None)
        named.update(t for t in [getattr(call, "module", None), getattr(step, "module", None),
                                 *(getattr(step, "modules", None) or [])]
                     if isinstance(t, str))
    text = Path(recipe).read_text(encoding="utf-8")
    target_tags = {m.tag: m.type for m in target.plant.modules}
    for inst in source.plant.plant.modules:  # service steps, and signals such as ``R1.T``
        if inst.tag in named or re.search(rf"\b{re.escape(inst.tag)}\.\w", text):
            report.modules.append(ModuleMap(inst.tag, inst.type, target_tags.get(inst.tag)))
    try:
        load_recipe(recipe, plant_to)
    except ConfigError as exc:
        for p in exc.problems:
            if _RANGE.search(p.message):
                report.out_of_range.append(p)
            elif _MISSING.search(p.message):
                report.missing.append(p)
            else:
                report.other.append(p)
    return report

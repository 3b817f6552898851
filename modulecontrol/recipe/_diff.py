"""What changed between two versions of a recipe, in recipe terms.

Why not a text diff: a reviewer approving version 1.1 must see "step ``dose_volume``: timeout
10 min → 20 min", "parameter ``flow``: max 5 → 8 mL/min", "alarm ``purity_low`` removed";
a moved block, re-indented YAML or a changed comment is no change of the recipe at all. Steps
are matched by their block and name (unnamed steps by their place), so a step inserted
before others does not make every later one "changed".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from modulecontrol.recipe._model import AnyStep, Recipe, walk_steps
from modulecontrol.recipe._validate import recipe_from_doc
from modulecontrol.yamlio import load_yaml_text

ChangeKind = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class Change:
    """One change: ``section`` (``recipe``, ``parameter``, ``step``, ``alarm``, ...),
    ``key`` (its name), what happened, and for ``changed`` the fields ``(field, old, new)``."""

    section: str
    key: str
    kind: ChangeKind
    fields: tuple[tuple[str, Any, Any], ...] = ()

    def __str__(self) -> str:
        head = f"{self.section} {self.key}: {self.kind}" if self.key else (
            f"{self.section}: {self.kind}")
        if not self.fields:
            return head
        return head + "; " + "; ".join(f"{f} {_show(a)} -> {_show(b)}"
                                       for f, a, b in self.fields)


def _show(v: Any) -> str:
    return "(none)" if v is None else str(v)


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``a.b.c: value``; lists of scalars stay one value."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and any(isinstance(x, dict | list) for x in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flat(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _own_fields(step: AnyStep) -> dict[str, Any]:
    """A step's own settings: its dump without its nested steps (compared on their own)."""
    dump = step.model_dump(mode="json", exclude_defaults=True, by_alias=True)
    for sub, _ in step.branches():
        if len(sub) >= 2 and isinstance(sub[1], str):
            inner = dump.get(str(sub[0]))
            if isinstance(inner, dict):
                inner.pop(sub[1], None)
        else:
            dump.pop(str(sub[0]), None)
    dump.pop("name", None)
    return {"kind": step.KIND, **_flat(dump)}


def _steps(recipe: Recipe) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section, blocks in (("procedure", recipe.procedure), ("cleanup", recipe.cleanup)):
        for block in blocks:
            for path, step in walk_steps(block.steps):
                key = f"{section}/{block.name}/" + (
                    step.name if step.name else "#" + ".".join(str(p) for p in path))
                out[key] = _own_fields(step)
    return out


def _named(items: list[Any]) -> dict[str, dict[str, Any]]:
    return {str(x.name): _flat(x.model_dump(mode="json", by_alias=True)) for x in items}


def _compare(section: str, a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]
             ) -> Iterator[Change]:
    for key in a.keys() - b.keys():
        yield Change(section, key, "removed")
    for key in b.keys() - a.keys():
        yield Change(section, key, "added")
    for key in a.keys() & b.keys():
        fa, fb = a[key], b[key]
        fields = tuple((f, fa.get(f), fb.get(f)) for f in sorted(fa.keys() | fb.keys())
                       if fa.get(f) != fb.get(f))
        if fields:
            yield Change(section, key, "changed", fields)


def diff_recipes(a: Recipe, b: Recipe) -> list[Change]:
    """Every change from ``a`` to ``b``: recipe fields, parameters (default, unit, limits),
    steps (added, removed, changed settings), alarms, interlocks, steady states, divert,
    optimize, blocks; in that order, keys sorted."""
    head = ("name", "version", "product", "plant", "author", "description")
    sections: list[tuple[str, dict[str, dict[str, Any]], dict[str, dict[str, Any]]]] = [
        ("recipe", {"": {f: getattr(a, f) for f in head}}, {"": {f: getattr(b, f) for f in head}}),
        ("parameter", {n: _flat(p.model_dump(mode="json")) for n, p in a.parameters.items()},
         {n: _flat(p.model_dump(mode="json")) for n, p in b.parameters.items()}),
        ("block", {f"{s}/{blk.name}": {} for s, bs in (("procedure", a.procedure),
                                                       ("cleanup", a.cleanup)) for blk in bs},
         {f"{s}/{blk.name}": {} for s, bs in (("procedure", b.procedure),
                                              ("cleanup", b.cleanup)) for blk in bs}),
        ("step", _steps(a), _steps(b)),
        ("alarm", _named(a.alarms), _named(b.alarms)),
        ("interlock", _named(a.interlocks), _named(b.interlocks)),
        ("steady state", _named(a.steady_state), _named(b.steady_state)),
        ("divert", {"": _flat(a.divert.model_dump(mode="json"))} if a.divert else {},
         {"": _flat(b.divert.model_dump(mode="json"))} if b.divert else {}),
        ("optimize", {"": _flat(a.optimize.model_dump(mode="json"))} if a.optimize else {},
         {"": _flat(b.optimize.model_dump(mode="json"))} if b.optimize else {}),
    ]
    out: list[Change] = []
    for section, x, y in sections:
        out.extend(sorted(_compare(section, x, y), key=lambda c: (c.key, c.kind)))
    return out


def diff_recipe_texts(a: str, b: str, a_name: str = "A", b_name: str = "B") -> list[Change]:
    """:func:`diff_recipes` of two recipe texts (schema-checked; raises ConfigError)."""
    return diff_recipes(recipe_from_doc(load_yaml_text(a, a_name)),
                        recipe_from_doc(load_yaml_text(b, b_name)))

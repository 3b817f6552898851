"""The signal catalogue: every name a recipe condition may read, with its unit and kind.

The orchestrator feeds values under exactly these names, so the catalogue is the contract
between the validator (which checks conditions against it before anything runs) and the run
(which must publish each of these names, in SI, or leave it missing = unknown).
"""

from __future__ import annotations

from modulecontrol.descriptors import DataAssembly, PlantConfig
from modulecontrol.expr import SignalInfo
from modulecontrol.mtpcore import DA_ATTRIBUTES, PRIMARY_ATTRIBUTE, UNIT_ATTRIBUTES
from modulecontrol.recipe._model import Recipe

STRING_ATTRIBUTES = frozenset({"TagName", "TagDescription", "VState0", "VState1"})

SECONDS_ATTRIBUTES = frozenset({"VFlutTi", "Ti", "Td", "MonStatTi", "MonDynTi"})

NUMBER_ATTRIBUTES = frozenset(
    {
        "VUnit", "PVUnit", "SPUnit", "MVUnit", "RpmUnit", "PosUnit", "WQC", "OSLevel",
        "VFlutCnt", "P", "MV", "MVMan", "MVMin", "MVMax", "MVSclMin", "MVSclMax",
        "PosTextID", "InteractQuestionID", "InteractAnswerID",
    }
)  # fmt: skip
"""Dimensionless numbers: unit codes, quality codes, counters, controller gain and output."""


def attribute_signal(da: DataAssembly, attribute: str) -> SignalInfo:
    """Unit and kind of ``MODULE.ASSEMBLY.ATTRIBUTE``.

    Deliberately simple rules (documented in docs/recipes.md): value-like attributes take the
    assembly's unit and kind; names, descriptions and state texts are strings; filter and
    controller times are seconds; unit codes, quality codes, counters and controller output
    are plain numbers; every other attribute (``...En``, ``...Act``, ``...Op``, ``...Aut``,
    feedbacks, interlocks, state and source channels) is true/false.
    """
    if attribute in UNIT_ATTRIBUTES:
        return SignalInfo(da.unit if da.kind == "number" else "", da.kind)
    if attribute in STRING_ATTRIBUTES:
        return SignalInfo(kind="str")
    if attribute in SECONDS_ATTRIBUTES:
        return SignalInfo("s")
    if attribute in NUMBER_ATTRIBUTES:
        return SignalInfo()
    return SignalInfo(kind="bool")


def plant_signals(config: PlantConfig, recipe: Recipe | None = None) -> dict[str, SignalInfo]:
    """Every signal a recipe may read, by the name the orchestrator publishes it under.

    Names (values are SI floats, bools or strings; see docs/recipes.md):

    - ``TAG.ASSEMBLY`` — the assembly's primary attribute (``V`` of a view, ``VOut`` of a
      parameter or manual value, ``PV`` of a controller, ``Pos`` of an analog valve, ``Ctrl``
      of a binary valve, ...), in the assembly's unit and kind;
    - ``TAG.ASSEMBLY.ATTRIBUTE`` — every attribute of the assembly's class, typed by
      :func:`attribute_signal`;
    - ``TAG.SERVICE.state`` — the service's state name (a string such as ``"Execute"``);
    - with a recipe: ``steady.NAME`` (bool) for each steady-state detector, true while the
      detector holds, and ``divert.product`` (bool) when the recipe has divert control, true
      while the valve routes to product;
    - with a recipe's ``twin`` block: ``twin.ANALYZER.SIGNAL`` for each predicted signal, the
      twin's prediction of what the analyzer will read one dead time from now (unit and kind
      of ``ANALYZER.SIGNAL``), and ``twin.ANALYZER.SIGNAL.mismatch``, the reading minus the
      prediction made one dead time ago (a difference in the same unit).
    """
    out: dict[str, SignalInfo] = {}
    for inst in config.plant.modules:
        mt = config.instance_types.get(inst.tag)
        if mt is None:
            continue
        for da in mt.data_assemblies:
            base = f"{inst.tag}.{da.name}"
            primary = PRIMARY_ATTRIBUTE[da.class_]
            out[base] = attribute_signal(da, primary)
            for attr in DA_ATTRIBUTES[da.class_]:
                out[f"{base}.{attr}"] = attribute_signal(da, attr)
        for svc in mt.services:
            out[f"{inst.tag}.{svc.name}.state"] = SignalInfo(kind="str")
    if recipe is not None:
        for ss in recipe.steady_state:
            out[f"steady.{ss.name}"] = SignalInfo(kind="bool")
        if recipe.divert is not None:
            out["divert.product"] = SignalInfo(kind="bool")
        if recipe.twin is not None:
            for name in recipe.twin.predict:
                measured = out.get(f"{recipe.twin.analyzer}.{name}")
                if measured is not None:
                    out[f"twin.{recipe.twin.analyzer}.{name}"] = measured
                    out[f"twin.{recipe.twin.analyzer}.{name}.mismatch"] = measured
    return out

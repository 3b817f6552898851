"""Recipes: YAML procedures run against a plant, and the condition language they use.

:func:`load_recipe` loads and validates a recipe against a plant (every problem located);
:func:`plant_signals` names the signals conditions may read; :func:`diff_recipes` says
what changed between two versions in recipe terms. The condition language is the
bottom-layer package :mod:`modulecontrol.expr`; see docs/recipes.md and docs/conditions.md.
"""

from modulecontrol.recipe._diff import Change, diff_recipe_texts, diff_recipes
from modulecontrol.recipe._model import (
    Alarm,
    AnyStep,
    DecisionVariable,
    Divert,
    GotoHandler,
    Interlock,
    Objective,
    Optimize,
    OptimizeStep,
    ParallelStep,
    ParameterSpec,
    PromptStep,
    Recipe,
    RepeatStep,
    SequenceStep,
    ServiceCall,
    ServiceStep,
    SetStep,
    SteadyState,
    StepPath,
    Twin,
    TwinMismatch,
    UnitProcedure,
    WaitStep,
    walk_steps,
)
from modulecontrol.recipe._optimize import Constraint, ConstraintShapeError, parse_constraint
from modulecontrol.recipe._params import ResolvedParameter, parse_set_options
from modulecontrol.recipe._signals import attribute_signal, plant_signals
from modulecontrol.recipe._states import transition
from modulecontrol.recipe._validate import (
    ValidatedRecipe,
    load_recipe,
    recipe_from_doc,
    validate_recipe_doc,
    validate_recipe_with_plant,
)

__all__ = [
    "Alarm",
    "AnyStep",
    "Change",
    "Constraint",
    "ConstraintShapeError",
    "DecisionVariable",
    "Divert",
    "GotoHandler",
    "Interlock",
    "Objective",
    "Optimize",
    "OptimizeStep",
    "ParallelStep",
    "ParameterSpec",
    "PromptStep",
    "Recipe",
    "RepeatStep",
    "ResolvedParameter",
    "SequenceStep",
    "ServiceCall",
    "ServiceStep",
    "SetStep",
    "SteadyState",
    "StepPath",
    "Twin",
    "TwinMismatch",
    "UnitProcedure",
    "ValidatedRecipe",
    "WaitStep",
    "attribute_signal",
    "diff_recipe_texts",
    "diff_recipes",
    "load_recipe",
    "parse_constraint",
    "parse_set_options",
    "plant_signals",
    "recipe_from_doc",
    "transition",
    "validate_recipe_doc",
    "validate_recipe_with_plant",
    "walk_steps",
]

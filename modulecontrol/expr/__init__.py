"""The condition language of recipes: ``R1.T > 59.5 degC for 30 s``.

Conditions are parsed into an immutable tree (:func:`parse`, :func:`unparse`), checked
against the plant's signals (:func:`check`), and compiled to a :class:`Condition` that
evaluates over SI floats with three-valued logic. Nothing here ever calls ``eval``.
See docs/conditions.md for the language reference.

Why a package of its own at the bottom: module types (descriptors), recipes, proxies and the
orchestrator all check or evaluate conditions, and the language depends only on
:mod:`modulecontrol.units`. Keeping it below the descriptors means none of them imports another
upper layer to read ``this.V > 1 mL``.
"""

from ._ast import (
    Binary,
    BoolLit,
    BoolOp,
    Call,
    Compare,
    Expr,
    Hold,
    Neg,
    Not,
    Number,
    Param,
    Signal,
    String,
    unparse,
)
from ._check import FUNCTIONS, ParameterValue, Problem, SignalInfo, check
from ._eval import (
    Condition,
    ConditionError,
    HistoryProvider,
    SignalHistory,
    compile_condition,
    to_si,
)
from ._parse import MAX_DEPTH, MAX_LENGTH, ExprSyntaxError, parse

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "Binary",
    "BoolLit",
    "BoolOp",
    "Call",
    "Compare",
    "Condition",
    "ConditionError",
    "Expr",
    "ExprSyntaxError",
    "HistoryProvider",
    "Hold",
    "Neg",
    "Not",
    "Number",
    "Param",
    "ParameterValue",
    "Problem",
    "Signal",
    "SignalHistory",
    "SignalInfo",
    "String",
    "check",
    "compile_condition",
    "parse",
    "to_si",
    "unparse",
]

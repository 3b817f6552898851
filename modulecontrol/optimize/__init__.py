"""Self-optimising campaigns: the ``optimize`` block of a recipe run as experiments.

Public API::

    Plan, Variable, plan_from_recipe           # the block compiled to numbers
    Campaign, CampaignResult, ExperimentRecord, ExperimentFailed
    Experimenter, Journal, MemoryJournal, HistorianJournal   # where it runs and is kept
    recorded_experiments                       # a campaign's experiments in the records
    SteadyStateExperimenter, line_on_models    # experiments on the process models
    TwinPrior, Prior, plan_prior               # the twin as the Bayesian search's prior
    Search, ScipySearch, BayesSearch, Trial, ALGORITHMS   # the search: one ask/tell interface

See docs/optimisation.md.
"""

from ._algorithms import ALGORITHMS, ScipySearch, Search, Trial
from ._bayes import BayesSearch, Prior
from ._campaign import (
    Campaign,
    CampaignResult,
    Experimenter,
    ExperimentFailed,
    ExperimentRecord,
    Journal,
    MemoryJournal,
    make_search,
)
from ._journal import OPTIMIZER_USER, HistorianJournal, recorded_experiments
from ._plan import KPIS, Plan, Variable, plan_from_recipe
from ._simulated import SteadyStateExperimenter, TwinPrior, line_on_models, plan_prior

__all__ = [
    "ALGORITHMS",
    "KPIS",
    "OPTIMIZER_USER",
    "BayesSearch",
    "Campaign",
    "CampaignResult",
    "ExperimentFailed",
    "ExperimentRecord",
    "Experimenter",
    "HistorianJournal",
    "Journal",
    "MemoryJournal",
    "Plan",
    "Prior",
    "ScipySearch",
    "Search",
    "SteadyStateExperimenter",
    "Trial",
    "TwinPrior",
    "Variable",
    "line_on_models",
    "make_search",
    "plan_from_recipe",
    "plan_prior",
    "recorded_experiments",
]

"""The idea track: design goals -> retrieved context -> candidate systems -> sanity checks.

Functional core (no Dagster): :func:`load_goals` reads human-owned goals, :func:`retrieve_context`
gathers concepts and modules as of the design time, :func:`design_candidates` assembles candidate
systems (offline combinatorial assembler or LLM agent), :func:`run_sanity` checks them.
See docs/ideas.md.
"""

from factory_pipeline.ideas.candidates import CandidateSystem, DesignBatch, DroppedProposal
from factory_pipeline.ideas.context import DesignContext, retrieve_context
from factory_pipeline.ideas.design import design_candidates
from factory_pipeline.ideas.goals import DesignGoal, GoalError, RiskBudget, load_goals
from factory_pipeline.ideas.past_results import PastResult, past_results_as_of
from factory_pipeline.ideas.sanity import SANITY_CHECKS, CheckResult, SanityReport, run_sanity

__all__ = [
    "SANITY_CHECKS",
    "CandidateSystem",
    "CheckResult",
    "DesignBatch",
    "DesignContext",
    "DesignGoal",
    "DroppedProposal",
    "GoalError",
    "PastResult",
    "RiskBudget",
    "SanityReport",
    "design_candidates",
    "load_goals",
    "past_results_as_of",
    "retrieve_context",
    "run_sanity",
]

"""The promotion engine: human-owned policy, deterministic rules, the status state machine and
its append-only audit log (docs/promotion.md). Free of Dagster; the shell calls these."""

from factory_pipeline.promotion.audit import audit_table, rule_rows, transitions_for
from factory_pipeline.promotion.policy import (
    SAFETY_FLOORS,
    PromotionPolicy,
    default_policy_path,
    load_policy,
    policy_hash,
)
from factory_pipeline.promotion.rules import (
    Evidence,
    RuleResult,
    evaluate_demo_rules,
    evaluate_for_status,
    evaluate_rules,
)
from factory_pipeline.promotion.state_machine import (
    ALLOWED_TRANSITIONS,
    HUMAN_TRANSITIONS,
    Decision,
    IllegalTransitionError,
    PromotionError,
    PromotionOutcome,
    StatusGuardError,
    apply_decision,
    apply_human_command,
    decide,
    ensure_allowed,
    ensure_status_unchanged,
    evaluate_and_apply,
    store_systems,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "HUMAN_TRANSITIONS",
    "SAFETY_FLOORS",
    "Decision",
    "Evidence",
    "IllegalTransitionError",
    "PromotionError",
    "PromotionOutcome",
    "PromotionPolicy",
    "RuleResult",
    "StatusGuardError",
    "apply_decision",
    "apply_human_command",
    "audit_table",
    "decide",
    "default_policy_path",
    "ensure_allowed",
    "ensure_status_unchanged",
    "evaluate_and_apply",
    "evaluate_demo_rules",
    "evaluate_for_status",
    "evaluate_rules",
    "load_policy",
    "policy_hash",
    "rule_rows",
    "store_systems",
    "transitions_for",
]

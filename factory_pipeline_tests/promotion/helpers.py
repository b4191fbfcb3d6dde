"""Test data of the promotion tests: a hand-written policy, passing evidence, systems."""

from __future__ import annotations

import copy
from typing import Any

from factory_pipeline.promotion import Evidence, PromotionPolicy
from factory_pipeline.schemas import SystemDoc, SystemStatus

#: Thresholds chosen by hand for the tests (independent of data/policy/promotion.yaml), with
#: binary-exact values so boundaries are exact in floating point.
POLICY_DATA: dict[str, Any] = {
    "policy_version": 1,
    "candidate_to_demo": {
        "min_trades": 100,
        "min_trades_per_fold": 10,
        "max_drawdown": 0.25,
        "max_stagnation_days": 180,
        "min_expectancy_r": 0.125,
        "min_expectancy_pct": None,
        "min_profitable_regimes": 2,
        "min_dsr": 0.5,
        "max_pbo": 0.5,
        "stress_must_survive": True,
        "disable_when": {
            "max_drawdown_multiple": 2.0,
            "expectancy_r_below": -0.25,
            "expectancy_pct_below": None,
        },
    },
    "demo_to_live_test": {
        "min_days": 30,
        "min_trades": 30,
        "max_pnl_deviation": 0.5,
        "max_slippage_bps": 10.0,
        "max_execution_issues": 3,
    },
    "demo_demotion": {
        "max_drawdown": 0.25,
        "max_pnl_deviation": 1.0,
        "min_trades_before_rework": 20,
    },
}

#: Candidate metrics that pass every rule of POLICY_DATA with a margin.
PASSING_METRICS: dict[str, float | bool] = {
    "trades": 150.0,
    "min_trades_per_fold": 12.0,
    "max_drawdown": 0.125,
    "worst_stagnation_days": 60.0,
    "expectancy_r": 0.5,
    "expectancy_pct": 0.25,
    "profitable_regimes": 3.0,
    "regimes_tested": 4.0,
    "dsr": 0.75,
    "pbo": 0.25,
    "stress_survived": True,
    "lookahead_passed": True,
}

#: Demo metrics that pass every demo rule of POLICY_DATA with a margin.
PASSING_DEMO_METRICS: dict[str, float | bool] = {
    "demo_days": 40.0,
    "demo_trades": 45.0,
    "pnl_deviation": 0.25,
    "avg_slippage_bps": 4.0,
    "execution_issues": 1.0,
    "demo_max_drawdown": 0.0625,
}


def policy_data(**section_overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of POLICY_DATA with per-section field overrides."""
    data = copy.deepcopy(POLICY_DATA)
    for section, fields in section_overrides.items():
        data[section].update(fields)
    return data


def make_policy(**section_overrides: dict[str, Any]) -> PromotionPolicy:
    return PromotionPolicy.model_validate(policy_data(**section_overrides))


def make_evidence(
    metrics: dict[str, Any] | None = None,
    *,
    system_id: str = "sys-a",
    spec_hash: str = "hash-a",
    evidence_ids: list[str] | None = None,
) -> Evidence:
    return Evidence(
        system_id=system_id,
        spec_hash=spec_hash,
        metrics=dict(PASSING_METRICS if metrics is None else metrics),
        evidence_ids=["bt-1", "rob-1"] if evidence_ids is None else evidence_ids,
    )


def make_system(
    status: SystemStatus = SystemStatus.CANDIDATE, system_id: str = "sys-a"
) -> SystemDoc:
    return SystemDoc(
        id=system_id,
        name=f"system {system_id}",
        spec_hash="hash-a",
        spec={"entry": {"module": "m"}},
        status=status,
    )

"""Promotion rules: every rule at its boundary, missing/invalid metrics, determinism."""

from __future__ import annotations

import math
from typing import Any

import pytest

from factory_pipeline.promotion import (
    Evidence,
    PromotionPolicy,
    evaluate_demo_rules,
    evaluate_for_status,
    evaluate_rules,
)
from factory_pipeline.promotion.rules import CANDIDATE_METRICS, DEMO_METRICS, expected_rules
from factory_pipeline.schemas import SystemStatus
from factory_pipeline_tests.promotion.helpers import (
    PASSING_DEMO_METRICS,
    PASSING_METRICS,
    make_evidence,
    make_policy,
)


def _by_rule(results: list[Any]) -> dict[str, Any]:
    return {result.rule: result for result in results}


def _candidate(metrics_update: dict[str, Any], policy: PromotionPolicy) -> dict[str, Any]:
    evidence = make_evidence({**PASSING_METRICS, **metrics_update})
    return _by_rule(evaluate_rules(evidence, policy.candidate_to_demo))


def _demo(metrics_update: dict[str, Any], policy: PromotionPolicy) -> dict[str, Any]:
    evidence = make_evidence({**PASSING_DEMO_METRICS, **metrics_update})
    return _by_rule(evaluate_demo_rules(evidence, policy.demo_to_live_test, policy.demo_demotion))


def test_passing_evidence_passes_every_candidate_rule(policy: PromotionPolicy) -> None:
    results = evaluate_rules(make_evidence(), policy.candidate_to_demo)
    assert all(r.passed for r in results), [r.message for r in results if not r.passed]
    assert [r.rule for r in results] == [
        "evidence_present",
        "min_trades",
        "min_trades_per_fold",
        "max_drawdown",
        "max_stagnation_days",
        "min_expectancy_r",
        "min_profitable_regimes",
        "min_dsr",
        "max_pbo",
        "stress_must_survive",
        "lookahead_passed",
        "disable_when.max_drawdown_multiple",
        "disable_when.expectancy_r_below",
    ]


# (rule, metric, threshold from helpers.POLICY_DATA, comparison, value just on the failing side)
CANDIDATE_BOUNDARIES = [
    ("min_trades", "trades", 100, ">=", 99),
    ("min_trades_per_fold", "min_trades_per_fold", 10, ">=", 9),
    ("max_drawdown", "max_drawdown", 0.25, "<=", 0.2500001),
    ("max_stagnation_days", "worst_stagnation_days", 180, "<=", 180.5),
    ("min_expectancy_r", "expectancy_r", 0.125, ">=", 0.1249999),
    ("min_profitable_regimes", "profitable_regimes", 2, ">=", 1),
    ("min_dsr", "dsr", 0.5, ">=", 0.4999),
    ("max_pbo", "pbo", 0.5, "<=", 0.5001),
    ("disable_when.expectancy_r_below", "expectancy_r", -0.25, ">=", -0.2500001),
]


@pytest.mark.parametrize(
    ("rule", "metric", "threshold", "comparison", "failing"), CANDIDATE_BOUNDARIES
)
def test_candidate_rule_boundary(
    policy: PromotionPolicy,
    rule: str,
    metric: str,
    threshold: float,
    comparison: str,
    failing: float,
) -> None:
    at = _candidate({metric: float(threshold)}, policy)[rule]
    assert at.passed, at.message
    assert (at.measured, at.threshold, at.comparison) == (threshold, threshold, comparison)
    beyond = _candidate({metric: failing}, policy)[rule]
    assert not beyond.passed
    assert not beyond.missing
    assert beyond.measured == failing
    assert f"(required {comparison})" in beyond.message


def test_drawdown_disable_trigger_is_multiple_of_limit(policy: PromotionPolicy) -> None:
    # 2.0 x 0.25 = 0.5 (hand-derived)
    at = _candidate({"max_drawdown": 0.5}, policy)
    assert at["disable_when.max_drawdown_multiple"].passed
    assert at["disable_when.max_drawdown_multiple"].threshold == 0.5
    assert at["disable_when.max_drawdown_multiple"].on_fail == "disabled"
    assert not at["max_drawdown"].passed
    assert at["max_drawdown"].on_fail == "rework_required"
    beyond = _candidate({"max_drawdown": 0.5000001}, policy)
    assert not beyond["disable_when.max_drawdown_multiple"].passed


@pytest.mark.parametrize(
    ("rule", "metric"),
    [("stress_must_survive", "stress_survived"), ("lookahead_passed", "lookahead_passed")],
)
def test_boolean_rules(policy: PromotionPolicy, rule: str, metric: str) -> None:
    assert _candidate({metric: True}, policy)[rule].passed
    failed = _candidate({metric: False}, policy)[rule]
    assert not failed.passed and not failed.missing
    assert failed.measured is False
    assert "(required true)" in failed.message


def test_lookahead_failure_disables_stress_failure_reworks(policy: PromotionPolicy) -> None:
    results = _candidate({}, policy)
    assert results["lookahead_passed"].on_fail == "disabled"
    assert results["stress_must_survive"].on_fail == "rework_required"


@pytest.mark.parametrize("metric", sorted(set(CANDIDATE_METRICS)))
@pytest.mark.parametrize("how", ["absent", "none", "nan", "inf", "wrong_type"])
def test_unusable_metric_fails_its_rules(metric: str, how: str) -> None:
    # every optional rule switched on, so every candidate metric is read
    policy = make_policy(
        candidate_to_demo={
            "min_expectancy_pct": 0.0625,
            "disable_when": {
                "max_drawdown_multiple": 2.0,
                "expectancy_r_below": -0.25,
                "expectancy_pct_below": -0.5,
            },
        }
    )
    metrics = dict(PASSING_METRICS)
    is_bool = isinstance(PASSING_METRICS[metric], bool)
    if how == "absent":
        del metrics[metric]
    else:
        metrics[metric] = {
            "none": None,
            "nan": math.nan,
            "inf": -math.inf if metric != "max_drawdown" else math.inf,
            "wrong_type": 1.0 if is_bool else True,
        }[how]
    results = evaluate_rules(make_evidence(metrics), policy.candidate_to_demo)
    reading = [r for r in results if r.metric == metric]
    assert reading, f"no rule reads {metric}"
    for result in reading:
        assert not result.passed
        assert result.missing
        assert result.measured is None
        assert metric in result.message
        assert "cannot pass" in result.message
    others = [r for r in results if r.metric != metric]
    assert all(r.passed for r in others)


def test_missing_message_says_missing(policy: PromotionPolicy) -> None:
    metrics = {k: v for k, v in PASSING_METRICS.items() if k != "dsr"}
    result = _by_rule(evaluate_rules(make_evidence(metrics), policy.candidate_to_demo))["min_dsr"]
    assert (
        result.message
        == "min_dsr: dsr is missing from the evidence; the rule cannot pass without it"
    )


def test_no_evidence_ids_holds(policy: PromotionPolicy) -> None:
    results = evaluate_rules(make_evidence(evidence_ids=[]), policy.candidate_to_demo)
    present = _by_rule(results)["evidence_present"]
    assert not present.passed
    assert present.on_fail == "hold"


def test_expectancy_pct_rules_follow_the_policy() -> None:
    policy = make_policy(
        candidate_to_demo={
            "min_expectancy_r": None,
            "min_expectancy_pct": 0.0625,
            "disable_when": {"max_drawdown_multiple": 2.0, "expectancy_pct_below": -0.5},
        }
    )
    at = _candidate({"expectancy_pct": 0.0625}, policy)
    assert "min_expectancy_r" not in at
    assert "disable_when.expectancy_r_below" not in at
    assert at["min_expectancy_pct"].passed
    below = _candidate({"expectancy_pct": 0.0624}, policy)
    assert not below["min_expectancy_pct"].passed
    assert below["disable_when.expectancy_pct_below"].passed
    terrible = _candidate({"expectancy_pct": -0.5001}, policy)
    assert not terrible["disable_when.expectancy_pct_below"].passed
    assert terrible["disable_when.expectancy_pct_below"].on_fail == "disabled"
    # expectancy_r is not read at all under this policy
    assert all(r.passed for r in _candidate({"expectancy_r": math.nan}, policy).values())


def test_regime_message_names_the_regimes_tested(policy: PromotionPolicy) -> None:
    result = _candidate({"profitable_regimes": 1.0, "regimes_tested": 3.0}, policy)
    assert "profitable_regimes = 1 of 3 regimes < 2" in result["min_profitable_regimes"].message


def test_evaluation_is_deterministic(policy: PromotionPolicy) -> None:
    evidence = make_evidence({**PASSING_METRICS, "pbo": 0.75, "trades": math.nan})
    first = evaluate_rules(evidence, policy.candidate_to_demo)
    second = evaluate_rules(evidence.model_copy(), policy.candidate_to_demo)
    assert [r.model_dump() for r in first] == [r.model_dump() for r in second]


def test_rule_results_are_json_safe(policy: PromotionPolicy) -> None:
    evidence = make_evidence({**PASSING_METRICS, "dsr": math.nan, "pbo": math.inf})
    for result in evaluate_rules(evidence, policy.candidate_to_demo):
        dumped = result.model_dump(mode="json")
        assert dumped["measured"] is None or math.isfinite(float(dumped["measured"]))


def test_extra_metrics_never_change_thresholds(policy: PromotionPolicy) -> None:
    sneaky = {
        **PASSING_METRICS,
        "trades": 50.0,
        "min_trades": 10.0,
        "thresholds": 0.0,
        "max_pbo": 1.0,
        "status": 1.0,
    }
    results = _by_rule(evaluate_rules(make_evidence(sneaky), policy.candidate_to_demo))
    assert results["min_trades"].threshold == 100
    assert not results["min_trades"].passed
    assert results["max_pbo"].threshold == 0.5


def test_evidence_model_is_closed() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        Evidence.model_validate(
            {"system_id": "s", "spec_hash": "h", "metrics": {}, "thresholds": {"max_pbo": 1.0}}
        )
    with pytest.raises(ValueError):
        Evidence(system_id="", spec_hash="h")


def test_evidence_hash_ignores_id_order_and_sees_metric_changes() -> None:
    a = make_evidence(evidence_ids=["b", "a"])
    b = make_evidence(evidence_ids=["a", "b", "a"])
    assert a.content_hash() == b.content_hash()
    c = make_evidence({**PASSING_METRICS, "pbo": 0.26}, evidence_ids=["a", "b"])
    assert c.content_hash() != a.content_hash()


# --- demo rules ---------------------------------------------------------------------------------

DEMO_BOUNDARIES = [
    ("min_days", "demo_days", 30, ">=", 29.9, "hold"),
    ("min_trades", "demo_trades", 30, ">=", 29, "hold"),
    ("max_pnl_deviation", "pnl_deviation", 0.5, "<=", 0.5001, "hold"),
    ("max_slippage_bps", "avg_slippage_bps", 10.0, "<=", 10.01, "hold"),
    ("max_execution_issues", "execution_issues", 3, "<=", 4, "hold"),
    ("demo_demotion.max_drawdown", "demo_max_drawdown", 0.25, "<=", 0.2501, "disabled"),
    ("demo_demotion.max_pnl_deviation", "pnl_deviation", 1.0, "<=", 1.001, "rework_required"),
]


@pytest.mark.parametrize(
    ("rule", "metric", "threshold", "comparison", "failing", "on_fail"), DEMO_BOUNDARIES
)
def test_demo_rule_boundary(
    policy: PromotionPolicy,
    rule: str,
    metric: str,
    threshold: float,
    comparison: str,
    failing: float,
    on_fail: str,
) -> None:
    at = _demo({metric: float(threshold)}, policy)[rule]
    assert at.passed, at.message
    assert (at.threshold, at.comparison, at.on_fail) == (threshold, comparison, on_fail)
    beyond = _demo({metric: failing}, policy)[rule]
    assert not beyond.passed and not beyond.missing


def test_deviation_demotion_waits_for_enough_trades(policy: PromotionPolicy) -> None:
    # min_trades_before_rework = 20: at 19 trades a huge deviation is not judged yet
    early = _demo({"demo_trades": 19.0, "pnl_deviation": 5.0}, policy)
    assert early["demo_demotion.max_pnl_deviation"].passed
    assert "not judged yet" in early["demo_demotion.max_pnl_deviation"].message
    assert not early["max_pnl_deviation"].passed  # still not promotable
    judged = _demo({"demo_trades": 20.0, "pnl_deviation": 5.0}, policy)
    assert not judged["demo_demotion.max_pnl_deviation"].passed
    unknown = _demo({"demo_trades": None, "pnl_deviation": 5.0}, policy)
    assert unknown["demo_demotion.max_pnl_deviation"].missing


@pytest.mark.parametrize("metric", DEMO_METRICS)
def test_missing_demo_metric_fails(policy: PromotionPolicy, metric: str) -> None:
    metrics = {k: v for k, v in PASSING_DEMO_METRICS.items() if k != metric}
    results = evaluate_demo_rules(
        make_evidence(metrics), policy.demo_to_live_test, policy.demo_demotion
    )
    failed = [r for r in results if not r.passed]
    assert failed and all(r.missing for r in failed)
    assert all(metric in r.message for r in failed)


def test_rules_per_status(policy: PromotionPolicy) -> None:
    evidence = make_evidence()
    assert evaluate_for_status(SystemStatus.CANDIDATE, evidence, policy) == evaluate_rules(
        evidence, policy.candidate_to_demo
    )
    for status in (SystemStatus.LIVE_TEST, SystemStatus.DISABLED):
        assert evaluate_for_status(status, evidence, policy) == []
    expected = expected_rules(SystemStatus.DEMO, policy)
    assert set(expected) == {rule for rule, *_ in DEMO_BOUNDARIES} | {"evidence_present"}

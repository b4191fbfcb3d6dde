"""Promotion rules: measured evidence against the policy's thresholds, one result per rule.

Why one result per rule, pass or fail: the audit record and the Dagster asset checks show every
gate a system met or missed, with the measured value, the threshold and the comparison, so a
human can see why without rerunning anything. Evaluation is deterministic (same evidence and
policy, same results in the same order) and conservative: a metric that is missing, NaN,
infinite or of the wrong type fails its rule and is flagged ``missing`` (it never passes by
default). Each result also says what its failure leads to (``on_fail``); the state machine turns
the results into a decision. Rules and metric names: docs/promotion.md.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from factory_pipeline.promotion.policy import (
    CandidateToDemo,
    DemoDemotion,
    DemoToLiveTest,
    PromotionPolicy,
)
from factory_pipeline.schemas import SystemStatus

Comparison = Literal[">=", "<=", "=="]
#: What a failed rule leads to: stay in the current status, rework_required, or disabled.
OnFail = Literal["hold", "rework_required", "disabled"]
MetricValue = float | bool | None

#: Metric names read by the candidate -> demo rules (units in docs/promotion.md).
CANDIDATE_METRICS: tuple[str, ...] = (
    "trades",
    "min_trades_per_fold",
    "max_drawdown",
    "worst_stagnation_days",
    "expectancy_r",
    "expectancy_pct",
    "profitable_regimes",
    "dsr",
    "pbo",
    "stress_survived",
    "lookahead_passed",
)
#: Metric names read by the demo rules (promotion to live_test and demotion).
DEMO_METRICS: tuple[str, ...] = (
    "demo_days",
    "demo_trades",
    "pnl_deviation",
    "avg_slippage_bps",
    "execution_issues",
    "demo_max_drawdown",
)


class Evidence(BaseModel):
    """Measured facts about one system version, with the ids of the documents they come from.

    ``metrics`` maps metric names (see :data:`CANDIDATE_METRICS`, :data:`DEMO_METRICS`) to
    numbers or booleans; other keys are carried but read by no rule. Thresholds are never read
    from evidence: they come from the policy file only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    system_id: str = Field(min_length=1)
    spec_hash: str = Field(min_length=1)
    metrics: dict[str, MetricValue] = Field(default_factory=dict)
    evidence_ids: list[str] = Field(
        default_factory=list, description="Backtest / robustness / demo evaluation document ids."
    )

    def content_hash(self) -> str:
        """SHA-256 of the evidence (metrics by name, evidence ids as a sorted set)."""
        payload = {
            "system_id": self.system_id,
            "spec_hash": self.spec_hash,
            "metrics": {k: _hashable(v) for k, v in self.metrics.items()},
            "evidence_ids": sorted(set(self.evidence_ids)),
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


class RuleResult(BaseModel):
    """The outcome of one rule: ``measured <comparison> threshold``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str = Field(description="Rule name: the policy field it applies, e.g. 'max_pbo'.")
    metric: str = Field(description="Evidence metric the rule reads.")
    passed: bool
    measured: MetricValue = Field(description="The measured value; None when missing/invalid.")
    threshold: float | bool
    comparison: Comparison
    on_fail: OnFail
    missing: bool = Field(default=False, description="Failed because the metric is unusable.")
    message: str


def evaluate_rules(evidence: Evidence, rules: CandidateToDemo) -> list[RuleResult]:
    """The candidate -> demo rules, in a fixed order (see docs/promotion.md, "Rules").

    Gates fail to ``rework_required``; the lookahead audit and the disable triggers fail to
    ``disabled``; the evidence-present rule fails to ``hold``.
    """
    rework, disable = "rework_required", "disabled"
    results = [
        _evidence_present(evidence),
        _minimum(evidence, "min_trades", "trades", rules.min_trades, rework, ""),
        _minimum(
            evidence,
            "min_trades_per_fold",
            "min_trades_per_fold",
            rules.min_trades_per_fold,
            rework,
            "trades",
        ),
        _maximum(evidence, "max_drawdown", "max_drawdown", rules.max_drawdown, rework, "of peak"),
        _maximum(
            evidence,
            "max_stagnation_days",
            "worst_stagnation_days",
            rules.max_stagnation_days,
            rework,
            "days",
        ),
    ]
    if rules.min_expectancy_r is not None:
        results.append(
            _minimum(
                evidence, "min_expectancy_r", "expectancy_r", rules.min_expectancy_r, rework, "R"
            )
        )
    if rules.min_expectancy_pct is not None:
        results.append(
            _minimum(
                evidence,
                "min_expectancy_pct",
                "expectancy_pct",
                rules.min_expectancy_pct,
                rework,
                "% per trade",
            )
        )
    results += [
        _minimum(
            evidence,
            "min_profitable_regimes",
            "profitable_regimes",
            rules.min_profitable_regimes,
            rework,
            _regimes_unit(evidence),
        ),
        _minimum(evidence, "min_dsr", "dsr", rules.min_dsr, rework, ""),
        _maximum(evidence, "max_pbo", "pbo", rules.max_pbo, rework, ""),
    ]
    if rules.stress_must_survive:
        results.append(_must_be_true(evidence, "stress_must_survive", "stress_survived", rework))
    results.append(_must_be_true(evidence, "lookahead_passed", "lookahead_passed", disable))
    triggers = rules.disable_when
    results.append(
        _maximum(
            evidence,
            "disable_when.max_drawdown_multiple",
            "max_drawdown",
            triggers.max_drawdown_multiple * rules.max_drawdown,
            disable,
            "of peak",
        )
    )
    if triggers.expectancy_r_below is not None:
        results.append(
            _minimum(
                evidence,
                "disable_when.expectancy_r_below",
                "expectancy_r",
                triggers.expectancy_r_below,
                disable,
                "R",
            )
        )
    if triggers.expectancy_pct_below is not None:
        results.append(
            _minimum(
                evidence,
                "disable_when.expectancy_pct_below",
                "expectancy_pct",
                triggers.expectancy_pct_below,
                disable,
                "% per trade",
            )
        )
    return results


def evaluate_demo_rules(
    evidence: Evidence, gate: DemoToLiveTest, demotion: DemoDemotion
) -> list[RuleResult]:
    """The rules for a system on demo: promotion gates to live_test (failing one means: keep
    trading on demo) and the demotion rules (to ``disabled`` / ``rework_required``)."""
    hold = "hold"
    results = [
        _evidence_present(evidence),
        _minimum(evidence, "min_days", "demo_days", gate.min_days, hold, "days"),
        _minimum(evidence, "min_trades", "demo_trades", gate.min_trades, hold, "trades"),
        _maximum(evidence, "max_pnl_deviation", "pnl_deviation", gate.max_pnl_deviation, hold, ""),
        _maximum(
            evidence, "max_slippage_bps", "avg_slippage_bps", gate.max_slippage_bps, hold, "bps"
        ),
        _maximum(
            evidence,
            "max_execution_issues",
            "execution_issues",
            gate.max_execution_issues,
            hold,
            "issues",
        ),
        _maximum(
            evidence,
            "demo_demotion.max_drawdown",
            "demo_max_drawdown",
            demotion.max_drawdown,
            "disabled",
            "of peak",
        ),
        _deviation_demotion(evidence, demotion),
    ]
    return results


def evaluate_for_status(
    status: SystemStatus, evidence: Evidence, policy: PromotionPolicy
) -> list[RuleResult]:
    """The rules that apply to a system in ``status`` (empty when the policy has none)."""
    if status == SystemStatus.CANDIDATE:
        return evaluate_rules(evidence, policy.candidate_to_demo)
    if status == SystemStatus.DEMO:
        return evaluate_demo_rules(evidence, policy.demo_to_live_test, policy.demo_demotion)
    return []


def expected_rules(status: SystemStatus, policy: PromotionPolicy) -> dict[str, RuleResult]:
    """Every rule the policy requires for ``status``, by name, evaluated on empty evidence.

    Which rules exist, their metric, threshold, comparison and consequence depend on the policy
    only, never on the evidence; the state machine uses this to check that rule results were
    produced under the policy it decides with.
    """
    empty = Evidence(system_id="-", spec_hash="-")
    return {result.rule: result for result in evaluate_for_status(status, empty, policy)}


# --- rule builders -------------------------------------------------------------------------------


def _minimum(
    evidence: Evidence, rule: str, metric: str, threshold: float, on_fail: OnFail, unit: str
) -> RuleResult:
    return _compare(evidence, rule, metric, threshold, ">=", on_fail, unit)


def _maximum(
    evidence: Evidence, rule: str, metric: str, threshold: float, on_fail: OnFail, unit: str
) -> RuleResult:
    return _compare(evidence, rule, metric, threshold, "<=", on_fail, unit)


def _compare(
    evidence: Evidence,
    rule: str,
    metric: str,
    threshold: float,
    comparison: Comparison,
    on_fail: OnFail,
    unit: str,
) -> RuleResult:
    value, problem = _number(evidence, metric)
    base = {"rule": rule, "metric": metric, "threshold": threshold, "comparison": comparison}
    if problem is not None:
        message = f"{rule}: {problem}; the rule cannot pass without it"
        return RuleResult(
            **base, passed=False, measured=None, on_fail=on_fail, missing=True, message=message
        )
    assert value is not None
    passed = value >= threshold if comparison == ">=" else value <= threshold
    shown = f"{metric} = {_fmt(value)}{' ' + unit if unit else ''}"
    if passed:
        message = f"{rule}: {shown} {comparison} {_fmt(threshold)}"
    else:
        violated = "<" if comparison == ">=" else ">"
        message = f"{rule}: {shown} {violated} {_fmt(threshold)} (required {comparison})"
    return RuleResult(**base, passed=passed, measured=value, on_fail=on_fail, message=message)


def _must_be_true(evidence: Evidence, rule: str, metric: str, on_fail: OnFail) -> RuleResult:
    base = {"rule": rule, "metric": metric, "threshold": True, "comparison": "=="}
    raw = evidence.metrics.get(metric)
    if not isinstance(raw, bool):
        problem = _describe_unusable(metric, raw, "true or false")
        message = f"{rule}: {problem}; the rule cannot pass without it"
        return RuleResult(
            **base, passed=False, measured=None, on_fail=on_fail, missing=True, message=message
        )
    message = f"{rule}: {metric} = {str(raw).lower()}" + ("" if raw else " (required true)")
    return RuleResult(**base, passed=raw, measured=raw, on_fail=on_fail, message=message)


def _evidence_present(evidence: Evidence) -> RuleResult:
    count = len(set(evidence.evidence_ids))
    passed = count >= 1
    message = (
        f"evidence_present: {count} evidence document id(s)"
        if passed
        else "evidence_present: no evidence document ids (backtest/robustness/demo ids required)"
    )
    return RuleResult(
        rule="evidence_present",
        metric="evidence_ids",
        passed=passed,
        measured=float(count),
        threshold=1,
        comparison=">=",
        on_fail="hold",
        message=message,
    )


def _deviation_demotion(evidence: Evidence, demotion: DemoDemotion) -> RuleResult:
    """pnl_deviation <= max_pnl_deviation, judged only from min_trades_before_rework trades on."""
    rule, threshold = "demo_demotion.max_pnl_deviation", demotion.max_pnl_deviation
    base = {
        "rule": rule,
        "metric": "pnl_deviation",
        "threshold": threshold,
        "comparison": "<=",
        "on_fail": "rework_required",
    }
    trades, problem = _number(evidence, "demo_trades")
    if problem is not None:
        message = f"{rule}: {problem} (needed to know whether the rule applies yet)"
        return RuleResult(**base, passed=False, measured=None, missing=True, message=message)
    assert trades is not None
    if trades < demotion.min_trades_before_rework:
        deviation, _ = _number(evidence, "pnl_deviation")
        message = (
            f"{rule}: not judged yet (demo_trades = {_fmt(trades)} < "
            f"min_trades_before_rework = {demotion.min_trades_before_rework})"
        )
        return RuleResult(**base, passed=True, measured=deviation, message=message)
    return _maximum(evidence, rule, "pnl_deviation", threshold, "rework_required", "")


# --- helpers -------------------------------------------------------------------------------------


def _number(evidence: Evidence, metric: str) -> tuple[float | None, str | None]:
    """A finite number from the evidence, or a description of why there is none."""
    raw = evidence.metrics.get(metric)
    if isinstance(raw, bool) or raw is None:
        return None, _describe_unusable(metric, raw, "a number")
    value = float(raw)
    if not math.isfinite(value):
        return None, _describe_unusable(metric, value, "a number")
    return value, None


def _describe_unusable(metric: str, raw: MetricValue, expected: str) -> str:
    if raw is None:
        return f"{metric} is missing from the evidence"
    if isinstance(raw, float) and math.isnan(raw):
        return f"{metric} is NaN"
    if isinstance(raw, float) and math.isinf(raw):
        return f"{metric} is not finite ({raw})"
    return f"{metric} = {raw!r} is not {expected}"


def _regimes_unit(evidence: Evidence) -> str:
    tested, problem = _number(evidence, "regimes_tested")
    return f"of {_fmt(tested)} regimes" if problem is None and tested is not None else "regimes"


def _fmt(value: float) -> str:
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e15):
        return str(int(value))
    return f"{value:.6g}"


def _hashable(value: MetricValue) -> MetricValue | str:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value

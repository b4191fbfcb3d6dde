"""The demo promotion rules as asset checks of ``demo_daily_evaluation``.

One check per rule of promotion.rules.evaluate_demo_rules (names with ``.`` written ``__``). A
check passes when every system the rules were applied to that day passed the rule; its metadata
lists, per system, the measured value, the threshold, the comparison and the rule's message.
Gates to live_test (on_fail ``hold``) are warnings: failing one only means "keep trading on
demo". Demotion rules are errors and blocking: a failure stops anything downstream in the run.
"""

from collections.abc import Sequence

import dagster as dg

from factory_pipeline.defs.ui import table
from factory_pipeline.promotion import PromotionOutcome

#: Demo rule name -> (description, demotion rule?). Kept equal to the policy's demo rules by a
#: test (promotion.rules.expected_rules for status demo).
DEMO_RULE_CHECKS: dict[str, tuple[str, bool]] = {
    "evidence_present": ("The evaluation carries evidence document ids.", False),
    "min_days": ("Gate to live_test: demo_days >= demo_to_live_test.min_days.", False),
    "min_trades": ("Gate to live_test: demo_trades >= demo_to_live_test.min_trades.", False),
    "max_pnl_deviation": (
        "Gate to live_test: pnl_deviation <= demo_to_live_test.max_pnl_deviation.",
        False,
    ),
    "max_slippage_bps": (
        "Gate to live_test: avg_slippage_bps <= demo_to_live_test.max_slippage_bps.",
        False,
    ),
    "max_execution_issues": (
        "Gate to live_test: execution_issues <= demo_to_live_test.max_execution_issues.",
        False,
    ),
    "demo_demotion.max_drawdown": (
        "Demotion to disabled: demo_max_drawdown <= demo_demotion.max_drawdown.",
        True,
    ),
    "demo_demotion.max_pnl_deviation": (
        "Demotion to rework_required: pnl_deviation <= demo_demotion.max_pnl_deviation once "
        "demo_trades >= min_trades_before_rework.",
        True,
    ),
}

#: The kill-switch check of the runner asset.
KILL_SWITCH_CHECK = "kill_switch_clear"


def check_name(rule: str) -> str:
    """A Dagster-safe check name for a rule name."""
    return rule.replace(".", "__")


def demo_rule_check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(check_name(rule), asset=asset, blocking=demotion, description=desc)
        for rule, (desc, demotion) in DEMO_RULE_CHECKS.items()
    ]


def demo_rule_check_results(outcomes: Sequence[PromotionOutcome]) -> list[dg.AssetCheckResult]:
    """One result per demo rule over every system the rules were applied to."""
    results = []
    for rule, (_, demotion) in DEMO_RULE_CHECKS.items():
        rows = []
        for outcome in outcomes:
            for result in outcome.rule_results:
                if result.rule != rule:
                    continue
                rows.append(
                    {
                        "system_id": outcome.decision.system_id,
                        "passed": result.passed,
                        "measured": "" if result.measured is None else float(result.measured),
                        "comparison": result.comparison,
                        "threshold": float(result.threshold),
                        "on_fail": result.on_fail,
                        "message": result.message,
                    }
                )
        failed = [row["system_id"] for row in rows if not row["passed"]]
        metadata: dict[str, object] = {
            "systems": len(rows),
            "failed_systems": ", ".join(failed) or "none",
        }
        if rows:
            metadata["results"] = table(rows)
            metadata["threshold"] = rows[0]["threshold"]
        results.append(
            dg.AssetCheckResult(
                check_name=check_name(rule),
                passed=not failed,
                severity=dg.AssetCheckSeverity.ERROR if demotion else dg.AssetCheckSeverity.WARN,
                metadata=metadata,
            )
        )
    return results

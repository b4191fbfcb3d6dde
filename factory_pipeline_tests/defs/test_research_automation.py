"""Declarative automation of the backtest track: new market data for one symbol re-runs exactly
that symbol's four regime partitions, and a broken sanity gate (ERROR) holds them back."""

from __future__ import annotations

import dagster as dg

from factory_pipeline.defs.market.assets import regime_labels
from factory_pipeline.defs.research.assets import (
    backtests,
    candidate_systems,
    promotion_decisions,
    system_robustness,
)
from factory_pipeline.defs.research.checks import candidate_sanity_checks, promotion_gate_checks
from factory_pipeline.defs.resources import build_resources
from factory_pipeline.market.regimes import REGIMES

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def _definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[
            regime_labels,
            candidate_systems,
            backtests,
            system_robustness,
            promotion_decisions,
        ],
        asset_checks=[candidate_sanity_checks, promotion_gate_checks],
        resources=build_resources(),
    )


def _requested(defs: dg.Definitions, instance, cursor=None) -> tuple[dict[str, list[str]], object]:
    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    out = {}
    for result in evaluation.results:
        if result.true_subset.size:
            value = result.true_subset.get_internal_value()
            out[result.key.to_user_string()] = sorted(value.get_partition_keys())
    return out, evaluation.cursor


def _designed(instance, *, sanity_severity: dg.AssetCheckSeverity | None = None) -> None:
    """Regime labels of every symbol and a designed candidate set with its sanity verdicts."""
    for symbol in SYMBOLS:
        instance.report_runless_asset_event(
            dg.AssetMaterialization("regime_labels", partition=symbol)
        )
    instance.report_runless_asset_event(dg.AssetMaterialization("candidate_systems"))
    for spec in candidate_sanity_checks.check_specs:
        broken = sanity_severity is not None and spec.name == "sanity_module_refs"
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey("candidate_systems"),
                check_name=spec.name,
                passed=not broken,
                severity=sanity_severity or dg.AssetCheckSeverity.WARN,
            )
        )


def test_new_market_data_reruns_that_symbols_backtest_partitions():
    defs = _definitions()
    with dg.instance_for_test() as instance:
        _designed(instance)
        first, cursor = _requested(defs, instance)
        assert "backtests" not in first  # nothing changed since the condition started
        instance.report_runless_asset_event(
            dg.AssetMaterialization("regime_labels", partition="ETHUSDT")
        )
        second, _ = _requested(defs, instance, cursor)
        assert second.get("backtests") == sorted(f"{r}|ETHUSDT" for r in REGIMES)


def test_a_broken_sanity_gate_holds_the_backtests_back():
    defs = _definitions()
    with dg.instance_for_test() as instance:
        _designed(instance, sanity_severity=dg.AssetCheckSeverity.ERROR)
        _, cursor = _requested(defs, instance)
        instance.report_runless_asset_event(
            dg.AssetMaterialization("regime_labels", partition="ETHUSDT")
        )
        second, _ = _requested(defs, instance, cursor)
        assert "backtests" not in second


def test_even_a_warning_failure_holds_the_automation_back():
    """Why the sanity and gate checks pass when their gate held (docs/decisions.md, 16): Dagster's
    blocking-checks condition ignores severity, so a WARN failure would stall the backtests."""
    defs = _definitions()
    with dg.instance_for_test() as instance:
        _designed(instance, sanity_severity=dg.AssetCheckSeverity.WARN)
        _, cursor = _requested(defs, instance)
        instance.report_runless_asset_event(
            dg.AssetMaterialization("regime_labels", partition="SOLUSDT")
        )
        second, _ = _requested(defs, instance, cursor)
        assert "backtests" not in second

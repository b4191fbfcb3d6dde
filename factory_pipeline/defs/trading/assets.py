"""Trading track assets: the demo runner's bar-close decisions and the daily demo evaluation.

Thin shell: the runner asset opens the venue and gateway through the trading resource and calls
demo.runner.run_bar_close for one bar close; the evaluation asset calls
demo.evaluation.evaluate_demo_day and apply_demo_rules for one UTC day and reports the demo rules
as asset checks. Semantics: docs/demo_evaluation.md, docs/demo_runner.md.
"""

import datetime as dt
import time

import dagster as dg
import numpy as np

from factory_pipeline.defs.resources import FactoryStoreResource
from factory_pipeline.defs.trading.checks import (
    KILL_SWITCH_CHECK,
    demo_rule_check_results,
    demo_rule_check_specs,
)
from factory_pipeline.defs.trading.partitions import demo_day_partitions
from factory_pipeline.defs.trading.resources import TradingResource
from factory_pipeline.defs.ui import line_plot, table
from factory_pipeline.demo.evaluation import (
    apply_demo_rules,
    evaluate_demo_day,
    recorded_outcomes,
)
from factory_pipeline.demo.evaluation_metrics import day_start_ms
from factory_pipeline.market.timeframes import timeframe_ms
from factory_pipeline.schemas import DemoEvaluationDoc, SystemStatus
from factory_pipeline.store import DocumentStore

TRADING_GROUP = "trading"
#: Columns of the per-system evaluation table (metric names of the evaluation documents).
EVALUATION_COLUMNS = (
    "day_realized_pnl",
    "realized_pnl",
    "demo_trades",
    "demo_days",
    "hit_rate",
    "expected_win_rate",
    "realized_r",
    "expected_r",
    "expectancy_pct",
    "backtest_expectancy_pct",
    "pnl_deviation",
    "avg_slippage_bps",
    "model_slippage_bps",
    "execution_issues",
    "demo_max_drawdown",
)


class BarCloseConfig(dg.Config):
    """Which bar close to trade: epoch ms of the close; 0 = the latest closed base-timeframe bar
    by the wall clock (the schedule always sets it)."""

    bar_close_ms: int = 0


@dg.asset(
    pool="duckdb",
    group_name=TRADING_GROUP,
    kinds={"duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            KILL_SWITCH_CHECK,
            asset="demo_bar_decisions",
            blocking=True,
            description="The global kill switch is not tripped (latched; a human resets it).",
        )
    ],
    description=(
        "One bar close of the demo runner: every system in demo decides on its latest closed "
        "bars with its frozen spec and trades through the order gateway (risk checks, kill "
        "switch, deterministic orderLinkIds); one forecast document per system and symbol. "
        "Re-running a bar close sends nothing new."
    ),
)
def demo_bar_decisions(
    context: dg.AssetExecutionContext,
    config: BarCloseConfig,
    factory_store: FactoryStoreResource,
    trading: TradingResource,
) -> dg.MaterializeResult:
    from factory_pipeline.demo.runner import run_bar_close
    from factory_pipeline.store.market import MarketStore

    bar_close = config.bar_close_ms or latest_bar_close_ms(
        int(time.time() * 1000), trading.base_timeframe
    )
    bar_ms = timeframe_ms(trading.base_timeframe)
    # One DuckDB connection for the whole bar close: opening the file per operation would cost
    # more than deciding 20 systems.
    with factory_store.store().pinned() as store:
        market = MarketStore(store)
        opens = [market.last_open_time(s, trading.base_timeframe) for s in market.symbols()]
        last_close = max((o + bar_ms for o in opens if o is not None), default=None)
        with trading.open_gateway(store, clock_ms=bar_close) as gateway:
            # Stale market data trips the (latched) kill switch before any decision is taken.
            fresh = gateway.check_data_freshness(
                last_bar_close_ms=last_close, bar_ms=bar_ms, now_ms=bar_close
            )
            report = run_bar_close(store, gateway, bar_close_ms=bar_close)
            gateway.sync_fills()
            reconciliation = gateway.reconcile()
            switch = gateway.kill_switch.state()
    if not fresh:
        context.log.error(f"market data stale at {bar_close}: last closed bar {last_close}")
    rows = [
        {
            "system_id": r.system_id,
            "symbol": r.symbol,
            "action": r.action,
            "orders": ", ".join(r.orders),
            "statuses": ", ".join(r.statuses),
            "note": r.note,
        }
        for r in report.results
    ]
    context.log.info(f"bar close {bar_close}: {report.summary()}")
    metadata: dict[str, object] = {
        "bar_close": dt.datetime.fromtimestamp(bar_close / 1000, tz=dt.UTC).isoformat(),
        "bar_close_ms": bar_close,
        "decisions": report.decisions,
        "orders_sent": len(report.orders),
        "refused_systems": len(report.refused),
        "skipped": len(report.skipped),
        "reconciliation_records": len(reconciliation.records),
        "kill_switch_tripped": switch.tripped,
        "kill_switch_reason": switch.reason or "none",
    }
    if rows:
        metadata["decisions_table"] = table(rows)
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=KILL_SWITCH_CHECK,
                passed=not switch.tripped,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "tripped": switch.tripped,
                    "reason": switch.reason or "none",
                    "since_ms": switch.since_ms or 0,
                    "actor": switch.actor or "none",
                    "readable": switch.readable,
                },
            )
        ],
    )


@dg.asset(
    partitions_def=demo_day_partitions,
    pool="duckdb",
    group_name=TRADING_GROUP,
    kinds={"duckdb"},
    deps=[demo_bar_decisions],
    check_specs=demo_rule_check_specs("demo_daily_evaluation"),
    description=(
        "Daily evaluation of every system trading on demo for one UTC day: realized PnL (day and "
        "cumulative), hit rate and R against the backtest's expectation, slippage against the "
        "slippage model, execution issues, demo days and drawdown. Applies the demo promotion "
        "rules through the promotion state machine (promotion to live_test, demotion to "
        "rework_required / disabled), recorded in the status-transition audit table."
    ),
)
def demo_daily_evaluation(
    context: dg.AssetExecutionContext,
    factory_store: FactoryStoreResource,
    trading: TradingResource,
) -> dg.MaterializeResult:
    day = dt.date.fromisoformat(context.partition_key)
    policy = trading.policy()
    store = factory_store.store()
    evaluations = evaluate_demo_day(store, day, policy=policy)
    applied = apply_demo_rules(store, evaluations, policy)
    # systems already moved by an earlier run of this day report that run's decision
    done = {o.decision.system_id for o in applied}
    outcomes = applied + [
        o for o in recorded_outcomes(store, evaluations) if o.decision.system_id not in done
    ]
    decided = {o.decision.system_id: o.decision for o in outcomes}
    rows = []
    for evaluation in evaluations:
        decision = decided.get(evaluation.system_id)
        row: dict[str, object] = {
            "system_id": evaluation.system_id,
            "status_before": evaluation.status.value,
            "status_after": decision.to_status.value if decision else evaluation.status.value,
        }
        row |= {name: _number(evaluation.metrics.get(name)) for name in EVALUATION_COLUMNS}
        rows.append(row)
    moved = [o.decision for o in outcomes if o.decision.changed]
    metadata: dict[str, object] = {
        "day": day.isoformat(),
        "systems_evaluated": len(evaluations),
        "rules_applied": len(applied),
        "promoted_to_live_test": sum(d.to_status == SystemStatus.LIVE_TEST for d in moved),
        "demoted": sum(d.to_status != SystemStatus.LIVE_TEST for d in moved),
        "day_realized_pnl": float(
            sum(e.metrics.get("day_realized_pnl") or 0.0 for e in evaluations)
        ),
        "policy_hash": policy.content_hash,
    }
    if rows:
        metadata["evaluations"] = table(rows)
    if moved:
        metadata["transitions"] = table(
            [
                {
                    "system_id": d.system_id,
                    "from": d.from_status.value,
                    "to": d.to_status.value,
                    "reasons": "; ".join(d.reasons),
                }
                for d in moved
            ]
        )
    plot = _cumulative_pnl_series(DocumentStore(store), [e.system_id for e in evaluations], day)
    if plot:
        metadata["cumulative_realized_pnl"] = line_plot(plot, "Cumulative realized PnL", "USDT")
    context.log.info(
        f"{day}: {len(evaluations)} system(s) evaluated, {len(moved)} status change(s)"
    )
    return dg.MaterializeResult(metadata=metadata, check_results=demo_rule_check_results(outcomes))


def latest_bar_close_ms(now_ms: int, timeframe: str) -> int:
    """The close of the latest bar of ``timeframe`` that has closed at ``now_ms``."""
    step = timeframe_ms(timeframe)
    return now_ms // step * step


def _cumulative_pnl_series(
    docs: DocumentStore, system_ids: list[str], through: dt.date
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{system: (day ms, cumulative realized PnL)} from the stored evaluations up to ``through``."""
    series = {}
    for system_id in system_ids:
        points = sorted(
            (doc.day, doc.metrics.get("realized_pnl"))
            for doc in docs.list(DemoEvaluationDoc, {"system_id": system_id})
            if doc.day <= through and doc.metrics.get("realized_pnl") is not None
        )
        if points:
            series[system_id] = (
                np.array([day_start_ms(d) for d, _ in points], dtype=np.int64),
                np.array([float(v) for _, v in points]),
            )
    return series


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None

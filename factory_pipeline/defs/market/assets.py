"""Market track assets: raw bars (symbol x day), resampled bars, regime labels.

Thin shell: fetch through the configured MarketSource, validate, run the quality checks, write
through MarketStore in one transaction per symbol span, and attach UI metadata. A malformed batch
fails the step before anything is written, so the previous good data stays intact.
"""

import datetime as dt
import time

import dagster as dg
import numpy as np

from factory_pipeline.defs.partitions import (
    market_partitions,
    split_market_keys,
    symbol_partitions,
)
from factory_pipeline.defs.resources import FactoryStoreResource, MarketDataResource
from factory_pipeline.defs.ui import line_plot, table
from factory_pipeline.market.quality import QUALITY_CHECKS, check_batch
from factory_pipeline.market.regimes import REGIMES, label_regimes, regime_spans
from factory_pipeline.market.timeframes import DAY_MS
from factory_pipeline.store.market import MarketStore

MARKET_GROUP = "market"
HEAVY_METADATA_MAX_PARTITIONS = 93


def _day_ms(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp() * 1000)


def _spans_ms(context: dg.AssetExecutionContext) -> dict[str, list[tuple[int, int]]]:
    """{symbol: [(start_ms, end_ms)]} for the partitions of this run."""
    return {
        symbol: [(_day_ms(first), _day_ms(last) + DAY_MS) for first, last in spans]
        for symbol, spans in split_market_keys(list(context.partition_keys)).items()
    }


@dg.asset(
    partitions_def=market_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    group_name=MARKET_GROUP,
    kinds={"duckdb"},
    check_specs=[
        dg.AssetCheckSpec(name, asset="market_bars", blocking=blocking, description=desc)
        for name, (desc, blocking) in QUALITY_CHECKS.items()
    ],
    description=(
        "OHLCV bars at the base timeframe plus mark price, funding settlements and open interest, "
        "per symbol and UTC day, from the configured source (synthetic by default), and the "
        "higher timeframes (1h, 4h, 1d) resampled from them in DuckDB with a completeness flag. "
        "Validated before writing; a re-materialization replaces the partition's rows."
    ),
)
def market_bars(
    context: dg.AssetExecutionContext,
    factory_store: FactoryStoreResource,
    market_data: MarketDataResource,
) -> dg.MaterializeResult:
    source = market_data.build_source()
    market = MarketStore(factory_store.store())
    timeframe = market_data.base_timeframe
    now_ms = int(time.time() * 1000)
    batches = []
    for symbol, spans in _spans_ms(context).items():
        for start_ms, end_ms in spans:
            context.log.info(
                f"fetching {symbol} {timeframe} {start_ms}..{end_ms} from {source.name}"
            )
            batches.append(source.fetch(symbol, timeframe, start_ms, end_ms))
    # Quality checks run on every batch before anything is written.
    results_by_check: dict[str, list] = {}
    expect_funding = market_data.source != "files" or any(b.funding.num_rows for b in batches)
    for batch in batches:
        for result in check_batch(batch, now_ms=now_ms, expect_funding=expect_funding):
            results_by_check.setdefault(result.name, []).append((batch.symbol, result))
    rows = {"ohlcv": 0, "mark": 0, "funding": 0, "open_interest": 0}
    resampled: dict[str, int] = {}
    for batch in batches:
        written = market.write_batch(batch)
        for key, value in written.items():
            rows[key] = rows.get(key, 0) + value
        # Higher timeframes are derived in the same step: one materialization event per
        # partition instead of two (Dagster's per-partition event cost dominates backfills).
        for tf, n in market.resample(
            batch.symbol, timeframe, market_data.resample_timeframes, batch.start_ms, batch.end_ms
        ).items():
            resampled[tf] = resampled.get(tf, 0) + n
    check_results = []
    for name, (_, blocking) in QUALITY_CHECKS.items():
        found = results_by_check.get(name, [])
        failed = [(sym, r) for sym, r in found if not r.passed]
        check_results.append(
            dg.AssetCheckResult(
                check_name=name,
                passed=not failed,
                severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
                metadata={
                    "symbols_checked": len({sym for sym, _ in found}),
                    "failures": "; ".join(f"{sym}: {r.detail}" for sym, r in failed)[:2000]
                    or "none",
                },
            )
        )
    coverage = [c for c in market.coverage() if c.get("timeframe") == timeframe]
    plot = {
        b.symbol: (
            b.ohlcv.column("open_time").to_numpy(),
            b.ohlcv.column("close").to_numpy() / max(b.ohlcv.column("close")[0].as_py(), 1e-12),
        )
        for b in batches
        if b.ohlcv.num_rows
    }
    metadata: dict[str, object] = {
        "source": source.name,
        "timeframe": timeframe,
        "partitions": len(context.partition_keys),
        "bars_written": rows.get("ohlcv", 0),
        "funding_rows": rows.get("funding", 0),
        "open_interest_rows": rows.get("open_interest", 0),
    } | {f"bars_{tf}": n for tf, n in resampled.items()}
    # Dagster copies run-level metadata onto every partition's materialization event, so the
    # heavy items (table, plot) are attached only to small runs; a backfill stays light.
    if len(context.partition_keys) <= HEAVY_METADATA_MAX_PARTITIONS:
        metadata["coverage"] = table(coverage) if coverage else "empty"
        if plot:
            metadata["close_normalized"] = line_plot(plot, "Close / first close", "x")
    return dg.MaterializeResult(metadata=metadata, check_results=check_results)


@dg.asset(
    partitions_def=symbol_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    group_name=MARKET_GROUP,
    kinds={"duckdb"},
    deps=[
        dg.AssetDep(
            market_bars,
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                partition_dimension_name="symbol"
            ),
        )
    ],
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Regime labels per symbol: each window of the history classified as trend_up, trend_down, "
        "range or high_vol (rule in docs/market_data.md). Backtests are partitioned by these."
    ),
)
def regime_labels(
    context: dg.AssetExecutionContext,
    factory_store: FactoryStoreResource,
    market_data: MarketDataResource,
) -> dg.MaterializeResult:
    market = MarketStore(factory_store.store())
    summary = []
    for symbol in context.partition_keys:
        frame = market.load_frame(symbol, market_data.base_timeframe)
        labels = label_regimes(frame)
        market.write_regimes(symbol, labels)
        regimes = labels.column("regime").to_pylist()
        for regime in REGIMES:
            spans = regime_spans(labels, regime)
            summary.append(
                {
                    "symbol": symbol,
                    "regime": regime,
                    "windows": regimes.count(regime),
                    "spans": len(spans),
                    "days": round(sum(e - s for s, e in spans) / DAY_MS, 1),
                }
            )
        context.log.info(f"{symbol}: {len(regimes)} windows labelled")
    by_regime = {r: sum(row["windows"] for row in summary if row["regime"] == r) for r in REGIMES}
    return dg.MaterializeResult(
        metadata={"regimes": table(summary)}
        | {f"windows_{r}": n for r, n in by_regime.items()}
        | {
            "symbols": len(context.partition_keys),
            "total_windows": int(np.sum(list(by_regime.values()))),
        }
    )


market_daily_job = dg.define_asset_job(
    "market_daily_job",
    selection=dg.AssetSelection.assets(market_bars),
    description="Fetch and resample the latest day of market data for every symbol.",
)

market_daily_schedule = dg.build_schedule_from_partitioned_job(
    market_daily_job, hour_of_day=0, minute_of_hour=30, name="market_daily_schedule"
)

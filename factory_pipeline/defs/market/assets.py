"""Market track assets: raw bars (symbol x day), resampled bars, regime labels.

Thin shell: fetch through the configured MarketSource, validate, run the quality checks, write
through MarketStore in one transaction per symbol span, and attach UI metadata. A malformed batch
fails the step before anything is written, so the previous good data stays intact.
"""

from __future__ import annotations

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
from factory_pipeline.market.quality import check_market_data
from factory_pipeline.market.regimes import REGIMES, label_regimes, regime_spans
from factory_pipeline.market.timeframes import DAY_MS
from factory_pipeline.store.market import MarketStore

MARKET_GROUP = "market"

#: (check name, blocking, description): one Dagster asset check per market quality check.
#: Blocking where downstream results would be wrong.
QUALITY_CHECKS: tuple[tuple[str, bool, str], ...] = (
    ("unique_timestamps", True, "No two bars share an open time."),
    ("monotonic_timestamps", True, "Open times strictly increase."),
    ("gaps", False, "Missing bars beyond the tolerance, with their spans."),
    ("ohlc_consistency", True, "low <= open, close <= high on every bar."),
    ("positive_prices_nonneg_volume", True, "Prices > 0 and volume >= 0."),
    ("funding_complete", True, "A funding rate for every settlement time in range."),
    ("no_future_timestamps", True, "Nothing stamped after the time of the run."),
)


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
        for name, blocking, desc in QUALITY_CHECKS
    ],
    description=(
        "OHLCV bars at the base timeframe plus mark price, funding settlements and open interest, "
        "per symbol and UTC day, from the configured source (synthetic by default). Validated "
        "before writing; a re-materialization replaces the partition's rows."
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
            context.log.info(f"fetching {symbol} {timeframe} {start_ms}..{end_ms} from {source.name}")
            batches.append(source.fetch(symbol, timeframe, start_ms, end_ms))
    # Quality checks run on every batch before anything is written.
    results_by_check: dict[str, list] = {}
    for batch in batches:
        for result in check_market_data(batch, now_ms=now_ms):
            results_by_check.setdefault(result.name, []).append((batch.symbol, result))
    rows = {"ohlcv": 0, "mark": 0, "funding": 0, "open_interest": 0}
    for batch in batches:
        written = market.write_batch(batch)
        for key, value in written.items():
            rows[key] = rows.get(key, 0) + value
    check_results = []
    for name, blocking, _ in QUALITY_CHECKS:
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
        "coverage": table(coverage) if coverage else "empty",
    }
    if plot:
        metadata["close_normalized"] = line_plot(plot, "Close / first close", "x")
    return dg.MaterializeResult(metadata=metadata, check_results=check_results)


@dg.asset(
    partitions_def=market_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    group_name=MARKET_GROUP,
    kinds={"duckdb"},
    deps=[market_bars],
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Higher-timeframe bars (1h, 4h, 1d) resampled in DuckDB from the base bars, each with its "
        "base-bar count and a completeness flag (False when base bars are missing inside it)."
    ),
)
def market_bars_resampled(
    context: dg.AssetExecutionContext,
    factory_store: FactoryStoreResource,
    market_data: MarketDataResource,
) -> dg.MaterializeResult:
    market = MarketStore(factory_store.store())
    counts: dict[str, int] = {}
    for symbol, spans in _spans_ms(context).items():
        for start_ms, end_ms in spans:
            written = market.resample(
                symbol, market_data.base_timeframe, market_data.resample_timeframes,
                start_ms, end_ms,
            )
            for tf, n in written.items():
                counts[tf] = counts.get(tf, 0) + n
    return dg.MaterializeResult(
        metadata={f"bars_{tf}": n for tf, n in counts.items()}
        | {"timeframes": ", ".join(market_data.resample_timeframes)}
    )


@dg.asset(
    partitions_def=symbol_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    group_name=MARKET_GROUP,
    kinds={"duckdb"},
    deps=[
        dg.AssetDep(
            market_bars_resampled,
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
        | {"symbols": len(context.partition_keys), "total_windows": int(np.sum(list(by_regime.values())))}
    )


market_daily_job = dg.define_asset_job(
    "market_daily_job",
    selection=dg.AssetSelection.assets(market_bars, market_bars_resampled),
    description="Fetch and resample the latest day of market data for every symbol.",
)

market_daily_schedule = dg.build_schedule_from_partitioned_job(
    market_daily_job, hour_of_day=0, minute_of_hour=30, name="market_daily_schedule"
)

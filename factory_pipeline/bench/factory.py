"""Benchmark suite ``factory``: every candidate backtested on every partition of the embedded default.

Builds the embedded default in a temporary DuckDB file (synthetic market of the default settings,
regime labels, the module library, the offline candidate design without a vector index: lexical
retrieval), then measures the research flow exactly as the assets run it:

- ``systems``: sanity-passed candidates backtested; ``partitions``: symbol x regime partitions;
- ``backtest_wall_s``: seconds to backtest every candidate on every partition (signals, regime
  windows, metrics, storing results and trade logs, trial ledger);
- ``system_bars_per_s``: sum over partitions of systems x bars in the partition's windows,
  divided by ``backtest_wall_s``;
- ``robustness_wall_s``: seconds to assess every system (walk-forward, PBO, DSR, stress);
- ``promoted`` / ``rejected``: decisions of the promotion policy (rejected = rework_required
  or disabled; candidates held for a missing metric count in neither);
- ``design_wall_s``, ``market_wall_s``: setup costs, for context.

The candidates come from the module library only (no books are ingested here), so the set, and
with it how many reach demo, differs from `make run`'s, whose design also sees the modules the
knowledge track proposes.

``quick``: one symbol and the first 180 days of the history.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

from factory_pipeline.flows.ideas import design_and_store
from factory_pipeline.flows.research import (
    assess_systems,
    decide_promotions,
    run_backtest_partitions,
)
from factory_pipeline.llm import build_llm
from factory_pipeline.market.regimes import REGIMES, label_regimes
from factory_pipeline.market.source import build_source
from factory_pipeline.promotion.policy import default_policy_path, load_policy
from factory_pipeline.schemas import SystemStatus
from factory_pipeline.settings import FactorySettings, default_settings
from factory_pipeline.store import DocumentStore, Store
from factory_pipeline.store.market import MarketStore
from factory_pipeline.strategy.modules import load_module_library

#: No speed target is set for this suite by the issue; the figures are tracked over time.
TARGETS: dict[str, tuple[str, float]] = {}

RESAMPLE_TIMEFRAMES: tuple[str, ...] = ("1h", "4h", "1d")


def run(quick: bool = False) -> dict[str, float]:
    """Measure the research flow on the embedded default; see the module docstring."""
    base = default_settings()
    with tempfile.TemporaryDirectory(prefix="factory-bench-flow-") as folder:
        settings = _bench_settings(base, Path(folder), quick)
        store = Store(settings.database_path)
        t0 = time.perf_counter()
        build_market(store, settings)
        market_wall_s = time.perf_counter() - t0
        docs = DocumentStore(store)
        library = load_module_library(base.modules_dir)
        docs.upsert(library.values(), partition_key="library")
        design = design_and_store(
            store,
            goals_dir=base.goals_dir,
            timeframe=settings.base_timeframe,
            index=None,
            llm=build_llm(settings, store),
        )
        keys = [f"{r}|{s}" for s in settings.symbols for r in REGIMES]
        t0 = time.perf_counter()
        outcomes = run_backtest_partitions(store, keys, timeframe=settings.base_timeframe)
        backtest_wall_s = time.perf_counter() - t0
        system_bars = sum(o.systems * o.span_bars for o in outcomes)
        assessed = assess_systems(
            store, timeframe=settings.base_timeframe, symbols=settings.symbols
        )
        rows = decide_promotions(store, load_policy(default_policy_path(base)))
        store.close()
    rejected = {SystemStatus.REWORK_REQUIRED.value, SystemStatus.DISABLED.value}
    return {
        "systems": float(max((o.systems for o in outcomes), default=0)),
        "candidates": float(len(design.systems)),
        "partitions": float(len(outcomes)),
        "backtest_wall_s": backtest_wall_s,
        "system_bars_per_s": system_bars / backtest_wall_s if backtest_wall_s else 0.0,
        "robustness_wall_s": assessed.wall_s,
        "promoted": float(sum(1 for r in rows if r.to_status == SystemStatus.DEMO.value)),
        "rejected": float(sum(1 for r in rows if r.to_status in rejected)),
        "design_wall_s": design.wall_s,
        "market_wall_s": market_wall_s,
    }


def build_market(store: Store, settings: FactorySettings) -> None:
    """Synthetic bars of every symbol, resampled, with regime labels (what make run stores)."""
    source = build_source(settings)
    market = MarketStore(store)
    for symbol in settings.symbols:
        batch = source.fetch_all(symbol, settings.base_timeframe)
        market.write_batch(batch, source="bench")
        market.resample(
            symbol, settings.base_timeframe, RESAMPLE_TIMEFRAMES, batch.start_ms, batch.end_ms
        )
        frame = market.load_frame(symbol, settings.base_timeframe)
        market.write_regimes(symbol, label_regimes(frame))


def _bench_settings(base: FactorySettings, folder: Path, quick: bool) -> FactorySettings:
    update: dict[str, object] = {"data_dir": folder, "duckdb_path": folder / "bench.duckdb"}
    if quick:
        update["symbols"] = base.symbols[:1]
        update["synthetic_end"] = base.synthetic_start + dt.timedelta(days=179)
    return base.model_copy(update=update)


if __name__ == "__main__":  # pragma: no cover - manual use
    for key, value in run(quick=False).items():
        print(f"{key:24s} {value:,.3f}")

"""Benchmark suite ``market``: generate, store and resample one symbol's 1-minute bars.

Figures (all in one process, on a temporary DuckDB file):

- ``generate_bars_per_s``: 1-minute bars / seconds to generate the synthetic history (cold
  cache: the whole history is generated, then sliced);
- ``store_bars_per_s``: bars / seconds of one :meth:`MarketStore.write_batch` (validation,
  range delete and bulk Arrow insert of bars, mark bars, funding and open interest, commit);
- ``resample_bars_per_s``: base bars x 3 target timeframes (15m, 1h, 4h) / seconds of one
  :meth:`MarketStore.resample` call (SQL aggregation and insert, one transaction);
- ``bars``, ``write_s``, ``resample_s``, ``generate_s``: the raw measurements.

Full run: 1,000,000 bars (about 694 days); ``quick``: 100,000 bars.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

from factory_pipeline.market.synthetic import SyntheticSource
from factory_pipeline.market.timeframes import DAY_MS, MINUTE_MS
from factory_pipeline.store.db import Store
from factory_pipeline.store.market import MarketStore

TARGETS: dict[str, tuple[str, float]] = {
    "store_bars_per_s": (">=", 1e6),
    "resample_bars_per_s": (">=", 2e6),
}

RESAMPLE_TIMEFRAMES: tuple[str, ...] = ("15m", "1h", "4h")
_SYMBOL = "BTCUSDT"
_START = dt.date(2020, 1, 1)


def run(quick: bool = False) -> dict[str, float]:
    """Measure generate / store / resample throughput; see the module docstring."""
    bars = 100_000 if quick else 1_000_000
    days = -(-bars * MINUTE_MS // DAY_MS)
    # A seed of its own so the cache of other callers in this process never warms this run.
    source = SyntheticSource(
        seed=20_240_101, start_date=_START, end_date=_START + dt.timedelta(days=days - 1)
    )
    t0 = time.perf_counter()
    start = source.history_start_ms
    batch = source.fetch(_SYMBOL, "1m", start, start + bars * MINUTE_MS)
    generate_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="factory-bench-market-") as folder:
        store = Store(Path(folder) / "bench.duckdb")
        market = MarketStore(store)
        t0 = time.perf_counter()
        market.write_batch(batch, source="bench")
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        market.resample(_SYMBOL, "1m", RESAMPLE_TIMEFRAMES, batch.start_ms, batch.end_ms)
        resample_s = time.perf_counter() - t0
        store.close()
    return {
        "bars": float(batch.bars),
        "generate_s": generate_s,
        "write_s": write_s,
        "resample_s": resample_s,
        "generate_bars_per_s": batch.bars / generate_s,
        "store_bars_per_s": batch.bars / write_s,
        "resample_bars_per_s": batch.bars * len(RESAMPLE_TIMEFRAMES) / resample_s,
    }


if __name__ == "__main__":  # pragma: no cover - manual use
    for key, value in run(quick=False).items():
        print(f"{key:24s} {value:,.3f}")

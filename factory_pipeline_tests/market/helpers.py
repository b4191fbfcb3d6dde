"""Shared builders for the market tests."""

from __future__ import annotations

import numpy as np

from factory_pipeline.market.source import MarketBatch, make_batch

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def hourly_batch(
    closes: list[float] | np.ndarray,
    *,
    symbol: str = "TESTUSDT",
    start_ms: int = T0,
    funding: dict | None = None,
    open_interest: dict | None = None,
) -> MarketBatch:
    """1h bars from closes: open = previous close, high/low 1% around, volume 10."""
    closes = np.asarray(closes, dtype=np.float64)
    opens = np.r_[closes[0], closes[:-1]]
    times = start_ms + np.arange(closes.shape[0], dtype=np.int64) * HOUR
    return make_batch(
        symbol,
        "1h",
        start_ms,
        start_ms + closes.shape[0] * HOUR,
        ohlcv={
            "open_time": times,
            "open": opens,
            "high": np.maximum(opens, closes) * 1.01,
            "low": np.minimum(opens, closes) * 0.99,
            "close": closes,
            "volume": np.full(closes.shape[0], 10.0),
        },
        funding=funding,
        open_interest=open_interest,
    )

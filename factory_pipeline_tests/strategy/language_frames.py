"""Small seeded synthetic frames for the signal-language tests."""

from __future__ import annotations

import numpy as np

from factory_pipeline.market.frame import MarketFrame, make_frame
from factory_pipeline.market.timeframes import HOUR_MS, timeframe_ms

#: 2023-11-14 00:00 UTC, a Tuesday: day- and 4h-aligned.
START_MS = 1_699_920_000_000


def random_frame(
    n: int = 600,
    timeframe: str = "1h",
    seed: int = 0,
    *,
    start_ms: int = START_MS,
    drop: tuple[int, ...] = (),
    symbol: str = "TESTUSDT",
) -> MarketFrame:
    """A random-walk OHLCV frame with 8-hourly funding and hourly open interest; bars whose
    positions are in ``drop`` are removed (data gaps)."""
    rng = np.random.default_rng(seed)
    step = timeframe_ms(timeframe)
    open_time = start_ms + np.arange(n, dtype=np.int64) * step
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]] * (1 + rng.normal(0.0, 0.001, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, 0.003, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, 0.003, n)))
    volume = rng.uniform(1.0, 100.0, n)
    keep = np.setdiff1d(np.arange(n), np.asarray(drop, dtype=np.int64))
    end = int(open_time[-1]) + step
    funding_time = np.arange(start_ms, end, 8 * HOUR_MS, dtype=np.int64)
    oi_time = np.arange(start_ms + HOUR_MS // 2, end, HOUR_MS, dtype=np.int64)
    return make_frame(
        symbol,
        timeframe,
        open_time[keep],
        open_[keep],
        high[keep],
        low[keep],
        close[keep],
        volume=volume[keep],
        funding_time=funding_time,
        funding_rates=rng.normal(1e-4, 1e-4, funding_time.shape[0]),
        oi_time=oi_time,
        oi_values=1e6 + np.cumsum(rng.normal(0.0, 1e3, oi_time.shape[0])),
    )


def frame_from_closes(
    closes: list[float] | np.ndarray,
    timeframe: str = "1h",
    *,
    start_ms: int = START_MS,
    positions: list[int] | None = None,
) -> MarketFrame:
    """A frame whose open/high/low/close all equal ``closes``; ``positions`` (bar slots from
    ``start_ms``) place the bars, leaving gaps where slots are skipped."""
    values = np.asarray(closes, dtype=np.float64)
    slots = np.arange(values.shape[0]) if positions is None else np.asarray(positions)
    open_time = start_ms + slots.astype(np.int64) * timeframe_ms(timeframe)
    return make_frame("HAND", timeframe, open_time, values, values, values, values)

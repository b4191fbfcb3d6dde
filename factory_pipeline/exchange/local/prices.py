"""Where the local exchange gets its prices: loaded MarketBatches or the market store.

Fills, stops and unrealised PnL all read one :class:`BarSeries` per symbol: the bars of the
trading timeframe with their mark closes and funding settlements. Tests load
:class:`~factory_pipeline.market.source.MarketBatch` objects (the finest timeframe loaded for a
symbol is the trading timeframe); the embedded venue reads the market store that ``make run``
fills, re-reading a symbol at most every ``refresh_s`` seconds so bars written while the venue
runs become tradable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from factory_pipeline.errors import MarketDataError, StoreError
from factory_pipeline.market.source import MarketBatch
from factory_pipeline.market.timeframes import timeframe_ms
from factory_pipeline.store.db import Store
from factory_pipeline.store.market import MarketStore


@dataclass(frozen=True)
class BarSeries:
    """The bars one symbol trades on (open times ascending) plus mark closes and funding."""

    symbol: str
    timeframe: str
    tf_ms: int
    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    mark: np.ndarray  # mark close per bar (the bar close where no mark bar exists)
    funding_time: np.ndarray
    funding_rate: np.ndarray

    @property
    def size(self) -> int:
        return int(self.open_time.shape[0])

    def first_at_or_after(self, t_ms: int) -> int:
        """Index of the first bar opening at or after ``t_ms`` (``size`` when none)."""
        return int(np.searchsorted(self.open_time, t_ms, side="left"))

    def last_closed(self, t_ms: int) -> int:
        """Index of the last bar whose close is at or before ``t_ms`` (-1 when none)."""
        return int(np.searchsorted(self.open_time, t_ms - self.tf_ms, side="right")) - 1


def series_from_batch(batch: MarketBatch) -> BarSeries:
    """A :class:`BarSeries` from a batch (mark bars matched by open time)."""
    o = batch.ohlcv
    open_time = o.column("open_time").to_numpy().astype(np.int64)
    close = o.column("close").to_numpy().astype(np.float64)
    mark = close.copy()
    if batch.mark.num_rows:
        m_time = batch.mark.column("open_time").to_numpy()
        m_close = batch.mark.column("close").to_numpy()
        pos = np.searchsorted(m_time, open_time)
        hit = pos < m_time.shape[0]
        hit[hit] = m_time[pos[hit]] == open_time[hit]
        mark[hit] = m_close[pos[hit]]
    return BarSeries(
        symbol=batch.symbol,
        timeframe=batch.timeframe,
        tf_ms=timeframe_ms(batch.timeframe),
        open_time=open_time,
        open=o.column("open").to_numpy().astype(np.float64),
        high=o.column("high").to_numpy().astype(np.float64),
        low=o.column("low").to_numpy().astype(np.float64),
        close=close,
        mark=mark,
        funding_time=batch.funding.column("funding_time").to_numpy().astype(np.int64),
        funding_rate=batch.funding.column("rate").to_numpy().astype(np.float64),
    )


class StorePrices:
    """Bar series read from a :class:`MarketStore` (one timeframe), cached per symbol."""

    def __init__(self, store: Store, timeframe: str = "15m", refresh_s: float = 5.0) -> None:
        timeframe_ms(timeframe)  # validate early, naming the bad value
        self.market = MarketStore(store)
        self.timeframe = timeframe
        self.refresh_s = refresh_s
        self._cache: dict[str, tuple[float, BarSeries | None]] = {}

    def symbols(self) -> list[str]:
        return self.market.symbols()

    def series(self, symbol: str) -> BarSeries | None:
        cached = self._cache.get(symbol)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.refresh_s:
            return cached[1]
        try:
            ohlcv = self.market.ohlcv(symbol, self.timeframe)
        except (MarketDataError, StoreError):
            # e.g. the database is locked by a writer: keep trading on the bars we have
            return cached[1] if cached is not None else None
        if ohlcv.num_rows == 0:
            series = None
        else:
            from factory_pipeline.market.source import make_batch

            times = ohlcv.column("open_time").to_numpy()
            tf_ms = timeframe_ms(self.timeframe)
            batch = make_batch(
                symbol,
                self.timeframe,
                int(times[0]),
                int(times[-1]) + tf_ms,
                ohlcv=ohlcv,
                mark=self.market.mark(symbol, self.timeframe),
                funding=self.market.funding(symbol),
            )
            series = series_from_batch(batch)
        self._cache[symbol] = (now, series)
        return series

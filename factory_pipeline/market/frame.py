"""In-memory market data for one symbol and timeframe, as numpy arrays.

This is the hand-off format between the market store and everything that computes on bars:
the signal language, the backtest engine, the lookahead audit and the demo runner. Arrays are
aligned by bar index; times are int64 milliseconds since the epoch (UTC).

Point-in-time rules (see docs/semantics.md):
- A bar is stamped at its open time and becomes known at its close time.
- ``funding_rate`` and ``open_interest`` per bar are the last values *published at or before the
  bar's close* (NaN before the first publication); raw funding settlements are kept in
  ``funding_time`` / ``funding_rates`` for the engine, which charges them at settlement.
- A higher-timeframe bar k is visible at base bar i iff ``htf.close_time[k] <= close_time[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from factory_pipeline.errors import MarketDataError
from factory_pipeline.market.timeframes import timeframe_ms

PRICE_SERIES = ("open", "high", "low", "close", "volume", "funding_rate", "open_interest", "mark")


@dataclass(frozen=True)
class MarketFrame:
    """Bars of one symbol at one timeframe plus point-in-time auxiliary series."""

    symbol: str
    timeframe: str
    open_time: np.ndarray
    close_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    mark: np.ndarray
    funding_rate: np.ndarray
    open_interest: np.ndarray
    complete: np.ndarray
    funding_time: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    funding_rates: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))

    def __len__(self) -> int:
        return int(self.open_time.shape[0])

    def series(self, name: str) -> np.ndarray:
        """A named per-bar series (one of PRICE_SERIES)."""
        if name not in PRICE_SERIES:
            raise KeyError(f"unknown series {name!r}; known: {', '.join(PRICE_SERIES)}")
        return getattr(self, name)

    def slice(self, start: int, stop: int) -> MarketFrame:
        """Bars ``[start, stop)``; funding settlements kept up to the last bar's close."""
        sl = slice(start, stop)
        last_close = self.close_time[stop - 1] if stop > start else np.int64(-1)
        keep = self.funding_time <= last_close
        return replace(
            self,
            **{name: getattr(self, name)[sl] for name in _BAR_ARRAYS},
            funding_time=self.funding_time[keep],
            funding_rates=self.funding_rates[keep],
        )

    def truncate_at(self, close_time_ms: int) -> MarketFrame:
        """Only what was known at ``close_time_ms``: bars closed by then (lookahead audit)."""
        stop = int(np.searchsorted(self.close_time, close_time_ms, side="right"))
        return self.slice(0, stop)

    def resample(self, timeframe: str) -> MarketFrame:
        """Aggregate to a higher timeframe (open first, high max, low min, close last,
        volume sum, mark last). Each higher bar closes by time even after gaps; ``complete``
        is False when base bars are missing inside it."""
        return resample_frame(self, timeframe)


_BAR_ARRAYS = (
    "open_time",
    "close_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "mark",
    "funding_rate",
    "open_interest",
    "complete",
)


def make_frame(
    symbol: str,
    timeframe: str,
    open_time: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray | None = None,
    mark: np.ndarray | None = None,
    funding_time: np.ndarray | None = None,
    funding_rates: np.ndarray | None = None,
    oi_time: np.ndarray | None = None,
    oi_values: np.ndarray | None = None,
) -> MarketFrame:
    """Build a frame from raw arrays, aligning funding and open interest point-in-time.

    Without ``mark`` the mark price is the close: ``mark`` is then a read-only view of the
    ``close`` array (no copy)."""
    n = len(open_time)
    ot = np.ascontiguousarray(open_time, dtype=np.int64)
    if n > 1 and np.any(np.diff(ot) <= 0):
        raise MarketDataError(f"{symbol} {timeframe}: open times are not strictly increasing")
    ct = ot + np.int64(timeframe_ms(timeframe))
    f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
    close_arr = f64(close)
    ft = np.ascontiguousarray(funding_time if funding_time is not None else [], dtype=np.int64)
    fr = f64(funding_rates if funding_rates is not None else [])
    ot_oi = np.ascontiguousarray(oi_time if oi_time is not None else [], dtype=np.int64)
    oi = f64(oi_values if oi_values is not None else [])
    return MarketFrame(
        symbol=symbol,
        timeframe=timeframe,
        open_time=ot,
        close_time=ct,
        open=f64(open_),
        high=f64(high),
        low=f64(low),
        close=close_arr,
        volume=f64(volume) if volume is not None else np.zeros(n),
        mark=f64(mark) if mark is not None else _read_only_view(close_arr),
        funding_rate=align_point_in_time(ft, fr, ct),
        open_interest=align_point_in_time(ot_oi, oi, ct),
        complete=np.ones(n, dtype=np.bool_),
        funding_time=ft,
        funding_rates=fr,
    )


def _read_only_view(values: np.ndarray) -> np.ndarray:
    """``values`` seen through a read-only view: the mark of a frame built without one *is* its
    close (no copy, so a backtest streams one array for both), and cannot be written through
    ``mark``."""
    view = values.view()
    view.flags.writeable = False
    return view


def align_point_in_time(
    event_time: np.ndarray, values: np.ndarray, close_time: np.ndarray
) -> np.ndarray:
    """Last value published at or before each close time (NaN before the first event)."""
    out = np.full(close_time.shape[0], np.nan)
    if event_time.shape[0] == 0:
        return out
    idx = np.searchsorted(event_time, close_time, side="right") - 1
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


def visible_index(htf_close_time: np.ndarray, base_close_time: np.ndarray) -> np.ndarray:
    """Index of the last higher-timeframe bar closed at each base close (-1 if none)."""
    return np.searchsorted(htf_close_time, base_close_time, side="right") - 1


def resample_frame(frame: MarketFrame, timeframe: str) -> MarketFrame:
    """See :meth:`MarketFrame.resample`."""
    base_ms = timeframe_ms(frame.timeframe)
    htf_ms = timeframe_ms(timeframe)
    if htf_ms < base_ms or htf_ms % base_ms:
        raise MarketDataError(
            f"cannot resample {frame.symbol} from {frame.timeframe} to {timeframe}: "
            "target must be a whole multiple of the base timeframe"
        )
    if htf_ms == base_ms:
        return frame
    n = len(frame)
    if n == 0:
        return replace(frame, timeframe=timeframe)
    bucket = frame.open_time // htf_ms
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], n]
    last = ends - 1
    open_time = bucket[starts] * htf_ms
    close_time = open_time + htf_ms
    counts = ends - starts
    return MarketFrame(
        symbol=frame.symbol,
        timeframe=timeframe,
        open_time=open_time,
        close_time=close_time,
        open=frame.open[starts],
        high=np.maximum.reduceat(frame.high, starts),
        low=np.minimum.reduceat(frame.low, starts),
        close=frame.close[last],
        volume=np.add.reduceat(frame.volume, starts),
        mark=frame.mark[last],
        funding_rate=align_point_in_time(frame.funding_time, frame.funding_rates, close_time),
        open_interest=_last_known(frame.open_interest, last),
        complete=(counts == htf_ms // base_ms) & np.logical_and.reduceat(frame.complete, starts),
        funding_time=frame.funding_time,
        funding_rates=frame.funding_rates,
    )


def _last_known(series: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Value at each group's last base bar: known at the group's close (point-in-time)."""
    return series[last].copy()

"""Seeded synthetic perpetual-futures market: the embedded default source.

The generator produces data with the features strategies react to, so the rest of the factory
can be exercised without network or files:

- a **regime chain** (Markov, hourly steps, common to all symbols): ``trend_up``,
  ``trend_down``, ``range`` (mean reversion of log price to the level at regime entry) and
  ``high_vol`` episodes, with mean durations of days;
- **fat tails and volatility clustering**: hourly shocks are Student-t(4) scaled to unit
  variance, and a GARCH(1,1)-like variance process on the common factor scales every symbol;
- **intraday and weekly seasonality** of volatility and volume (busiest around 14-15 UTC,
  quieter at weekends);
- **correlated symbols**: each symbol's shock loads on one common factor (BTC 0.9, ETH 0.85,
  SOL 0.75) plus an idiosyncratic part, at realistic price levels;
- minute bars inside each hour are a **Brownian bridge** between the hourly closes, highs and
  lows are drawn from the exact distribution of a Brownian bridge's extremes, so
  ``low <= open, close <= high`` holds by construction; every timeframe is aggregated from the
  same minute path (a 15m series equals the 1m series resampled);
- **funding** settles every 8 hours (00/08/16 UTC) at a rate that rises with the trailing
  24-hour return (positive in up-trends), **open interest** is published hourly, and the
  **mark price** is the close plus a basis of about one basis point.

Everything is a pure function of ``(seed, start_date, end_date, symbol, timeframe)``: the whole
configured history is generated once (vectorized, cached in-process) and every fetch is a slice,
so a day fetched alone equals that day inside a longer fetch. Random streams are drawn in time
order, so extending ``end_date`` leaves the earlier history unchanged.
"""

from __future__ import annotations

import datetime as dt
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from factory_pipeline.errors import ConfigError
from factory_pipeline.market.regimes import REGIMES
from factory_pipeline.market.source import MarketBatch, make_batch
from factory_pipeline.market.timeframes import DAY_MS, HOUR_MS, MINUTE_MS, timeframe_ms

FUNDING_INTERVAL_MS = 8 * HOUR_MS
OPEN_INTEREST_INTERVAL_MS = HOUR_MS


@dataclass(frozen=True)
class SymbolProfile:
    """Scale parameters of one synthetic symbol."""

    price: float  # price at the start of the history
    daily_vol: float  # typical daily log-return volatility
    factor_loading: float  # correlation of the shock with the common factor
    tick: float  # price increment (prices are rounded to it)
    volume_per_hour: float  # typical traded base-asset volume per hour
    open_interest: float  # typical open interest (base asset)


PROFILES: dict[str, SymbolProfile] = {
    "BTCUSDT": SymbolProfile(42_000.0, 0.025, 0.90, 0.1, 4_000.0, 55_000.0),
    "ETHUSDT": SymbolProfile(2_300.0, 0.032, 0.85, 0.01, 60_000.0, 1_000_000.0),
    "SOLUSDT": SymbolProfile(100.0, 0.045, 0.75, 0.001, 600_000.0, 10_000_000.0),
}

#: Per regime: drift per hour in units of the hour's volatility, volatility multiplier,
#: volume multiplier, mean duration in days. ``range`` has no drift but mean-reverts.
_REGIME_DRIFT = {"trend_up": 0.16, "trend_down": -0.16, "range": 0.0, "high_vol": 0.0}
_REGIME_VOL = {"trend_up": 0.9, "trend_down": 1.0, "range": 0.75, "high_vol": 2.6}
_REGIME_VOLUME = {"trend_up": 1.1, "trend_down": 1.2, "range": 0.8, "high_vol": 2.0}
_REGIME_DAYS = {"trend_up": 9.0, "trend_down": 7.0, "range": 8.0, "high_vol": 3.5}
#: Where a regime goes when it ends (rows: from, in REGIMES order; columns: to).
_EXIT = {
    "trend_up": {"trend_down": 0.15, "range": 0.55, "high_vol": 0.30},
    "trend_down": {"trend_up": 0.15, "range": 0.50, "high_vol": 0.35},
    "range": {"trend_up": 0.40, "trend_down": 0.35, "high_vol": 0.25},
    "high_vol": {"trend_up": 0.25, "trend_down": 0.35, "range": 0.40},
}
_RANGE_REVERSION_PER_HOUR = 0.05
_LONG_RUN_REVERSION_PER_HOUR = np.log(2.0) / (365.0 * 24.0)
_GARCH = (0.02, 0.08, 0.90)  # omega, alpha, beta; unconditional variance 1
_T_DF = 4.0
_MARK_BASIS_SD = 1e-4
_CACHE_SIZE = 12
#: Mean of the seasonal variance multiplier over a week (the cosine averages out per day).
_SEASONAL_MEAN_VARIANCE = (5 * 1.0 + 2 * 0.7) / 7


class SyntheticSource:
    """Deterministic synthetic market over ``[start_date 00:00, end_date + 1 day)`` UTC."""

    name = "synthetic"

    def __init__(
        self,
        seed: int = 7,
        start_date: dt.date = dt.date(2024, 1, 1),
        end_date: dt.date = dt.date(2025, 12, 31),
    ) -> None:
        if end_date < start_date:
            raise ConfigError(f"synthetic end_date {end_date} is before start_date {start_date}")
        self.seed = int(seed)
        self.start_date = start_date
        self.end_date = end_date
        self.history_start_ms = _date_ms(start_date)
        self.history_end_ms = _date_ms(end_date) + DAY_MS

    def fetch(self, symbol: str, timeframe: str, start_ms: int, end_ms: int) -> MarketBatch:
        """Bars, mark, funding and open interest with times in ``[start_ms, end_ms)``.

        Outside the configured history there is no data (the batch is empty there).
        """
        history = self.history(symbol, timeframe)
        bars = slice(*np.searchsorted(history.open_time, [start_ms, end_ms]))
        funding = slice(*np.searchsorted(history.funding_time, [start_ms, end_ms]))
        oi = slice(*np.searchsorted(history.oi_time, [start_ms, end_ms]))
        return make_batch(
            symbol,
            timeframe,
            start_ms,
            end_ms,
            ohlcv={
                "open_time": history.open_time[bars],
                "open": history.open[bars],
                "high": history.high[bars],
                "low": history.low[bars],
                "close": history.close[bars],
                "volume": history.volume[bars],
            },
            mark={"open_time": history.open_time[bars], "close": history.mark[bars]},
            funding={
                "funding_time": history.funding_time[funding],
                "rate": history.funding_rate[funding],
            },
            open_interest={"ts": history.oi_time[oi], "open_interest": history.oi[oi]},
        )

    def fetch_all(self, symbol: str, timeframe: str) -> MarketBatch:
        """The whole configured history of one symbol."""
        return self.fetch(symbol, timeframe, self.history_start_ms, self.history_end_ms)

    def history(self, symbol: str, timeframe: str) -> SyntheticHistory:
        """The cached full history (generated on first use)."""
        tf_ms = timeframe_ms(timeframe)
        if DAY_MS % tf_ms:
            raise ConfigError(
                f"synthetic source supports timeframes that divide a day, not {timeframe!r}"
            )
        key = (self.seed, self.start_date, self.end_date, symbol, timeframe)
        with _CACHE_LOCK:
            cached = _CACHE.get(key)
            if cached is not None:
                _CACHE.move_to_end(key)
                return cached
        history = generate_history(
            self.seed, self.history_start_ms, self.history_end_ms, symbol, tf_ms
        )
        with _CACHE_LOCK:
            _CACHE[key] = history
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        return history

    def true_regimes(self) -> tuple[np.ndarray, np.ndarray]:
        """The generating regime per hour: ``(hour open times, regime index into REGIMES)``.

        Ground truth for tests of the regime labeller; the factory itself never uses it.
        """
        hours = (self.history_end_ms - self.history_start_ms) // HOUR_MS
        regime = _regime_path(self.seed, hours)
        return self.history_start_ms + np.arange(hours, dtype=np.int64) * HOUR_MS, regime


@dataclass(frozen=True)
class SyntheticHistory:
    """Full generated history of one symbol at one timeframe (numpy arrays)."""

    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    mark: np.ndarray
    funding_time: np.ndarray
    funding_rate: np.ndarray
    oi_time: np.ndarray
    oi: np.ndarray


def generate_history(
    seed: int, start_ms: int, end_ms: int, symbol: str, tf_ms: int
) -> SyntheticHistory:
    """Generate one symbol's history on the minute path and aggregate it to ``tf_ms`` bars."""
    if start_ms % DAY_MS or end_ms % DAY_MS or end_ms <= start_ms:
        raise ConfigError("synthetic history must span whole UTC days")
    profile = profile_for(symbol)
    hours = (end_ms - start_ms) // HOUR_MS
    hour_open = start_ms + np.arange(hours, dtype=np.int64) * HOUR_MS
    regime = _regime_path(seed, hours)
    common = _common_factor(seed, hours)
    streams = _symbol_streams(seed, symbol)
    season = _seasonality(hour_open)

    hourly_vol = profile.daily_vol / np.sqrt(24.0)
    regime_vol = np.array([_REGIME_VOL[r] for r in REGIMES])[regime]
    sigma = hourly_vol * np.sqrt(common.variance) * season * regime_vol
    idio = streams["idio"].standard_t(_T_DF, size=hours) / np.sqrt(_T_DF / (_T_DF - 2.0))
    rho = profile.factor_loading
    shock = rho * common.shock + np.sqrt(1.0 - rho * rho) * idio
    drift = np.array([_REGIME_DRIFT[r] for r in REGIMES])[regime] * sigma
    log_close_hourly = _hourly_log_path(
        np.log(profile.price), drift, sigma * shock, regime, REGIMES.index("range")
    )

    minute_shock = rho * _rng(seed, 0, 3).standard_normal((hours, 60)) + np.sqrt(
        1.0 - rho * rho
    ) * streams["minute"].standard_normal((hours, 60))
    minute = _minute_bars(log_close_hourly, sigma, minute_shock, streams["extremes"], profile)
    volume = _minute_volume(sigma / hourly_vol, regime, season, streams["volume"], profile)
    k = tf_ms // MINUTE_MS
    n_bars = minute["close"].shape[0] // k
    open_time = start_ms + np.arange(n_bars, dtype=np.int64) * tf_ms
    close = minute["close"].reshape(n_bars, k)[:, -1]
    basis = np.exp(streams["mark"].normal(0.0, _MARK_BASIS_SD, size=n_bars))
    funding_time, funding_rate = _funding(
        start_ms, end_ms, log_close_hourly, hourly_vol, streams["funding"]
    )
    oi_time, oi = _open_interest(hour_open, regime, streams["oi"], profile)
    return SyntheticHistory(
        open_time=open_time,
        open=minute["open"].reshape(n_bars, k)[:, 0].copy(),
        high=minute["high"].reshape(n_bars, k).max(axis=1),
        low=minute["low"].reshape(n_bars, k).min(axis=1),
        close=close.copy(),
        volume=volume.reshape(n_bars, k).sum(axis=1),
        mark=_round_to_tick(close * basis, profile.tick),
        funding_time=funding_time,
        funding_rate=funding_rate,
        oi_time=oi_time,
        oi=oi,
    )


def profile_for(symbol: str) -> SymbolProfile:
    """The built-in profile, or a deterministic one derived from the symbol name."""
    if symbol in PROFILES:
        return PROFILES[symbol]
    h = zlib.crc32(symbol.encode())
    price = float(10 ** (1 + (h % 300) / 100))  # 10 .. 10_000
    tick = float(10 ** (np.floor(np.log10(price)) - 4))
    return SymbolProfile(price, 0.05, 0.6, tick, 1e6 / price, 2e7 / price)


# --- random streams ----------------------------------------------------------------------------


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *key])))


def _symbol_streams(seed: int, symbol: str) -> dict[str, np.random.Generator]:
    code = zlib.crc32(symbol.encode())
    # One stream per purpose, each drawn once in time order: a longer history extends every
    # stream without changing its beginning.
    names = ("idio", "minute", "volume", "mark", "funding", "oi", "extremes")
    return {name: _rng(seed, 1, code, i) for i, name in enumerate(names)}


# --- hourly latent processes -------------------------------------------------------------------


def _regime_path(seed: int, hours: int) -> np.ndarray:
    """Regime index per hour: a Markov chain drawn episode by episode (geometric durations)."""
    rng = _rng(seed, 0, 1)
    path = np.empty(hours, dtype=np.int8)
    state = REGIMES.index("range")
    pos = 0
    while pos < hours:
        name = REGIMES[state]
        p_stay_hour = 1.0 - 1.0 / (24.0 * _REGIME_DAYS[name])
        length = int(rng.geometric(1.0 - p_stay_hour))
        path[pos : pos + length] = state
        pos += length
        exits = _EXIT[name]
        targets = [REGIMES.index(t) for t in exits]
        state = int(targets[rng.choice(len(targets), p=list(exits.values()))])
    return path


@dataclass(frozen=True)
class _CommonFactor:
    shock: np.ndarray  # unit-variance Student-t shock per hour
    variance: np.ndarray  # GARCH-like variance multiplier per hour (mean about 1)


def _common_factor(seed: int, hours: int) -> _CommonFactor:
    rng = _rng(seed, 0, 2)
    shock = rng.standard_t(_T_DF, size=hours) / np.sqrt(_T_DF / (_T_DF - 2.0))
    omega, alpha, beta = _GARCH
    variance = np.empty(hours)
    g = 1.0
    sq = (shock * shock).tolist()
    for h in range(hours):
        variance[h] = g
        g = omega + (alpha * sq[h] + beta) * g
    return _CommonFactor(shock=shock, variance=variance)


def _seasonality(hour_open: np.ndarray) -> np.ndarray:
    """Volatility multiplier per hour: intraday cycle peaking near 14:30 UTC, calmer weekends."""
    hour_of_day = (hour_open // HOUR_MS) % 24
    weekday = ((hour_open // DAY_MS) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    variance = 1.0 + 0.45 * np.cos(2.0 * np.pi * (hour_of_day - 14.5) / 24.0)
    variance = variance * np.where(weekday >= 5, 0.7, 1.0)
    return np.sqrt(variance / _SEASONAL_MEAN_VARIANCE)


def _hourly_log_path(
    log_start: float,
    drift: np.ndarray,
    noise: np.ndarray,
    regime: np.ndarray,
    range_index: int,
) -> np.ndarray:
    """Hourly log closes (``hours + 1`` points).

    In ``range`` the price reverts to its level at regime entry; at all times a weak pull
    (half-life one year) keeps prices near their starting level over long histories.
    """
    hours = drift.shape[0]
    out = np.empty(hours + 1)
    x = log_start
    anchor = log_start
    previous = -1
    kappa = _RANGE_REVERSION_PER_HOUR
    pull = _LONG_RUN_REVERSION_PER_HOUR
    d, e, r = drift.tolist(), noise.tolist(), regime.tolist()
    out[0] = x
    for h in range(hours):
        state = r[h]
        if state == range_index:
            if previous != range_index:
                anchor = x
            x = x - kappa * (x - anchor) - pull * (x - log_start) + e[h]
        else:
            x = x + d[h] - pull * (x - log_start) + e[h]
        previous = state
        out[h + 1] = x
    return out


# --- minute path -------------------------------------------------------------------------------


def _minute_bars(
    log_close_hourly: np.ndarray,
    sigma: np.ndarray,
    shock: np.ndarray,
    rng: np.random.Generator,
    profile: SymbolProfile,
) -> dict[str, np.ndarray]:
    """Minute OHLC: a Brownian bridge between hourly closes plus bridge extremes per minute.

    ``shock`` holds unit-variance minute shocks (correlated across symbols by the caller).
    """
    hours = sigma.shape[0]
    sigma_minute = (sigma / np.sqrt(60.0))[:, None]
    hourly_return = np.diff(log_close_hourly)[:, None]
    z = shock * sigma_minute
    increments = z - (z.sum(axis=1, keepdims=True) - hourly_return) / 60.0
    u = 1.0 - rng.random((hours, 60, 2))  # in (0, 1]
    var2 = 2.0 * sigma_minute * sigma_minute
    root_up = np.sqrt(increments * increments - var2 * np.log(u[..., 0]))
    root_down = np.sqrt(increments * increments - var2 * np.log(u[..., 1]))
    up = 0.5 * (increments + root_up)  # >= max(0, increment)
    down = 0.5 * (increments - root_down)  # <= min(0, increment)
    # Sequential sums: close[j] = open[j] + increment[j] exactly as floats, and high/low add
    # larger/smaller amounts to the same open, so the ordering holds before and after rounding.
    path = np.cumsum(np.r_[log_close_hourly[0], increments.ravel()])
    log_open, log_close = path[:-1], path[1:]
    tick = profile.tick
    open_ = _round_to_tick(np.exp(log_open), tick)
    close = _round_to_tick(np.exp(log_close), tick)
    high = _round_to_tick(np.exp(log_open + up.ravel()), tick)
    low = _round_to_tick(np.exp(log_open + down.ravel()), tick)
    return {
        "open": open_,
        "close": close,
        "high": np.maximum(high, np.maximum(open_, close)),
        "low": np.minimum(low, np.minimum(open_, close)),
    }


def _minute_volume(
    vol_ratio: np.ndarray,
    regime: np.ndarray,
    season: np.ndarray,
    rng: np.random.Generator,
    profile: SymbolProfile,
) -> np.ndarray:
    """Minute volume: busier with volatility, seasonality and turbulent regimes, log-normal noise."""
    hours = vol_ratio.shape[0]
    regime_volume = np.array([_REGIME_VOLUME[r] for r in REGIMES])[regime]
    per_minute = profile.volume_per_hour / 60.0 * regime_volume * season * np.sqrt(vol_ratio)
    noise = rng.lognormal(-0.18, 0.6, size=(hours, 60))
    return np.round((per_minute[:, None] * noise).ravel(), 3)


def _round_to_tick(prices: np.ndarray, tick: float) -> np.ndarray:
    """Monotone rounding to the tick, so OHLC ordering survives it."""
    return np.maximum(np.round(prices / tick) * tick, tick)


# --- funding and open interest -----------------------------------------------------------------


def _funding(
    start_ms: int,
    end_ms: int,
    log_close_hourly: np.ndarray,
    hourly_vol: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """8-hourly settlements; the rate follows the trailing 24 h return (known at settlement)."""
    first = -(-start_ms // FUNDING_INTERVAL_MS) * FUNDING_INTERVAL_MS
    times = np.arange(first, end_ms, FUNDING_INTERVAL_MS, dtype=np.int64)
    hour_index = (times - start_ms) // HOUR_MS  # log_close_hourly[h] is the price at hour h open
    back = np.maximum(hour_index - 24, 0)
    trailing = log_close_hourly[hour_index] - log_close_hourly[back]
    scale = hourly_vol * np.sqrt(24.0)
    noise = rng.normal(0.0, 3e-5, size=times.shape[0])
    rate = 1e-4 + 4e-4 * np.tanh(trailing / scale) + noise
    return times, np.round(np.clip(rate, -0.0075, 0.0075), 8)


def _open_interest(
    hour_open: np.ndarray,
    regime: np.ndarray,
    rng: np.random.Generator,
    profile: SymbolProfile,
) -> tuple[np.ndarray, np.ndarray]:
    """Hourly open interest: builds in trends, unwinds in high-volatility episodes."""
    hours = hour_open.shape[0]
    trend = np.isin(regime, [REGIMES.index("trend_up"), REGIMES.index("trend_down")])
    turbulent = regime == REGIMES.index("high_vol")
    step = 0.0015 * trend - 0.004 * turbulent + rng.normal(0.0, 0.01, size=hours)
    level = np.empty(hours)
    y = 0.0
    for h, s in enumerate(step.tolist()):
        level[h] = y
        y = y + s - 0.002 * y
    return hour_open.copy(), np.round(profile.open_interest * np.exp(level), 3)


def _date_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


_CACHE: OrderedDict[tuple, SyntheticHistory] = OrderedDict()
_CACHE_LOCK = threading.Lock()

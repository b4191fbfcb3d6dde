"""The synthetic source: deterministic, consistent, and shaped like a crypto perp market."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from factory_pipeline.errors import ConfigError
from factory_pipeline.market import synthetic
from factory_pipeline.market.frame import make_frame
from factory_pipeline.market.regimes import REGIMES, label_regimes
from factory_pipeline.market.source import validate_batch
from factory_pipeline.market.synthetic import PROFILES, SyntheticSource
from factory_pipeline_tests.market.helpers import DAY, HOUR, T0

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


@pytest.fixture(scope="module")
def year() -> SyntheticSource:
    return SyntheticSource(seed=7, start_date=dt.date(2024, 1, 1), end_date=dt.date(2024, 12, 31))


def _tables_equal(a, b) -> bool:  # noqa: ANN001
    return all(
        getattr(a, t).equals(getattr(b, t)) for t in ("ohlcv", "mark", "funding", "open_interest")
    )


def test_a_day_alone_equals_that_day_inside_a_longer_fetch(week_source: SyntheticSource) -> None:
    day_start = T0 + 2 * DAY
    alone = week_source.fetch("ETHUSDT", "15m", day_start, day_start + DAY)
    longer = week_source.fetch("ETHUSDT", "15m", T0, T0 + 5 * DAY)
    sliced = longer.ohlcv.filter(
        (longer.ohlcv.column("open_time").to_numpy() >= day_start)
        & (longer.ohlcv.column("open_time").to_numpy() < day_start + DAY)
    )
    assert alone.bars == 96
    assert alone.ohlcv.equals(sliced)
    assert alone.funding.num_rows == 3


def test_same_seed_same_data_after_cache_is_cleared(week_source: SyntheticSource) -> None:
    first = week_source.fetch("BTCUSDT", "1h", T0, T0 + 3 * DAY)
    synthetic._CACHE.clear()
    again = SyntheticSource(11, dt.date(2024, 1, 1), dt.date(2024, 1, 6)).fetch(
        "BTCUSDT", "1h", T0, T0 + 3 * DAY
    )
    other_seed = SyntheticSource(12, dt.date(2024, 1, 1), dt.date(2024, 1, 6)).fetch(
        "BTCUSDT", "1h", T0, T0 + 3 * DAY
    )
    assert _tables_equal(first, again)
    assert not first.ohlcv.equals(other_seed.ohlcv)


def test_extending_the_end_date_keeps_the_earlier_history(week_source: SyntheticSource) -> None:
    longer = SyntheticSource(11, dt.date(2024, 1, 1), dt.date(2024, 1, 20))
    a = week_source.fetch("SOLUSDT", "5m", T0, T0 + 6 * DAY)
    b = longer.fetch("SOLUSDT", "5m", T0, T0 + 6 * DAY)
    assert _tables_equal(a, b)


def test_ohlc_consistent_and_valid_at_every_timeframe(week_source: SyntheticSource) -> None:
    for timeframe in ("1m", "3m", "15m", "1h", "4h", "1d"):
        batch = week_source.fetch_all("SOLUSDT", timeframe)
        validate_batch(batch, source="synthetic")
        o, h, lo, c = (batch.ohlcv.column(n).to_numpy() for n in ("open", "high", "low", "close"))
        assert np.all(lo <= np.minimum(o, c)) and np.all(np.maximum(o, c) <= h)
        # intrabar extremes: the range is usually wider than the body
        assert np.mean((h > np.maximum(o, c)) & (lo < np.minimum(o, c))) > 0.5


def test_timeframes_are_aggregates_of_the_same_minute_path(week_source: SyntheticSource) -> None:
    minute = week_source.fetch_all("BTCUSDT", "1m").ohlcv.to_pandas()
    minute.index = pd.to_datetime(minute["open_time"], unit="ms", utc=True)
    reference = minute.resample("15min").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    bars = week_source.fetch_all("BTCUSDT", "15m").ohlcv.to_pandas()
    for column in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(bars[column].to_numpy(), reference[column].to_numpy())
    np.testing.assert_allclose(bars["volume"].to_numpy(), reference["volume"].to_numpy())


def test_price_levels_are_realistic(week_source: SyntheticSource) -> None:
    for symbol in SYMBOLS:
        first_open = week_source.fetch_all(symbol, "1h").ohlcv.column("open")[0].as_py()
        assert first_open == pytest.approx(PROFILES[symbol].price, rel=0.02)


def test_funding_on_the_8h_grid_and_follows_the_trend(year: SyntheticSource) -> None:
    batch = year.fetch_all("BTCUSDT", "1h")
    times = batch.funding.column("funding_time").to_numpy()
    assert np.all(times % (8 * HOUR) == 0)
    assert np.all(np.diff(times) == 8 * HOUR)
    assert times[0] == T0 and times.shape[0] == 366 * 3
    closes = batch.ohlcv.column("close").to_numpy()
    opens = batch.ohlcv.column("open_time").to_numpy()
    idx = np.searchsorted(opens, times) - 1  # the bar that closes at the settlement
    ok = idx >= 24
    trailing = np.log(closes[idx[ok]] / closes[idx[ok] - 24])
    rate = batch.funding.column("rate").to_numpy()[ok]
    assert np.corrcoef(trailing, rate)[0, 1] > 0.5
    assert 0 < np.mean(rate) < 5e-4


def test_open_interest_hourly_and_mark_close_to_last(year: SyntheticSource) -> None:
    batch = year.fetch("ETHUSDT", "15m", T0, T0 + 30 * DAY)
    ts = batch.open_interest.column("ts").to_numpy()
    assert np.all(np.diff(ts) == HOUR) and ts.shape[0] == 30 * 24
    assert np.all(batch.open_interest.column("open_interest").to_numpy() > 0)
    mark = batch.mark.column("close").to_numpy()
    close = batch.ohlcv.column("close").to_numpy()
    np.testing.assert_array_equal(batch.mark.column("open_time"), batch.ohlcv.column("open_time"))
    assert np.max(np.abs(mark / close - 1)) < 1e-3
    assert np.any(mark != close)


def test_symbols_are_correlated_but_not_identical(year: SyntheticSource) -> None:
    returns = {
        s: np.diff(np.log(year.fetch_all(s, "1h").ohlcv.column("close").to_numpy()))
        for s in SYMBOLS
    }
    corr = np.corrcoef(np.vstack([returns[s] for s in SYMBOLS]))
    assert 0.6 < corr[0, 1] < 0.95  # BTC-ETH
    assert 0.5 < corr[0, 2] < 0.95  # BTC-SOL
    assert np.std(returns["SOLUSDT"]) > np.std(returns["BTCUSDT"])


def test_fat_tails_volatility_clustering_and_seasonality(year: SyntheticSource) -> None:
    batch = year.fetch_all("BTCUSDT", "1h")
    r = np.diff(np.log(batch.ohlcv.column("close").to_numpy()))
    z = (r - r.mean()) / r.std()
    assert np.mean(z**4) > 4.0  # kurtosis of a normal is 3
    sq = r * r
    assert np.corrcoef(sq[:-1], sq[1:])[0, 1] > 0.1  # squared returns cluster
    hour = (batch.ohlcv.column("open_time").to_numpy()[1:] // HOUR) % 24
    busy, quiet = np.abs(r[(hour >= 13) & (hour <= 16)]), np.abs(r[(hour >= 1) & (hour <= 4)])
    assert busy.mean() > 1.2 * quiet.mean()
    volume = batch.ohlcv.column("volume").to_numpy()[1:]
    assert volume[(hour >= 13) & (hour <= 16)].mean() > volume[(hour >= 1) & (hour <= 4)].mean()


def test_every_regime_occurs_for_every_symbol(year: SyntheticSource) -> None:
    _, truth = year.true_regimes()
    assert set(np.unique(truth).tolist()) == set(range(len(REGIMES)))
    for symbol in SYMBOLS:
        bars = year.fetch_all(symbol, "1h").ohlcv
        frame = make_frame(
            symbol,
            "1h",
            bars.column("open_time").to_numpy(),
            bars.column("open").to_numpy(),
            bars.column("high").to_numpy(),
            bars.column("low").to_numpy(),
            bars.column("close").to_numpy(),
        )
        labels = label_regimes(frame)
        counts = pd.Series(labels.column("regime").to_pylist()).value_counts()
        assert set(counts.index) == set(REGIMES), symbol
        assert counts.min() >= 15, counts.to_dict()  # at least two weeks of each per year


def test_outside_the_history_is_empty_and_bad_timeframes_fail(
    week_source: SyntheticSource,
) -> None:
    before = week_source.fetch("BTCUSDT", "1h", T0 - 3 * DAY, T0)
    assert before.bars == 0 and before.funding.num_rows == 0
    validate_batch(before)
    with pytest.raises(ConfigError, match="divide a day"):
        week_source.fetch("BTCUSDT", "1w", T0, T0 + 7 * DAY)
    with pytest.raises(ConfigError, match="unknown timeframe"):
        week_source.fetch("BTCUSDT", "7m", T0, T0 + DAY)


def test_unknown_symbols_get_a_deterministic_profile(week_source: SyntheticSource) -> None:
    a = week_source.fetch("DOGEUSDT", "1h", T0, T0 + DAY)
    synthetic._CACHE.clear()
    b = week_source.fetch("DOGEUSDT", "1h", T0, T0 + DAY)
    assert a.bars == 24 and a.ohlcv.equals(b.ohlcv)
    validate_batch(a)

"""Every indicator kernel against a plain-Python reference (and pandas where it applies).

References are written from the documented formulas (docs/signal_language.md), loop by loop,
including the NaN rules: windowed indicators are NaN unless the whole window is numeric;
recursive ones are seeded with the mean of the first n numeric inputs and skip NaN inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from factory_pipeline.errors import SignalLanguageError
from factory_pipeline.strategy.language import indicators as ind

WINDOWS = (1, 2, 5, 14)


def random_series(seed: int, n: int = 300, nan_at: tuple[int, ...] = ()) -> np.ndarray:
    """A positive random walk with a NaN warm-up of 7 bars and NaNs at ``nan_at``."""
    rng = np.random.default_rng(seed)
    x = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    x[:7] = np.nan
    x[list(nan_at)] = np.nan
    return x


def ohlcv(seed: int, n: int = 300) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.015, n)))
    open_ = np.r_[close[0], close[:-1]] * (1 + rng.normal(0, 0.002, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.004, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.004, n)))
    volume = rng.uniform(0.0, 10.0, n)
    volume[20:25] = 0.0
    return high, low, close, volume


# -- references ----------------------------------------------------------------------------


def windows_of(x: np.ndarray, n: int):
    for t in range(len(x)):
        window = x[t - n + 1 : t + 1] if t >= n - 1 else None
        if window is None or any(math.isnan(v) for v in window):
            yield t, None
        else:
            yield t, [float(v) for v in window]


def ref_sma(x, n):
    out = np.full(len(x), np.nan)
    for t, w in windows_of(x, n):
        if w is not None:
            out[t] = sum(w) / n
    return out


def ref_wma(x, n):
    out = np.full(len(x), np.nan)
    for t, w in windows_of(x, n):
        if w is not None:
            out[t] = sum((k + 1) * v for k, v in enumerate(w)) / (n * (n + 1) / 2)
    return out


def ref_stdev(x, n):
    out = np.full(len(x), np.nan)
    for t, w in windows_of(x, n):
        if w is not None:
            mean = sum(w) / n
            out[t] = math.sqrt(sum((v - mean) ** 2 for v in w) / n)
    return out


def ref_extreme(x, n, pick):
    out = np.full(len(x), np.nan)
    for t, w in windows_of(x, n):
        if w is not None:
            out[t] = pick(w)
    return out


def ref_smoothed(x, n, alpha):
    out = np.full(len(x), np.nan)
    seed: list[float] = []
    value = None
    for t, v in enumerate(x):
        if math.isnan(v):
            continue
        if value is None:
            seed.append(v)
            if len(seed) == n:
                value = sum(seed) / n
                out[t] = value
        else:
            value = alpha * v + (1 - alpha) * value
            out[t] = value
    return out


def ref_rsi(x, n):
    gains = np.full(len(x), np.nan)
    losses = np.full(len(x), np.nan)
    for t in range(1, len(x)):
        d = x[t] - x[t - 1]
        if not math.isnan(d):
            gains[t], losses[t] = max(d, 0.0), max(-d, 0.0)
    g = ref_smoothed(gains, n, 1 / n)
    lo = ref_smoothed(losses, n, 1 / n)
    out = np.full(len(x), np.nan)
    for t in range(len(x)):
        if math.isnan(g[t]):
            continue
        if lo[t] == 0.0:
            out[t] = 50.0 if g[t] == 0.0 else 100.0
        else:
            out[t] = 100.0 - 100.0 / (1.0 + g[t] / lo[t])
    return out


def ref_atr(high, low, close, n):
    tr = np.empty(len(close))
    for t in range(len(close)):
        if t == 0:
            tr[t] = high[t] - low[t]
        else:
            pc = close[t - 1]
            tr[t] = max(high[t] - low[t], abs(high[t] - pc), abs(low[t] - pc))
    return ref_smoothed(tr, n, 1 / n)


def ref_roc(x, n):
    out = np.full(len(x), np.nan)
    for t in range(n, len(x)):
        if x[t - n] != 0:
            out[t] = 100.0 * (x[t] / x[t - n] - 1.0)
    return out


def ref_vwap(high, low, close, volume, n):
    out = np.full(len(close), np.nan)
    for t in range(n - 1, len(close)):
        pv = sum((high[k] + low[k] + close[k]) / 3 * volume[k] for k in range(t - n + 1, t + 1))
        v = sum(volume[k] for k in range(t - n + 1, t + 1))
        if v != 0:
            out[t] = pv / v
    return out


def assert_same(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-10) -> None:
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-9, equal_nan=True)


# -- windowed indicators -------------------------------------------------------------------


@pytest.mark.parametrize("n", WINDOWS)
def test_sma_matches_reference_and_is_bit_identical_to_pandas(n: int) -> None:
    x = random_series(1, nan_at=(50, 51, 120))
    out = ind.sma(x, n)
    assert_same(out, ref_sma(x, n))
    np.testing.assert_array_equal(out, pd.Series(x).rolling(n).mean().to_numpy())


@pytest.mark.parametrize("n", WINDOWS)
def test_rolling_sum_matches_reference(n: int) -> None:
    x = random_series(2, nan_at=(60,))
    expected = np.array([np.nan if m is None else m * n for m in ref_sma(x, n)])
    assert_same(ind.rolling_sum(x, n), expected)


@pytest.mark.parametrize("n", WINDOWS)
def test_wma_matches_reference(n: int) -> None:
    x = random_series(3, n=400, nan_at=(90, 200))
    assert_same(ind.wma(x, n), ref_wma(x, n))


@pytest.mark.parametrize("n", WINDOWS)
def test_stdev_matches_reference_and_pandas(n: int) -> None:
    x = random_series(4, n=400, nan_at=(30, 200))
    out = ind.stdev(x, n)
    assert_same(out, ref_stdev(x, n), rtol=1e-8)
    pandas_std = pd.Series(x).rolling(n).std(ddof=0).to_numpy()
    np.testing.assert_allclose(out, pandas_std, rtol=1e-8, atol=1e-9, equal_nan=True)


def test_stdev_stays_accurate_on_a_long_high_priced_series() -> None:
    rng = np.random.default_rng(5)
    x = 60_000.0 + np.cumsum(rng.normal(0, 0.5, 20_000))
    x[5_000:5_040] = 61_234.5  # a flat stretch: exactly zero inside
    out = ind.stdev(x, 20)
    windows = np.lib.stride_tricks.sliding_window_view(x, 20)
    expected = np.r_[np.full(19, np.nan), windows.std(axis=1)]
    np.testing.assert_allclose(out[19:], expected[19:], rtol=1e-6, atol=1e-7)
    assert np.all(out[5_019:5_040] == 0.0)


@pytest.mark.parametrize("n", WINDOWS)
def test_highest_and_lowest_match_reference(n: int) -> None:
    x = random_series(6, nan_at=(40, 41, 150))
    x[100:110] = 123.0  # ties
    assert_same(ind.highest(x, n), ref_extreme(x, n, max))
    assert_same(ind.lowest(x, n), ref_extreme(x, n, min))


def test_highest_includes_the_current_bar() -> None:
    x = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    np.testing.assert_array_equal(ind.highest(x, 2), [np.nan, 3.0, 3.0, 5.0, 5.0])
    np.testing.assert_array_equal(ind.lowest(x, 3), [np.nan, np.nan, 1.0, 2.0, 2.0])


# -- recursive indicators ------------------------------------------------------------------


@pytest.mark.parametrize("n", WINDOWS)
def test_ema_matches_reference(n: int) -> None:
    x = random_series(7, nan_at=(70, 180))
    assert_same(ind.ema(x, n), ref_smoothed(x, n, 2 / (n + 1)))


def test_ema_hand_values() -> None:
    # n = 3: alpha = 0.5, seed = mean(2, 4, 6) = 4 at t = 2; then 4 + 0.5 * (8 - 4) = 6.
    np.testing.assert_allclose(ind.ema(np.array([2.0, 4.0, 6.0, 8.0]), 3), [np.nan, np.nan, 4, 6])


@pytest.mark.parametrize("n", WINDOWS)
def test_wilder_matches_reference(n: int) -> None:
    x = random_series(8)
    assert_same(ind.wilder(x, n), ref_smoothed(x, n, 1 / n))


@pytest.mark.parametrize("n", WINDOWS)
def test_rsi_matches_reference(n: int) -> None:
    x = random_series(9, nan_at=(100,))
    x[200:230] = x[199]  # a flat stretch: gains and losses both decay
    assert_same(ind.rsi(x, n), ref_rsi(x, n), rtol=1e-9)


def test_rsi_of_a_flat_series_is_50_and_of_a_rising_one_is_100() -> None:
    assert np.all(ind.rsi(np.full(20, 7.0), 5)[5:] == 50.0)
    assert np.all(ind.rsi(np.arange(20.0), 5)[5:] == 100.0)
    assert np.isnan(ind.rsi(np.arange(20.0), 5)[:5]).all()


@pytest.mark.parametrize("n", WINDOWS)
def test_atr_matches_reference(n: int) -> None:
    high, low, close, _ = ohlcv(10)
    assert_same(ind.atr(high, low, close, n), ref_atr(high, low, close, n))


# -- others --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", WINDOWS)
def test_roc_matches_reference(n: int) -> None:
    x = random_series(11)
    x[150] = 0.0
    assert_same(ind.roc(x, n), ref_roc(x, n))


@pytest.mark.parametrize("n", WINDOWS)
def test_vwap_matches_reference(n: int) -> None:
    high, low, close, volume = ohlcv(12)
    assert_same(ind.vwap(high, low, close, volume, n), ref_vwap(high, low, close, volume, n))


def test_lag_shifts_numbers_and_booleans() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(ind.lag(x, 1), [np.nan, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(ind.lag(x, 4), [np.nan] * 4)
    flags = np.array([True, False, True])
    assert ind.lag(flags, 1).tolist() == [False, True, False]


def test_crosses_tie_rule_hand_values() -> None:
    a = np.array([1.0, 2.0, 2.0, 3.0, 2.0, 1.0, np.nan, 3.0])
    b = np.full(8, 2.0)
    # above at t iff a[t] > b[t] and a[t-1] <= b[t-1]: only t=3 (a touches 2 at t=1,2 first).
    assert np.flatnonzero(ind.crosses_above(a, b)).tolist() == [3]
    # below at t iff a[t] < b[t] and a[t-1] >= b[t-1]: t=5 (from a tie at t=4); NaN -> False.
    assert np.flatnonzero(ind.crosses_below(a, b)).tolist() == [5]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_windows_must_be_positive_integers(bad) -> None:
    with pytest.raises(SignalLanguageError):
        ind.sma(np.arange(5.0), bad)


def test_window_longer_than_data_gives_all_nan() -> None:
    x = np.arange(5.0)
    for function in (ind.sma, ind.ema, ind.wma, ind.stdev, ind.highest, ind.rsi, ind.roc):
        assert np.isnan(function(x, 10)).all()
    assert ind.sma(np.empty(0), 3).shape == (0,)

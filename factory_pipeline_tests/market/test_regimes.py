"""Regime labels: the documented rule on crafted series, spans, and parameter handling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from factory_pipeline.errors import MarketDataError
from factory_pipeline.market.frame import MarketFrame, make_frame
from factory_pipeline.market.regimes import REGIME_SCHEMA, REGIMES, label_regimes, regime_spans
from factory_pipeline_tests.market.helpers import DAY, HOUR, T0

# day blocks of hourly log returns: (first day, last day, drift, alternating noise amplitude)
BLOCKS = [
    (0, 19, 0.0, 0.004),  # range: up/down alternate, each day nets zero
    (20, 29, 0.002, 0.003),  # trend_up, calmer than the range
    (30, 34, 0.0, 0.02),  # high_vol
    (35, 44, -0.002, 0.003),  # trend_down
    (45, 59, 0.0, 0.004),  # range
]


def _frame(returns: np.ndarray, start_ms: int = T0, timeframe: str = "1h") -> MarketFrame:
    close = 100.0 * np.exp(np.cumsum(returns))
    open_ = np.r_[100.0, close[:-1]]
    step = {"1h": HOUR, "15m": 15 * 60_000, "4h": 4 * HOUR}[timeframe]
    times = start_ms + np.arange(returns.shape[0], dtype=np.int64) * step
    return make_frame(
        "TEST", timeframe, times, open_, np.maximum(open_, close), np.minimum(open_, close), close
    )


def _block_returns(blocks: list[tuple[int, int, float, float]]) -> np.ndarray:
    out = []
    for first, last, drift, noise in blocks:
        hours = (last - first + 1) * 24
        out.append(drift + noise * np.where(np.arange(hours) % 2 == 0, 1.0, -1.0))
    return np.concatenate(out)


def _reference_labels(frame: MarketFrame, **p: float) -> list[str]:
    """Independent pandas version of the documented rule."""
    df = pd.DataFrame({"t": frame.open_time, "o": frame.open, "c": frame.close})
    r = np.log(df["c"] / df["c"].shift(1))
    r.iloc[0] = np.log(df["c"].iloc[0] / df["o"].iloc[0])
    day = df["t"] // DAY
    grouped = pd.DataFrame({"r": r, "r2": r * r, "day": day}).groupby("day")
    counts = grouped["r"].count()
    keep = counts >= p["min_coverage"] * 24
    ret = grouped["r"].sum()[keep].reset_index(drop=True)
    vol = np.sqrt(grouped["r2"].sum()[keep]).reset_index(drop=True)
    t = int(p["trend_windows"])
    z = ret.rolling(t, min_periods=1).sum() / np.sqrt((vol**2).rolling(t, min_periods=1).sum())
    past = vol.shift(1).rolling(int(p["vol_lookback_windows"]), min_periods=1)
    threshold = past.quantile(p["vol_percentile"] / 100.0)
    labels = []
    for k in range(len(ret)):
        if k >= p["min_history_windows"] and vol[k] > threshold[k]:
            labels.append("high_vol")
        elif z[k] >= p["trend_threshold"]:
            labels.append("trend_up")
        elif z[k] <= -p["trend_threshold"]:
            labels.append("trend_down")
        else:
            labels.append("range")
    # smoothing: short runs join the run before (the first run joins the one after)
    runs: list[list] = []
    for label in labels:
        if runs and runs[-1][0] == label:
            runs[-1][1] += 1
        else:
            runs.append([label, 1])
    if len(runs) > 1 and runs[0][1] < p["min_run_windows"]:
        runs[0][0] = runs[1][0]
    for i in range(1, len(runs)):
        if runs[i][1] < p["min_run_windows"]:
            runs[i][0] = runs[i - 1][0]
    return [label for label, n in runs for _ in range(n)]


DEFAULTS = {
    "trend_windows": 5,
    "trend_threshold": 1.0,
    "vol_lookback_windows": 60,
    "vol_percentile": 90.0,
    "min_history_windows": 10,
    "min_run_windows": 2,
    "min_coverage": 0.5,
}


def test_crafted_blocks_get_their_regime() -> None:
    frame = _frame(_block_returns(BLOCKS))
    labels = label_regimes(frame)
    assert labels.schema == REGIME_SCHEMA
    assert labels.num_rows == 60
    np.testing.assert_array_equal(labels.column("window_start"), T0 + np.arange(60) * DAY)
    np.testing.assert_array_equal(labels.column("window_end"), T0 + np.arange(1, 61) * DAY)
    got = labels.column("regime").to_pylist()
    assert got == _reference_labels(frame, **DEFAULTS)
    # the core of each block, past the trailing statistic's lag
    assert set(got[0:20]) == {"range"}
    assert set(got[21:30]) == {"trend_up"}
    assert set(got[30:35]) == {"high_vol"}
    assert set(got[38:45]) == {"trend_down"}
    assert set(got[50:60]) == {"range"}
    scores = labels.column("score").to_numpy()
    assert np.all(scores[30:35] > 1.0)  # volatility over its threshold
    assert np.all(scores[22:30] >= 1.0) and np.all(scores[38:45] <= -1.0)  # trend t-statistic


def test_a_single_turbulent_day_is_smoothed_unless_runs_of_one_are_allowed() -> None:
    blocks = [(0, 39, 0.0, 0.004), (40, 40, 0.0, 0.03), (41, 59, 0.0, 0.004)]
    frame = _frame(_block_returns(blocks))
    smoothed = label_regimes(frame).column("regime").to_pylist()
    raw = label_regimes(frame, min_run_windows=1).column("regime").to_pylist()
    assert set(smoothed) == {"range"}
    assert raw[40] == "high_vol" and raw.count("high_vol") == 1
    assert raw == _reference_labels(frame, **{**DEFAULTS, "min_run_windows": 1})


def test_high_vol_needs_history() -> None:
    blocks = [(0, 4, 0.0, 0.004), (5, 6, 0.0, 0.05), (7, 19, 0.0, 0.004)]
    frame = _frame(_block_returns(blocks))
    early = label_regimes(frame).column("regime").to_pylist()
    assert "high_vol" not in early  # only 5 windows of history before the spike
    allowed = label_regimes(frame, min_history_windows=3).column("regime").to_pylist()
    assert allowed[5:7] == ["high_vol", "high_vol"]


def test_parameters_match_the_reference_on_random_walks() -> None:
    rng = np.random.default_rng(42)
    returns = rng.standard_t(4, size=24 * 120) * 0.004 + np.repeat(rng.normal(0, 0.001, 120), 24)
    frame = _frame(returns)
    for params in (
        DEFAULTS,
        {**DEFAULTS, "trend_windows": 3, "trend_threshold": 0.5, "vol_percentile": 75.0},
        {**DEFAULTS, "vol_lookback_windows": 20, "min_run_windows": 3},
    ):
        got = label_regimes(frame, **params).column("regime").to_pylist()  # type: ignore[arg-type]
        assert got == _reference_labels(frame, **params)
        assert set(got) <= set(REGIMES)


def test_sparse_windows_are_skipped_and_windows_must_fit_the_bars() -> None:
    returns = _block_returns([(0, 9, 0.0, 0.004)])
    frame = _frame(returns, start_ms=T0 + 21 * HOUR)  # the first day has only 3 bars
    labels = label_regimes(frame)
    assert labels.column("window_start")[0].as_py() == T0 + DAY
    assert labels.num_rows == 10  # days 2..10 full, day 11 has 21 bars (>= half)
    with pytest.raises(MarketDataError, match="whole multiple"):
        label_regimes(_frame(returns[:40], timeframe="4h"), window="1h")
    empty = _frame(returns[:0])
    assert label_regimes(empty).num_rows == 0


def test_spans_merge_adjacent_windows_and_split_at_gaps() -> None:
    starts = [0, 1, 2, 3, 5, 6, 7, 8]  # day 4 is missing (a data gap)
    regimes = ["range", "range", "trend_up", "range", "range", "range", "high_vol", "range"]
    labels = pa.table(
        {
            "window_start": [T0 + d * DAY for d in starts],
            "window_end": [T0 + (d + 1) * DAY for d in starts],
            "regime": regimes,
            "score": [0.0] * 8,
        },
        schema=REGIME_SCHEMA,
    )
    assert regime_spans(labels, "range") == [
        (T0, T0 + 2 * DAY),
        (T0 + 3 * DAY, T0 + 4 * DAY),
        (T0 + 5 * DAY, T0 + 7 * DAY),
        (T0 + 8 * DAY, T0 + 9 * DAY),
    ]
    assert regime_spans(labels, "trend_up") == [(T0 + 2 * DAY, T0 + 3 * DAY)]
    assert regime_spans(labels, "trend_down") == []
    assert regime_spans(labels.take([7, 0, 1]), "range") == [
        (T0, T0 + 2 * DAY),
        (T0 + 8 * DAY, T0 + 9 * DAY),
    ]
    with pytest.raises(MarketDataError, match="unknown regime 'bull'"):
        regime_spans(labels, "bull")

"""The simulator's speed devices change no result.

The quiet-bar loops skip work (close-time reads, the full metrics step) when a bar provably
leaves the accumulators unchanged; signals are packed eight bars per word; funding bars are
found by guessing from the bar spacing. Each is checked here against an independent, plain
computation: the equity metrics folded bar by bar by ``equity_curve_metrics`` (no shortcut),
a per-bar loop for the packed codes, ``np.searchsorted`` for the funding bars.
"""

from __future__ import annotations

import numpy as np
import pytest

from factory_pipeline.engine.config import SimConfig
from factory_pipeline.engine.metrics import EQUITY_METRICS, compute_metrics, equity_curve_metrics
from factory_pipeline.engine.simulator import (
    Signals,
    _first_closing_at_or_after,
    pack_codes,
    simulate,
)
from factory_pipeline.market.frame import make_frame
from factory_pipeline.market.timeframes import HOUR_MS, MINUTE_MS

_START = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def _frame(n: int, seed: int, step_ms: int = 5 * MINUTE_MS):
    rng = np.random.default_rng(seed)
    open_time = _START + np.arange(n, dtype=np.int64) * step_ms
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, n)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0.0, 0.002, n))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.003, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.003, n)))
    mark = close * (1.0 + rng.normal(0.0, 0.001, n))
    interval = 8 * HOUR_MS
    funding_time = np.arange(_START // interval + 1, (_START + n * step_ms) // interval + 1)
    funding_time = funding_time.astype(np.int64) * interval
    rates = rng.normal(0.0001, 0.0002, funding_time.shape[0])
    return make_frame(
        "T", "5m", open_time, open_, high, low, close, mark=mark,
        funding_time=funding_time, funding_rates=rates,
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(8))
def test_equity_metrics_equal_a_bar_by_bar_fold_of_the_equity_curve(seed: int) -> None:
    n = 3_000
    frame = _frame(n, seed)
    rng = np.random.default_rng(100 + seed)
    density = (0.002, 0.02, 0.2)[seed % 3]
    flags = [rng.random(n) < density for _ in range(4)]
    atr = frame.close * 0.004
    signals = Signals(
        *flags,
        stop_distance=atr * 3 if seed % 2 else None,
        take_profit_distance=atr * 5 if seed % 4 == 1 else None,
        trail_distance=atr if seed % 4 == 3 else None,
    )
    config = SimConfig(
        leverage=(1.0, 5.0)[seed % 2],
        slippage_bps=1.0,
        trail_mult=2.0 if seed % 4 == 3 else 0.0,
        breakeven_r=1.0 if seed % 2 else 0.0,
        fill="signal_close" if seed == 5 else "next_open",
    )
    result = simulate(frame, signals, config)
    fast = compute_metrics(result)
    reference = equity_curve_metrics(
        result.equity, frame.open_time, frame.close_time, config.initial_cash
    )
    for name in EQUITY_METRICS:
        assert fast[name] == reference[name] or (
            np.isnan(fast[name]) and np.isnan(reference[name])
        ), name
    # exposure: bars whose close found a position open, counted from the trade log (a trade
    # is open at the closes from its entry bar up to, not including, its exit bar)
    held = np.zeros(n, dtype=bool)
    for trade in result.trades:
        held[trade["entry_bar"] : trade["exit_bar"]] = True
    for trade in result.open_trade:
        held[trade["entry_bar"] :] = True
    assert fast["exposure"] == held.sum() / n


def test_flat_stretches_below_and_at_the_high_fold_like_the_curve() -> None:
    frame = _frame(5_000, seed=42, step_ms=MINUTE_MS)
    entries = np.zeros(5_000, dtype=bool)
    exits = np.zeros(5_000, dtype=bool)
    entries[[10, 900, 2_600]] = True  # long stretches flat in between, after wins and losses
    exits[[40, 1_500, 2_700]] = True
    result = simulate(frame, Signals(entries, exits), SimConfig(slippage_bps=2.0))
    fast = compute_metrics(result)
    reference = equity_curve_metrics(
        result.equity, frame.open_time, frame.close_time, result.initial_cash
    )
    assert {k: fast[k] for k in EQUITY_METRICS} == pytest.approx(reference, rel=0, abs=0)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 64, 1_001])
def test_packed_codes_and_entry_count_match_a_per_bar_loop(n: int) -> None:
    rng = np.random.default_rng(n)
    flags = [rng.random(n) < 0.3 for _ in range(4)]
    codes, entries = pack_codes(*flags)
    rows = zip(*flags, strict=True)
    expected = [int(a) | int(b) << 1 | int(c) << 2 | int(d) << 3 for a, b, c, d in rows]
    assert codes.tolist() == expected
    assert entries == sum(1 for a, c in zip(flags[0], flags[2], strict=True) if a or c)


def test_funding_bars_equal_searchsorted_on_regular_and_irregular_bars() -> None:
    rng = np.random.default_rng(3)
    for trial in range(500):
        n = int(rng.integers(0, 60))
        if trial % 2:
            close_time = (np.arange(n, dtype=np.int64) + 1) * 30
        else:
            close_time = np.cumsum(rng.choice([1, 1, 1, 2, 7], n)).astype(np.int64) * 10
        times = np.sort(rng.integers(-20, 40 * max(n, 1) + 40, int(rng.integers(0, 20))))
        times = times.astype(np.int64)
        got = _first_closing_at_or_after(close_time, times)
        np.testing.assert_array_equal(got, np.searchsorted(close_time, times, side="left"))

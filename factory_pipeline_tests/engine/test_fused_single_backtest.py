"""CrossoverFamily.backtest (the fused single backtest) returns exactly what the two-pass
``simulate(frame, family.signals(frame, params), config)`` returns: equity curve, trade
records, open trade, metrics accumulators and counters, for both averages, every direction,
both fill modes, frames with NaN closes and a trade buffer that has to grow."""

from __future__ import annotations

import numpy as np
import pytest

from factory_pipeline.engine.config import SimConfig
from factory_pipeline.engine.results import TRADE_DTYPE, BacktestResult
from factory_pipeline.engine.simulator import simulate
from factory_pipeline.engine.sweep import CrossoverFamily
from factory_pipeline.errors import BacktestError, ConfigError
from factory_pipeline.market.frame import make_frame

HOUR = 3_600_000
T0 = 1_699_977_600_000


def _frame(n: int, seed: int, nan_every: int | None = None):
    rng = np.random.default_rng(seed)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.006, n))), 2)  # cents: SMA ties
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) + np.round(np.abs(rng.normal(0, 0.2, n)), 2)
    low = np.minimum(open_, close) - np.round(np.abs(rng.normal(0, 0.2, n)), 2)
    if nan_every is not None:
        close = close.copy()
        close[rng.integers(0, n, n // nan_every)] = np.nan  # averages blank after a NaN
    times = T0 + np.arange(n, dtype=np.int64) * HOUR
    ft = np.arange(T0 + 8 * HOUR, T0 + (n + 1) * HOUR, 8 * HOUR, dtype=np.int64)
    fr = rng.normal(0.0001, 0.0002, ft.shape[0])
    return make_frame("FU", "1h", times, open_, high, low, close, funding_time=ft,
                      funding_rates=fr)  # fmt: skip


def _assert_same(got: BacktestResult, want: BacktestResult) -> None:
    np.testing.assert_array_equal(got.equity, want.equity)
    assert got.trades.shape == want.trades.shape
    assert got.open_trade.shape == want.open_trade.shape
    for name in TRADE_DTYPE.names:
        np.testing.assert_array_equal(got.trades[name], want.trades[name], err_msg=name)
        np.testing.assert_array_equal(got.open_trade[name], want.open_trade[name], err_msg=name)
    np.testing.assert_array_equal(got.stats, want.stats)
    assert got.ambiguous_bars == want.ambiguous_bars
    assert got.skipped_orders == want.skipped_orders
    assert got.config == want.config


@pytest.mark.parametrize("kind", ["sma", "ema"])
@pytest.mark.parametrize("direction", ["both", "long", "short"])
@pytest.mark.parametrize("fill", ["next_open", "signal_close"])
def test_fused_backtest_equals_simulate_on_the_family_signals(kind, direction, fill):
    family = CrossoverFamily(kind, direction)
    config = SimConfig(fill=fill, slippage_bps=2.0, funding_interval_ms=8 * HOUR)
    for seed, nan_every in ((1, None), (2, 50)):
        frame = _frame(3_000, seed, nan_every)
        for fast, slow in ((2, 3), (5, 20), (12, 40)):
            params = {"fast": fast, "slow": slow}
            want = simulate(frame, family.signals(frame, params), config)
            got = family.backtest(frame, params, config)
            _assert_same(got, want)
            assert len(want.trades) > 0


def test_fused_backtest_grows_its_trade_buffer_across_many_blocks():
    # 20,000 bars and a 1/2 crossover: ~thousands of trades, more than the first buffer holds
    frame = _frame(20_000, 3)
    family = CrossoverFamily("sma", "both")
    config = SimConfig(funding_interval_ms=8 * HOUR)
    params = {"fast": 1, "slow": 2}
    want = simulate(frame, family.signals(frame, params), config)
    assert len(want.trades) > 20_000 // 16
    _assert_same(family.backtest(frame, params, config), want)


def test_fused_backtest_in_parity_mode_and_on_a_single_bar():
    family = CrossoverFamily("sma", "both")
    frame = _frame(500, 4)
    config = SimConfig.backtesting_py(cash=10_000, commission=0.002)
    params = {"fast": 10, "slow": 20}
    _assert_same(
        family.backtest(frame, params, config),
        simulate(frame, family.signals(frame, params), config),
    )
    one = frame.slice(0, 1)
    _assert_same(
        family.backtest(one, params, config), simulate(one, family.signals(one, params), config)
    )


def test_fused_backtest_errors_name_the_problem():
    family = CrossoverFamily("sma", "both")
    frame = _frame(200, 5)
    with pytest.raises(ConfigError, match="'fast'"):
        family.backtest(frame, {"fast": 0, "slow": 20}, SimConfig(funding_interval_ms=0))
    with pytest.raises(BacktestError, match="empty frame"):
        family.backtest(frame.slice(0, 0), {"fast": 2, "slow": 5}, SimConfig())
    with pytest.raises(BacktestError, match="trail_distance"):
        family.backtest(frame, {"fast": 2, "slow": 5}, SimConfig(trail_mult=2.0))
    gap = make_frame(
        "FU", "1h", frame.open_time, frame.open, frame.high, frame.low, frame.close,
        funding_time=frame.funding_time[:3], funding_rates=frame.funding_rates[:3],
    )  # fmt: skip
    with pytest.raises(BacktestError, match="no funding rate"):
        family.backtest(gap, {"fast": 2, "slow": 5}, SimConfig())

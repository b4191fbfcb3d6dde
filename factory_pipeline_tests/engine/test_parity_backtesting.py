"""Parity with backtesting.py 0.6.6, run inside the tests: SMA crossover, whole units,
commission on entry and exit, close-then-reverse, open trade at the end not counted."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from backtesting import Backtest, Strategy
from backtesting.lib import crossover
from backtesting.test import GOOG

from factory_pipeline.engine.config import SimConfig
from factory_pipeline.engine.simulator import simulate
from factory_pipeline.engine.sweep import CrossoverFamily, run_sweep
from factory_pipeline.market.frame import MarketFrame, make_frame

DAY = 86_400_000


def sma(values, n):
    return pd.Series(values).rolling(n).mean()


class SmaCross(Strategy):
    n1 = 10
    n2 = 20
    long_only = False

    def init(self) -> None:
        self.fast = self.I(sma, self.data.Close, self.n1)
        self.slow = self.I(sma, self.data.Close, self.n2)

    def next(self) -> None:
        if crossover(self.fast, self.slow):
            self.position.close()
            self.buy()
        elif crossover(self.slow, self.fast):
            self.position.close()
            if not self.long_only:
                self.sell()


def run_backtesting_py(data: pd.DataFrame, trade_on_close: bool, **params) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backtest = Backtest(data, SmaCross, cash=10_000, commission=0.002,
                            trade_on_close=trade_on_close)  # fmt: skip
        return backtest.run(**params)


def frame_from(data: pd.DataFrame) -> MarketFrame:
    open_time = data.index.values.astype("datetime64[ms]").astype(np.int64)
    return make_frame("GOOG", "1d", open_time, data.Open.to_numpy(), data.High.to_numpy(),
                      data.Low.to_numpy(), data.Close.to_numpy())  # fmt: skip


# (trade_on_close, long_only) -> (final equity, closed trades) from docs/REFERENCE anchors
ANCHORS = {
    (False, False): (56_263.51934, 93),
    (False, True): (63_341.19136, 46),
    (True, False): (49_985.91578, None),
    (True, True): (59_522.09378, None),
}


@pytest.mark.parametrize(("trade_on_close", "long_only"), list(ANCHORS))
def test_goog_sma_10_20_matches_backtesting_py_trade_by_trade(trade_on_close, long_only):
    stats = run_backtesting_py(GOOG, trade_on_close, long_only=long_only)
    frame = frame_from(GOOG)
    family = CrossoverFamily("sma", "long" if long_only else "both")
    config = SimConfig.backtesting_py(cash=10_000, commission=0.002, trade_on_close=trade_on_close)
    result = simulate(frame, family.signals(frame, {"fast": 10, "slow": 20}), config)

    assert result.final_equity == pytest.approx(stats["Equity Final [$]"], abs=1e-6)
    anchor_equity, anchor_trades = ANCHORS[(trade_on_close, long_only)]
    assert result.final_equity == pytest.approx(anchor_equity, abs=1e-5)
    theirs = stats["_trades"]
    if anchor_trades is not None:
        assert len(result.trades) == anchor_trades
    assert len(result.trades) == len(theirs)
    ours = result.trades
    np.testing.assert_array_equal(ours["entry_bar"], theirs["EntryBar"].to_numpy())
    np.testing.assert_array_equal(ours["exit_bar"], theirs["ExitBar"].to_numpy())
    np.testing.assert_array_equal(ours["entry_price"], theirs["EntryPrice"].to_numpy())
    np.testing.assert_array_equal(ours["exit_price"], theirs["ExitPrice"].to_numpy())
    np.testing.assert_array_equal(ours["qty"] * ours["side"], theirs["Size"].to_numpy())
    np.testing.assert_allclose(ours["net_pnl"], theirs["PnL"].to_numpy(), rtol=1e-9)
    if trade_on_close:
        return  # backtesting.py books a fill at bar t's close in bar t + 1's equity; we in bar t
    # the equity curve too (bars before backtesting.py's warm-up are cash in both)
    np.testing.assert_allclose(result.equity, stats["_equity_curve"]["Equity"].to_numpy(),
                               rtol=1e-12)  # fmt: skip


def synthetic_daily(n: int, seed: int) -> pd.DataFrame:
    """A seeded daily random walk with realistic (cent-rounded) prices and gaps."""
    rng = np.random.default_rng(seed)
    close = np.round(50 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, n))), 2)
    open_ = np.round(np.r_[50.0, close[:-1]] * np.exp(rng.normal(0, 0.005, n)), 2)
    high = np.round(np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.008, n))), 2)
    low = np.round(np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.008, n))), 2)
    index = pd.date_range("2012-01-02", periods=n, freq="D")
    return pd.DataFrame({"Open": open_, "High": high, "Low": low, "Close": close}, index=index)


@pytest.mark.slow
def test_every_sweep_configuration_matches_backtesting_py():
    data = synthetic_daily(2_500, seed=42)
    frame = frame_from(data)
    grid = {"fast": list(range(5, 51, 5)), "slow": list(range(10, 201, 10))}
    table = run_sweep(frame, grid, CrossoverFamily("sma", "both"), SimConfig.backtesting_py())
    rows = table.to_pylist()
    assert len(rows) == 175
    for row in rows:
        stats = run_backtesting_py(data, False, n1=row["fast"], n2=row["slow"])
        assert row["final_equity"] == pytest.approx(stats["Equity Final [$]"], abs=1e-6), row
        assert row["trades"] == len(stats["_trades"]), row

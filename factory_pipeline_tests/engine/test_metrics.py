"""Metric definitions checked on hand-made equity curves and hand-checked trade lists."""

from __future__ import annotations

import math

import numpy as np
import pytest

from factory_pipeline.engine.config import SimConfig
from factory_pipeline.engine.metrics import compute_metrics, equity_curve_metrics
from factory_pipeline.engine.simulator import Signals, simulate
from factory_pipeline.market.frame import make_frame

DAY = 86_400_000
HALF_DAY = DAY // 2
D0 = 1_700_006_400_000 - 1_700_006_400_000 % DAY  # a UTC midnight


def half_day_bars(n: int) -> tuple[np.ndarray, np.ndarray]:
    open_time = D0 + np.arange(n, dtype=np.int64) * HALF_DAY
    return open_time, open_time + HALF_DAY


def test_drawdown_stagnation_and_daily_ratios_by_hand():
    equity = np.array([100, 110, 105, 99, 104, 112, 108, 115], dtype=float)
    open_time, close_time = half_day_bars(8)
    m = equity_curve_metrics(equity, open_time, close_time, initial_equity=100.0)
    # days end at bars 1, 3, 5, 7 (a bar closing at midnight belongs to the day it ends)
    daily = np.array([110 / 100, 99 / 110, 112 / 99, 115 / 112]) - 1
    mean, std = daily.mean(), daily.std(ddof=1)
    downside = math.sqrt(np.mean(np.minimum(daily, 0) ** 2))
    assert m["days"] == 4
    assert m["sharpe"] == pytest.approx(mean / std * math.sqrt(365), rel=1e-12)
    assert m["sortino"] == pytest.approx(mean / downside * math.sqrt(365), rel=1e-12)
    assert m["max_drawdown"] == pytest.approx(1 - 99 / 110, rel=1e-12)
    # high at bar 1 (110), below for bars 2-4, recovered at bar 5: 4 bars, 2 days
    assert m["stagnation_bars"] == 4
    assert m["stagnation_ms"] == 4 * HALF_DAY
    assert m["stagnation_days"] == pytest.approx(2.0)
    assert m["total_return"] == pytest.approx(0.15)
    assert m["final_equity"] == 115
    assert m["cagr"] == pytest.approx(1.15 ** (365 / 4) - 1, rel=1e-9)


def test_stagnation_still_open_at_the_end_counts_from_the_initial_equity():
    open_time, close_time = half_day_bars(3)
    m = equity_curve_metrics(np.array([95.0, 90.0, 97.0]), open_time, close_time, 100.0)
    # the initial 100 (at the first open) is never regained: 3 bars, 1.5 days
    assert m["stagnation_bars"] == 3
    assert m["stagnation_days"] == pytest.approx(1.5)
    assert m["max_drawdown"] == pytest.approx(0.1)


def test_equal_to_the_high_ends_a_spell_and_flat_curves_have_no_ratios():
    open_time, close_time = half_day_bars(6)
    m = equity_curve_metrics(np.array([100.0, 99, 100, 100, 98, 100]), open_time, close_time, 100.0)
    assert m["stagnation_bars"] == 2 and m["stagnation_days"] == pytest.approx(1.0)
    flat = equity_curve_metrics(np.full(6, 100.0), open_time, close_time, 100.0)
    assert flat["max_drawdown"] == 0 and flat["stagnation_bars"] == 0
    assert math.isnan(flat["sharpe"]) and math.isnan(flat["sortino"])


def test_sortino_is_infinite_without_losing_days():
    open_time, close_time = half_day_bars(4)
    m = equity_curve_metrics(np.array([100.0, 101, 102, 103]), open_time, close_time, 100.0)
    assert m["sortino"] == math.inf and m["sharpe"] > 0


def test_trade_metrics_match_their_definitions():
    hour = 3_600_000
    opens = np.array(
        [100, 100, 100, 104, 104, 104, 100, 100, 97, 97, 97, 97, 103, 103, 103, 103], float
    )
    n = opens.shape[0]
    frame = make_frame(
        "M", "1h", D0 + np.arange(n, dtype=np.int64) * hour, opens, opens + 0.5, opens - 0.5,
        opens,
    )  # fmt: skip
    entries = np.zeros(n, bool)
    exits = np.zeros(n, bool)
    entries[[1, 6, 10]] = True  # fills at bars 2, 7, 11
    exits[[4, 8, 13]] = True  # fills at bars 5, 9, 14
    stops = np.full(n, 10.0)
    config = SimConfig(taker_fee=0.001, funding_interval_ms=0)
    result = simulate(frame, Signals(entries, exit_long=exits, stop_distance=stops), config)
    trades = result.trades
    assert [(t["entry_bar"], t["exit_bar"]) for t in trades] == [(2, 5), (7, 9), (11, 14)]
    net = trades["net_pnl"]
    assert (net[0] > 0, net[1] < 0, net[2] > 0) == (True, True, True)
    m = compute_metrics(result)
    assert m["trades"] == 3 and m["open_trades"] == 0
    assert m["win_rate"] == pytest.approx(2 / 3)
    assert m["profit_factor"] == pytest.approx((net[0] + net[2]) / -net[1], rel=1e-12)
    notional = trades["entry_price"] * trades["qty"]
    assert m["expectancy_pct"] == pytest.approx(np.mean(net / notional) * 100, rel=1e-12)
    assert m["expectancy_r"] == pytest.approx(np.mean(net / (10.0 * trades["qty"])), rel=1e-12)
    assert m["avg_bars_held"] == pytest.approx((3 + 2 + 3) / 3)
    assert m["avg_hold_hours"] == pytest.approx((3 + 2 + 3) / 3)
    assert m["exposure"] == pytest.approx(8 / n)  # bars closed in a position: 2-4, 7-8, 11-13
    assert m["fees_paid"] == pytest.approx(trades["fees"].sum(), rel=1e-12)
    assert m["final_equity"] == pytest.approx(10_000 + net.sum(), rel=1e-12)


def test_metrics_without_trades_are_nan_not_errors():
    opens = np.full(10, 100.0)
    frame = make_frame("M", "1h", D0 + np.arange(10, dtype=np.int64) * 3_600_000, opens,
                       opens + 1, opens - 1, opens)  # fmt: skip
    result = simulate(frame, Signals(np.zeros(10, bool)), SimConfig(funding_interval_ms=0))
    m = compute_metrics(result)
    assert m["trades"] == 0 and m["exposure"] == 0 and m["total_return"] == 0
    for name in ("win_rate", "expectancy_r", "expectancy_pct", "profit_factor", "sharpe"):
        assert math.isnan(m[name]), name

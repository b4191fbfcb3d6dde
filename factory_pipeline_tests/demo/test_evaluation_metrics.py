"""The demo evaluation math on hand-built fills: every expected value below is derived by hand
in the comments (prices chosen so the arithmetic is short), not taken from the code."""

from __future__ import annotations

import datetime as dt

import pytest

from factory_pipeline.demo.evaluation_metrics import (
    BacktestExpectation,
    DemoFill,
    ExecutionIssue,
    SystemDemoActivity,
    compute_demo_metrics,
    max_drawdown,
    pnl_deviation,
    reconstruct_trades,
)
from factory_pipeline.promotion.rules import DEMO_METRICS

DAY = dt.date(2025, 3, 10)
T0 = int(dt.datetime(2025, 3, 10, tzinfo=dt.UTC).timestamp() * 1000)
HOUR = 3_600_000


def fill(side, qty, price, fee, hours, *, ref=None, stop=None, symbol="BTCUSDT", day_offset=0):
    return DemoFill(
        system_id="sys-a",
        symbol=symbol,
        side=side,
        qty=qty,
        price=price,
        fee=fee,
        time_ms=T0 + day_offset * 24 * HOUR + int(hours * HOUR),
        order_link_id=f"{side}-{hours}-{day_offset}",
        reference_price=ref,
        stop_loss=stop,
    )


#: A long (2 @ 100 -> 110, stop 95) and a short (1 @ 120 -> 123, stop 126) on one day.
ROUND_TRIPS = [
    fill("Buy", 2, 100.0, 0.1, 1, ref=99.9, stop=95.0),
    fill("Sell", 2, 110.0, 0.11, 5, ref=110.0),
    fill("Sell", 1, 120.0, 0.06, 6, ref=120.6, stop=126.0),
    fill("Buy", 1, 123.0, 0.0615, 8, ref=122.5),
]


def activity(fills, *, issues=(), expectation=None, equity=1000.0):
    return SystemDemoActivity(
        system_id="sys-a",
        spec_hash="h1",
        fills=fills,
        issues=issues,
        expectation=expectation or BacktestExpectation(),
        initial_equity=equity,
    )


def test_round_trips_are_rebuilt_with_net_pnl_return_and_r():
    trades, fill_pnl = reconstruct_trades(ROUND_TRIPS)
    assert [t.side for t in trades] == ["long", "short"]
    long, short = trades
    # long: gross (110 - 100) x 2 = 20, fees 0.1 + 0.11 = 0.21, net 19.79
    assert long.net_pnl == pytest.approx(19.79)
    assert long.return_pct == pytest.approx(19.79 / 200 * 100)  # 9.895 % of 200 notional
    assert long.r_multiple == pytest.approx(19.79 / (5.0 * 2))  # stop distance 5, qty 2
    # short: gross (120 - 123) x 1 = -3, fees 0.06 + 0.0615, net -3.1215
    assert short.net_pnl == pytest.approx(-3.1215)
    assert short.return_pct == pytest.approx(-3.1215 / 120 * 100)
    assert short.r_multiple == pytest.approx(-3.1215 / 6.0)
    # per fill: opening fills cost their fee, closing fills realize price PnL minus fee
    assert fill_pnl == pytest.approx([-0.1, 20 - 0.11, -0.06, -3 - 0.0615])


def test_a_fill_crossing_zero_closes_one_trade_and_opens_the_next():
    fills = [
        fill("Buy", 1, 100.0, 0.1, 1),
        fill("Sell", 3, 90.0, 0.3, 2),  # closes 1 (fee 0.1), opens a short of 2 (fee 0.2)
        fill("Buy", 2, 80.0, 0.16, 3),
    ]
    trades, _ = reconstruct_trades(fills)
    assert [(t.side, t.qty) for t in trades] == [("long", 1), ("short", 2)]
    assert trades[0].net_pnl == pytest.approx(-10 - 0.1 - 0.1)
    assert trades[1].net_pnl == pytest.approx(20 - 0.2 - 0.16)
    assert trades[1].entry_price == pytest.approx(90.0)
    assert trades[0].r_multiple is None  # no stop, no R


def test_day_metrics_against_the_backtest_expectation():
    expectation = BacktestExpectation(
        win_rate=0.625, expectancy_r=0.5, expectancy_pct=2.5, slippage_bps=5.0
    )
    metrics, issues = compute_demo_metrics(activity(ROUND_TRIPS, expectation=expectation), DAY)
    assert set(DEMO_METRICS) <= set(metrics)
    assert metrics["demo_days"] == 1
    assert metrics["demo_trades"] == 2
    assert metrics["day_closed_trades"] == 2
    assert metrics["hit_rate"] == 0.5
    assert metrics["hit_rate_deviation"] == pytest.approx(0.5 - 0.625)
    realized_r = (19.79 / 10 - 3.1215 / 6) / 2
    assert metrics["realized_r"] == pytest.approx(realized_r)
    assert metrics["r_deviation"] == pytest.approx(realized_r - 0.5)
    demo_pct = (19.79 / 200 * 100 - 3.1215 / 120 * 100) / 2
    assert metrics["expectancy_pct"] == pytest.approx(demo_pct)
    assert metrics["pnl_deviation"] == pytest.approx(abs(demo_pct - 2.5) / 2.5)
    # adverse slippage: buy 100 vs 99.9, sell 110 vs 110, sell 120 vs 120.6, buy 123 vs 122.5
    slips = [(100 / 99.9 - 1) * 1e4, 0.0, (1 - 120 / 120.6) * 1e4, (123 / 122.5 - 1) * 1e4]
    assert metrics["avg_slippage_bps"] == pytest.approx(sum(slips) / 4)
    assert metrics["slippage_vs_model_bps"] == pytest.approx(sum(slips) / 4 - 5.0)
    net = 19.79 - 3.1215
    assert metrics["realized_pnl"] == pytest.approx(net)
    assert metrics["day_realized_pnl"] == pytest.approx(net)
    assert metrics["demo_equity"] == pytest.approx(1000 + net)
    # equity 1000 -> 999.9 -> 1019.79 (peak) -> 1019.73 -> 1016.6685
    assert metrics["demo_max_drawdown"] == pytest.approx(3.1215 / 1019.79)
    assert metrics["execution_issues"] == 0
    assert issues == []


def test_cumulative_figures_span_days_and_day_figures_only_the_day():
    day1 = [fill("Buy", 1, 100.0, 0.0, 10, ref=100.0), fill("Sell", 1, 104.0, 0.0, 12, ref=104)]
    day2 = [
        fill("Buy", 1, 100.0, 0.0, 10, ref=100.0, day_offset=1),
        fill("Sell", 1, 98.0, 0.0, 11, ref=98.0, day_offset=1),
    ]
    later = [fill("Buy", 1, 50.0, 0.0, 1, day_offset=2)]  # after the evaluated day: ignored
    metrics, _ = compute_demo_metrics(activity(day1 + day2 + later), DAY + dt.timedelta(days=1))
    assert metrics["demo_days"] == 2
    assert metrics["demo_trades"] == 2
    assert metrics["day_closed_trades"] == 1
    assert metrics["day_realized_pnl"] == pytest.approx(-2.0)
    assert metrics["realized_pnl"] == pytest.approx(2.0)
    assert metrics["hit_rate"] == 0.5
    assert metrics["open_position_symbols"] == 0
    # equity 1000 -> 1004 (peak) -> 1002; drawdown 2 / 1004
    assert metrics["demo_max_drawdown"] == pytest.approx(2 / 1004)


def test_open_positions_are_marked_to_market_at_each_day_close():
    fills = [
        fill("Buy", 1, 100.0, 0.0, 12),
        fill("Sell", 1, 105.0, 0.0, 12, day_offset=1),
    ]
    closes = {T0 + 24 * HOUR: 80.0}  # the close at the end of the first day

    def mark(symbol, time_ms):
        assert symbol == "BTCUSDT"
        return closes.get(time_ms)

    day2 = DAY + dt.timedelta(days=1)
    marked, _ = compute_demo_metrics(activity(fills), day2, mark_price=mark)
    # equity 1000 -> 1000 (entry) -> 980 (day-1 close at 80) -> 1005 (exit): dd 20 / 1000
    assert marked["demo_max_drawdown"] == pytest.approx(0.02)
    unmarked, _ = compute_demo_metrics(activity(fills), day2)
    assert unmarked["demo_max_drawdown"] == 0.0


def test_execution_issues_are_counted_cumulatively_and_listed_for_the_day():
    issues = [
        ExecutionIssue("sys-a", T0 - 5 * HOUR, "rejected", "min notional"),
        ExecutionIssue("sys-a", T0 + 2 * HOUR, "ambiguous_unresolved", "lnk-1"),
        ExecutionIssue("sys-a", T0 + 3 * HOUR, "reconciliation_diff", "position_mismatch"),
        ExecutionIssue("sys-a", T0 + 30 * HOUR, "rejected", "next day: ignored"),
    ]
    metrics, lines = compute_demo_metrics(activity(ROUND_TRIPS, issues=issues), DAY)
    assert metrics["execution_issues"] == 3
    assert metrics["day_execution_issues"] == 2
    assert (
        metrics["rejected_orders"],
        metrics["unresolved_ambiguous_orders"],
        metrics["reconciliation_diffs"],
    ) == (1, 1, 1)
    assert lines == [
        "2025-03-10T02:00:00Z ambiguous_unresolved: lnk-1",
        "2025-03-10T03:00:00Z reconciliation_diff: position_mismatch",
    ]


def test_unknown_expectations_leave_the_comparisons_missing():
    metrics, _ = compute_demo_metrics(activity(ROUND_TRIPS), DAY)
    assert metrics["pnl_deviation"] is None
    assert metrics["hit_rate_deviation"] is None
    assert metrics["slippage_vs_model_bps"] is None
    no_trades, _ = compute_demo_metrics(activity([]), DAY)
    assert no_trades["demo_trades"] == 0
    assert no_trades["avg_slippage_bps"] is None
    assert no_trades["demo_max_drawdown"] == 0.0


def test_pnl_deviation_and_drawdown_helpers():
    assert pnl_deviation(3.0, 2.0) == pytest.approx(0.5)
    assert pnl_deviation(-1.0, 2.0) == pytest.approx(1.5)
    assert pnl_deviation(1.0, 0.0) is None  # undefined, never a pass by default
    assert max_drawdown([100, 120, 90, 130, 117]) == pytest.approx(30 / 120)
    assert max_drawdown([100, 101, 102]) == 0.0


def test_a_fill_without_quantity_is_refused():
    with pytest.raises(ValueError, match="qty and price must be > 0"):
        reconstruct_trades([fill("Buy", 0.0, 100.0, 0.0, 1)])

"""Simulator semantics on tiny frames, with expectations derived by hand from
docs/backtest_semantics.md (fills, fees, slippage, reversal, funding, liquidation, sizing)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from factory_pipeline.engine.config import ExitReason, SimConfig
from factory_pipeline.engine.metrics import compute_metrics
from factory_pipeline.engine.simulator import Signals, simulate
from factory_pipeline.errors import BacktestError, ConfigError
from factory_pipeline.market.frame import make_frame

HOUR = 3_600_000
T0 = 1_699_977_600_000  # on the 8-hour funding grid


def bars(opens, closes=None, highs=None, lows=None, mark=None, funding=None):
    """1h bars from T0; high/low default to max/min(open, close) -/+ 0.5."""
    o = np.asarray(opens, dtype=float)
    c = np.asarray(closes if closes is not None else opens, dtype=float)
    h = np.asarray(highs, dtype=float) if highs is not None else np.maximum(o, c) + 0.5
    lw = np.asarray(lows, dtype=float) if lows is not None else np.minimum(o, c) - 0.5
    times = T0 + np.arange(len(o), dtype=np.int64) * HOUR
    ft, fr = (None, None)
    if funding is not None:
        ft = np.array([t for t, _ in funding], dtype=np.int64)
        fr = np.array([r for _, r in funding], dtype=float)
    return make_frame(
        "TEST", "1h", times, o, h, lw, c, mark=mark, funding_time=ft, funding_rates=fr
    )


def flags(n, *indices):
    out = np.zeros(n, dtype=bool)
    out[list(indices)] = True
    return out


def nan_array(n, **at):
    out = np.full(n, np.nan)
    for index, value in at.items():
        out[int(index.lstrip("_"))] = value
    return out


SPOT = dict(funding_interval_ms=0, taker_fee=0.001, maker_fee=0.0005, slippage_bps=0.0)


def test_next_open_fill_fees_and_equity_by_hand():
    frame = bars(
        [100, 100, 102, 103, 104, 106, 105], closes=[100, 101, 102.5, 103.5, 105, 106, 104]
    )
    signals = Signals(entry_long=flags(7, 1), exit_long=flags(7, 4))
    result = simulate(frame, signals, SimConfig(**SPOT))
    qty = 10_000 / (102 * 1.001)
    fee_in, fee_out = qty * 102 * 0.001, qty * 106 * 0.001
    (trade,) = result.trades
    assert (trade["entry_bar"], trade["exit_bar"], trade["bars_held"]) == (2, 5, 3)
    assert trade["entry_price"] == 102 and trade["exit_price"] == 106
    assert trade["qty"] == pytest.approx(qty, rel=1e-12)
    assert trade["fees"] == pytest.approx(fee_in + fee_out, rel=1e-12)
    assert trade["gross_pnl"] == pytest.approx(4 * qty, rel=1e-12)
    assert trade["net_pnl"] == pytest.approx(4 * qty - fee_in - fee_out, rel=1e-12)
    assert trade["exit_reason"] == ExitReason.SIGNAL
    assert trade["entry_time"] == T0 + 2 * HOUR and trade["exit_time"] == T0 + 5 * HOUR
    assert result.equity[1] == 10_000
    assert result.equity[2] == pytest.approx(10_000 - fee_in + qty * 0.5, rel=1e-12)
    assert result.equity[6] == pytest.approx(10_000 + 4 * qty - fee_in - fee_out, rel=1e-12)
    assert len(result.open_trade) == 0


def test_signal_close_fill_uses_the_decision_bar_close():
    frame = bars(
        [100, 100, 102, 103, 104, 106, 105], closes=[100, 101, 102.5, 103.5, 105, 106, 104]
    )
    signals = Signals(entry_long=flags(7, 1), exit_long=flags(7, 4))
    result = simulate(frame, signals, SimConfig(fill="signal_close", **SPOT))
    (trade,) = result.trades
    assert (trade["entry_bar"], trade["exit_bar"]) == (1, 4)
    assert (trade["entry_price"], trade["exit_price"]) == (101, 105)
    qty = 10_000 / (101 * 1.001)
    assert trade["net_pnl"] == pytest.approx(4 * qty - qty * 101e-3 - qty * 105e-3, rel=1e-12)
    assert trade["entry_time"] == T0 + 2 * HOUR  # the close of bar 1


def test_opposite_entry_closes_then_reverses_with_cash_after_the_close():
    frame = bars([100, 100, 110, 120, 130, 125], closes=[100, 105, 115, 125, 128, 120])
    signals = Signals(entry_long=flags(6, 1), entry_short=flags(6, 3))
    result = simulate(frame, signals, SimConfig(**SPOT))
    (trade,) = result.trades
    qty = 10_000 / (110 * 1.001)
    cash = 10_000 - qty * 110e-3 + qty * 20 - qty * 130e-3
    assert trade["exit_reason"] == ExitReason.REVERSE and trade["exit_price"] == 130
    (short,) = result.open_trade
    assert short["side"] == -1 and short["entry_bar"] == 4 and short["entry_price"] == 130
    assert short["qty"] == pytest.approx(cash / (130 * 1.001), rel=1e-12)
    assert short["exit_reason"] == ExitReason.END
    short_qty = cash / (130 * 1.001)
    final = cash - short_qty * 130e-3 + short_qty * (130 - 120)
    assert result.final_equity == pytest.approx(final, rel=1e-12)


def test_exit_and_entry_on_the_same_bar_exit_first_then_re_enter():
    frame = bars([100, 100, 110, 120, 130, 125])
    signals = Signals(entry_long=flags(6, 1, 3), exit_long=flags(6, 3))
    result = simulate(frame, signals, SimConfig(**SPOT))
    assert [t["exit_bar"] for t in result.trades] == [4]
    assert result.open_trade["entry_bar"][0] == 4


def test_slippage_moves_every_market_fill_against_the_trader():
    frame = bars([100, 100, 100, 100, 100, 100, 100])
    config = SimConfig(**{**SPOT, "slippage_bps": 10.0, "taker_fee": 0.0})
    long_trade = simulate(frame, Signals(flags(7, 1), exit_long=flags(7, 3)), config).trades[0]
    assert long_trade["entry_price"] == pytest.approx(100.1, rel=1e-12)
    assert long_trade["exit_price"] == pytest.approx(99.9, rel=1e-12)
    short = Signals(np.zeros(7, bool), entry_short=flags(7, 1), exit_short=flags(7, 3))
    short_trade = simulate(frame, short, config).trades[0]
    assert short_trade["entry_price"] == pytest.approx(99.9, rel=1e-12)
    assert short_trade["exit_price"] == pytest.approx(100.1, rel=1e-12)
    assert short_trade["net_pnl"] == pytest.approx(-0.2 * short_trade["qty"], rel=1e-9)


@pytest.mark.parametrize("side", [1, -1])
def test_funding_longs_pay_positive_rates_shorts_receive_them(side):
    n = 12
    mark = np.full(n, 100.0)
    mark[7] = 104.0  # bar 7 closes at T0 + 8h: the settlement uses its mark
    frame = bars([100] * n, mark=mark, funding=[(T0 + 8 * HOUR, 0.001)])
    entries = flags(n, 1)
    exits = flags(n, 9)
    signals = (
        Signals(entries, exit_long=exits)
        if side > 0
        else Signals(np.zeros(n, bool), entry_short=entries, exit_short=exits)
    )
    config = SimConfig(taker_fee=0.0, funding_interval_ms=8 * HOUR)
    result = simulate(frame, signals, config)
    (trade,) = result.trades
    payment = side * trade["qty"] * 104.0 * 0.001
    assert trade["funding"] == pytest.approx(payment, rel=1e-12)
    assert result.final_equity == pytest.approx(10_000 - payment, rel=1e-12)
    assert compute_metrics(result)["funding_paid"] == pytest.approx(payment, rel=1e-12)


def test_settlement_at_an_entry_fill_time_is_not_charged():
    """Settlement T0 + 8h belongs to bar 7 (open T0 + 7h, close T0 + 8h); a position filled at
    bar 8's open (= T0 + 8h) did not hold it."""
    frame = bars([100] * 12, funding=[(T0 + 8 * HOUR, 0.01)])
    result = simulate(frame, Signals(flags(12, 7)), SimConfig(taker_fee=0.0))
    assert result.open_trade["entry_bar"][0] == 8
    assert result.open_trade["funding"][0] == 0.0


def test_missing_funding_while_in_a_position_raises_and_names_the_settlement():
    frame = bars([100] * 20, funding=[(T0 + 16 * HOUR, 0.0001)])  # T0 + 8h is missing
    with pytest.raises(
        BacktestError, match=r"no funding rate for the settlement at 2023-11-15T00:00:00"
    ):
        simulate(frame, Signals(flags(20, 1)), SimConfig())


def test_missing_funding_while_flat_is_fine():
    frame = bars([100] * 20, funding=[(T0 + 16 * HOUR, 0.0001)])
    result = simulate(frame, Signals(flags(20, 10)), SimConfig(taker_fee=0.0))
    assert result.open_trade["funding"][0] == pytest.approx(
        result.open_trade["qty"][0] * 100 * 0.0001, rel=1e-12
    )


def test_funding_off_grid_events_are_rejected():
    frame = bars([100] * 12, funding=[(T0 + 8 * HOUR + 1, 0.0001)])
    with pytest.raises(BacktestError, match="not on the 480-minute grid"):
        simulate(frame, Signals(flags(12, 1)), SimConfig())


def test_isolated_margin_liquidation_uses_the_mark_and_loses_the_margin():
    n = 8
    mark = np.array([100, 100, 100, 91, 90.6, 90.4, 90, 90], dtype=float)
    frame = bars(
        [100, 100, 100, 95, 92, 92, 91, 91], closes=[100, 100, 96, 92, 92, 91, 91, 91],
        lows=[99, 99, 95.5, 91.5, 91.5, 90.8, 90.5, 90.5], mark=mark,
    )  # fmt: skip
    config = SimConfig(taker_fee=0.0, leverage=10.0, size=0.5, maintenance_margin_rate=0.005,
                       funding_interval_ms=0)  # fmt: skip
    result = simulate(frame, Signals(flags(n, 1)), config)
    (trade,) = result.trades
    # qty = 0.5 x 10,000 x 10 / 100; liquidation level 100 x (1 - 0.1 + 0.005) = 90.5 on the
    # mark (bar 5's mark 90.4; bar 4's 90.6 is above it); exit at bankruptcy 100 x (1 - 0.1)
    assert trade["qty"] == pytest.approx(500.0)
    assert trade["exit_reason"] == ExitReason.LIQUIDATION and trade["exit_bar"] == 5
    assert trade["exit_price"] == pytest.approx(90.0)
    assert trade["exit_time"] == T0 + 6 * HOUR
    assert result.final_equity == pytest.approx(10_000 - 5_000)


def test_stop_first_when_stop_and_target_are_touched_in_one_bar():
    frame = bars([100, 100, 100, 100, 100], highs=[101, 101, 101, 103.5, 101],
                 lows=[99, 99, 99.5, 97.5, 99])  # fmt: skip
    signals = Signals(flags(5, 1), stop_distance=nan_array(5, _1=2.0),
                      take_profit_distance=nan_array(5, _1=3.0))  # fmt: skip
    result = simulate(frame, signals, SimConfig(**SPOT))
    (trade,) = result.trades
    assert trade["exit_reason"] == ExitReason.STOP and trade["exit_price"] == 98.0
    assert trade["exit_bar"] == 3 and result.ambiguous_bars == 1
    assert trade["risk"] == 2.0
    assert trade["r_multiple"] == pytest.approx(trade["net_pnl"] / (2.0 * trade["qty"]))


def test_take_profit_fills_at_its_level_with_the_maker_fee():
    frame = bars([100, 100, 100, 100, 100], highs=[101, 101, 101, 103.5, 101])
    signals = Signals(flags(5, 1), stop_distance=nan_array(5, _1=2.0),
                      take_profit_distance=nan_array(5, _1=3.0))  # fmt: skip
    (trade,) = simulate(frame, signals, SimConfig(**SPOT)).trades
    qty = 10_000 / (100 * 1.001)
    assert trade["exit_reason"] == ExitReason.TAKE_PROFIT and trade["exit_price"] == 103.0
    assert trade["fees"] == pytest.approx(qty * 100 * 0.001 + qty * 103 * 0.0005, rel=1e-12)


def test_gap_through_the_stop_fills_at_the_open_with_slippage():
    frame = bars([100, 100, 100, 96, 97], closes=[100, 100, 100, 97, 97])
    signals = Signals(flags(5, 1), stop_distance=nan_array(5, _1=2.0))
    config = SimConfig(**{**SPOT, "slippage_bps": 10.0})
    (trade,) = simulate(frame, signals, config).trades
    assert trade["exit_bar"] == 3 and trade["exit_reason"] == ExitReason.STOP
    assert trade["exit_price"] == pytest.approx(96 * 0.999)


def test_quantity_is_rounded_down_to_the_step_and_small_orders_are_skipped():
    frame = bars([100] * 5)
    config = SimConfig(**{**SPOT, "qty_step": 0.1})
    result = simulate(frame, Signals(flags(5, 1)), config)
    assert result.open_trade["qty"][0] == pytest.approx(99.9)  # 10,000 / 100.1 = 99.9000999...
    skipping = SimConfig(**{**SPOT, "qty_step": 0.1, "min_notional": 20_000.0})
    skipped = simulate(frame, Signals(flags(5, 1)), skipping)
    assert len(skipped.trades) == 0 and len(skipped.open_trade) == 0
    assert skipped.skipped_orders == 1
    assert compute_metrics(skipped)["skipped_orders"] == 1.0


def test_risk_sizing_uses_the_stop_distance_and_is_capped_by_leverage():
    frame = bars([100] * 5)
    stops = nan_array(5, _1=2.0)
    config = SimConfig(**{**SPOT, "sizing": "risk", "size": 0.01})
    result = simulate(frame, Signals(flags(5, 1), stop_distance=stops), config)
    assert result.open_trade["qty"][0] == pytest.approx(0.01 * 10_000 / 2.0)
    capped = SimConfig(**{**SPOT, "sizing": "risk", "size": 0.5})
    result = simulate(frame, Signals(flags(5, 1), stop_distance=stops), capped)
    assert result.open_trade["qty"][0] == pytest.approx(10_000 / (100 * 1.001))


def test_breakeven_moves_the_stop_to_entry_after_one_r():
    frame = bars([100, 100, 100, 101, 101, 101], highs=[101, 101, 101, 102.5, 101.5, 101.5],
                 lows=[99, 99, 99, 100.5, 99.5, 99.5])  # fmt: skip
    signals = Signals(flags(6, 1), stop_distance=nan_array(6, _1=2.0))
    (trade,) = simulate(frame, signals, SimConfig(**SPOT, breakeven_r=1.0)).trades
    assert trade["exit_reason"] == ExitReason.BREAKEVEN
    assert trade["exit_bar"] == 4 and trade["exit_price"] == 100.0


def test_trailing_stop_ratchets_from_the_highest_high():
    frame = bars([100, 100, 100, 103, 104, 103], highs=[100.5, 100.5, 102, 105, 104.5, 103.5],
                 lows=[99.5, 99.5, 99.5, 102.5, 101.5, 101])  # fmt: skip
    signals = Signals(flags(6, 1), trail_distance=np.full(6, 3.0))
    (trade,) = simulate(frame, signals, SimConfig(**SPOT, trail_mult=1.0)).trades
    # after bar 2: stop 102 - 3 = 99; after bar 3: 105 - 3 = 102; bar 4's low 101.5 hits it
    assert trade["exit_reason"] == ExitReason.TRAILING
    assert trade["exit_bar"] == 4 and trade["exit_price"] == 102.0


def test_trailing_needs_a_distance_series():
    with pytest.raises(BacktestError, match="trail_distance"):
        simulate(bars([100] * 5), Signals(flags(5, 1)), SimConfig(**SPOT, trail_mult=1.0))


def test_time_stop_closes_after_max_bars():
    frame = bars([100 + k for k in range(10)])
    (trade,) = simulate(frame, Signals(flags(10, 1)), SimConfig(**SPOT, max_bars=3)).trades
    assert trade["exit_reason"] == ExitReason.TIME
    assert (trade["entry_bar"], trade["exit_bar"], trade["bars_held"]) == (2, 5, 3)
    assert trade["exit_price"] == 105


def test_partial_take_profit_then_final_target():
    frame = bars([100, 100, 100, 101, 103], highs=[100.5, 100.5, 101, 102.5, 104.2],
                 lows=[99.5, 99.5, 99.5, 100.5, 102.5])  # fmt: skip
    signals = Signals(flags(5, 1), stop_distance=nan_array(5, _1=2.0),
                      take_profit_distance=nan_array(5, _1=4.0))  # fmt: skip
    config = SimConfig(**SPOT, partial_tp_r=1.0, partial_tp_fraction=0.5)
    (trade,) = simulate(frame, signals, config).trades
    qty = 10_000 / (100 * 1.001)
    half = qty * 0.5
    fees = qty * 100 * 0.001 + half * 102 * 0.0005 + (qty - half) * 104 * 0.0005
    assert trade["partial_qty"] == pytest.approx(half)
    assert trade["exit_reason"] == ExitReason.TAKE_PROFIT and trade["exit_bar"] == 4
    assert trade["exit_price"] == pytest.approx(103.0)
    assert trade["gross_pnl"] == pytest.approx(half * 2 + (qty - half) * 4, rel=1e-12)
    assert trade["fees"] == pytest.approx(fees, rel=1e-12)
    assert trade["r_multiple"] == pytest.approx(trade["net_pnl"] / (2.0 * qty), rel=1e-12)


def test_excursions_track_the_bars_held():
    frame = bars([100, 100, 100, 100, 100, 100], highs=[101, 101, 103, 101, 104, 101],
                 lows=[99, 99, 98, 97, 99, 90])  # fmt: skip
    (trade,) = simulate(
        frame, Signals(flags(6, 1), exit_long=flags(6, 4)), SimConfig(**SPOT)
    ).trades
    assert trade["mae"] == 3.0 and trade["mfe"] == 4.0  # bars 2-4 (bar 5 is after the exit)
    assert trade["mae_pct"] == pytest.approx(3.0) and trade["mfe_pct"] == pytest.approx(4.0)


def test_open_trade_at_the_end_is_reported_separately():
    frame = bars([100, 100, 100, 110])
    result = simulate(frame, Signals(flags(4, 1)), SimConfig(**SPOT))
    assert len(result.trades) == 0 and len(result.open_trade) == 1
    metrics = compute_metrics(result)
    assert metrics["trades"] == 0.0 and metrics["open_trades"] == 1.0
    qty = 10_000 / (100 * 1.001)
    assert result.final_equity == pytest.approx(10_000 - qty * 0.1 + qty * 10, rel=1e-12)
    table = result.trades_table(include_open=True)
    assert table.column("exit_reason").to_pylist() == ["end"]
    assert table.column("side").to_pylist() == ["long"]


def test_decisions_on_the_last_bar_are_dropped():
    frame = bars([100] * 4)
    for fill in ("next_open", "signal_close"):
        result = simulate(frame, Signals(flags(4, 3)), SimConfig(**SPOT, fill=fill))
        assert len(result.trades) == 0 and len(result.open_trade) == 0


def test_conflicting_entries_on_one_bar_enter_nothing():
    frame = bars([100] * 5)
    result = simulate(frame, Signals(flags(5, 1), entry_short=flags(5, 1)), SimConfig(**SPOT))
    assert len(result.open_trade) == 0


def test_bad_inputs_raise_errors_that_name_them():
    frame = bars([100] * 5)
    with pytest.raises(BacktestError, match="Signals.exit_long"):
        simulate(frame, Signals(flags(5, 1), exit_long=np.zeros(3, bool)), SimConfig())
    with pytest.raises(ConfigError, match="SimConfig.leverage"):
        SimConfig(leverage=0.0)
    with pytest.raises(ConfigError, match="SimConfig.fill"):
        SimConfig(fill="tomorrow")  # type: ignore[arg-type]


# --- randomized checks against independent references ---------------------------------------


def random_frame(n: int, seed: int, funding: bool = True):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 0.002, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.004, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.004, n)))
    mark = close * (1 + rng.normal(0, 0.001, n))
    times = T0 + np.arange(n, dtype=np.int64) * HOUR
    ft = np.arange(T0 + 8 * HOUR, T0 + (n + 1) * HOUR, 8 * HOUR, dtype=np.int64)
    fr = rng.normal(0.0001, 0.0003, ft.shape[0])
    return make_frame("RND", "1h", times, open_, high, low, close, mark=mark,
                      funding_time=ft if funding else None,
                      funding_rates=fr if funding else None)  # fmt: skip


def reference_market_orders(frame, entry_long, exit_long, entry_short, exit_short, config):
    """Plain-Python restatement of the market-order rules (no stops): decide at the close, fill
    at the next open, exits before entries, fraction sizing with fee, slippage, funding at
    settlements inside a bar on the position held at its close, equity at every close."""
    slip = config.slippage_bps * 1e-4
    fee = config.taker_fee
    n = len(frame)
    settle = {}
    for t, rate in zip(frame.funding_time, frame.funding_rates, strict=True):
        if t >= frame.close_time[-1]:
            continue  # at or after the end of the data window: not charged
        bar = int(np.searchsorted(frame.close_time, t, side="left"))
        settle[bar] = settle.get(bar, 0.0) + rate
    cash, side, qty, entry = config.initial_cash, 0, 0.0, 0.0
    pending_exit, pending_entry = False, 0
    trades, equity = [], []
    for i in range(n):
        if pending_exit and side:
            px = frame.open[i] * (1 - side * slip)
            cash += side * qty * (px - entry) - qty * px * fee
            trades.append((side, entry, px, i))
            side = 0
        if pending_entry and not side:
            px = frame.open[i] * (1 + pending_entry * slip)
            qty = config.size * cash * config.leverage / (px * (1 + fee))
            cash -= qty * px * fee
            side, entry = pending_entry, px
        pending_exit, pending_entry = False, 0
        if side and i in settle:
            cash -= side * qty * frame.mark[i] * settle[i]
        if i < n - 1:
            go = (1 if entry_long[i] else 0) - (1 if entry_short[i] else 0)
            if entry_long[i] and entry_short[i]:
                go = 0
            leave = (side > 0 and (exit_long[i] or entry_short[i])) or (
                side < 0 and (exit_short[i] or entry_long[i])
            )
            pending_exit = bool(leave)
            pending_entry = go if (go and (go != side or leave)) else 0
        equity.append(cash + side * qty * (frame.close[i] - entry))
    return trades, np.array(equity)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_market_orders_match_an_independent_reference(seed):
    frame = random_frame(600, seed)
    rng = np.random.default_rng(seed + 100)
    el, xl, es, xs = (rng.random(600) < p for p in (0.05, 0.03, 0.05, 0.03))
    config = SimConfig(taker_fee=0.0006, slippage_bps=2.0, size=0.8, leverage=2.0,
                       liquidation=False)  # fmt: skip
    result = simulate(frame, Signals(el, xl, es, xs), config)
    ref_trades, ref_equity = reference_market_orders(frame, el, xl, es, xs, config)
    assert len(result.trades) == len(ref_trades) > 10
    for trade, (side, entry, exit_, exit_bar) in zip(result.trades, ref_trades, strict=True):
        assert trade["side"] == side and trade["exit_bar"] == exit_bar
        assert trade["entry_price"] == pytest.approx(entry, rel=1e-12)
        assert trade["exit_price"] == pytest.approx(exit_, rel=1e-12)
    np.testing.assert_allclose(result.equity, ref_equity, rtol=1e-10)


@pytest.mark.parametrize("fill", ["next_open", "signal_close"])
def test_quiet_bar_shortcut_never_changes_a_result(fill):
    """A NaN trailing distance with trail_mult > 0 forces the full rules on every bar (nothing
    moves); the default run takes the quiet-bar fast path. Both must agree exactly."""
    n = 3_000
    frame = random_frame(n, 11)
    rng = np.random.default_rng(12)
    el, xl, es, xs = (rng.random(n) < p for p in (0.02, 0.01, 0.02, 0.01))
    stops = np.where(rng.random(n) < 0.7, rng.uniform(0.5, 3.0, n), np.nan)
    targets = np.where(rng.random(n) < 0.5, rng.uniform(1.0, 6.0, n), np.nan)
    signals = dict(stop_distance=stops, take_profit_distance=targets)
    base = SimConfig(fill=fill, slippage_bps=1.0, leverage=5.0, size=0.6, breakeven_r=1.0,
                     partial_tp_r=1.5, partial_tp_fraction=0.4, max_bars=40)  # fmt: skip
    fast = simulate(frame, Signals(el, xl, es, xs, **signals), base)
    forced = simulate(
        frame,
        Signals(el, xl, es, xs, **signals, trail_distance=np.full(n, np.nan)),
        SimConfig(**{**base.to_dict(), "trail_mult": 1.0}),
    )
    assert len(fast.trades) > 50
    assert {int(r) for r in fast.trades["exit_reason"]} >= {1, 2, 3, 5, 6}
    np.testing.assert_array_equal(fast.equity, forced.equity)
    for name in fast.trades.dtype.names:
        np.testing.assert_array_equal(fast.trades[name], forced.trades[name])
    assert fast.ambiguous_bars == forced.ambiguous_bars
    fast_metrics, forced_metrics = compute_metrics(fast), compute_metrics(forced)
    assert fast_metrics.keys() == forced_metrics.keys()
    for key, value in fast_metrics.items():
        assert value == forced_metrics[key] or (
            math.isnan(value) and math.isnan(forced_metrics[key])
        )

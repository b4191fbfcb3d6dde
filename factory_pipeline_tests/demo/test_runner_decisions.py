"""Decisions at one bar close reproduce the backtest: bar by bar with the position fed back, the
runner opens and closes at the same bars and sides as engine.system_backtest.run_system; sizing,
stops and management are checked against hand-derived values."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from factory_pipeline.demo.decisions import (
    FLAT,
    PositionState,
    SignalWindow,
    decide,
    decide_at,
    decision_window_bars,
)
from factory_pipeline.engine.system_backtest import DEFAULT_EXECUTION, engine_inputs, run_system
from factory_pipeline.market.frame import make_frame
from factory_pipeline.strategy.language import IndicatorCache
from factory_pipeline.strategy.signals import SystemSignals, compile_system

from .conftest import rsi_time_stop_spec, sma_cross_spec

EQUITY = 10_000.0


def _replay_decisions(window: SignalWindow) -> list[tuple[int, int, int, str]]:
    """(entry time, exit time, side, exit reason) of the trades the decisions make, deciding
    at every bar close with the position fed back and fills at the next open."""
    frame = window.frame
    position = FLAT
    trades: list[tuple[int, int, int, str]] = []
    for i in range(len(frame) - 1):  # the simulator drops decisions on the last bar
        decision = decide_at(window, i, position, EQUITY, with_features=False)
        fill_time = int(frame.open_time[i + 1])
        if decision.exit_qty > 0:
            trades.append((position.entry_time_ms, fill_time, position.side, decision.exit_reason))
        if decision.action in ("enter", "reverse"):
            assert decision.position_after.entry_time_ms == fill_time
        position = decision.position_after
    return trades


def _backtest_trades(result) -> list[tuple[int, int, int, str]]:
    names = {1: "signal", 6: "time", 8: "reverse"}
    return [
        (int(t["entry_time"]), int(t["exit_time"]), int(t["side"]), names[int(t["exit_reason"])])
        for t in result.trades
    ]


@pytest.mark.parametrize("make_spec", [sma_cross_spec, rsi_time_stop_spec])
def test_bar_by_bar_decisions_trade_like_the_backtest(make_spec, library, btc_frame):
    system = compile_system(make_spec(), library)
    run = run_system(system, btc_frame)
    window = SignalWindow.compute(system, btc_frame)
    expected = _backtest_trades(run.result)
    assert len(expected) >= 10  # the comparison has substance
    assert _replay_decisions(window) == expected
    if make_spec is rsi_time_stop_spec:
        assert any(reason == "time" for *_, reason in expected)


def test_a_window_of_recent_bars_decides_like_the_full_history(library, btc_frame):
    """decide() on the last decision_window_bars bars equals deciding on the whole history."""
    system = compile_system(sma_cross_spec(), library)
    window = SignalWindow.compute(system, btc_frame)
    size = decision_window_bars(system)
    assert size >= system.warmup_bars + 500
    checked = 0
    for i in range(size, len(btc_frame), 97):
        part = btc_frame.slice(i + 1 - size, i + 1)
        for position in (FLAT, _long_at(btc_frame, i - 5)):
            full = decide_at(window, i, position, EQUITY)
            short = decide(system, part, position, EQUITY)
            assert (short.action, short.side, short.entry_qty, short.exit_reason) == (
                full.action,
                full.side,
                full.entry_qty,
                full.exit_reason,
            )
            assert short.features == pytest.approx(full.features, rel=1e-9, nan_ok=True)
            checked += 1
    assert checked > 20


def _long_at(frame, i: int) -> PositionState:
    return PositionState(
        side=1, qty=0.1, entry_price=float(frame.open[i]), entry_time_ms=int(frame.open_time[i])
    )


# -- sizing, stops and management on hand-made signals ---------------------------------------


def _window(
    n: int = 6,
    *,
    rule: str = "fixed_fraction",
    params: dict | None = None,
    management: dict | None = None,
    entry_long_at: int | None = None,
    stop: float = math.nan,
    tp: float = math.nan,
    trail: float = math.nan,
    volatility: float = math.nan,
    closes: list[float] | None = None,
    highs: list[float] | None = None,
    lows: list[float] | None = None,
) -> SignalWindow:
    close = np.array(closes or [100.0] * n)
    high = np.array(highs) if highs else close + 1.0
    low = np.array(lows) if lows else close - 1.0
    frame = make_frame(
        "BTCUSDT", "15m", np.arange(n, dtype=np.int64) * 900_000, close, high, low, close
    )
    entry_long = np.zeros(n, dtype=bool)
    if entry_long_at is not None:
        entry_long[entry_long_at] = True
    false = np.zeros(n, dtype=bool)
    signals = SystemSignals(
        entry_long=entry_long,
        entry_short=false,
        exit_long=false.copy(),
        exit_short=false.copy(),
        stop_distance=np.full(n, stop),
        take_profit_distance=np.full(n, tp),
        trail_distance=np.full(n, trail),
        volatility=np.full(n, volatility),
        sizing_rule=rule,
        sizing_params=params or {"fraction": 1.0, "max_leverage": 3.0},
        management=management or {},
        warmup_bars=0,
    )
    engine_signals, config = engine_inputs(signals, DEFAULT_EXECUTION)
    return SignalWindow(None, frame, signals, IndicatorCache(), engine_signals.size, config)  # type: ignore[arg-type]


SLIP = DEFAULT_EXECUTION.slippage_bps * 1e-4
FEE = DEFAULT_EXECUTION.taker_fee


def test_fixed_fraction_sizing_uses_the_slipped_close_and_the_entry_fee():
    w = _window(
        rule="fixed_fraction", params={"fraction": 1.5, "max_leverage": 3.0}, entry_long_at=2
    )
    d = decide_at(w, 2, FLAT, 10_000.0, with_features=False)
    price = 100.0 * (1 + SLIP)
    assert d.action == "enter" and d.side == 1
    assert d.reference_price == 100.0
    assert d.entry_qty == pytest.approx(1.5 * 10_000.0 / (price * (1 + FEE)))
    assert d.target_qty == pytest.approx(d.entry_qty)


def test_risk_per_trade_sizing_stop_and_take_profit_prices():
    w = _window(
        rule="risk_per_trade",
        params={"risk_fraction": 0.01, "max_leverage": 3.0},
        entry_long_at=1,
        stop=2.0,
        tp=5.0,
    )
    d = decide_at(w, 1, FLAT, 10_000.0, with_features=False)
    price = 100.0 * (1 + SLIP)
    assert d.entry_qty == pytest.approx(0.01 * 10_000.0 / 2.0)  # 50 units, under the 3x cap
    assert d.stop_loss == pytest.approx(price - 2.0)
    assert d.take_profit == pytest.approx(price + 5.0)
    assert d.position_after.risk == 2.0


def test_quantity_is_capped_by_leverage_rounded_to_the_step_and_checked_for_minimums():
    w = _window(rule="risk_per_trade", params={"risk_fraction": 0.03, "max_leverage": 1.0},
                entry_long_at=1, stop=0.1)  # fmt: skip
    price = 100.0 * (1 + SLIP)
    cap = 10_000.0 / (price * (1 + FEE))  # 1x leverage cap: ~99.92, far below 0.03*1e4/0.1
    d = decide_at(w, 1, FLAT, 10_000.0, qty_step=0.5, with_features=False)
    assert d.entry_qty == math.floor(cap / 0.5) * 0.5
    skipped = decide_at(w, 1, FLAT, 10_000.0, min_notional=20_000.0, with_features=False)
    assert skipped.action == "skip" and "below minimum" in skipped.reason
    tiny = decide_at(w, 1, FLAT, 10_000.0, qty_step=1000.0, with_features=False)
    assert tiny.action == "skip" and "rounds to zero" in tiny.reason


def test_volatility_target_and_fixed_qty_sizing():
    w = _window(rule="volatility_target", params={"target_vol": 0.004, "max_leverage": 2.0},
                entry_long_at=1, volatility=0.001)  # fmt: skip
    price = 100.0 * (1 + SLIP)
    d = decide_at(w, 1, FLAT, 10_000.0, with_features=False)
    # size = min(0.004 / 0.001, 2) / 2 = 1 -> notional 1 x 2 x equity (the full leverage)
    assert d.entry_qty == pytest.approx(2.0 * 10_000.0 / (price * (1 + FEE)))
    w = _window(rule="fixed_qty", params={"qty": 0.25}, entry_long_at=1)
    assert decide_at(w, 1, FLAT, 10_000.0, with_features=False).entry_qty == 0.25


def test_partial_take_profit_level_and_quantity():
    w = _window(rule="fixed_qty", params={"qty": 3.0}, entry_long_at=1, stop=2.0,
                management={"partial_tp_r": 1.5, "partial_tp_fraction": 0.5})  # fmt: skip
    d = decide_at(w, 1, FLAT, 10_000.0, qty_step=1.0, with_features=False)
    price = 100.0 * (1 + SLIP)
    assert d.partial_tp_price == pytest.approx(price + 1.5 * 2.0)
    assert d.partial_tp_qty == 1.0  # 0.5 x 3 rounded down to the step


def test_breakeven_moves_the_stop_to_entry_once_price_reached_r():
    highs = [101.0, 101.0, 103.5, 101.0, 101.0]
    w = _window(5, rule="fixed_qty", params={"qty": 1.0}, highs=highs,
                management={"breakeven_after_r": 1.5})  # fmt: skip
    long = PositionState(side=1, qty=1.0, entry_price=100.0, entry_time_ms=900_000, risk=2.0,
                         stop_price=98.0)  # fmt: skip
    before = decide_at(w, 1, long, 10_000.0, with_features=False)  # high 101 < 100 + 3
    assert before.action == "hold" and math.isnan(before.new_stop)
    after = decide_at(w, 2, long, 10_000.0, with_features=False)  # high 103.5 >= 103
    assert after.new_stop == 100.0 and after.position_after.breakeven_done


def test_trailing_stop_follows_the_highest_high_and_only_tightens():
    highs = [101.0, 104.0, 102.0, 103.0]
    w = _window(4, rule="fixed_qty", params={"qty": 1.0}, highs=highs, trail=3.0,
                management={"trailing_stop": 1.0})  # fmt: skip
    long = PositionState(side=1, qty=1.0, entry_price=100.0, entry_time_ms=0, risk=2.0,
                         stop_price=98.0)  # fmt: skip
    d = decide_at(w, 1, long, 10_000.0, with_features=False)
    assert d.new_stop == pytest.approx(104.0 - 3.0)
    moved = dataclasses.replace(long, stop_price=101.0)
    assert math.isnan(decide_at(w, 3, moved, 10_000.0, with_features=False).new_stop)


def test_a_touched_stop_the_venue_did_not_execute_exits_at_market():
    lows = [99.0, 99.0, 97.5, 99.0]
    w = _window(4, rule="fixed_qty", params={"qty": 1.0}, lows=lows)
    long = PositionState(side=1, qty=1.0, entry_price=100.0, entry_time_ms=0, stop_price=98.0)
    assert decide_at(w, 1, long, 1e4, with_features=False).action == "hold"
    d = decide_at(w, 2, long, 1e4, with_features=False)
    assert (d.action, d.exit_reason, d.exit_qty, d.target_qty) == ("exit", "stop", 1.0, 0.0)


def test_position_state_round_trips_through_forecast_features():
    state = PositionState(side=-1, qty=0.3, entry_price=123.5, entry_time_ms=1_704_067_200_000,
                          risk=2.5, stop_price=126.0, breakeven_done=True)  # fmt: skip
    back = PositionState.from_features(state.to_features())
    assert back.side == -1 and back.qty == 0.3 and back.entry_time_ms == state.entry_time_ms
    assert back.stop_price == 126.0 and back.breakeven_done and math.isnan(back.take_profit_price)
    assert PositionState.from_features({}) == FLAT


def test_features_snapshot_holds_the_bar_and_the_module_values(library, btc_frame):
    system = compile_system(sma_cross_spec(), library)
    part = btc_frame.slice(0, 2000)
    d = decide(system, part, FLAT, EQUITY)
    assert d.features["close"] == float(part.close[-1])
    assert d.features["signal.entry_long"] in (0.0, 1.0)
    assert "entry.long" in d.features and "filters[0].allow_long" in d.features
    assert d.bar_close_ms == int(part.close_time[-1])


def test_a_touched_take_profit_exits_and_the_stop_wins_when_both_are_touched():
    highs = [101.0, 101.0, 105.5, 105.5]
    lows = [99.0, 99.0, 99.0, 97.0]
    w = _window(4, rule="fixed_qty", params={"qty": 1.0}, highs=highs, lows=lows)
    long = PositionState(side=1, qty=1.0, entry_price=100.0, entry_time_ms=0, stop_price=98.0,
                         take_profit_price=105.0)  # fmt: skip
    assert decide_at(w, 1, long, 1e4, with_features=False).action == "hold"
    assert decide_at(w, 2, long, 1e4, with_features=False).exit_reason == "take_profit"
    assert decide_at(w, 3, long, 1e4, with_features=False).exit_reason == "stop"

"""Regime-window backtests: window boundaries, forced close at the window end, chained equity,
skipped systems, the regime clock, idempotency.

Expected values are derived by hand (cost-free always-long system: one trade per window from the
open after the window's first bar to the open of its last bar) or by an independent route: each
window simulated on its own slice of the frame with the starting cash chained by hand.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from factory_pipeline.engine.metrics import compute_metrics, equity_curve_metrics
from factory_pipeline.engine.robustness import sharpe_ratio
from factory_pipeline.engine.simulator import Signals, simulate
from factory_pipeline.engine.system_backtest import engine_inputs
from factory_pipeline.engine.trials import TrialLedger
from factory_pipeline.errors import BacktestError, MarketDataError
from factory_pipeline.market.regimes import REGIMES, label_regimes, regime_spans
from factory_pipeline.market.timeframes import DAY_MS, HOUR_MS
from factory_pipeline.research import (
    REGIME_TRIAL_FAMILY,
    WINDOW_END,
    backtest_partition,
    partition_key,
)
from factory_pipeline.research.regime_backtest import (
    bar_windows,
    daily_returns,
    run_windows,
    system_spec,
)
from factory_pipeline.store import Store
from factory_pipeline.strategy.signals import compile_system
from factory_pipeline.strategy.systems import load_system_yaml, to_system_doc
from factory_pipeline_tests.research.helpers import (
    COSTLY,
    FREE,
    START_MS,
    day_span,
    library,
    synthetic_frame,
    system,
    trend_frame,
)
from factory_pipeline_tests.strategy.test_systems import SYSTEMS_DIR


@pytest.fixture(scope="module")
def lib():
    return library()


# two usable windows (days 2-4 and 10-11 = 1h bars [48, 120) and [240, 288)) and one 3-hour
# span that is shorter than the minimum window
SPANS = [
    day_span(2, 3),
    day_span(10, 2),
    (START_MS + 25 * DAY_MS, START_MS + 25 * DAY_MS + 3 * HOUR_MS),
]


def test_always_long_trades_once_per_window_and_chains_equity(lib):
    frame = trend_frame(30)
    doc = system(lib)
    part = backtest_partition(
        [doc], frame, SPANS, symbol="BTCUSDT", regime="trend_up", library=lib, base=FREE
    )
    assert part.partition_key == "trend_up|BTCUSDT" == partition_key("trend_up", "BTCUSDT")
    result = part.by_system(doc.id)
    trades = result.trades
    # entry decided at the window's first bar fills at the next open; the forced exit decided at
    # the second-to-last bar fills at the last bar's open
    assert [(t.entry_time.timestamp() * 1000, t.exit_time.timestamp() * 1000) for t in trades] == [
        (frame.open_time[49], frame.open_time[119]),
        (frame.open_time[241], frame.open_time[287]),
    ]
    assert [t.exit_reason for t in trades] == [WINDOW_END, WINDOW_END]
    assert [t.side for t in trades] == ["long", "long"]
    expected = 10_000.0 * frame.open[119] / frame.open[49] * frame.open[287] / frame.open[241]
    metrics = result.backtest.metrics
    assert metrics["final_equity"] == pytest.approx(expected, rel=1e-12)
    assert metrics["total_return"] == pytest.approx(expected / 10_000.0 - 1.0, rel=1e-12)
    assert (metrics["trades"], metrics["windows"], metrics["window_end_exits"]) == (2, 2, 2)
    assert metrics["bars"] == 72 + 48
    times, equity = result.equity
    np.testing.assert_array_equal(times, np.r_[frame.close_time[48:120], frame.close_time[240:288]])
    # flat at each window's start: the first bar of window 2 keeps window 1's final equity
    assert equity[72] == equity[71] == pytest.approx(10_000.0 * frame.open[119] / frame.open[49])
    assert equity[0] == 10_000.0
    assert result.backtest.data_start.timestamp() * 1000 == frame.open_time[48]
    assert result.backtest.data_end.timestamp() * 1000 == frame.close_time[287]
    assert result.backtest.config["taker_fee"] == 0.0


def test_windows_match_independent_per_window_simulations_with_costs(lib):
    frame = trend_frame(30, drift=0.0, noise=0.004, seed=5)
    doc = system(
        lib,
        name="sma cross",
        entry="entry_sma_cross",
        entry_params={"fast": 3, "slow": 10},
        direction="both",
        exits=[{"module": "exit_percent_stop", "params": {"pct": 1.0}}],
    )
    part = backtest_partition(
        [doc], frame, SPANS, symbol="BTCUSDT", regime="range", library=lib, base=COSTLY
    )
    result = part.by_system(doc.id)

    sig = compile_system(system_spec(doc), lib).signals(frame)
    engine_signals, config = engine_inputs(sig, COSTLY)
    cash = config.initial_cash
    reference = []
    for start, stop in [(48, 120), (240, 288)]:
        n = stop - start
        enter_ok = np.arange(n) <= n - 3
        forced = np.arange(n) == n - 2
        window = slice(start, stop)
        cut = lambda a, w=window: None if a is None else a[w]  # noqa: E731
        run = simulate(
            frame.slice(start, stop),
            Signals(
                entry_long=engine_signals.entry_long[start:stop] & enter_ok,
                exit_long=engine_signals.exit_long[start:stop] | forced,
                entry_short=engine_signals.entry_short[start:stop] & enter_ok,
                exit_short=engine_signals.exit_short[start:stop] | forced,
                stop_distance=cut(engine_signals.stop_distance),
                take_profit_distance=cut(engine_signals.take_profit_distance),
                size=cut(engine_signals.size),
                trail_distance=cut(engine_signals.trail_distance),
            ),
            dataclasses.replace(config, initial_cash=cash),
        )
        assert len(run.open_trade) == 0
        reference.extend(run.trades)
        cash = run.final_equity
    assert len(result.trades) == len(reference) > 4
    for doc_trade, ref in zip(result.trades, reference, strict=True):
        assert doc_trade.entry_time.timestamp() * 1000 == ref["entry_time"]
        assert doc_trade.exit_time.timestamp() * 1000 == ref["exit_time"]
        assert doc_trade.net_pnl == pytest.approx(ref["net_pnl"], rel=1e-9, abs=1e-9)
        assert doc_trade.fees == pytest.approx(ref["fees"], rel=1e-9)
        assert doc_trade.fees > 0
    assert result.backtest.metrics["final_equity"] == pytest.approx(cash, rel=1e-12)
    reasons = {t.exit_reason for t in result.trades}
    assert reasons <= {"signal", "reverse", "stop", WINDOW_END}
    assert "stop" in reasons


def test_stagnation_runs_on_the_regime_clock_and_the_calendar(lib):
    frame = trend_frame(30, drift=0.0005, noise=0.0)  # strictly rising: a short loses every bar
    doc = system(lib, name="always short", entry="entry_always_short", direction="short_only")
    spans = [*SPANS, day_span(15, 1)]  # a third window: 1h bars [360, 384)
    part = backtest_partition(
        [doc], frame, spans, symbol="BTCUSDT", regime="trend_up", library=lib, base=FREE
    )
    metrics = part.by_system(doc.id).backtest.metrics
    assert metrics["total_return"] < 0 and metrics["windows"] == 3
    # the high is the flat first bar (close of bar 48), never regained: on the regime clock the
    # spell lasts the 72 + 48 + 24 in-window bars minus that first one
    assert metrics["stagnation_bars"] == 143
    assert metrics["stagnation_days"] == pytest.approx(143 / 24)
    assert metrics["calendar_stagnation_days"] == pytest.approx(
        (frame.close_time[383] - frame.close_time[48]) / DAY_MS
    )


def test_systems_and_windows_are_skipped_with_reasons(lib):
    frame = trend_frame(30)
    eth_only = system(lib, name="eth only", symbols=("ETHUSDT",))
    btc = system(lib)
    part = backtest_partition(
        [eth_only, btc], frame, SPANS[2:], symbol="BTCUSDT", regime="high_vol", library=lib
    )
    assert len(part) == 0 and part.trials == ()
    assert "does not trade BTCUSDT" in part.skipped[eth_only.id]
    assert "no high_vol window of at least 8 1h bars" in part.skipped[btc.id]
    assert bar_windows(frame, SPANS) == [(48, 120), (240, 288)]
    assert bar_windows(frame, SPANS, min_bars=3) == [(48, 120), (240, 288), (600, 603)]
    with pytest.raises(MarketDataError, match="unknown regime"):
        backtest_partition([btc], frame, SPANS, symbol="BTCUSDT", regime="bull", library=lib)
    with pytest.raises(MarketDataError, match="ETHUSDT"):
        backtest_partition([btc], frame, SPANS, symbol="ETHUSDT", regime="range", library=lib)
    with pytest.raises(BacktestError, match="invalid"):
        run_windows(frame, compile_system(system_spec(btc), lib).signals(frame), [(10, 12)], FREE)


def test_a_system_on_a_lower_timeframe_frame_is_resampled(lib):
    frame = trend_frame(30, timeframe="15m")
    doc = system(lib)  # decides on 1h bars
    part = backtest_partition(
        [doc], frame, SPANS, symbol="BTCUSDT", regime="trend_up", library=lib, base=FREE
    )
    trades = part.by_system(doc.id).trades
    hourly = frame.resample("1h")
    assert trades[0].entry_time.timestamp() * 1000 == hourly.open_time[49]


def test_daily_returns_follow_the_engine_definition(lib):
    frame = trend_frame(30, drift=0.0, noise=0.004, seed=3)
    doc = system(lib, name="sma", entry="entry_sma_cross", entry_params={"fast": 3, "slow": 10},
                 direction="both")  # fmt: skip
    sig = compile_system(system_spec(doc), lib).signals(frame)
    run = run_windows(frame, sig, [(48, 120), (240, 288)], COSTLY)
    returns = run.daily_returns
    assert returns.shape[0] == run.metrics["days"] == 5
    # by hand: the equity at the last close of each UTC day over the previous day's
    day_end = [run.equity[23], run.equity[47], run.equity[71], run.equity[95], run.equity[119]]
    expected = np.diff(np.r_[10_000.0, day_end]) / np.r_[10_000.0, day_end[:-1]]
    np.testing.assert_allclose(returns, expected, rtol=1e-12)
    assert sharpe_ratio(returns) * math.sqrt(365) == pytest.approx(run.metrics["sharpe"])
    reference = equity_curve_metrics(run.equity, run.open_time, run.close_time, 10_000.0)
    assert reference["max_drawdown"] == run.metrics["max_drawdown"]
    assert compute_metrics(run.result)["trades"] == run.metrics["trades"]
    assert daily_returns(np.empty(0), np.empty(0, dtype=np.int64), 1.0).shape == (0,)


def test_partition_backtests_are_idempotent_and_trials_record_once(lib, tmp_path):
    frame = synthetic_frame("BTCUSDT", 45)
    doc = to_system_doc(load_system_yaml(SYSTEMS_DIR / "ema_trend_follower.yaml", lib), lib)
    labels = label_regimes(frame)
    regime = max(REGIMES, key=lambda r: len(regime_spans(labels, r)))
    spans = regime_spans(labels, regime)

    def run():
        return backtest_partition([doc], frame, spans, symbol="BTCUSDT", regime=regime,
                                  library=lib)  # fmt: skip

    first, second = run(), run()
    a, b = first.by_system(doc.id), second.by_system(doc.id)
    assert a.backtest.id == b.backtest.id
    assert a.backtest.metrics == b.backtest.metrics
    assert a.backtest.metrics["trades"] == len(a.trades) > 0
    assert [t.id for t in a.trades] == [t.id for t in b.trades]
    assert len({t.id for t in a.trades}) == len(a.trades)
    assert all(t.backtest_id == a.backtest.id for t in a.trades)
    np.testing.assert_array_equal(a.equity[1], b.equity[1])
    # the stored document round-trips (only finite metrics are kept)
    assert type(a.backtest).model_validate_json(a.backtest.model_dump_json()) == a.backtest
    ledger = TrialLedger(Store(tmp_path / "ledger.duckdb"))
    assert ledger.record(first.trials) == 1
    assert ledger.record(second.trials) == 0
    assert ledger.count(REGIME_TRIAL_FAMILY) == 1
    trial = ledger.trials(REGIME_TRIAL_FAMILY)[0]
    assert (trial.symbol, trial.system_id) == ("BTCUSDT", doc.id)
    assert trial.n_periods == a.backtest.metrics["days"]

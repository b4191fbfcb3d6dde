"""System -> signal arrays: combination rules, module behaviour on crafted data, timeframe
alignment, warm-up, causality, and compiled-system reuse.

Expected values come from small independent reference implementations below (plain loops and
numpy), never from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from factory_pipeline.errors import SpecError
from factory_pipeline.market.frame import MarketFrame, make_frame
from factory_pipeline.market.timeframes import HOUR_MS, timeframe_ms
from factory_pipeline.schemas import ModuleDoc, ModuleKind
from factory_pipeline.strategy.language import EvalContext, IndicatorCache
from factory_pipeline.strategy.modules import load_module_library
from factory_pipeline.strategy.signals import SystemSignals, compile_system, compute_signals
from factory_pipeline.strategy.systems import SystemSpec, load_system_yaml, spec_hash
from factory_pipeline_tests.strategy.test_modules import START_MS, random_walk_frame
from factory_pipeline_tests.strategy.test_systems import SYSTEMS_DIR


@pytest.fixture(scope="module")
def library() -> dict[str, ModuleDoc]:
    return load_module_library()


def spec(**changes) -> SystemSpec:
    data = {
        "name": "signals test",
        "symbols": ["BTCUSDT"],
        "timeframes": {"H": "4h", "M": "1h", "L": "15m"},
        "direction": "both",
        "entry": {"module": "entry_sma_cross", "params": {"fast": 2, "slow": 10}},
        "exits": [{"module": "exit_percent_stop", "params": {"pct": 2.0}}],
        "filters": [],
        "risk": {"module": "risk_fixed_fraction"},
        "management": [],
    }
    data.update(changes)
    return SystemSpec.model_validate(data)


def close_frame(
    close: np.ndarray,
    timeframe: str = "15m",
    funding: tuple[np.ndarray, np.ndarray] | None = None,
    oi: tuple[np.ndarray, np.ndarray] | None = None,
) -> MarketFrame:
    """A frame from a close series: open = previous close, high/low 0.1% around."""
    n = close.shape[0]
    open_time = START_MS + np.arange(n, dtype=np.int64) * timeframe_ms(timeframe)
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    ft, fr = funding if funding is not None else (None, None)
    ot, ov = oi if oi is not None else (None, None)
    return make_frame("BTCUSDT", timeframe, open_time, open_, high, low, close,
                      funding_time=ft, funding_rates=fr, oi_time=ot, oi_values=ov)  # fmt: skip


# -- independent reference implementations -------------------------------------------------


def ref_sma(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(x.shape[0], np.nan)
    for t in range(n - 1, x.shape[0]):
        out[t] = sum(x[t - n + 1 : t + 1]) / n
    return out


def ref_cross_up(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(a.shape[0], dtype=bool)
    for t in range(1, a.shape[0]):
        values = (a[t], b[t], a[t - 1], b[t - 1])
        if not any(np.isnan(values)):
            out[t] = a[t] > b[t] and a[t - 1] <= b[t - 1]
    return out


def ref_atr(frame: MarketFrame, n: int) -> np.ndarray:
    """Wilder's ATR seeded with the mean of the first n true ranges (first bar: high - low)."""
    h, lo, c = frame.high, frame.low, frame.close
    tr = [h[0] - lo[0]] + [
        max(h[t] - lo[t], abs(h[t] - c[t - 1]), abs(lo[t] - c[t - 1])) for t in range(1, len(c))
    ]
    out = np.full(len(c), np.nan)
    out[n - 1] = sum(tr[:n]) / n
    for t in range(n, len(c)):
        out[t] = out[t - 1] + (tr[t] - out[t - 1]) / n
    return out


def ref_rolling(x: np.ndarray, n: int, fn) -> np.ndarray:
    out = np.full(x.shape[0], np.nan)
    for t in range(n - 1, x.shape[0]):
        out[t] = fn(x[t - n + 1 : t + 1])
    return out


def lag1(x: np.ndarray) -> np.ndarray:
    return np.r_[np.nan, x[:-1]]


def gt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(a) | np.isnan(b), False, a > b)


def walk(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))


# -- module behaviour on crafted data ------------------------------------------------------


def test_crossover_entry_fires_exactly_at_the_cross(library):
    close = walk(400, seed=1)
    signals = compute_signals(spec(), library, close_frame(close))
    fast, slow = ref_sma(close, 2), ref_sma(close, 10)
    up = ref_cross_up(fast, slow)
    down = ref_cross_up(slow, fast)
    assert up.sum() >= 5 and down.sum() >= 5
    assert signals.warmup_bars == 10
    np.testing.assert_array_equal(signals.entry_long, up)
    np.testing.assert_array_equal(signals.entry_short, down)
    assert not (signals.exit_long | signals.exit_short).any()  # the stop module has no signals
    np.testing.assert_allclose(signals.stop_distance, close * 0.02, rtol=1e-12)


def test_filters_and_direction_gate_entries_and_exits_are_or_combined(library):
    close = walk(600, seed=2)
    frame = close_frame(close)
    s = spec(
        direction="long_only",
        filters=[{"module": "filter_session", "params": {"start": 8, "end": 12}}],
        exits=[
            {"module": "exit_ma_cross", "params": {"fast": 2, "slow": 10}},
            {"module": "exit_donchian_channel", "params": {"n": 5}},
        ],
    )
    signals = compute_signals(s, library, frame)
    hours = (frame.open_time // HOUR_MS) % 24
    fast, slow = ref_sma(close, 2), ref_sma(close, 10)
    expected_long = ref_cross_up(fast, slow) & (hours >= 8) & (hours < 12)
    assert expected_long.sum() >= 2
    np.testing.assert_array_equal(signals.entry_long, expected_long)
    assert not signals.entry_short.any()
    channel_low = lag1(ref_rolling(frame.low, 5, np.min))
    expected_exit = ref_cross_up(slow, fast) | gt(channel_low, close)
    expected_exit[: signals.warmup_bars] = False
    assert signals.warmup_bars == 10
    np.testing.assert_array_equal(signals.exit_long, expected_exit)
    channel_high = lag1(ref_rolling(frame.high, 5, np.max))
    expected_exit_short = ref_cross_up(fast, slow) | gt(close, channel_high)
    expected_exit_short[:10] = False
    np.testing.assert_array_equal(signals.exit_short, expected_exit_short)


@pytest.mark.parametrize(
    ("start", "end", "allowed"),
    [(8, 12, {8, 9, 10, 11}), (22, 3, {22, 23, 0, 1, 2}), (5, 5, set(range(24)))],
)
def test_session_filter_allows_only_the_configured_hours(library, start, end, allowed):
    frame = close_frame(walk(24 * 3, seed=3), timeframe="1h")
    s = spec(
        timeframes={"H": "1d", "M": "4h", "L": "1h"},
        filters=[{"module": "filter_session", "params": {"start": start, "end": end}}],
    )
    system = compile_system(s, library)
    allow = system.filters[0].evaluate("allow", EvalContext(frame))
    hours = (frame.open_time // HOUR_MS) % 24
    np.testing.assert_array_equal(allow, np.isin(hours, sorted(allowed)))


def test_funding_filter_blocks_longs_above_the_threshold(library):
    n = 96  # one day of 15m bars
    funding_time = START_MS + np.array([2, 8, 16], dtype=np.int64) * HOUR_MS
    funding_rates = np.array([0.0001, 0.0009, -0.0009])
    frame = close_frame(walk(n, seed=4), funding=(funding_time, funding_rates))
    s = spec(filters=[{"module": "filter_funding",
                       "params": {"max_long_funding": 0.0005, "min_short_funding": -0.0005}}])  # fmt: skip
    part = compile_system(s, library).filters[0]
    ctx = EvalContext(frame)
    allow_long, allow_short = part.evaluate("allow_long", ctx), part.evaluate("allow_short", ctx)
    hour_closed = (frame.close_time - START_MS) / HOUR_MS  # hours since start at each close
    rate = np.where(hour_closed >= 16, -0.0009,
                    np.where(hour_closed >= 8, 0.0009, np.where(hour_closed >= 2, 0.0001, np.nan)))  # fmt: skip
    published = ~np.isnan(rate)
    np.testing.assert_array_equal(allow_long, published & (np.nan_to_num(rate) <= 0.0005))
    np.testing.assert_array_equal(allow_short, published & (np.nan_to_num(rate) >= -0.0005))
    assert allow_long.any() and not allow_long.all() and allow_short.any()
    assert not allow_long[:7].any()  # nothing published before 02:00: blocked, never NaN-true


def test_open_interest_filter_requires_rising_open_interest(library):
    n = 200
    rng = np.random.default_rng(5)
    oi_time = START_MS + np.arange(n, dtype=np.int64) * timeframe_ms("15m") + 60_000
    oi_values = 1000.0 + np.cumsum(rng.normal(0.0, 5.0, n))
    frame = close_frame(walk(n, seed=5), oi=(oi_time, oi_values))
    s = spec(filters=[{"module": "filter_open_interest", "params": {"n": 3}}])
    allow = compile_system(s, library).filters[0].evaluate("allow", EvalContext(frame))
    expected = np.zeros(n, dtype=bool)
    expected[3:] = oi_values[3:] > oi_values[:-3]  # published 1 minute into each bar
    np.testing.assert_array_equal(allow, expected)
    assert 0 < expected.sum() < n - 3


def test_atr_stop_take_profit_tightest_stop_and_risk_fallback(library):
    close = walk(300, seed=6)
    frame = close_frame(close)
    atr14 = ref_atr(frame, 14)
    s = spec(exits=[
        {"module": "exit_atr_stop", "params": {"n": 14, "k": 2.0}},
        {"module": "exit_percent_stop", "params": {"pct": 2.0}},
        {"module": "exit_atr_take_profit", "params": {"n": 14, "k": 3.0}},
    ])  # fmt: skip
    signals = compute_signals(s, library, frame)
    np.testing.assert_allclose(signals.take_profit_distance, 3.0 * atr14, rtol=1e-9)
    expected_stop = np.fmin(2.0 * atr14, close * 0.02)
    np.testing.assert_allclose(signals.stop_distance, expected_stop, rtol=1e-9)
    assert (2.0 * atr14 < close * 0.02).any() and (2.0 * atr14 > close * 0.02).any()
    fallback = spec(
        exits=[{"module": "exit_ma_cross"}],
        risk={"module": "risk_per_trade_atr", "params": {"atr_n": 14, "atr_k": 1.5}},
    )
    signals = compute_signals(fallback, library, frame)
    np.testing.assert_allclose(signals.stop_distance, 1.5 * atr14, rtol=1e-9)
    assert signals.sizing_rule == "risk_per_trade"
    assert signals.sizing_params == {"risk_fraction": 0.01, "atr_n": 14.0, "atr_k": 1.5,
                                     "max_leverage": 3.0}  # fmt: skip


def test_entries_wait_for_every_value_the_trade_needs(library):
    close = walk(300, seed=7)
    frame = close_frame(close)
    s = spec(exits=[{"module": "exit_atr_stop", "params": {"n": 50, "k": 2.0}}])
    signals = compute_signals(s, library, frame)
    up = ref_cross_up(ref_sma(close, 2), ref_sma(close, 10))
    assert up[:49].any()  # crosses happen before the stop is defined ...
    assert signals.warmup_bars == 49
    assert not signals.entry_long[:49].any()  # ... and are not traded
    np.testing.assert_array_equal(signals.entry_long[49:], up[49:])
    assert np.isnan(signals.stop_distance[:49]).all()


def test_negated_logic_never_fires_during_warm_up(library):
    contrarian = library["entry_sma_cross"].model_copy(update={
        "id": "entry_not_above",
        "logic": {"long": "not (close > sma(close, slow))", "short": "close > sma(close, slow)"},
        "parameters": {"slow": library["entry_sma_cross"].parameters["slow"]},
    })  # fmt: skip
    modules = {**library, "entry_not_above": contrarian}
    close = walk(100, seed=8)
    s = spec(entry={"module": "entry_not_above", "params": {"slow": 20}})
    signals = compute_signals(s, modules, close_frame(close))
    assert signals.warmup_bars == 19
    assert not signals.entry_long[:19].any()
    expected = ~gt(close, ref_sma(close, 20))
    np.testing.assert_array_equal(signals.entry_long[19:], expected[19:])


def test_a_one_sided_filter_leaves_the_other_side_alone(library):
    blocker = ModuleDoc(id="filter_no_longs", kind=ModuleKind.FILTER, name="x", description="x",
                        logic={"allow_long": "close < 0"})  # fmt: skip
    modules = {**library, "filter_no_longs": blocker}
    frame = close_frame(walk(300, seed=9))
    plain = compute_signals(spec(), modules, frame)
    gated = compute_signals(spec(filters=[{"module": "filter_no_longs"}]), modules, frame)
    assert plain.entry_long.any() and not gated.entry_long.any()
    np.testing.assert_array_equal(gated.entry_short, plain.entry_short)


def test_management_numbers_volatility_and_trailing(library):
    close = walk(400, seed=10)
    frame = close_frame(close)
    s = spec(
        exits=[{"module": "exit_atr_stop"}],
        risk={"module": "risk_volatility_target", "params": {"target_vol": 0.01, "vol_n": 20}},
        management=[
            {"module": "mgmt_breakeven", "params": {"after_r": 1.25}},
            {"module": "mgmt_time_stop", "params": {"max_bars": 40}},
            {"module": "mgmt_partial_tp", "params": {"at_r": 2.0, "fraction": 0.3}},
            {"module": "mgmt_atr_trailing", "params": {"n": 10, "k": 2.5}},
        ],
    )
    signals = compute_signals(s, library, frame)
    assert signals.management == {
        "breakeven_after_r": 1.25, "time_stop_bars": 40.0, "partial_tp_r": 2.0,
        "partial_tp_fraction": 0.3, "trailing_stop": 1.0,
    }  # fmt: skip
    assert signals.sizing_rule == "volatility_target"
    assert signals.sizing_params["target_vol"] == 0.01
    returns = np.r_[np.nan, close[1:] / close[:-1] - 1.0]
    np.testing.assert_allclose(signals.volatility, ref_rolling(returns, 20, np.std), rtol=1e-7)
    np.testing.assert_allclose(signals.trail_distance, 2.5 * ref_atr(frame, 10), rtol=1e-9)
    assert signals.warmup_bars == 20  # 20 returns need 21 closes
    assert not signals.entry_long[:20].any()


# -- timeframe roles -----------------------------------------------------------------------


def test_a_filter_on_h_changes_only_at_h_closes_and_uses_closed_h_bars(library):
    n = 16 * 60  # 60 four-hour bars of 15m bars, starting on a 4h boundary
    close = walk(n, seed=11)
    frame = close_frame(close)
    s = spec(filters=[{"module": "filter_trend_sma", "params": {"n": 10}, "timeframe": "H"}])
    part = compile_system(s, library).filters[0]
    allow = part.evaluate("allow_long", EvalContext(frame))
    changes = np.flatnonzero(allow[1:] != allow[:-1]) + 1
    assert changes.size >= 2
    assert np.all(frame.close_time[changes] % timeframe_ms("4h") == 0)
    h_close = close[15::16]  # the close of each 4h bar is its last 15m close
    h_allow = gt(h_close, ref_sma(h_close, 10))
    expected = np.zeros(n, dtype=bool)
    for i in range(n):
        k = (i + 1) // 16 - 1  # last 4h bar closed at the close of 15m bar i
        expected[i] = k >= 0 and h_allow[k]
    np.testing.assert_array_equal(allow, expected)


def test_signals_are_causal_under_truncation(library):
    frame = random_walk_frame(16 * 70, "15m", seed=12)  # the 4h SMA(50) filter needs 800 bars
    spec_ = load_system_yaml(SYSTEMS_DIR / "ema_trend_follower.yaml", library)
    system = compile_system(spec_, library)
    full = system.signals(frame)
    assert full.entry_long.any() or full.entry_short.any()
    assert full.warmup_bars == 799
    for stop in (300, 801, 917, 1012, 1119):
        part = system.signals(frame.slice(0, stop))
        for name in ("entry_long", "entry_short", "exit_long", "exit_short", "stop_distance",
                     "take_profit_distance", "trail_distance", "volatility"):  # fmt: skip
            np.testing.assert_array_equal(getattr(part, name), getattr(full, name)[:stop], name)


# -- every library module inside a system --------------------------------------------------


def test_every_library_module_runs_inside_a_system(library):
    frame = random_walk_frame(600, "15m", seed=13)
    cache = IndicatorCache()
    slots = {
        ModuleKind.ENTRY: lambda ref: {"entry": ref},
        ModuleKind.EXIT: lambda ref: {"exits": [ref, {"module": "exit_percent_stop"}]},
        ModuleKind.FILTER: lambda ref: {"filters": [ref]},
        ModuleKind.RISK: lambda ref: {"risk": ref},
        ModuleKind.MANAGEMENT: lambda ref: {"management": [ref]},
    }
    for module_id, doc in library.items():
        signals = compute_signals(spec(**slots[doc.kind]({"module": module_id})), library,
                                  frame, cache=cache)  # fmt: skip
        assert isinstance(signals, SystemSignals)
        for name in ("entry_long", "entry_short", "exit_long", "exit_short"):
            array = getattr(signals, name)
            assert array.dtype == np.bool_ and array.shape == (600,), (module_id, name)
        for name in ("stop_distance", "take_profit_distance", "trail_distance", "volatility"):
            array = getattr(signals, name)
            assert array.dtype == np.float64 and array.shape == (600,), (module_id, name)
            assert not (array <= 0).any(), (module_id, name)
        assert 0 <= signals.warmup_bars < 600, module_id


# -- compiled systems ----------------------------------------------------------------------


def test_with_params_reuses_compilation_and_matches_a_fresh_compile(library):
    frame = random_walk_frame(500, "15m", seed=14)
    system = compile_system(spec(), library)
    tuned = system.with_params({"entry.params.fast": 5, "exits[0].params.pct": 1.0})
    assert tuned.entry.expressions["long"] is system.entry.expressions["long"]
    fresh_spec = spec(
        entry={"module": "entry_sma_cross", "params": {"fast": 5, "slow": 10}},
        exits=[{"module": "exit_percent_stop", "params": {"pct": 1.0}}],
    )
    assert tuned.spec_hash == spec_hash(fresh_spec, library) != system.spec_hash
    a, b = tuned.signals(frame), compute_signals(fresh_spec, library, frame)
    for name in ("entry_long", "entry_short", "stop_distance"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.entry_long, system.signals(frame).entry_long)
    with pytest.raises(SpecError, match=r"entry\.params\.fast: 70 above max 50"):
        system.with_params({"entry.params.fast": 70})
    with pytest.raises(SpecError, match=r"entry\.params\.speed: unknown parameter"):
        system.with_params({"entry.params.speed": 3})
    with pytest.raises(SpecError, match=r"filters\[0\]\.params\.n: not a parameter path"):
        system.with_params({"filters[0].params.n": 3})


def test_wrong_frame_timeframe_and_invalid_specs_raise(library):
    system = compile_system(spec(), library)
    with pytest.raises(SpecError, match="decides on L = 15m bars, but the frame of BTCUSDT is 1h"):
        system.signals(random_walk_frame(50, "1h"))
    bad = spec(entry={"module": "entry_sma_cross", "params": {"fast": 70}})
    with pytest.raises(SpecError, match=r"entry\.params\.fast: 70 above max 50"):
        compile_system(bad, library)

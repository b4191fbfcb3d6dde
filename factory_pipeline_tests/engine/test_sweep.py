"""Sweeps: every row equals a single backtest of that configuration; moving averages equal
pandas bit for bit; grids, samples and errors behave as documented."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from factory_pipeline.engine.config import SimConfig
from factory_pipeline.engine.metrics import METRIC_NAMES, compute_metrics
from factory_pipeline.engine.simulator import Signals, simulate
from factory_pipeline.engine.sweep import (
    CrossoverFamily,
    crossover_signals,
    crossovers,
    ewm_mean,
    expand_grid,
    rolling_mean,
    run_sweep,
)
from factory_pipeline.errors import BacktestError, ConfigError
from factory_pipeline.market.frame import make_frame

HOUR = 3_600_000
T0 = 1_699_977_600_000


def random_frame(n: int, seed: int, funding_gap_after: int | None = None):
    rng = np.random.default_rng(seed)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.006, n))), 2)  # cents: SMA ties
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) + np.round(np.abs(rng.normal(0, 0.2, n)), 2)
    low = np.minimum(open_, close) - np.round(np.abs(rng.normal(0, 0.2, n)), 2)
    times = T0 + np.arange(n, dtype=np.int64) * HOUR
    ft = np.arange(T0 + 8 * HOUR, T0 + (n + 1) * HOUR, 8 * HOUR, dtype=np.int64)
    if funding_gap_after is not None:
        ft = ft[:funding_gap_after]
    fr = rng.normal(0.0001, 0.0002, ft.shape[0])
    return make_frame("SW", "1h", times, open_, high, low, close, funding_time=ft,
                      funding_rates=fr)  # fmt: skip


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("window", [1, 2, 5, 10, 20, 37])
def test_rolling_mean_equals_pandas_bit_for_bit(window):
    rng = np.random.default_rng(window)
    values = np.round(rng.normal(100, 3, 5_000), 2)
    values[100:130] = 101.25  # a constant run
    values[400:410] = -values[400:410]  # sign changes
    expected = pd.Series(values).rolling(window).mean().to_numpy()
    np.testing.assert_array_equal(rolling_mean(values, window), expected)


@pytest.mark.parametrize("span", [2, 5, 12, 50])
def test_ewm_mean_equals_pandas(span):
    values = np.random.default_rng(span).normal(100, 3, 3_000)
    expected = pd.Series(values).ewm(span=span, adjust=False, min_periods=span).mean()
    np.testing.assert_allclose(ewm_mean(values, span), expected.to_numpy(), rtol=1e-14)


def test_fused_crossover_signals_equal_the_two_step_definition():
    close = random_frame(4_000, 1).close
    fast, slow = rolling_mean(close, 5), rolling_mean(close, 13)
    up, down = crossovers(fast, slow)
    # independent restatement of the tie rule: strict on both bars
    ref_up = np.r_[False, (fast[:-1] < slow[:-1]) & (fast[1:] > slow[1:])]
    np.testing.assert_array_equal(up, ref_up)
    entry_long, exit_long, entry_short, exit_short = crossover_signals(
        close, 5, 13, False, True, False
    )
    np.testing.assert_array_equal(entry_long, up)
    np.testing.assert_array_equal(exit_long, up | down)
    np.testing.assert_array_equal(exit_short, up | down)
    assert not entry_short.any()


@pytest.mark.parametrize(
    ("family", "fill"),
    [
        (CrossoverFamily("sma", "both"), "next_open"),
        (CrossoverFamily("sma", "long"), "signal_close"),
        (CrossoverFamily("ema", "short"), "next_open"),
    ],
)
def test_fused_sweep_rows_equal_single_backtests(family, fill):
    frame = random_frame(3_000, 7)
    config = SimConfig(fill=fill, slippage_bps=1.5, leverage=3.0, size=0.7)
    grid = {"fast": [3, 5, 8], "slow": [5, 13, 21]}
    table = run_sweep(frame, grid, family, config, block_bars=256).to_pylist()
    assert len(table) == 7  # fast < slow
    for row in table:
        params = {"fast": row["fast"], "slow": row["slow"]}
        single = compute_metrics(simulate(frame, family.signals(frame, params), config))
        for name in METRIC_NAMES:
            assert same(row[name], single[name]), (params, name, row[name], single[name])
    assert any(row["trades"] > 20 for row in table)
    assert any(row["funding_paid"] != 0 for row in table)


def test_generic_sweep_varies_config_fields_and_signals():
    frame = random_frame(1_500, 9)
    family = CrossoverFamily("sma", "both")

    def signal_fn(frame, params):
        return family.signals(frame, {"fast": params["fast"], "slow": 20})

    grid = {"fast": [4, 9], "taker_fee": [0.0, 0.001], "max_bars": [0, 12]}
    config = SimConfig(slippage_bps=1.0)
    rows = run_sweep(frame, grid, signal_fn, config, workers=2).to_pylist()
    assert len(rows) == 8
    for row in rows:
        run_config = replace(config, taker_fee=row["taker_fee"], max_bars=row["max_bars"])
        signals = family.signals(frame, {"fast": row["fast"], "slow": 20})
        single = compute_metrics(simulate(frame, signals, run_config))
        for name in METRIC_NAMES:
            assert same(row[name], single[name]), (row, name)


def test_grid_expansion_constraint_and_seeded_sample():
    grid = {"fast": list(range(5, 51, 5)), "slow": list(range(10, 201, 10))}
    full = expand_grid(grid, constraint=lambda p: p["fast"] < p["slow"])
    assert len(full) == 175
    assert full[0] == {"fast": 5, "slow": 10} and full[-1] == {"fast": 50, "slow": 200}
    sample = expand_grid(grid, sample=20, seed=3, constraint=lambda p: p["fast"] < p["slow"])
    again = expand_grid(grid, sample=20, seed=3, constraint=lambda p: p["fast"] < p["slow"])
    other = expand_grid(grid, sample=20, seed=4, constraint=lambda p: p["fast"] < p["slow"])
    assert sample == again and sample != other and len(sample) == 20
    assert all(p in full for p in sample)
    assert [full.index(p) for p in sample] == sorted(full.index(p) for p in sample)


def test_sampled_fused_sweep_returns_the_sampled_rows():
    frame = random_frame(800, 2)
    grid = {"fast": [3, 4, 5, 6], "slow": [8, 10, 12]}
    family = CrossoverFamily()
    table = run_sweep(frame, grid, family, SimConfig(), sample=5, seed=1)
    expected = expand_grid(grid, sample=5, seed=1, constraint=family.accepts)
    assert list(zip(table["fast"].to_pylist(), table["slow"].to_pylist(), strict=True)) == [
        (p["fast"], p["slow"]) for p in expected
    ]


def test_sweep_errors_name_the_problem():
    frame = random_frame(300, 3)
    family = CrossoverFamily()
    with pytest.raises(ConfigError, match="empty"):
        run_sweep(frame, {}, family, SimConfig())
    with pytest.raises(ConfigError, match="'fast' must be an int >= 1"):
        run_sweep(frame, {"fast": [0], "slow": [5]}, family, SimConfig())
    with pytest.raises(ConfigError, match="unexpected grid keys"):
        run_sweep(frame, {"fast": [2], "slow": [5], "taker_fee": [0.0]}, family, SimConfig())
    with pytest.raises(ConfigError, match="kind"):
        CrossoverFamily("wma")  # type: ignore[arg-type]
    gapped = random_frame(300, 3, funding_gap_after=5)
    with pytest.raises(BacktestError, match=r"sweep configuration \{'fast': 2, 'slow': 5\}"):
        run_sweep(gapped, {"fast": [2], "slow": [5]}, family, SimConfig())


def test_signal_fn_errors_propagate_from_the_generic_path():
    frame = random_frame(200, 4)

    def bad(frame, params):
        return Signals(np.zeros(10, bool))

    with pytest.raises(BacktestError, match="Signals.entry_long"):
        run_sweep(frame, {"x": [1, 2]}, bad, SimConfig(), workers=1)

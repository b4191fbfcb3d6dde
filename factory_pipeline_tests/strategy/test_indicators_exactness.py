"""pandas-exact rolling means on hard inputs, batched averages and the crossover kernels.

The reference is pandas itself (``rolling(n).mean()``/``.sum()``), which the engine's tie rule
depends on bit for bit, and plain numpy for the crossovers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factory_pipeline.strategy.language import (
    EvalContext,
    IndicatorCache,
    compile_expression,
    indicators,
)
from factory_pipeline_tests.strategy.language_frames import random_frame

#: Values that stress the Kahan sums and pandas' sign guards: signed zeros, tiny and huge
#: magnitudes (cancellation residues), repeats (constant-run guard) and NaN.
_HARD = np.array(
    [-0.0, 0.0, -1.0, 1.0, 1e16, -1e16, 0.1, -0.1, 3.0, np.nan, 1e-300, -1e-300, 2.5, 2.5]
)


def _series(rng: np.random.Generator, kind: int, n: int) -> np.ndarray:
    if kind == 0:
        return rng.choice(_HARD, n)
    if kind == 1:
        x = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    elif kind == 2:
        x = rng.normal(0, 1, n)
        x[rng.random(n) < 0.1] = 0.0
    else:
        x = np.round(rng.normal(0, 3, n))
    x[rng.random(n) < 0.04] = np.nan
    return x


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("kind", range(4))
def test_sma_and_rolling_sum_are_bit_identical_to_pandas_on_hard_inputs(kind: int) -> None:
    rng = np.random.default_rng(kind)
    for _ in range(300):
        n = int(rng.integers(1, 200))
        window = int(rng.integers(1, 30))
        x = _series(rng, kind, n)
        rolling = pd.Series(x).rolling(window)
        assert _same_bits(indicators.sma(x, window), rolling.mean().to_numpy()), (window, x)
        assert _same_bits(indicators.rolling_sum(x, window), rolling.sum().to_numpy())


def test_signed_zeros_count_as_negative_like_pandas() -> None:
    # window [-1e-300, -0.0]: every value has its sign bit set, the Kahan residue is positive,
    # so pandas' "all negative" guard returns 0.0 (a plain `x < 0` count would not)
    x = np.array([1.0, -1.0, 0.1, -1e-300, -0.0])
    expected = pd.Series(x).rolling(2).mean().to_numpy()
    assert _same_bits(indicators.sma(x, 2), expected)


def test_sma_many_equals_sma_one_window_at_a_time() -> None:
    rng = np.random.default_rng(9)
    for _ in range(200):
        n = int(rng.integers(0, 300))
        x = _series(rng, int(rng.integers(0, 4)), n)
        windows = [int(w) for w in rng.integers(1, 40, int(rng.integers(1, 6)))]
        for window, got in zip(windows, indicators.sma_many(x, windows), strict=True):
            assert _same_bits(got, indicators.sma(x, window))


def test_crosses_match_a_numpy_reference() -> None:
    rng = np.random.default_rng(4)
    for _ in range(200):
        n = int(rng.integers(0, 100))
        a = np.round(rng.normal(0, 2, n))
        b = np.round(rng.normal(0, 2, n))  # rounded: many exact ties
        a[rng.random(n) < 0.1] = np.nan
        up = np.zeros(n, dtype=bool)
        down = np.zeros(n, dtype=bool)
        if n > 1:
            up[1:] = (a[1:] > b[1:]) & (a[:-1] <= b[:-1])
            down[1:] = (a[1:] < b[1:]) & (a[:-1] >= b[:-1])
        np.testing.assert_array_equal(indicators.crosses_above(a, b), up)
        np.testing.assert_array_equal(indicators.crosses_below(a, b), down)


def test_expressions_on_one_context_share_averages_and_match_separate_contexts() -> None:
    frame = random_frame(500, seed=5)
    params = {"fast": {"type": "int", "default": 7, "min": 1}}
    up = compile_expression("crosses_above(sma(close, fast), sma(close, 21))", parameters=params)
    down = compile_expression("crosses_below(sma(close, fast), sma(close, 21))", parameters=params)
    shared = EvalContext(frame)
    np.testing.assert_array_equal(up.evaluate(shared), up.evaluate(EvalContext(frame)))
    np.testing.assert_array_equal(down.evaluate(shared), down.evaluate(EvalContext(frame)))
    fast, slow = indicators.sma(frame.close, 7), indicators.sma(frame.close, 21)
    expected = np.zeros(len(frame), dtype=bool)
    expected[1:] = (fast[1:] > slow[1:]) & (fast[:-1] <= slow[:-1])
    np.testing.assert_array_equal(up.evaluate(shared, {"fast": 7}), expected)
    # with a cache, each distinct average is looked up once per evaluation, as before batching
    cache = IndicatorCache()
    up.evaluate(EvalContext(frame, cache))
    assert (cache.stats.hits, cache.stats.misses) == (0, 2)
    down.evaluate(EvalContext(frame, cache))
    assert (cache.stats.hits, cache.stats.misses) == (2, 2)


def test_rolling_mean_pair_run_block_by_block_equals_pandas() -> None:
    # the fused backtest advances the pair in blocks: any split must give pandas' values
    rng = np.random.default_rng(21)
    for _ in range(300):
        n = int(rng.integers(0, 300))
        x = _series(rng, int(rng.integers(0, 4)), n)
        if rng.random() < 0.3:
            x = -np.abs(x)  # windows of one sign: pandas' sign guards
        n1, n2 = (int(w) for w in rng.integers(1, 40, 2))
        out1, out2 = np.empty(n), np.empty(n)
        state = indicators.rolling_mean_pair_init(x)
        start = 0
        while start < n:
            stop = min(n, start + int(rng.integers(1, 60)))
            state = indicators.rolling_mean_pair(
                x, start, stop, n1, n2, state, out1[start:stop], out2[start:stop], start
            )
            start = stop
        assert _same_bits(out1, pd.Series(x).rolling(n1).mean().to_numpy()), (n1, x)
        assert _same_bits(out2, pd.Series(x).rolling(n2).mean().to_numpy()), (n2, x)


def test_crosses_both_equals_the_two_crosses() -> None:
    rng = np.random.default_rng(22)
    for _ in range(100):
        n = int(rng.integers(0, 80))
        a = np.round(rng.normal(0, 2, n))
        b = np.round(rng.normal(0, 2, n))
        a[rng.random(n) < 0.1] = np.nan
        above, below = indicators.crosses_both(a, b)
        np.testing.assert_array_equal(above, indicators.crosses_above(a, b))
        np.testing.assert_array_equal(below, indicators.crosses_below(a, b))


def test_both_crossing_directions_of_one_pair_are_handed_over_not_shared() -> None:
    frame = random_frame(400, seed=23)
    specs = {"fast": {"type": "int", "default": 5, "min": 1}, "slow": {"type": "int", "default": 9}}
    up = compile_expression("crosses_above(sma(close, fast), sma(close, slow))", parameters=specs)
    down = compile_expression("crosses_below(sma(close, fast), sma(close, slow))", parameters=specs)
    fast, slow = indicators.sma(frame.close, 5), indicators.sma(frame.close, 9)
    context = EvalContext(frame)
    got_up = up.evaluate(context)
    got_down = down.evaluate(context)
    np.testing.assert_array_equal(got_up, indicators.crosses_above(fast, slow))
    np.testing.assert_array_equal(got_down, indicators.crosses_below(fast, slow))
    got_down[:] = True  # the caller owns its array: later evaluations are unaffected
    again = down.evaluate(context)
    np.testing.assert_array_equal(again, indicators.crosses_below(fast, slow))
    assert again is not got_down


def test_sma_pair_with_its_crossings_equals_pandas_and_the_crossings_of_it() -> None:
    rng = np.random.default_rng(24)
    for case in range(60):
        n = int(rng.integers(0, 2_600))  # blocks of 1,024: several boundaries, partial blocks
        x = _series(rng, case % 4, n)
        n1, n2 = (int(w) for w in rng.integers(1, 1_500 if case % 5 == 0 else 40, 2))
        a, b, above, below = indicators.sma_pair_crosses(x, n1, n2)
        assert _same_bits(a, pd.Series(x).rolling(n1).mean().to_numpy()), (n1, case)
        assert _same_bits(b, pd.Series(x).rolling(n2).mean().to_numpy()), (n2, case)
        ref_above = np.zeros(n, dtype=bool)
        ref_below = np.zeros(n, dtype=bool)
        ref_above[1:] = (a[1:] > b[1:]) & (a[:-1] <= b[:-1])
        ref_below[1:] = (b[1:] > a[1:]) & (b[:-1] <= a[:-1])
        np.testing.assert_array_equal(above, ref_above)
        np.testing.assert_array_equal(below, ref_below)


def test_a_crossed_average_pair_is_computed_with_its_crossings_in_one_pass(monkeypatch) -> None:
    frame = random_frame(3_000, seed=25)
    calls: list[tuple[int, int]] = []
    fused = indicators.sma_pair_crosses

    def counting(x, n1, n2):
        calls.append((n1, n2))
        return fused(x, n1, n2)

    monkeypatch.setattr(indicators, "sma_pair_crosses", counting)
    specs = {
        "fast": {"type": "int", "default": 8, "min": 1},
        "slow": {"type": "int", "default": 30},
    }
    up = compile_expression("crosses_above(sma(close, fast), sma(close, slow))", parameters=specs)
    down = compile_expression("crosses_below(sma(close, fast), sma(close, slow))", parameters=specs)
    context = EvalContext(frame)
    got_up, got_down = up.evaluate(context), down.evaluate(context)
    assert calls == [(8, 30)]  # one fused pass serves both expressions
    fast, slow = indicators.sma(frame.close, 8), indicators.sma(frame.close, 30)
    np.testing.assert_array_equal(got_up, indicators.crosses_above(fast, slow))
    np.testing.assert_array_equal(got_down, indicators.crosses_below(fast, slow))
    # with a cache the averages are stored as before; the crossings are never cached
    cache = IndicatorCache()
    np.testing.assert_array_equal(up.evaluate(EvalContext(frame, cache)), got_up)
    assert (cache.stats.hits, cache.stats.misses) == (0, 2)
    np.testing.assert_array_equal(down.evaluate(EvalContext(frame, cache)), got_down)
    assert (cache.stats.hits, cache.stats.misses) == (2, 2)

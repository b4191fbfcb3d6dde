"""IndicatorCache: reuse across evaluations and parameter configurations, keys that separate
data sets, LRU eviction by bytes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from factory_pipeline.schemas import ParameterSpec
from factory_pipeline.strategy.language import EvalContext, IndicatorCache, compile_expression
from factory_pipeline.strategy.language.indicators import sma, stdev
from factory_pipeline_tests.strategy.language_frames import random_frame

FRAME = random_frame(400, seed=11)
PARAMS = {
    "fast": ParameterSpec(type="int", default=10, min=1),
    "slow": ParameterSpec(type="int", default=30, min=1),
}
CROSS = "crosses_above(sma(close, fast), sma(close, slow))"


def test_second_evaluation_hits_the_cache() -> None:
    cache = IndicatorCache()
    compiled = compile_expression(CROSS, parameters=PARAMS)
    first = compiled.evaluate(EvalContext(FRAME, cache))
    after_first = cache.stats
    assert (after_first.hits, after_first.misses, after_first.entries) == (0, 2, 2)
    second = compiled.evaluate(EvalContext(FRAME, cache))
    after_second = cache.stats
    assert after_second.hits == 2 and after_second.misses == 2
    np.testing.assert_array_equal(first, second)


def test_different_parameters_miss_and_shared_sub_expressions_hit() -> None:
    cache = IndicatorCache()
    compiled = compile_expression(CROSS, parameters=PARAMS)
    ctx = EvalContext(FRAME, cache)
    compiled.evaluate(ctx, {"fast": 10, "slow": 30})
    compiled.evaluate(ctx, {"fast": 10, "slow": 40})  # sma(close, 10) reused, 40 is new
    stats = cache.stats
    assert (stats.hits, stats.misses) == (1, 3)
    compiled.evaluate(ctx, {"fast": 5, "slow": 8})
    assert cache.stats.misses == 5


def test_parameter_values_are_substituted_into_keys() -> None:
    cache = IndicatorCache()
    ctx = EvalContext(FRAME, cache)
    compile_expression("sma(close, 20)").evaluate(ctx)
    by_param = compile_expression("sma(close, fast)", parameters=PARAMS).evaluate(ctx, {"fast": 20})
    assert cache.stats.hits == 1
    np.testing.assert_array_equal(by_param, sma(FRAME.close, 20))
    # a composite reuses its primitives
    upper = compile_expression("bb_upper(close, 20, 2)").evaluate(ctx)
    assert cache.stats.hits == 2
    np.testing.assert_allclose(upper, sma(FRAME.close, 20) + 2 * stdev(FRAME.close, 20))


def test_a_new_context_on_the_same_frame_hits() -> None:
    cache = IndicatorCache()
    compiled = compile_expression('tf("4h", ema(close, 5)) > ema(close, 5)')
    compiled.evaluate(EvalContext(FRAME, cache))
    misses = cache.stats.misses
    compiled.evaluate(EvalContext(FRAME, cache))
    assert cache.stats.misses == misses
    assert cache.stats.hits >= 2


def test_different_data_never_shares_entries() -> None:
    cache = IndicatorCache()
    compiled = compile_expression("sma(close, 5)")
    compiled.evaluate(EvalContext(FRAME, cache))
    changed_close = FRAME.close.copy()
    changed_close[-1] *= 2.0
    other = replace(FRAME, close=changed_close)  # same symbol, timeframe and times
    out = compiled.evaluate(EvalContext(other, cache))
    assert cache.stats.hits == 0
    np.testing.assert_array_equal(out, sma(changed_close, 5))
    shorter = FRAME.slice(0, 300)
    np.testing.assert_array_equal(
        compiled.evaluate(EvalContext(shorter, cache)), sma(FRAME.close[:300], 5)
    )
    assert cache.stats.hits == 0


def test_cached_and_uncached_results_are_equal_and_results_do_not_alias_the_cache() -> None:
    cache = IndicatorCache()
    compiled = compile_expression("macd_hist(close, 12, 26, 9)")
    cached = compiled.evaluate(EvalContext(FRAME, cache))
    uncached = compiled.evaluate(EvalContext(FRAME))
    np.testing.assert_array_equal(cached, uncached)
    top = compile_expression("ema(close, 12)")
    ctx = EvalContext(FRAME, cache)
    result = top.evaluate(ctx)
    expected = result.copy()
    result[:] = -1.0
    np.testing.assert_array_equal(top.evaluate(ctx), expected)


def test_lru_eviction_by_bytes() -> None:
    cache = IndicatorCache(max_bytes=3 * 800)
    arrays = {name: np.full(100, float(i)) for i, name in enumerate("abcd")}  # 800 bytes each
    for name in "abc":
        cache.put(name, arrays[name])
    assert cache.get("a") is arrays["a"]  # "a" is now the most recently used
    cache.put("d", arrays["d"])  # evicts "b", the least recently used
    assert "b" not in cache and {"a", "c", "d"} <= {k for k in "abcd" if k in cache}
    stats = cache.stats
    assert (stats.entries, stats.bytes, stats.evictions) == (3, 2400, 1)
    cache.put("huge", np.zeros(1000))  # larger than the whole budget: not stored
    assert "huge" not in cache and len(cache) == 3
    assert cache.get("missing") is None
    cache.clear()
    assert cache.stats == type(stats)(0, 0, 0, 0, 0)


def test_replacing_a_key_keeps_the_byte_count_right() -> None:
    cache = IndicatorCache(max_bytes=10_000)
    cache.put("x", np.zeros(100))
    cache.put("x", np.zeros(200))
    assert cache.stats.bytes == 1600 and len(cache) == 1

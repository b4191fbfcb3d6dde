"""compile_expression: typing, name resolution, errors with positions, parameters, NaN rules,
warm-up and the values of every function against independent references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factory_pipeline.errors import SignalLanguageError
from factory_pipeline.schemas import ParameterSpec
from factory_pipeline.strategy.language import (
    KNOWN_FUNCTIONS,
    SERIES,
    EvalContext,
    compile_expression,
)
from factory_pipeline_tests.strategy.language_frames import (
    frame_from_closes,
    random_frame,
)
from factory_pipeline_tests.strategy.test_indicators import (
    ref_atr,
    ref_extreme,
    ref_roc,
    ref_rsi,
    ref_sma,
    ref_smoothed,
    ref_stdev,
    ref_vwap,
    ref_wma,
)

FRAME = random_frame(500, seed=3)
PARAMS = {
    "fast": ParameterSpec(type="int", default=10, min=2, max=100),
    "slow": ParameterSpec(type="int", default=30, min=5),
    "k": ParameterSpec(type="float", default=2.0),
    "use_filter": ParameterSpec(type="bool", default=True),
    "mode": ParameterSpec(type="enum", default="fast", choices=["fast", "slow"]),
    "length": ParameterSpec(type="enum", default=14, choices=[7, 14, 21]),
    "ratio": ParameterSpec(type="float", default=1.5, min=0.0),
}


def run(source: str, params=None, frame=FRAME, **compile_kwargs) -> np.ndarray:
    compiled = compile_expression(source, parameters=PARAMS, **compile_kwargs)
    return compiled.evaluate(EvalContext(frame), params)


def error_of(source: str, parameters=PARAMS, **kwargs) -> SignalLanguageError:
    with pytest.raises(SignalLanguageError) as info:
        compile_expression(source, parameters=parameters, **kwargs)
    return info.value


def close_to(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-9, equal_nan=True)


# -- every function against a reference ----------------------------------------------------

C, H, L, V = FRAME.close, FRAME.high, FRAME.low, FRAME.volume


def _ema(x, n):
    return ref_smoothed(x, n, 2 / (n + 1))


def _macd(x, fast, slow, signal):
    line = _ema(x, fast) - _ema(x, slow)
    sig = _ema(line, signal)
    return line, sig, line - sig


REFERENCES = {
    "sma": ("sma(close, 12)", lambda: ref_sma(C, 12)),
    "ema": ("ema(close, 12)", lambda: _ema(C, 12)),
    "wma": ("wma(close, 12)", lambda: ref_wma(C, 12)),
    "rsi": ("rsi(close, 14)", lambda: ref_rsi(C, 14)),
    "atr": ("atr(14)", lambda: ref_atr(H, L, C, 14)),
    "stdev": ("stdev(close, 12)", lambda: ref_stdev(C, 12)),
    "bb_upper": ("bb_upper(close, 20, 2)", lambda: ref_sma(C, 20) + 2 * ref_stdev(C, 20)),
    "bb_middle": ("bb_middle(close, 20, 2)", lambda: ref_sma(C, 20)),
    "bb_lower": ("bb_lower(close, 20, 2.5)", lambda: ref_sma(C, 20) - 2.5 * ref_stdev(C, 20)),
    "macd_line": ("macd_line(close, 12, 26, 9)", lambda: _macd(C, 12, 26, 9)[0]),
    "macd_signal": ("macd_signal(close, 12, 26, 9)", lambda: _macd(C, 12, 26, 9)[1]),
    "macd_hist": ("macd_hist(close, 12, 26, 9)", lambda: _macd(C, 12, 26, 9)[2]),
    "highest": ("highest(high, 20)", lambda: ref_extreme(H, 20, max)),
    "lowest": ("lowest(low, 20)", lambda: ref_extreme(L, 20, min)),
    "donchian_upper": ("donchian_upper(20)", lambda: ref_extreme(H, 20, max)),
    "donchian_lower": ("donchian_lower(20)", lambda: ref_extreme(L, 20, min)),
    "donchian_mid": (
        "donchian_mid(20)",
        lambda: (ref_extreme(H, 20, max) + ref_extreme(L, 20, min)) / 2,
    ),
    "roc": ("roc(close, 5)", lambda: ref_roc(C, 5)),
    "zscore": ("zscore(close, 20)", lambda: (C - ref_sma(C, 20)) / ref_stdev(C, 20)),
    "vwap": ("vwap(20)", lambda: ref_vwap(H, L, C, V, 20)),
    "abs": ("abs(close - open)", lambda: np.abs(C - FRAME.open)),
    "min": ("min(open, close)", lambda: np.minimum(FRAME.open, C)),
    "max": ("max(open, close)", lambda: np.maximum(FRAME.open, C)),
    "lag": ("lag(close, 3)", lambda: np.r_[np.full(3, np.nan), C[:-3]]),
    "crosses_above": (
        "crosses_above(close, sma(close, 5))",
        lambda: np.r_[False, (C[1:] > ref_sma(C, 5)[1:]) & (C[:-1] <= ref_sma(C, 5)[:-1])],
    ),
    "crosses_below": (
        "crosses_below(close, sma(close, 5))",
        lambda: np.r_[False, (C[1:] < ref_sma(C, 5)[1:]) & (C[:-1] >= ref_sma(C, 5)[:-1])],
    ),
    "tf": (
        'tf("4h", close)',
        # FRAME starts on a 4h boundary with no gaps: 4h bar k closes with base bar 4k+3.
        lambda: np.array([C[(i + 1) // 4 * 4 - 1] if i >= 3 else np.nan for i in range(len(C))]),
    ),
}


def test_the_reference_table_covers_every_function() -> None:
    assert set(REFERENCES) == set(KNOWN_FUNCTIONS)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_function_values_match_reference(name: str) -> None:
    source, reference = REFERENCES[name]
    out = run(source)
    expected = reference()
    assert out.shape == (len(FRAME),)
    if out.dtype == np.bool_:
        np.testing.assert_array_equal(out, expected)
    else:
        assert out.dtype == np.float64
        close_to(out, expected)


def test_time_series_are_utc_hour_and_monday_based_weekday() -> None:
    # FRAME starts Tuesday 2023-11-14 00:00 UTC, hourly.
    i = np.arange(len(FRAME))
    np.testing.assert_array_equal(run("hour"), i % 24)
    np.testing.assert_array_equal(run("weekday"), (1 + i // 24) % 7)
    assert set(SERIES) >= {"hour", "weekday", "open_interest", "funding_rate", "mark"}


def test_funding_and_open_interest_series_are_the_frames_point_in_time_values() -> None:
    np.testing.assert_array_equal(run("funding_rate"), FRAME.funding_rate)
    np.testing.assert_array_equal(run("open_interest * 1"), FRAME.open_interest)


def test_arithmetic_matches_hand_values() -> None:
    frame = frame_from_closes([2.0, 4.0, 8.0])
    assert run("close - 1 - 2", frame=frame).tolist() == [-1.0, 1.0, 5.0]
    assert run("close / 2 / 2", frame=frame).tolist() == [0.5, 1.0, 2.0]
    assert run("2 * close + 3 * close", frame=frame).tolist() == [10.0, 20.0, 40.0]
    assert run("-close * -2", frame=frame).tolist() == [4.0, 8.0, 16.0]
    both = run("close > 3 and close < 8 or close == 2", frame=frame)
    assert both.tolist() == [True, True, False]


# -- typing and what a compiled expression exposes -----------------------------------------


def test_compiled_expression_exposes_kind_names_and_canonical_text() -> None:
    compiled = compile_expression(
        'crosses_above(ema(close, fast), ema(close,slow)) and tf("4h", atr(14) > 1)',
        parameters=PARAMS,
    )
    assert compiled.kind == "bool"
    assert compiled.parameters == {"fast", "slow"}
    assert compiled.series == {"close", "high", "low"}  # atr reads high, low, close
    assert compiled.timeframes == {"4h"}
    assert compiled.canonical == (
        'crosses_above(ema(close, fast), ema(close, slow)) and tf("4h", atr(14) > 1)'
    )
    assert compile_expression("close - open").kind == "number"


def test_boolean_results_are_numpy_bools_and_numbers_float64() -> None:
    assert run("close > open").dtype == np.bool_
    assert run("lag(close > open, 1)").dtype == np.bool_
    assert run('tf("4h", close > open)').dtype == np.bool_
    assert run("true").tolist() == [True] * len(FRAME)
    assert run("3").dtype == np.float64


def test_result_is_a_fresh_array() -> None:
    compiled = compile_expression("close")
    ctx = EvalContext(FRAME)
    out = compiled.evaluate(ctx)
    out[:] = 0.0
    assert FRAME.close[0] != 0.0
    assert compiled.evaluate(ctx)[0] == FRAME.close[0]


# -- errors with positions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "fragment", "position"),
    [
        ("clsoe > 1", "did you mean 'close'", 0),
        ("smaa(close, 3)", "did you mean 'sma'", 0),
        ("close > rsii(close, 14)", "did you mean 'rsi'", 8),
        ("sma > 1", "is a function", 0),
        ("close(3)", "is not a function", 0),
        ("sma(close)", "takes 2 arguments", 0),
        ("close > rsi(close, 14, 3)", "takes 2 arguments", 8),
        ("atr()", "takes 1 argument,", 0),
        ("sma(close > open, 5)", "needs a number, got a boolean", 4),
        ("close + (open > 1)", "needs a number, got a boolean", 9),
        ("crosses_above(true, close)", "needs a number", 14),
        ("close and open", "needs a boolean, got a number", 0),
        ("not close", "needs a boolean", 4),
        ("-(close > open)", "needs a number", 2),
        ("(close > open) < 1", "needs a number", 1),
        ("lag(close, 0)", "must be >= 1", 11),
        ("lag(close, -1)", "read the future", 11),
        ("lag(close, 1.5)", "must be an integer", 11),
        ("lag(close, close)", "integer constant or an int parameter", 11),
        ("sma(close, 2 * 3)", "integer constant or an int parameter", 11),
        ("sma(close, 0)", "must be >= 1", 11),
        ("sma(close, 10000000)", "exceeds", 11),
        ("bb_upper(close, 20, close)", "number or a numeric parameter", 20),
        ("bb_upper(close, 20, use_filter)", "must be numeric", 20),
        ("sma(close, k)", "must be declared as int", 11),
        ("sma(close, ratio)", "must be declared as int", 11),
        ("sma(close, nope)", "unknown name 'nope'", 11),
        ("mode > 1", "non-numeric choices", 0),
        ("close > fats", "did you mean 'fast'", 8),
        ('tf("5h", close)', "unknown timeframe '5h'", 3),
        ("tf(close, close)", "quoted timeframe", 3),
        ('tf("4h")', "takes 2 arguments", 0),
        ('close > tf("4h", tf("1h", close))', "must be higher", 20),
        ("use_filter + 1", "needs a number", 0),
    ],
)
def test_compile_errors_name_the_problem_and_its_position(
    source: str, fragment: str, position: int
) -> None:
    error = error_of(source)
    assert fragment in str(error)
    assert error.position == position
    assert error.source == source


def test_timeframes_are_checked_against_the_base_when_it_is_known() -> None:
    assert error_of('tf("1h", close)', base_timeframe="4h").position == 3
    assert "must be higher" in str(error_of('tf("4h", close)', base_timeframe="4h"))
    assert "whole multiple" in str(error_of('tf("6h", close)', base_timeframe="4h"))
    assert "unknown timeframe" in str(error_of("close", base_timeframe="7m"))


def test_timeframes_are_checked_at_evaluation_when_the_base_is_unknown() -> None:
    compiled = compile_expression('close > tf("1h", close)')
    frame_4h = random_frame(50, "4h")
    with pytest.raises(SignalLanguageError) as info:
        compiled.evaluate(EvalContext(frame_4h))
    assert info.value.position == 8


def test_undeclared_parameters_are_unknown_names() -> None:
    error = error_of("sma(close, fast) > close", parameters=None)
    assert "unknown name 'fast'" in str(error)
    assert error.position == 11


@pytest.mark.parametrize("name", ["close", "sma", "and", "lambda", "_x", "not an id"])
def test_parameter_names_may_not_shadow_the_language(name: str) -> None:
    spec = ParameterSpec(type="int", default=3, min=1)
    with pytest.raises(SignalLanguageError, match="parameter name"):
        compile_expression("close > 1", parameters={name: spec})


def test_parameter_declarations_may_be_dicts_and_are_validated() -> None:
    compiled = compile_expression(
        "sma(close, n)", parameters={"n": {"type": "int", "default": 5, "min": 1}}
    )
    close_to(compiled.evaluate(EvalContext(FRAME)), ref_sma(C, 5))
    with pytest.raises(SignalLanguageError, match="invalid declaration"):
        compile_expression("sma(close, n)", parameters={"n": {"type": "integer", "default": 5}})


def test_window_parameters_must_not_allow_values_below_one() -> None:
    spec = ParameterSpec(type="int", default=3, min=0)
    error = error_of("lag(close, n)", parameters={"n": spec})
    assert "declare min >= 1" in str(error)
    assert error.position == 11


def test_invalid_defaults_fail_at_compile_time() -> None:
    spec = ParameterSpec(type="int", default=0)
    with pytest.raises(SignalLanguageError, match="must be an integer >= 1") as info:
        compile_expression("close > sma(close, n)", parameters={"n": spec})
    assert info.value.position == 19
    with pytest.raises(SignalLanguageError, match="must be a number"):
        compile_expression("close > x", parameters={"x": ParameterSpec(type="float", default="a")})


# -- parameters ----------------------------------------------------------------------------


def test_parameters_are_substituted() -> None:
    close_to(run("sma(close, fast)", {"fast": 7}), ref_sma(C, 7))
    close_to(run("sma(close, fast)"), ref_sma(C, 10))  # the default
    close_to(run("bb_upper(close, 20, k)", {"k": 1.5}), ref_sma(C, 20) + 1.5 * ref_stdev(C, 20))
    close_to(run("rsi(close, length)", {"length": 21}), ref_rsi(C, 21))
    close_to(run("close * ratio", {"ratio": 3}), C * 3.0)
    filtered = run("close > open and use_filter", {"use_filter": False})
    assert not filtered.any()
    assert (run("close > open and use_filter") == (FRAME.open < C)).all()


def test_unused_and_undeclared_parameter_values_are_ignored() -> None:
    close_to(run("sma(close, fast)", {"fast": 7, "slow": 99, "other": "x"}), ref_sma(C, 7))


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"fast": 1}, "below the declared minimum"),
        ({"fast": 101}, "above the declared maximum"),
        ({"fast": 2.5}, "must be an integer"),
        ({"fast": True}, "must be a number"),
        ({"fast": "10"}, "must be a number"),
        ({"fast": float("nan")}, "must be finite"),
        ({"length": 10}, "must be one of"),
        ({"use_filter": 1}, "must be true or false"),
    ],
)
def test_bad_parameter_values_are_rejected_with_the_first_use(params, fragment) -> None:
    compiled = compile_expression(
        "sma(close, fast) > sma(close, length) and use_filter", parameters=PARAMS
    )
    with pytest.raises(SignalLanguageError, match=fragment) as info:
        compiled.evaluate(EvalContext(FRAME), params)
    name = next(iter(params))
    assert info.value.position == compiled.source.index(name)


def test_window_parameter_without_minimum_is_checked_at_evaluation() -> None:
    compiled = compile_expression(
        "lag(close, n)", parameters={"n": ParameterSpec(type="int", default=2)}
    )
    with pytest.raises(SignalLanguageError, match="integer >= 1") as info:
        compiled.evaluate(EvalContext(FRAME), {"n": 0})
    assert info.value.position == 11
    with pytest.raises(SignalLanguageError, match="integer >= 1"):
        compiled.evaluate(EvalContext(FRAME), {"n": -1})


# -- NaN semantics -------------------------------------------------------------------------


def test_comparisons_with_nan_are_false_including_not_equal() -> None:
    for op in ("<", "<=", ">", ">=", "==", "!="):
        out = run(f"sma(close, 5) {op} 1e9")
        assert not out[:4].any(), op
    assert run("sma(close, 5) != 1e9")[4:].all()


def test_not_of_a_warm_up_comparison_is_true() -> None:
    # documented: `not` negates the False produced by NaN comparisons
    assert run("not (sma(close, 5) > 0)")[:4].all()


def test_division_by_zero_is_nan() -> None:
    assert np.isnan(run("close / (close - close)")).all()
    assert np.isnan(run("(close - close) / (open - open)")).all()


def test_nan_propagates_through_arithmetic_and_min_max() -> None:
    out = run("max(sma(close, 5), close) + 1")
    assert np.isnan(out[:4]).all() and not np.isnan(out[4:]).any()


# -- warm-up -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "close",
        "sma(close, 20)",
        "ema(sma(close, 5), 10)",
        "rsi(close, 14)",
        "atr(14)",
        "roc(close, 3)",
        "lag(sma(close, 4), 2)",
        "zscore(close, 20)",
        "macd_signal(close, 12, 26, 9)",
        "wma(close, 7) - highest(close, 30)",
        "vwap(10)",
        'tf("4h", sma(close, 3))',
        'tf("1d", rsi(close, 2)) + sma(close, 2)',
        'tf("4h", tf("1d", close))',
    ],
)
def test_warmup_is_the_first_non_nan_bar(source: str) -> None:
    compiled = compile_expression(source, base_timeframe="1h")
    out = compiled.evaluate(EvalContext(FRAME))
    first = int(np.flatnonzero(~np.isnan(out))[0])
    assert compiled.warmup_bars() == first


def test_warmup_uses_parameters_and_bool_rules() -> None:
    compiled = compile_expression("crosses_above(close, sma(close, fast))", parameters=PARAMS)
    assert compiled.warmup_bars({"fast": 20}) == 20
    assert compiled.warmup_bars() == 10
    tf_compiled = compile_expression('tf("4h", close)')
    assert tf_compiled.warmup_bars(base_timeframe="1h") == 3
    assert tf_compiled.warmup_bars(base_timeframe="4h") == 0
    assert tf_compiled.warmup_bars() == 239  # unknown base: bounded as 1m bars


# -- crosses tie rule and lag through the language ------------------------------------------


def test_crosses_tie_rule_through_the_language() -> None:
    frame = frame_from_closes([1.0, 2.0, 2.0, 3.0, 2.0, 1.0])
    above = run("crosses_above(close, 2)", frame=frame)
    below = run("crosses_below(close, 2)", frame=frame)
    assert above.tolist() == [False, False, False, True, False, False]
    assert below.tolist() == [False, False, False, False, False, True]


def test_lag_reads_the_past_only() -> None:
    frame = frame_from_closes([1.0, 2.0, 3.0, 4.0])
    out = run("lag(close, fast)", {"fast": 2}, frame=frame)
    np.testing.assert_array_equal(out, [np.nan, np.nan, 1.0, 2.0])
    flags = run("lag(close > 1.5, 1)", frame=frame)
    assert flags.tolist() == [False, False, True, True]


def test_sma_in_the_language_equals_pandas_bit_for_bit() -> None:
    out = run("sma(close, 10)")
    np.testing.assert_array_equal(out, pd.Series(C).rolling(10).mean().to_numpy())

"""tf(): higher-timeframe values become visible only when the higher bar has closed.

Expected values are derived by hand from the rule "4h bar k is visible at 1h bar i iff
close_time_4h[k] <= close_time_1h[i]": with hourly bars from 00:00, bar i closes at (i+1)h,
so the 4h bar covering hours 0-3 becomes visible at bar 3 (closing 04:00).
"""

from __future__ import annotations

import numpy as np

from factory_pipeline.strategy.language import EvalContext, compile_expression
from factory_pipeline_tests.strategy.language_frames import START_MS, frame_from_closes

NAN = np.nan


def evaluate(source: str, frame) -> np.ndarray:
    return compile_expression(source).evaluate(EvalContext(frame))


def test_values_switch_exactly_at_higher_closes() -> None:
    frame = frame_from_closes(np.arange(12.0))  # close at hour i is i
    out = evaluate('tf("4h", close)', frame)
    expected = [NAN, NAN, NAN, 3, 3, 3, 3, 7, 7, 7, 7, 11]
    np.testing.assert_array_equal(out, expected)


def test_an_indicator_on_the_higher_timeframe() -> None:
    frame = frame_from_closes(np.arange(16.0))
    # 4h closes: 3, 7, 11, 15 (visible at bars 3, 7, 11, 15); sma over 2 of them: -, 5, 9, 13
    out = evaluate('tf("4h", sma(close, 2))', frame)
    expected = [NAN] * 7 + [5] * 4 + [9] * 4 + [13]
    np.testing.assert_array_equal(out, expected)


def test_higher_open_high_low_aggregate_the_closed_bar() -> None:
    frame = frame_from_closes([5.0, 9.0, 1.0, 4.0, 2.0, 2.0, 3.0, 8.0])
    np.testing.assert_array_equal(evaluate('tf("4h", open)', frame), [NAN] * 3 + [5] * 4 + [2])
    np.testing.assert_array_equal(evaluate('tf("4h", high)', frame), [NAN] * 3 + [9] * 4 + [8])
    np.testing.assert_array_equal(evaluate('tf("4h", low)', frame), [NAN] * 3 + [1] * 4 + [2])


def test_data_starting_inside_a_higher_bar() -> None:
    # first bar opens at 02:00: the first 4h bar (00:00-04:00) holds bars 02:00 and 03:00 and
    # closes at 04:00, with bar index 1.
    frame = frame_from_closes(
        [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0], positions=[2, 3, 4, 5, 6, 7, 8]
    )
    out = evaluate('tf("4h", close)', frame)
    np.testing.assert_array_equal(out, [NAN, 11, 11, 11, 11, 15, 15])


def test_gaps_close_the_higher_bar_by_time() -> None:
    # hour 3 is missing: the 00:00-04:00 bar still closes at 04:00, so it is visible at the
    # bar opening 04:00 (closing 05:00), with the close of hour 2.
    frame = frame_from_closes([0.0, 1.0, 2.0, 4.0, 5.0, 6.0, 7.0], positions=[0, 1, 2, 4, 5, 6, 7])
    out = evaluate('tf("4h", close)', frame)
    np.testing.assert_array_equal(out, [NAN, NAN, NAN, 2, 2, 2, 7])


def test_a_long_gap_keeps_the_last_closed_value_not_a_forming_one() -> None:
    # hours 3..9 missing: bucket 04-08 has no bars; at hour 10 (closing 11:00) the last closed
    # 4h bar is 00-04 (close of hour 2); the 08-12 bar (hour 10, 11) is still forming.
    frame = frame_from_closes([0.0, 1.0, 2.0, 10.0, 11.0, 12.0], positions=[0, 1, 2, 10, 11, 12])
    out = evaluate('tf("4h", close)', frame)
    np.testing.assert_array_equal(out, [NAN, NAN, NAN, 2, 11, 11])


def test_boolean_higher_values_are_false_until_visible() -> None:
    frame = frame_from_closes(np.arange(8.0))
    out = evaluate('tf("4h", close > 1)', frame)
    assert out.tolist() == [False, False, False, True, True, True, True, True]


def test_time_series_inside_tf_use_the_higher_bar_open_time() -> None:
    frame = frame_from_closes(np.arange(10.0))
    np.testing.assert_array_equal(evaluate('tf("4h", hour)', frame), [NAN] * 3 + [0] * 4 + [4] * 3)


def test_nested_timeframes_align_through_each_level() -> None:
    frame = frame_from_closes(np.arange(50.0))  # 1h bars from midnight, two days
    out = evaluate('tf("4h", tf("1d", close))', frame)
    # the daily bar 0 closes at 24:00, visible to the 4h bar closing 24:00 (base bar 23)
    expected = np.full(50, NAN)
    expected[23:47] = 23.0
    expected[47:] = 47.0
    np.testing.assert_array_equal(out, expected)


def test_resampled_frames_are_memoized_per_context() -> None:
    frame = frame_from_closes(np.arange(24.0), start_ms=START_MS)
    ctx = EvalContext(frame)
    assert ctx.at_timeframe("4h") is ctx.at_timeframe("4h")
    assert ctx.at_timeframe("1h") is frame
    assert len(ctx.at_timeframe("4h")) == 6

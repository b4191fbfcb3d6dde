"""make_frame without a mark: the mark is the close itself, shared read-only (no copy)."""

from __future__ import annotations

import numpy as np
import pytest

from factory_pipeline.market.frame import make_frame

T0 = 1_699_977_600_000


def _frame(mark=None):
    close = np.array([100.0, 101.0, 99.5, 102.0])
    times = T0 + np.arange(4, dtype=np.int64) * 60_000
    return make_frame("MK", "1m", times, close, close + 1, close - 1, close, mark=mark), close


def test_mark_defaults_to_a_read_only_view_of_the_close():
    frame, close = _frame()
    np.testing.assert_array_equal(frame.mark, close)
    assert np.shares_memory(frame.mark, frame.close)
    assert not frame.mark.flags.writeable
    with pytest.raises(ValueError):
        frame.mark[0] = 1.0
    sliced = frame.slice(1, 3)
    np.testing.assert_array_equal(sliced.mark, close[1:3])


def test_a_given_mark_is_kept_separately():
    mark = np.array([100.5, 100.0, 99.0, 101.0])
    frame, close = _frame(mark)
    np.testing.assert_array_equal(frame.mark, mark)
    assert not np.shares_memory(frame.mark, frame.close)
    np.testing.assert_array_equal(frame.close, close)

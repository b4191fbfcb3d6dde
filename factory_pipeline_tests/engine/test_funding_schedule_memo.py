"""The funding schedule is computed once per frame and interval, and dropped with the frame."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from factory_pipeline.engine import simulator
from factory_pipeline.engine.simulator import funding_schedule
from factory_pipeline.market.frame import make_frame

HOUR = 3_600_000
T0 = 1_704_067_200_000


def _frame(n: int = 48):
    close = np.linspace(100.0, 110.0, n)
    times = T0 + np.arange(n, dtype=np.int64) * HOUR
    funding_time = np.arange(T0 + 8 * HOUR, T0 + n * HOUR, 8 * HOUR, dtype=np.int64)
    return make_frame(
        "TEST", "1h", times, close, close + 1, close - 1, close,
        funding_time=funding_time, funding_rates=np.full(funding_time.shape[0], 1e-4),
    )  # fmt: skip


def test_one_schedule_per_frame_and_interval_read_only_and_equal_to_a_fresh_one() -> None:
    frame = _frame()
    first = funding_schedule(frame, 8 * HOUR)
    assert funding_schedule(frame, 8 * HOUR) is first  # not recomputed
    fresh = simulator._funding_schedule(frame, 8 * HOUR)
    for cached, computed in zip(first, fresh, strict=True):
        np.testing.assert_array_equal(cached, computed)
        assert not cached.flags.writeable
    # settlement T is charged in the bar whose (open, close] holds it: bar k closes at k+1 h
    assert list(first[0]) == [7, 15, 23, 31, 39]
    other = funding_schedule(frame, 4 * HOUR)  # another interval: its own entry
    assert other is not first and funding_schedule(frame, 4 * HOUR) is other
    with pytest.raises(ValueError):
        first[1][0] = 1.0


def test_a_new_frame_gets_its_own_schedule_and_a_dead_frame_leaves_no_entry() -> None:
    frame = _frame()
    funding_schedule(frame, 8 * HOUR)
    key = (id(frame), 8 * HOUR)
    assert key in simulator._SCHEDULES
    longer = _frame(96)
    assert funding_schedule(longer, 8 * HOUR)[0].shape[0] == 11
    del frame
    gc.collect()
    assert key not in simulator._SCHEDULES

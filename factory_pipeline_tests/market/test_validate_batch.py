"""validate_batch: every problem is rejected with the source, table, row and problem named."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from factory_pipeline.errors import MarketDataError
from factory_pipeline.market.source import MarketBatch, make_batch, validate_batch
from factory_pipeline_tests.market.helpers import HOUR, T0, hourly_batch


def _with_ohlcv(batch: MarketBatch, **changes: object) -> MarketBatch:
    data = {name: batch.ohlcv.column(name).to_numpy().copy() for name in batch.ohlcv.column_names}
    for key, value in changes.items():
        name, row = key.rsplit("_", 1)
        data[name][int(row)] = value
    return make_batch(
        batch.symbol,
        batch.timeframe,
        batch.start_ms,
        batch.end_ms,
        ohlcv=data,
        funding=batch.funding,
        open_interest=batch.open_interest,
    )


@pytest.fixture
def clean() -> MarketBatch:
    return hourly_batch(
        [100.0, 101.0, 102.0, 101.5, 100.5, 99.0],
        funding={"funding_time": [T0], "rate": [0.0001]},
        open_interest={"ts": [T0, T0 + HOUR], "open_interest": [5.0, 6.0]},
    )


def test_clean_batch_passes(clean: MarketBatch) -> None:
    validate_batch(clean, source="unit")


@pytest.mark.parametrize(
    ("changes", "row", "problem"),
    [
        ({"high_3": 100.0}, 3, "OHLC inconsistent"),
        ({"low_2": 103.0}, 2, "OHLC inconsistent"),
        ({"close_4": 0.0}, 4, "non-positive price"),
        ({"open_1": -5.0}, 1, "non-positive price"),
        ({"volume_5": -1.0}, 5, "negative volume"),
        ({"close_2": float("nan")}, 2, "close is NaN"),
        ({"open_time_3": T0 + 2 * HOUR}, 3, "duplicate open_time"),
        ({"open_time_4": T0 + HOUR}, 4, "goes backwards"),
        ({"open_time_0": T0 - HOUR}, 0, "before the batch start"),
        ({"open_time_5": T0 + 6 * HOUR}, 5, "at or after the batch end"),
        ({"open_time_2": T0 + 2 * HOUR + 60_000}, 2, "not on the 1-hour grid"),
    ],
)
def test_bad_rows_are_named(
    clean: MarketBatch, changes: dict[str, object], row: int, problem: str
) -> None:
    bad = _with_ohlcv(clean, **changes)
    with pytest.raises(MarketDataError) as info:
        validate_batch(bad, source="unit-test")
    message = str(info.value)
    assert "unit-test" in message
    assert "TESTUSDT 1h" in message
    assert "table ohlcv" in message
    assert f"row {row} " in message
    assert problem in message


def test_funding_and_open_interest_rows_are_checked(clean: MarketBatch) -> None:
    funding = make_batch(
        "TESTUSDT",
        "1h",
        clean.start_ms,
        clean.end_ms,
        ohlcv=clean.ohlcv,
        funding={"funding_time": [T0 + HOUR, T0], "rate": [0.0001, 0.0002]},
    )
    with pytest.raises(MarketDataError, match=r"table funding: row 1 .*goes backwards"):
        validate_batch(funding)
    oi = make_batch(
        "TESTUSDT",
        "1h",
        clean.start_ms,
        clean.end_ms,
        ohlcv=clean.ohlcv,
        open_interest={"ts": [T0], "open_interest": [-1.0]},
    )
    with pytest.raises(MarketDataError, match=r"table open_interest: row 0 .*negative open"):
        validate_batch(oi)
    mark = make_batch(
        "TESTUSDT",
        "1h",
        clean.start_ms,
        clean.end_ms,
        ohlcv=clean.ohlcv,
        mark={"open_time": [T0, T0 + HOUR], "close": [100.0, 0.0]},
    )
    with pytest.raises(MarketDataError, match=r"table mark: row 1 .*non-positive price"):
        validate_batch(mark)


def test_wrong_types_and_nulls_are_rejected(clean: MarketBatch) -> None:
    wrong_type = MarketBatch(
        "TESTUSDT",
        "1h",
        clean.start_ms,
        clean.end_ms,
        ohlcv=clean.ohlcv.set_column(0, "open_time", clean.ohlcv.column(0).cast(pa.float64())),
        mark=clean.mark,
        funding=clean.funding,
        open_interest=clean.open_interest,
    )
    with pytest.raises(MarketDataError, match="open_time.*type double, expected int64"):
        validate_batch(wrong_type)
    nulls = pa.array([100.0, None, 102.0, 101.5, 100.5, 99.0])
    with_null = MarketBatch(
        "TESTUSDT",
        "1h",
        clean.start_ms,
        clean.end_ms,
        ohlcv=clean.ohlcv.set_column(4, "close", nulls),
        mark=clean.mark,
        funding=clean.funding,
        open_interest=clean.open_interest,
    )
    with pytest.raises(MarketDataError, match="row 1: close is missing"):
        validate_batch(with_null)


def test_problem_count_is_reported(clean: MarketBatch) -> None:
    bad = _with_ohlcv(clean, volume_1=-1.0, volume_3=-2.0, volume_4=-3.0)
    with pytest.raises(MarketDataError, match=r"row 1 .*\(2 more rows with problems\)"):
        validate_batch(bad)


def test_make_batch_names_missing_columns() -> None:
    with pytest.raises(MarketDataError, match="ohlcv: missing column.*volume"):
        make_batch(
            "X",
            "1h",
            T0,
            T0 + HOUR,
            ohlcv={"open_time": [T0], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0]},
        )


def test_large_batch_validates_without_row_loops() -> None:
    n = 200_000
    closes = 100.0 + np.cumsum(np.random.default_rng(3).normal(0, 0.1, n))
    validate_batch(hourly_batch(closes))

"""Quality checks: each fails on crafted bad data and passes on clean data."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from factory_pipeline.errors import MarketDataError
from factory_pipeline.market.quality import (
    QUALITY_CHECKS,
    QualityResult,
    check_batch,
    check_market_data,
    infer_funding_interval,
)
from factory_pipeline.market.source import MarketBatch
from factory_pipeline.market.synthetic import SyntheticSource
from factory_pipeline_tests.market.helpers import DAY, HOUR, T0

QUARTER = 15 * 60_000
LATER = T0 + 30 * DAY  # "now" well after the data


@pytest.fixture(scope="module")
def clean(week_source: SyntheticSource) -> MarketBatch:
    return week_source.fetch("BTCUSDT", "15m", T0, T0 + 2 * DAY)


def _by_name(results: list[QualityResult]) -> dict[str, QualityResult]:
    return {r.name: r for r in results}


def _run(ohlcv: pa.Table, funding: pa.Table | None, **kwargs: object) -> dict[str, QualityResult]:
    options = {"timeframe": "15m", "start_ms": T0, "end_ms": T0 + 2 * DAY, "now_ms": LATER}
    options.update(kwargs)
    return _by_name(check_market_data(ohlcv, funding, **options))  # type: ignore[arg-type]


def _edit(table: pa.Table, column: str, rows: dict[int, float]) -> pa.Table:
    values = table.column(column).to_numpy().copy()
    for row, value in rows.items():
        values[row] = value
    return table.set_column(table.schema.get_field_index(column), column, pa.array(values))


def _failed(results: dict[str, QualityResult]) -> set[str]:
    return {name for name, r in results.items() if not r.passed}


def test_clean_data_passes_every_check_with_stable_names(clean: MarketBatch) -> None:
    results = check_batch(clean, now_ms=LATER)
    assert [r.name for r in results] == list(QUALITY_CHECKS)
    assert all(r.passed for r in results), [r.detail for r in results if not r.passed]
    assert {r.name: r.blocking for r in results} == {k: v[1] for k, v in QUALITY_CHECKS.items()}
    assert _by_name(results)["gaps"].blocking is False
    assert _by_name(results)["funding_complete"].metadata["interval_hours"] == 8
    assert _by_name(results)["funding_complete"].metadata["expected_settlements"] == 6


def test_duplicates_fail_unique_timestamps(clean: MarketBatch) -> None:
    doubled = pa.concat_tables([clean.ohlcv, clean.ohlcv.slice(10, 2)]).sort_by("open_time")
    results = _run(doubled, clean.funding)
    assert _failed(results) == {"unique_timestamps"}
    assert results["unique_timestamps"].metadata["duplicates"] == 2
    assert "2024-01-01T02:30:00Z" in results["unique_timestamps"].detail


def test_decreasing_times_fail_monotonic_timestamps(clean: MarketBatch) -> None:
    order = list(range(clean.bars))
    order[20], order[21] = 21, 20
    results = _run(clean.ohlcv.take(order), clean.funding)
    assert _failed(results) == {"monotonic_timestamps"}
    assert results["monotonic_timestamps"].metadata["first_row"] == 21


def test_gaps_are_listed_and_the_tolerance_applies(clean: MarketBatch) -> None:
    times = clean.ohlcv.column("open_time").to_numpy()
    missing = {T0 + 4 * QUARTER, T0 + 5 * QUARTER, T0 + 6 * QUARTER, T0 + DAY}
    gapped = clean.ohlcv.filter(pa.array(~np.isin(times, list(missing))))
    strict = _run(gapped, clean.funding)["gaps"]
    assert not strict.passed and strict.blocking is False
    assert strict.metadata["missing_bars"] == 4 and strict.metadata["gap_count"] == 2
    assert strict.metadata["largest_gap_bars"] == 3
    assert strict.metadata["gap_spans"] == (
        "2024-01-01T01:00:00Z..2024-01-01T01:45:00Z (3 bars); "
        "2024-01-02T00:00:00Z..2024-01-02T00:15:00Z (1 bars)"
    )
    tolerant = _run(gapped, clean.funding, gap_tolerance_bars=1)["gaps"]
    assert not tolerant.passed and tolerant.metadata["gap_count"] == 1
    assert _run(gapped, clean.funding, gap_tolerance_bars=3)["gaps"].passed


def test_missing_edges_and_the_unfinished_present_count_correctly(clean: MarketBatch) -> None:
    tail_cut = clean.ohlcv.slice(0, clean.bars - 8)  # the last 2 hours missing
    assert not _run(tail_cut, clean.funding)["gaps"].passed
    # ... unless they have not closed yet: now is 2 hours before the range end
    now = T0 + 2 * DAY - 2 * HOUR
    assert _run(tail_cut, clean.funding.slice(0, 5), now_ms=now)["gaps"].passed
    head_cut = clean.ohlcv.slice(3)
    result = _run(head_cut, clean.funding)["gaps"]
    assert "2024-01-01T00:00:00Z..2024-01-01T00:45:00Z (3 bars)" in result.detail


def test_inconsistent_ohlc_fails(clean: MarketBatch) -> None:
    bad = _edit(clean.ohlcv, "low", {7: clean.ohlcv.column("high")[7].as_py() + 1})
    results = _run(bad, clean.funding)
    assert _failed(results) == {"ohlc_consistency"}
    assert results["ohlc_consistency"].metadata["first_bad"] == "2024-01-01T01:45:00Z"


@pytest.mark.parametrize(
    ("column", "value"), [("close", 0.0), ("open", -1.0), ("volume", -5.0), ("volume", np.nan)]
)
def test_bad_prices_and_volumes_fail(clean: MarketBatch, column: str, value: float) -> None:
    bad = _edit(clean.ohlcv, column, {3: value})
    results = _run(bad, clean.funding)
    assert "positive_prices_nonneg_volume" in _failed(results)
    assert results["positive_prices_nonneg_volume"].metadata["bad_bars"] == 1


def test_funding_missing_off_grid_and_other_grids(clean: MarketBatch) -> None:
    missing = clean.funding.filter(
        pa.array(clean.funding.column("funding_time").to_numpy() != T0 + 16 * HOUR)
    )
    result = _run(clean.ohlcv, missing)["funding_complete"]
    assert not result.passed and result.blocking
    assert result.metadata["missing_settlements"] == 1
    assert result.metadata["first_missing"] == "2024-01-01T16:00:00Z"
    # the 8h grid stays the reference when told explicitly; a 30-minute shift is off-grid
    shifted = _edit(clean.funding, "funding_time", {2: T0 + 16 * HOUR + 1_800_000})
    off = _run(clean.ohlcv, shifted)["funding_complete"]
    assert not off.passed and "not on a 1/2/4/8-hour grid" in off.detail
    off8 = _run(clean.ohlcv, shifted, funding_interval_ms=8 * HOUR)["funding_complete"]
    assert off8.metadata["off_grid"] == 1 and off8.metadata["missing_settlements"] == 1
    hourly = pa.table(
        {"funding_time": T0 + np.arange(48, dtype=np.int64) * HOUR, "rate": np.full(48, 1e-5)}
    )
    result = _run(clean.ohlcv, hourly)["funding_complete"]
    assert result.passed and result.metadata["interval_hours"] == 1
    assert not _run(clean.ohlcv, None)["funding_complete"].passed
    assert _run(clean.ohlcv, None, expect_funding=False)["funding_complete"].passed
    assert infer_funding_interval(np.array([0, 4 * HOUR], dtype=np.int64)) == 4 * HOUR


def test_future_bars_and_settlements_fail(clean: MarketBatch) -> None:
    now = T0 + DAY + 5 * 60_000  # inside the first bar of day 2
    results = _run(clean.ohlcv, clean.funding, now_ms=now)
    future = results["no_future_timestamps"]
    assert not future.passed and future.blocking
    assert future.metadata["future_bars"] == 96  # day 2 has not closed a single bar
    assert future.metadata["future_funding"] == 2  # 08:00 and 16:00 of day 2; 00:00 happened
    assert "2024-01-02T00:00:00Z" in future.detail
    just_closed = T0 + 2 * DAY
    assert _run(clean.ohlcv, clean.funding, now_ms=just_closed)["no_future_timestamps"].passed


def test_missing_columns_raise(clean: MarketBatch) -> None:
    with pytest.raises(MarketDataError, match="need column 'volume'"):
        _run(clean.ohlcv.drop_columns(["volume"]), clean.funding)

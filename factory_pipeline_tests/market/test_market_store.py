"""MarketStore: idempotent range replacement, rollback, SQL resampling, point-in-time frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from factory_pipeline.errors import MarketDataError
from factory_pipeline.market.regimes import REGIME_SCHEMA
from factory_pipeline.market.source import MarketBatch, make_batch
from factory_pipeline.market.synthetic import SyntheticSource
from factory_pipeline.schemas import Book
from factory_pipeline.store import market as market_module
from factory_pipeline.store.db import Store
from factory_pipeline.store.documents import DocumentStore
from factory_pipeline.store.market import MarketStore
from factory_pipeline_tests.market.helpers import DAY, HOUR, T0, hourly_batch

QUARTER = 15 * 60_000


def _snapshot(store: MarketStore, symbol: str, timeframe: str) -> dict[str, pa.Table]:
    return {
        "ohlcv": store.ohlcv(symbol, timeframe),
        "mark": store.mark(symbol, timeframe),
        "funding": store.funding(symbol),
        "open_interest": store.open_interest(symbol),
    }


def _drop_bars(batch: MarketBatch, open_times: list[int]) -> MarketBatch:
    keep = ~np.isin(batch.ohlcv.column("open_time").to_numpy(), open_times)
    return make_batch(
        batch.symbol,
        batch.timeframe,
        batch.start_ms,
        batch.end_ms,
        ohlcv=batch.ohlcv.filter(pa.array(keep)),
        mark=batch.mark.filter(pa.array(keep)),
        funding=batch.funding,
        open_interest=batch.open_interest,
    )


def test_writing_the_same_batch_twice_leaves_identical_tables(
    market_store: MarketStore, week_source: SyntheticSource
) -> None:
    batch = week_source.fetch_all("BTCUSDT", "15m")
    counts = market_store.write_batch(batch)
    first = _snapshot(market_store, "BTCUSDT", "15m")
    again = market_store.write_batch(batch)
    second = _snapshot(market_store, "BTCUSDT", "15m")
    assert (
        counts
        == again
        == {
            "ohlcv": 6 * 96,
            "mark": 6 * 96,
            "funding": 18,
            "open_interest": 6 * 24,
        }
    )
    for name in first:
        assert first[name].equals(second[name]), name
    assert second["ohlcv"].num_rows == 6 * 96
    np.testing.assert_array_equal(
        second["ohlcv"].column("close"), batch.ohlcv.column("close").to_numpy()
    )
    np.testing.assert_array_equal(
        second["ohlcv"].column("close_time").to_numpy(),
        batch.ohlcv.column("open_time").to_numpy() + QUARTER,
    )


def test_rewriting_a_sub_range_replaces_only_that_range(
    market_store: MarketStore, week_source: SyntheticSource
) -> None:
    market_store.write_batch(week_source.fetch_all("ETHUSDT", "1h"))
    before = market_store.ohlcv("ETHUSDT", "1h").to_pandas()
    day = week_source.fetch("ETHUSDT", "1h", T0 + DAY, T0 + 2 * DAY)
    doubled = make_batch(
        "ETHUSDT",
        "1h",
        day.start_ms,
        day.end_ms,
        ohlcv={
            n: (day.ohlcv.column(n).to_numpy() * (1 if n == "open_time" else 2))
            for n in day.ohlcv.column_names
        },
    )
    market_store.write_batch(doubled)
    after = market_store.ohlcv("ETHUSDT", "1h").to_pandas()
    inside = (after["open_time"] >= T0 + DAY) & (after["open_time"] < T0 + 2 * DAY)
    assert len(after) == len(before)
    np.testing.assert_allclose(after.loc[inside, "close"], 2 * before.loc[inside, "close"])
    np.testing.assert_array_equal(after.loc[~inside, "close"], before.loc[~inside, "close"])
    # the doubled batch had no funding/OI for its day: that day's rows are gone, others stay
    funding = market_store.funding("ETHUSDT").column("funding_time").to_numpy()
    assert not np.any((funding >= T0 + DAY) & (funding < T0 + 2 * DAY))
    assert funding.shape[0] == 18 - 3


def test_an_invalid_batch_changes_nothing(
    market_store: MarketStore, week_source: SyntheticSource
) -> None:
    good = week_source.fetch_all("SOLUSDT", "1h")
    market_store.write_batch(good)
    before = _snapshot(market_store, "SOLUSDT", "1h")
    data = {n: good.ohlcv.column(n).to_numpy().copy() for n in good.ohlcv.column_names}
    data["high"][5] = data["low"][5] / 2
    bad = make_batch("SOLUSDT", "1h", good.start_ms, good.end_ms, ohlcv=data)
    with pytest.raises(MarketDataError, match="row 5 .*OHLC inconsistent"):
        market_store.write_batch(bad, source="test")
    after = _snapshot(market_store, "SOLUSDT", "1h")
    for name in before:
        assert before[name].equals(after[name]), name


def test_a_failure_inside_the_transaction_rolls_back(
    market_store: MarketStore, week_source: SyntheticSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = week_source.fetch_all("SOLUSDT", "1h")
    market_store.write_batch(good)
    market_store.resample("SOLUSDT", "1h", ["4h"], good.start_ms, good.end_ms)
    before = _snapshot(market_store, "SOLUSDT", "1h")
    resampled_before = market_store.ohlcv("SOLUSDT", "4h")
    real_insert = market_module._insert

    def failing_insert(con, table, *args, **kwargs):  # noqa: ANN001, ANN202
        if table == "funding":  # after the deletes and the ohlcv insert ran
            raise RuntimeError("disk full")
        return real_insert(con, table, *args, **kwargs)

    monkeypatch.setattr(market_module, "_insert", failing_insert)
    replacement = week_source.fetch("SOLUSDT", "1h", T0, T0 + 2 * DAY)
    with pytest.raises(RuntimeError, match="disk full"):
        market_store.write_batch(replacement)
    after = _snapshot(market_store, "SOLUSDT", "1h")
    for name in before:
        assert before[name].equals(after[name]), name
    assert market_store.ohlcv("SOLUSDT", "4h").equals(resampled_before)


def _pandas_resample(bars: pd.DataFrame, rule: str, per_bucket: int) -> pd.DataFrame:
    """Independent reference: pandas time-bucket aggregation, empty buckets dropped."""
    frame = bars.set_index(pd.to_datetime(bars["open_time"], unit="ms", utc=True))
    agg = frame.resample(rule).agg(
        {
            "open": "first",
            "high": "max",
            "low": "min",
            "close": "last",
            "volume": "sum",
            "open_time": "count",
        }
    )
    agg = agg[agg["open_time"] > 0].rename(columns={"open_time": "bar_count"})
    agg["complete"] = agg["bar_count"] == per_bucket
    agg["open_time"] = agg.index.as_unit("ms").asi8
    return agg.reset_index(drop=True)


def test_resample_matches_pandas_including_the_completeness_flag(
    market_store: MarketStore, week_source: SyntheticSource
) -> None:
    batch = week_source.fetch_all("BTCUSDT", "15m")
    gap = [T0 + DAY + 5 * QUARTER, T0 + DAY + 6 * QUARTER, T0 + 3 * DAY]
    gapped = _drop_bars(batch, gap)
    market_store.write_batch(gapped)
    counts = market_store.resample("BTCUSDT", "15m", ["1h", "4h", "1d"], T0, T0 + 6 * DAY)
    assert counts == {"1h": 144, "4h": 36, "1d": 6}
    bars = gapped.ohlcv.to_pandas()
    for timeframe, rule, per in (("1h", "1h", 4), ("4h", "4h", 16), ("1d", "1D", 96)):
        stored = market_store.ohlcv("BTCUSDT", timeframe).to_pandas()
        reference = _pandas_resample(bars, rule, per)
        for column in ("open_time", "open", "high", "low", "close", "bar_count", "complete"):
            np.testing.assert_array_equal(stored[column].to_numpy(), reference[column].to_numpy())
        np.testing.assert_allclose(stored["volume"], reference["volume"])
        np.testing.assert_array_equal(stored["close_time"], stored["open_time"] + per * QUARTER)
    incomplete_1h = market_store.ohlcv("BTCUSDT", "1h").to_pandas().query("not complete")
    assert incomplete_1h["open_time"].tolist() == [T0 + DAY + HOUR, T0 + 3 * DAY]
    assert incomplete_1h["bar_count"].tolist() == [2, 3]


def test_resample_aligns_the_range_and_is_idempotent(
    market_store: MarketStore, week_source: SyntheticSource
) -> None:
    market_store.write_batch(week_source.fetch_all("BTCUSDT", "15m"))
    market_store.resample("BTCUSDT", "15m", ["4h"], T0 + 5 * HOUR, T0 + 9 * HOUR)
    # [05:00, 09:00) widens to the 4h buckets 04:00 and 08:00
    assert market_store.ohlcv("BTCUSDT", "4h").column("open_time").to_pylist() == [
        T0 + 4 * HOUR,
        T0 + 8 * HOUR,
    ]
    first = market_store.ohlcv("BTCUSDT", "4h")
    market_store.resample("BTCUSDT", "15m", ["4h"], T0 + 5 * HOUR, T0 + 9 * HOUR)
    assert market_store.ohlcv("BTCUSDT", "4h").equals(first)
    with pytest.raises(MarketDataError, match="whole multiple"):
        market_store.resample("BTCUSDT", "15m", ["10m" if False else "15m"], T0, T0 + DAY)


def test_load_frame_aligns_funding_and_open_interest_point_in_time(
    market_store: MarketStore,
) -> None:
    # bars open 00:00 .. 11:00; funding settles 00:00 and 08:00; OI published 02:30 and 07:00
    batch = hourly_batch(
        np.linspace(100, 111, 12),
        funding={"funding_time": [T0, T0 + 8 * HOUR], "rate": [0.0001, -0.0003]},
        open_interest={"ts": [T0 + 2 * HOUR + 1_800_000, T0 + 7 * HOUR], "open_interest": [5, 9]},
    )
    market_store.write_batch(batch)
    frame = market_store.load_frame("TESTUSDT", "1h")
    # bar k closes at (k+1)h and sees what was published at or before then
    expected_funding = [0.0001] * 7 + [-0.0003] * 5  # bar 7 closes exactly at 08:00
    expected_oi = [np.nan, np.nan, 5, 5, 5, 5, 9, 9, 9, 9, 9, 9]  # 02:30 -> bar 2 (closes 03:00)
    np.testing.assert_array_equal(frame.funding_rate, expected_funding)
    np.testing.assert_array_equal(frame.open_interest, expected_oi)
    np.testing.assert_array_equal(frame.close_time, frame.open_time + HOUR)
    np.testing.assert_array_equal(frame.funding_time, [T0, T0 + 8 * HOUR])
    # a later slice still sees the settlement published before it started
    later = market_store.load_frame("TESTUSDT", "1h", T0 + 9 * HOUR, T0 + 11 * HOUR)
    assert len(later) == 2
    np.testing.assert_array_equal(later.funding_rate, [-0.0003, -0.0003])
    np.testing.assert_array_equal(later.open_interest, [9, 9])


def test_load_frame_mark_falls_back_to_close(market_store: MarketStore) -> None:
    batch = hourly_batch([100.0, 101.0, 102.0])
    with_mark = make_batch(
        "TESTUSDT",
        "1h",
        batch.start_ms,
        batch.end_ms,
        ohlcv=batch.ohlcv,
        mark={"open_time": [T0 + HOUR], "close": [101.5]},
    )
    market_store.write_batch(with_mark)
    np.testing.assert_array_equal(
        market_store.load_frame("TESTUSDT", "1h").mark, [100.0, 101.5, 102.0]
    )


def test_load_frame_higher_timeframe_from_resampled_or_memory(
    market_store: MarketStore, week_source: SyntheticSource
) -> None:
    batch = _drop_bars(week_source.fetch_all("ETHUSDT", "15m"), [T0 + 2 * DAY + QUARTER])
    market_store.write_batch(batch)
    in_memory = market_store.load_frame("ETHUSDT", "4h")  # nothing resampled yet
    market_store.resample("ETHUSDT", "15m", ["4h"], batch.start_ms, batch.end_ms)
    from_table = market_store.load_frame("ETHUSDT", "4h")
    base = market_store.load_frame("ETHUSDT", "15m")
    expected = base.resample("4h")
    for frame in (in_memory, from_table):
        for name in (
            "open_time",
            "close_time",
            "open",
            "high",
            "low",
            "close",
            "complete",
            "funding_rate",
            "mark",
        ):
            np.testing.assert_array_equal(getattr(frame, name), getattr(expected, name), name)
        np.testing.assert_allclose(frame.volume, expected.volume)
    assert from_table.complete.sum() == 35  # one 4h bucket lost a base bar
    # open interest at each 4h close: the hourly point published exactly at the close
    oi = batch.open_interest.to_pandas().set_index("ts")["open_interest"]
    expected_oi = oi.reindex(from_table.close_time).to_numpy()
    np.testing.assert_array_equal(from_table.open_interest[:-1], expected_oi[:-1])
    # a range inside: whole 4h bars with open_time in [start, end)
    window = market_store.load_frame("ETHUSDT", "4h", T0 + DAY + HOUR, T0 + 2 * DAY)
    assert window.open_time[0] == T0 + DAY + 4 * HOUR and len(window) == 5


def test_writing_base_bars_drops_stale_aggregates(
    market_store: MarketStore, week_source: SyntheticSource
) -> None:
    batch = week_source.fetch_all("BTCUSDT", "1h")
    market_store.write_batch(batch)
    market_store.resample("BTCUSDT", "1h", ["4h"], batch.start_ms, batch.end_ms)
    day = week_source.fetch("BTCUSDT", "1h", T0 + DAY, T0 + 2 * DAY)
    market_store.write_batch(day)
    starts = market_store.ohlcv("BTCUSDT", "4h").column("open_time").to_numpy()
    assert starts.shape[0] == 36 - 6
    assert not np.any((starts >= T0 + DAY) & (starts < T0 + 2 * DAY))
    # loading still works: the buckets no longer match, so it resamples the base in memory
    frame = market_store.load_frame("BTCUSDT", "4h")
    assert len(frame) == 36 and frame.complete.all()


def test_coverage_symbols_and_resume_point(
    market_store: MarketStore, week_source: SyntheticSource
) -> None:
    assert market_store.symbols() == [] and market_store.coverage() == []
    assert market_store.last_open_time("BTCUSDT", "15m") is None
    assert market_store.resume_from_ms("BTCUSDT", "15m") is None
    market_store.write_batch(week_source.fetch("BTCUSDT", "15m", T0, T0 + 2 * DAY))
    market_store.write_batch(week_source.fetch("ETHUSDT", "1h", T0, T0 + DAY))
    market_store.resample("BTCUSDT", "15m", ["1h"], T0, T0 + 2 * DAY)
    assert market_store.symbols() == ["BTCUSDT", "ETHUSDT"]
    assert market_store.last_open_time("BTCUSDT", "15m") == T0 + 2 * DAY - QUARTER
    assert market_store.resume_from_ms("BTCUSDT", "15m") == T0 + 2 * DAY
    assert market_store.coverage() == [
        {
            "symbol": "BTCUSDT",
            "timeframe": "15m",
            "first_open_time": T0,
            "last_open_time": T0 + 2 * DAY - QUARTER,
            "bars": 192,
            "resampled": False,
            "complete_bars": 192,
        },
        {
            "symbol": "BTCUSDT",
            "timeframe": "1h",
            "first_open_time": T0,
            "last_open_time": T0 + 2 * DAY - HOUR,
            "bars": 48,
            "resampled": True,
            "complete_bars": 48,
        },
        {
            "symbol": "ETHUSDT",
            "timeframe": "1h",
            "first_open_time": T0,
            "last_open_time": T0 + DAY - HOUR,
            "bars": 24,
            "resampled": False,
            "complete_bars": 24,
        },
    ]


def test_load_frame_without_data_raises(market_store: MarketStore) -> None:
    with pytest.raises(MarketDataError, match="no BTCUSDT market data to build 4h"):
        market_store.load_frame("BTCUSDT", "4h")
    market_store.write_batch(hourly_batch([1.0, 2.0], symbol="BTCUSDT"))
    with pytest.raises(MarketDataError, match="no BTCUSDT 1h bars"):
        market_store.load_frame("BTCUSDT", "1h", T0 + DAY, T0 + 2 * DAY)


def test_regime_labels_are_replaced_per_symbol(market_store: MarketStore) -> None:
    labels = pa.table(
        {
            "window_start": [T0, T0 + DAY],
            "window_end": [T0 + DAY, T0 + 2 * DAY],
            "regime": ["range", "high_vol"],
            "score": [0.1, 2.5],
        },
        schema=REGIME_SCHEMA,
    )
    assert market_store.write_regimes("BTCUSDT", labels) == 2
    assert market_store.write_regimes("ETHUSDT", labels.slice(0, 1)) == 1
    assert market_store.write_regimes("BTCUSDT", labels.slice(1, 1)) == 1
    assert market_store.regimes("BTCUSDT").to_pylist() == [
        {"window_start": T0 + DAY, "window_end": T0 + 2 * DAY, "regime": "high_vol", "score": 2.5}
    ]
    assert market_store.regimes("ETHUSDT").num_rows == 1
    bad = labels.set_column(2, "regime", pa.array(["range", "sideways"]))
    with pytest.raises(MarketDataError, match="unknown regime.*sideways"):
        market_store.write_regimes("BTCUSDT", bad)
    assert market_store.regimes("BTCUSDT").num_rows == 1


def test_memory_store_reads_after_another_repository_left_a_result_open() -> None:
    store = Store(":memory:")  # one shared connection
    market = MarketStore(store)
    market.write_batch(
        hourly_batch([100.0, 101.0, 102.0], funding={"funding_time": [T0], "rate": [1e-4]})
    )
    assert DocumentStore(store).get(Book, "missing") is None  # execute().fetchone() inside
    assert market.funding("TESTUSDT").num_rows == 1
    assert len(market.load_frame("TESTUSDT", "1h")) == 3
    store.close()

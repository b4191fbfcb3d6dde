"""BybitSource against the fake Bybit v5 server, through the real pybit client."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from pybit.unified_trading import HTTP

from factory_pipeline.errors import MarketDataError
from factory_pipeline.market.bybit import BybitSource
from factory_pipeline.market.source import MarketBatch, validate_batch
from factory_pipeline.market.synthetic import SyntheticSource
from factory_pipeline.store.market import MarketStore
from factory_pipeline_tests.fakes.bybit_server import FakeBybitServer, run_fake_bybit
from factory_pipeline_tests.market.helpers import DAY, HOUR, T0

pytestmark = pytest.mark.integration

KLINE = "/v5/market/kline"
MARK = "/v5/market/mark-price-kline"
FUNDING = "/v5/market/funding/history"
OI = "/v5/market/open-interest"


@pytest.fixture(scope="module")
def long_source() -> SyntheticSource:
    """80 days: 1920 hourly bars (2 kline pages), 240 settlements (2 funding pages)."""
    return SyntheticSource(seed=5, start_date=dt.date(2024, 1, 1), end_date=dt.date(2024, 3, 20))


def _source(server: FakeBybitServer, **kwargs: object) -> tuple[BybitSource, list[float]]:
    sleeps: list[float] = []
    source = BybitSource(server.url, sleep=sleeps.append, **kwargs)  # type: ignore[arg-type]
    return source, sleeps


def _assert_same(got: MarketBatch, expected: MarketBatch) -> None:
    for table in ("ohlcv", "mark", "funding", "open_interest"):
        assert getattr(got, table).equals(getattr(expected, table)), table


def test_pagination_across_many_pages(
    fake_bybit: FakeBybitServer, long_source: SyntheticSource
) -> None:
    expected = long_source.fetch_all("BTCUSDT", "1h")
    fake_bybit.state.load(expected)
    fake_bybit.state.now_ms = expected.end_ms + 10 * 60_000
    source, sleeps = _source(fake_bybit)
    got = source.fetch("BTCUSDT", "1h", expected.start_ms, expected.end_ms)
    validate_batch(got, source="bybit")
    _assert_same(got, expected)
    assert (got.start_ms, got.end_ms) == (expected.start_ms, expected.end_ms)
    state = fake_bybit.state
    # 1920 bars at 1000 per page: 2 full pages, then an empty page ends the walk
    assert len(state.requests_to(KLINE)) == 2
    assert len(state.requests_to(MARK)) == 2
    assert len(state.requests_to(FUNDING)) == 2  # 240 settlements, 200 per page
    assert len(state.requests_to(OI)) == -(-1920 // 200)  # cursor pages
    ends = [int(q["end"]) for q in state.requests_to(KLINE)]
    assert ends == [expected.end_ms - 1, expected.end_ms - 1000 * HOUR - 1]
    assert all(q["limit"] == "1000" and q["interval"] == "60" for q in state.requests_to(KLINE))
    assert all("startTime" in q and "endTime" in q for q in state.requests_to(FUNDING))
    assert all(q["intervalTime"] == "1h" for q in state.requests_to(OI))
    assert sleeps == []


def test_minute_bars_walk_back_page_by_page(fake_bybit: FakeBybitServer) -> None:
    source_data = SyntheticSource(3, dt.date(2024, 1, 1), dt.date(2024, 1, 3))
    expected = source_data.fetch_all("ETHUSDT", "1m")  # 4320 bars: 5 pages
    fake_bybit.state.load(expected)
    fake_bybit.state.now_ms = expected.end_ms
    got, _ = _source(fake_bybit)
    batch = got.fetch("ETHUSDT", "1m", expected.start_ms, expected.end_ms)
    _assert_same(batch, expected)
    assert len(fake_bybit.state.requests_to(KLINE)) == 5
    assert {q["intervalTime"] for q in fake_bybit.state.requests_to(OI)} == {"5min"}


def test_rate_limit_10006_is_waited_out_then_succeeds(
    fake_bybit: FakeBybitServer, week_source: SyntheticSource
) -> None:
    expected = week_source.fetch_all("SOLUSDT", "15m")
    fake_bybit.state.load(expected)
    fake_bybit.state.now_ms = expected.end_ms
    fake_bybit.state.inject("rate_limit", count=2, path=KLINE, reset_after_ms=2_000)
    source, sleeps = _source(fake_bybit)
    got = source.fetch("SOLUSDT", "15m", expected.start_ms, expected.end_ms)
    _assert_same(got, expected)
    assert len(sleeps) == 2
    assert all(0.5 < s <= 2.0 for s in sleeps)  # until the advertised reset time
    assert len(fake_bybit.state.requests_to(KLINE)) == 3


def test_a_reset_time_in_the_past_does_not_crash(
    fake_bybit: FakeBybitServer, week_source: SyntheticSource
) -> None:
    expected = week_source.fetch_all("SOLUSDT", "1h")
    fake_bybit.state.load(expected)
    fake_bybit.state.now_ms = expected.end_ms
    # plain pybit sleeps a negative time and raises ValueError on such a reply
    fake_bybit.state.inject("rate_limit", count=1, path=KLINE, reset_after_ms=-5_000)
    raw = HTTP(testnet=False, max_retries=2)
    raw.endpoint = fake_bybit.url
    with pytest.raises(ValueError, match="negative"):
        raw.get_kline(category="linear", symbol="SOLUSDT", interval="60")
    fake_bybit.state.inject("rate_limit", count=1, path=KLINE, reset_after_ms=-5_000)
    source, sleeps = _source(fake_bybit)
    _assert_same(source.fetch("SOLUSDT", "1h", expected.start_ms, expected.end_ms), expected)
    assert sleeps == [0.0]


def test_persistent_rate_limit_gives_a_clear_error(
    fake_bybit: FakeBybitServer, week_source: SyntheticSource
) -> None:
    fake_bybit.state.load(week_source.fetch_all("SOLUSDT", "1h"))
    fake_bybit.state.inject("rate_limit", count=10, path=FUNDING)
    source, sleeps = _source(fake_bybit, max_retries=3)
    with pytest.raises(MarketDataError, match=r"get_funding_rate_history page 1 .*retCode 10006"):
        source.fetch("SOLUSDT", "1h", T0, T0 + DAY)
    assert len(sleeps) == 3


def test_malformed_page_names_endpoint_and_page_and_writes_nothing(
    fake_bybit: FakeBybitServer, long_source: SyntheticSource, market_store: MarketStore
) -> None:
    expected = long_source.fetch_all("BTCUSDT", "1h")
    fake_bybit.state.load(expected)
    fake_bybit.state.now_ms = expected.end_ms
    source, _ = _source(fake_bybit)
    first = source.fetch("BTCUSDT", "1h", T0, T0 + 10 * DAY)
    market_store.write_batch(first)
    before = market_store.ohlcv("BTCUSDT", "1h")
    # page 1 is fine, page 2 of the kline walk is broken
    fake_bybit.state.inject("malformed", count=1, path=KLINE, after=1)
    with pytest.raises(MarketDataError) as info:
        market_store.write_batch(source.fetch("BTCUSDT", "1h", T0, expected.end_ms))
    message = str(info.value)
    assert "get_kline page 2" in message and "malformed page" in message
    assert "not-a-number" in message
    assert market_store.ohlcv("BTCUSDT", "1h").equals(before)
    fake_bybit.state.inject("malformed", count=1, path=OI)
    with pytest.raises(
        MarketDataError, match=r"get_open_interest page 1: malformed page, record 0"
    ):
        source.fetch("BTCUSDT", "1h", T0, T0 + DAY)


def test_http_errors_and_bad_json(
    fake_bybit: FakeBybitServer, week_source: SyntheticSource
) -> None:
    expected = week_source.fetch_all("BTCUSDT", "1h")
    fake_bybit.state.load(expected)
    fake_bybit.state.now_ms = expected.end_ms
    fake_bybit.state.inject("http_error", count=2, path=MARK, status=502)
    source, sleeps = _source(fake_bybit)
    _assert_same(source.fetch("BTCUSDT", "1h", expected.start_ms, expected.end_ms), expected)
    assert sleeps == [0.25, 0.5]  # exponential backoff on 5xx
    fake_bybit.state.inject("http_error", count=1, path=FUNDING, status=403)
    with pytest.raises(MarketDataError, match=r"get_funding_rate_history page 1 .*HTTP 403"):
        source.fetch("BTCUSDT", "1h", expected.start_ms, expected.end_ms)
    fake_bybit.state.inject("bad_json", count=1, path=KLINE)
    with pytest.raises(MarketDataError, match=r"get_kline page 1 .*decode JSON"):
        source.fetch("BTCUSDT", "1h", expected.start_ms, expected.end_ms)


def test_timeouts_are_retried(fake_bybit: FakeBybitServer, week_source: SyntheticSource) -> None:
    expected = week_source.fetch_all("ETHUSDT", "1h")
    fake_bybit.state.load(expected)
    fake_bybit.state.now_ms = expected.end_ms
    fake_bybit.state.inject("delay", count=1, path=FUNDING, delay_s=0.6)
    source, sleeps = _source(fake_bybit, timeout_s=0.2)
    _assert_same(source.fetch("ETHUSDT", "1h", expected.start_ms, expected.end_ms), expected)
    assert sleeps == [0.25]


def test_unreachable_server_is_a_market_data_error() -> None:
    with run_fake_bybit() as server:
        url = server.url
    source = BybitSource(url, sleep=lambda s: None, max_retries=1, timeout_s=0.5)
    with pytest.raises(MarketDataError, match="get_instruments_info page 1 .*network error"):
        source.fetch("BTCUSDT", "1h", T0, T0 + DAY)


def test_resume_from_the_last_stored_bar(
    fake_bybit: FakeBybitServer, long_source: SyntheticSource, market_store: MarketStore
) -> None:
    expected = long_source.fetch_all("BTCUSDT", "1h")
    fake_bybit.state.load(expected)
    fake_bybit.state.now_ms = T0 + 30 * DAY + 30 * 60_000  # half-way through a bar
    source, _ = _source(fake_bybit)
    first = source.fetch("BTCUSDT", "1h", expected.start_ms, expected.end_ms)
    assert first.end_ms == T0 + 30 * DAY  # the forming bar is not fetched
    market_store.write_batch(first)
    assert market_store.last_open_time("BTCUSDT", "1h") == T0 + 30 * DAY - HOUR

    fake_bybit.state.now_ms = expected.end_ms
    resume = market_store.resume_from_ms("BTCUSDT", "1h")
    incremental = BybitSource(fake_bybit.url, resume_from_ms=resume)
    n_before = len(fake_bybit.state.requests_to(KLINE))
    batch = incremental.fetch("BTCUSDT", "1h", expected.start_ms, expected.end_ms)
    assert batch.start_ms == resume == T0 + 30 * DAY
    assert batch.bars == 50 * 24
    new_requests = fake_bybit.state.requests_to(KLINE)[n_before:]
    assert len(new_requests) == 2 and {q["start"] for q in new_requests} == {str(resume)}
    market_store.write_batch(batch)
    stored = market_store.ohlcv("BTCUSDT", "1h")
    np.testing.assert_array_equal(
        stored.column("open_time").to_numpy(), expected.ohlcv.column("open_time").to_numpy()
    )
    np.testing.assert_array_equal(
        stored.column("close").to_numpy(), expected.ohlcv.column("close").to_numpy()
    )
    assert market_store.funding("BTCUSDT").equals(expected.funding)


def test_unknown_symbol_and_listing_time(
    fake_bybit: FakeBybitServer, week_source: SyntheticSource
) -> None:
    expected = week_source.fetch_all("BTCUSDT", "1h")
    fake_bybit.state.load(expected, launchTime=str(T0 + 2 * DAY + 1))
    fake_bybit.state.now_ms = expected.end_ms
    source, _ = _source(fake_bybit)
    with pytest.raises(MarketDataError, match="no instrument 'XRPUSDT'"):
        source.fetch("XRPUSDT", "1h", T0, T0 + DAY)
    batch = source.fetch("BTCUSDT", "1h", T0, expected.end_ms)
    assert batch.start_ms == T0 + 2 * DAY + HOUR  # first whole bar after the listing
    assert batch.bars == 4 * 24 - 1
    assert source.funding_interval_ms("BTCUSDT") == 8 * HOUR


def test_pagination_that_does_not_move_back_is_an_error():
    """A venue that answers the same page again would loop forever: refuse it, naming it."""
    import numpy as np

    from factory_pipeline.errors import MarketDataError
    from factory_pipeline.market.bybit import BybitSource

    same_page = np.array([[3_000.0, 1.0], [2_000.0, 1.0]])
    with pytest.raises(MarketDataError, match=r"get_kline page 2: pagination does not move back"):
        BybitSource._walk_back("get_kline", "bar", lambda page, end: same_page, 0, 10_000, 2)
    walked = BybitSource._walk_back(
        "get_kline", "bar", lambda page, end: same_page - (page - 1) * 2_000, 0, 10_000, 2
    )
    assert walked[:, 0].min() <= 0  # stopped once a page reached the start

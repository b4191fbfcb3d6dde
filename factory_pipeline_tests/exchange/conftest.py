"""Fixtures for the local exchange tests: hand-written bars, a funded account, pybit clients."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from pybit.unified_trading import HTTP

from factory_pipeline.exchange.local import LocalExchangeServer, LocalExchangeState
from factory_pipeline.exchange.local.server import run_local_exchange
from factory_pipeline.market.source import MarketBatch, make_batch

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
KEY = "test-key"
SECRET = "test-secret"
SYMBOL = "BTCUSDT"
SLIPPAGE_BPS = 10.0
TAKER = 0.00055
MAKER = 0.0002

#: (open, high, low, close) per hourly bar from T0; chosen so each scenario's outcome can be
#: worked out by hand.
BARS: list[tuple[float, float, float, float]] = [
    (100.0, 101.0, 99.0, 100.0),  # 0
    (100.0, 102.0, 99.5, 101.0),  # 1
    (101.0, 103.0, 100.0, 102.0),  # 2
    (102.0, 102.5, 97.0, 98.0),  # 3  a drop
    (98.0, 99.0, 96.0, 97.0),  # 4
    (97.0, 105.0, 96.5, 104.0),  # 5  a rally
    (104.0, 106.0, 103.0, 105.0),  # 6
    (105.0, 105.5, 94.0, 95.0),  # 7  wide bar: touches both sides
    (95.0, 96.0, 94.0, 95.0),  # 8
    (93.0, 94.0, 92.0, 93.5),  # 9  gap down
] + [(95.0, 96.0, 94.0, 95.0)] * 14
FUNDING_TIME = T0 + 8 * HOUR
FUNDING_RATE = 0.0001


def make_bars(
    bars: list[tuple[float, float, float, float]] = BARS,
    *,
    symbol: str = SYMBOL,
    start_ms: int = T0,
) -> MarketBatch:
    arr = np.asarray(bars, dtype=np.float64)
    n = arr.shape[0]
    return make_batch(
        symbol,
        "1h",
        start_ms,
        start_ms + n * HOUR,
        ohlcv={
            "open_time": start_ms + np.arange(n, dtype=np.int64) * HOUR,
            "open": arr[:, 0],
            "high": arr[:, 1],
            "low": arr[:, 2],
            "close": arr[:, 3],
            "volume": np.full(n, 10.0),
        },
        funding={
            "funding_time": np.array([FUNDING_TIME], dtype=np.int64),
            "rate": np.array([FUNDING_RATE]),
        },
    )


def new_state(**settings: object) -> LocalExchangeState:
    state = LocalExchangeState(now_ms=T0 + HOUR, slippage_bps=SLIPPAGE_BPS, **settings)
    state.load(make_bars())
    state.add_account(KEY, SECRET, usdt=10_000.0, taker_fee=TAKER, maker_fee=MAKER)
    return state


@pytest.fixture
def venue() -> Iterator[LocalExchangeServer]:
    """A running exchange; the clock sits on bar 0's close (T0 + 1h)."""
    with run_local_exchange(new_state()) as server:
        yield server


def client(
    server: LocalExchangeServer,
    *,
    key: str = KEY,
    secret: str = SECRET,
    retry: bool = False,
    **options: object,
) -> HTTP:
    """The real pybit client pointed at the local exchange.

    ``retry=False`` turns pybit's own retries of 10002/10006 off (``retry_codes`` needs a
    non-empty set to replace its defaults) so the retCode surfaces as InvalidRequestError.
    """
    settings: dict[str, object] = {"max_retries": 1, "retry_delay": 0}
    if not retry:
        settings["retry_codes"] = {-1}
    settings.update(options)
    session = HTTP(testnet=False, api_key=key, api_secret=secret, **settings)
    session.endpoint = server.url
    return session

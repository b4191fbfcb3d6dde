"""Fixtures: a local exchange on hand-written bars, a funded account, a gateway over pybit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from factory_pipeline.exchange.local import LocalExchangeServer, LocalExchangeState
from factory_pipeline.exchange.local.server import run_local_exchange
from factory_pipeline.market.source import MarketBatch, make_batch
from factory_pipeline.store import Store
from factory_pipeline.trading import KillSwitch, OrderGateway, PybitBroker, RiskLimits

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
KEY = "gateway-test-key"
SECRET = "gateway-test-secret"
SYMBOL = "BTCUSDT"
SLIPPAGE_BPS = 10.0
TAKER = 0.00055
MAKER = 0.0002

#: Hourly (open, high, low, close) from T0. The clock starts on bar 0's close, so a market order
#: fills at bar 1's open (100.0) +/- 10 bps: buys at 100.1, sells at 99.9.
BARS: list[tuple[float, float, float, float]] = [
    (100.0, 101.0, 99.0, 100.0),  # 0
    (100.0, 101.0, 99.5, 100.5),  # 1
    (100.5, 101.0, 97.0, 98.0),  # 2  a drop: a resting buy at 98.5 fills, longs lose
    (98.0, 98.5, 90.0, 90.0),  # 3  a crash
] + [(90.0, 91.0, 89.0, 90.0)] * 20

#: Limits small enough to test their boundaries with few orders.
LIMITS = RiskLimits(
    max_order_notional_usdt=1_000.0,
    max_system_notional_usdt=1_500.0,
    max_total_notional_usdt=3_000.0,
    max_leverage=3.0,
    max_open_positions=5,
    max_daily_loss_system_usdt=200.0,
    max_daily_loss_total_usdt=300.0,
    max_stale_bars=2,
    max_consecutive_venue_errors=4,
)


def make_bars(symbol: str = SYMBOL) -> MarketBatch:
    arr = np.asarray(BARS, dtype=np.float64)
    n = arr.shape[0]
    return make_batch(
        symbol,
        "1h",
        T0,
        T0 + n * HOUR,
        ohlcv={
            "open_time": T0 + np.arange(n, dtype=np.int64) * HOUR,
            "open": arr[:, 0],
            "high": arr[:, 1],
            "low": arr[:, 2],
            "close": arr[:, 3],
            "volume": np.full(n, 10.0),
        },
    )


def new_state() -> LocalExchangeState:
    state = LocalExchangeState(now_ms=T0 + HOUR, slippage_bps=SLIPPAGE_BPS)
    state.load(make_bars())
    state.add_account(KEY, SECRET, usdt=10_000.0, taker_fee=TAKER, maker_fee=MAKER)
    return state


@pytest.fixture
def venue() -> Iterator[LocalExchangeServer]:
    with run_local_exchange(new_state()) as server:
        yield server


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "factory.duckdb"


def make_gateway(
    server: LocalExchangeServer,
    db_path: Path,
    *,
    limits: RiskLimits = LIMITS,
    timeout_s: float = 2.0,
    **options: object,
) -> OrderGateway:
    """A fresh gateway (new Store object, new pybit session): what a restart builds."""
    store = Store(db_path)
    broker = PybitBroker(base_url=server.url, api_key=KEY, api_secret=SECRET, timeout_s=timeout_s)
    state = server.state
    return OrderGateway(
        broker,
        store,
        limits=limits,
        kill_switch=KillSwitch(store, clock_ms=state.clock),
        clock_ms=state.clock,
        max_backoff_s=0.5,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def gateway(venue: LocalExchangeServer, db_path: Path) -> OrderGateway:
    return make_gateway(venue, db_path)


def creates(server: LocalExchangeServer) -> int:
    """How many order-create requests reached the venue."""
    return len(server.state.requests_to("/v5/order/create"))


def venue_orders(server: LocalExchangeServer, link_id: str) -> list:
    state = server.state
    with state.lock:
        return [
            o
            for account in state.accounts.values()
            for o in account.orders.values()
            if o.order_link_id == link_id
        ]

"""Kill switch with the gateway and the local exchange: trips, blocking, latching, reset."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory_pipeline.exchange.local import LocalExchangeServer
from factory_pipeline.trading import OrderGateway, OrderRequest, apply_override
from factory_pipeline_tests.trading.conftest import (
    HOUR,
    LIMITS,
    SYMBOL,
    T0,
    creates,
    make_gateway,
    venue_orders,
)


def _order(side: str, qty: float, system: str = "sys-a", leg: str = "entry", **kw: object):
    return OrderRequest(system, SYMBOL, side, qty, T0 + HOUR, leg, 100.0, **kw)  # type: ignore[arg-type]


def test_trip_cancels_orders_blocks_entries_allows_exits_and_latches(
    venue: LocalExchangeServer, db_path: Path
) -> None:
    gateway = make_gateway(venue, db_path)
    assert gateway.submit(_order("Buy", 2.0)).status == "filled"
    resting = gateway.submit(_order("Buy", 1.0, leg="limit", order_type="Limit", price=95.0))
    assert resting.status == "placed"
    gateway.kill_switch.trip("drill")
    assert venue_orders(venue, resting.order_link_id)[0].status == "Cancelled"
    sent = creates(venue)
    blocked = gateway.submit(_order("Buy", 1.0, leg="entry-2"))
    assert blocked.status == "blocked" and "kill switch" in blocked.reason
    assert creates(venue) == sent  # nothing left for the venue
    # a restart keeps it latched
    restarted = make_gateway(venue, db_path)
    assert restarted.kill_switch.is_tripped()
    assert restarted.submit(_order("Sell", 1.0, system="sys-b")).status == "blocked"
    # reducing the system's own position is allowed while tripped
    exit_outcome = restarted.submit(_order("Sell", 2.0, leg="exit"))
    assert exit_outcome.status == "filled"
    assert restarted.system_position("sys-a", SYMBOL) == pytest.approx(0.0)
    # only a human reset re-opens entries; the blocked decision may then be sent
    restarted.kill_switch.reset("alice", "drill over")
    assert make_gateway(venue, db_path).submit(_order("Buy", 1.0, leg="entry-2")).status == "filled"


def test_consecutive_venue_errors_trip_the_switch(
    venue: LocalExchangeServer, db_path: Path
) -> None:
    gateway = make_gateway(venue, db_path)
    venue.state.inject("http_error", count=100)
    first = gateway.submit(_order("Buy", 1.0, leg="a"))  # instrument lookup: 2 failures
    assert first.status == "rejected" and not gateway.kill_switch.is_tripped()
    second = gateway.submit(_order("Buy", 1.0, leg="b"))  # 2 more: 4 = the limit
    assert second.status == "rejected"
    assert gateway.kill_switch.is_tripped()
    assert "4 consecutive venue errors" in gateway.kill_switch.state().reason
    venue.state.faults.clear()
    assert gateway.submit(_order("Buy", 1.0, leg="c")).status == "blocked"
    assert make_gateway(venue, db_path).kill_switch.is_tripped()


def test_stale_market_data_trips(venue: LocalExchangeServer, gateway: OrderGateway) -> None:
    venue.state.advance_to(T0 + 3 * HOUR)
    assert gateway.check_data_freshness(last_bar_close_ms=T0 + HOUR, bar_ms=HOUR)  # 2 bars: ok
    assert not gateway.kill_switch.is_tripped()
    venue.state.advance_to(T0 + 3 * HOUR + 1)
    assert not gateway.check_data_freshness(last_bar_close_ms=T0 + HOUR, bar_ms=HOUR)
    assert gateway.kill_switch.is_tripped()
    assert gateway.submit(_order("Buy", 1.0)).status == "blocked"


def test_daily_loss_from_the_high_water_mark_trips_and_blocks_the_system(
    venue: LocalExchangeServer, db_path: Path
) -> None:
    limits = apply_override(
        LIMITS,
        {"max_daily_loss_system_usdt": 100.0, "max_daily_loss_total_usdt": 299.0},
        source="test",
    )
    gateway = make_gateway(venue, db_path, limits=limits)
    for system in ("sys-a", "sys-b"):
        assert gateway.submit(_order("Buy", 10.0, system=system, leg="e1")).status == "filled"
        assert gateway.submit(_order("Buy", 5.0, system=system, leg="e2")).status == "filled"
    start = gateway.check_equity()  # high-water mark of the day (after fees)
    assert start["account"] == pytest.approx(0.0)
    assert not gateway.kill_switch.is_tripped()
    venue.state.advance_to(T0 + 4 * HOUR)  # bar 3 closes at 90: 30 units x (100 - 90) lost
    losses = gateway.check_equity()
    assert losses["account"] == pytest.approx(30 * (100.0 - 90.0))  # mark 100 -> mark 90
    assert gateway.kill_switch.is_tripped()
    assert "daily loss" in gateway.kill_switch.state().reason
    # the system's own daily loss (15 x 10.1 > 100) blocks its entries even after a reset ...
    gateway.kill_switch.reset("alice", "reviewed")
    late = OrderRequest("sys-a", SYMBOL, "Buy", 1.0, T0 + 4 * HOUR, "e3", 90.0)
    outcome = gateway.submit(late)
    assert outcome.status == "rejected" and "max_daily_loss_system_usdt" in outcome.reason
    # ... but not its exit
    exit_all = OrderRequest("sys-a", SYMBOL, "Sell", 15.0, T0 + 4 * HOUR, "x", 90.0)
    assert gateway.submit(exit_all).status == "filled"

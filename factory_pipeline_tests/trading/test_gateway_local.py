"""The gateway with the real pybit client against the local exchange: happy paths and faults.

Expected prices are derived by hand from the bars in conftest (fill at the next bar's open
+/- 10 bps slippage, taker fee 0.055 %), not read back from the code under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from factory_pipeline.exchange.local import LocalExchangeServer
from factory_pipeline.trading import OrderGateway, OrderRequest, TradingLedger
from factory_pipeline_tests.trading.conftest import (
    HOUR,
    SYMBOL,
    T0,
    TAKER,
    creates,
    make_gateway,
    venue_orders,
)

BUY_FILL = 100.0 * (1 + 10 / 10_000)  # bar 1 open + slippage
SELL_FILL = 100.0 * (1 - 10 / 10_000)


def _buy(qty: float, system: str = "sys-a", leg: str = "entry", **kw: object) -> OrderRequest:
    return OrderRequest(system, SYMBOL, "Buy", qty, T0 + HOUR, leg, 100.0, **kw)  # type: ignore[arg-type]


def _sell(qty: float, system: str = "sys-a", leg: str = "exit", **kw: object) -> OrderRequest:
    return OrderRequest(system, SYMBOL, "Sell", qty, T0 + HOUR, leg, 100.0, **kw)  # type: ignore[arg-type]


def _venue_position(server: LocalExchangeServer) -> float:
    rows = [r for r in server.state.accounts.values()]
    total = 0.0
    for account in rows:
        pos = account.positions.get(SYMBOL)
        if pos is not None and pos.size:
            total += pos.size if pos.side == "Buy" else -pos.size
    return total


def test_market_buy_fills_and_is_recorded(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    outcome = gateway.submit(_buy(1.2345))
    assert outcome.status == "filled"
    assert outcome.qty == pytest.approx(1.234)  # rounded DOWN to the 0.001 step
    assert outcome.filled_qty == pytest.approx(1.234)
    assert outcome.avg_price == pytest.approx(BUY_FILL)
    assert outcome.fee == pytest.approx(1.234 * BUY_FILL * TAKER)
    assert gateway.system_position("sys-a", SYMBOL) == pytest.approx(1.234)
    assert _venue_position(venue) == pytest.approx(1.234)
    # equity: capital - fee, marked at the fill price
    assert gateway.system_equity("sys-a") == pytest.approx(10_000.0 - outcome.fee)
    intent = gateway.ledger.get_intent(outcome.order_link_id)
    assert intent is not None and intent.status == "filled" and intent.sent
    assert intent.limits_hash == gateway.limits_hash


def test_rerun_of_the_same_decision_sends_nothing(
    venue: LocalExchangeServer, db_path: Path
) -> None:
    first = make_gateway(venue, db_path).submit(_buy(1.0))
    sent = creates(venue)
    again = make_gateway(venue, db_path).submit(_buy(1.0))  # a restarted process
    assert first.status == "filled" and again.status == "duplicate"
    assert again.order_link_id == first.order_link_id and again.filled_qty == first.filled_qty
    assert creates(venue) == sent
    assert len(venue_orders(venue, first.order_link_id)) == 1


def test_below_minimums_is_rejected_without_a_request(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    venue.state.set_instrument(SYMBOL, lotSizeFilter={"minOrderQty": "0.01"})
    gateway.broker._instruments.clear()  # type: ignore[attr-defined]
    below_qty = gateway.submit(_buy(0.0099, leg="a"))  # rounds to 0.009 < 0.01
    below_notional = gateway.submit(_buy(0.049, leg="b"))  # 0.049 x 100 = 4.9 < 5 USDT
    assert below_qty.status == "rejected" and "minimum order qty" in below_qty.reason
    assert below_notional.status == "rejected" and "minimum notional" in below_notional.reason
    assert creates(venue) == 0
    assert gateway.submit(_buy(0.05, leg="c")).status == "filled"  # exactly 5 USDT passes


def test_order_notional_cap_boundary(venue: LocalExchangeServer, gateway: OrderGateway) -> None:
    # max_order_notional_usdt = 1000 at reference price 100: 10.000 passes, 10.001 fails
    over = gateway.submit(_buy(10.001, leg="over"))
    assert over.status == "rejected" and "max_order_notional_usdt" in over.reason
    assert creates(venue) == 0
    at_cap = gateway.submit(_buy(10.0, leg="at"))
    assert at_cap.status == "filled"


def test_system_notional_cap_and_exits_always_pass(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    assert gateway.submit(_buy(10.0, leg="e1")).status == "filled"
    assert gateway.submit(_buy(5.0, leg="e2")).status == "filled"  # 1500 == system cap
    over = gateway.submit(_buy(0.1, leg="e3"))
    assert over.status == "rejected" and "max_system_notional_usdt" in over.reason
    # closing 15 units is 1500 USDT > the 1000 order cap, but a reduction always passes
    assert gateway.submit(_sell(15.0)).status == "filled"
    assert gateway.system_position("sys-a", SYMBOL) == pytest.approx(0.0)


def test_accept_then_drop_places_exactly_one_order(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    venue.state.inject("drop_reply", path="/v5/order/create")
    outcome = gateway.submit(_buy(1.0))
    assert outcome.status == "filled" and outcome.filled_qty == pytest.approx(1.0)
    assert "resolved after" in outcome.reason
    assert creates(venue) == 1  # resolved by lookup, not by a resend
    assert len(venue_orders(venue, outcome.order_link_id)) == 1
    assert _venue_position(venue) == pytest.approx(1.0)
    assert gateway.system_position("sys-a", SYMBOL) == pytest.approx(1.0)


def test_timeout_while_the_venue_is_slow_places_exactly_one_order(
    venue: LocalExchangeServer, db_path: Path
) -> None:
    gateway = make_gateway(venue, db_path, timeout_s=0.2)
    venue.state.inject("delay", path="/v5/order/create", delay_s=0.5)
    outcome = gateway.submit(_buy(1.0))
    assert outcome.status == "filled"
    assert len(venue_orders(venue, outcome.order_link_id)) == 1
    assert _venue_position(venue) == pytest.approx(1.0)
    assert gateway.system_position("sys-a", SYMBOL) == pytest.approx(1.0)


def test_http_5xx_is_resolved_and_resent_with_the_same_id(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    venue.state.inject("http_error", path="/v5/order/create", status=502)
    outcome = gateway.submit(_buy(1.0))
    assert outcome.status == "filled"
    sent = venue.state.requests_to("/v5/order/create")
    assert len(sent) == 2  # the 502 (not processed) and the resend
    assert len(venue_orders(venue, outcome.order_link_id)) == 1
    intent = gateway.ledger.get_intent(outcome.order_link_id)
    assert intent is not None and intent.attempts == 2


def test_persistent_5xx_leaves_an_unknown_intent_that_reconciliation_resolves(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    venue.state.inject("http_error", path="/v5/order/create", count=3)
    outcome = gateway.submit(_buy(1.0))
    assert outcome.status == "rejected" and outcome.intent_status == "unknown"
    assert "unresolved" in outcome.reason
    report = gateway.reconcile()
    assert [r.kind for r in report.records] == ["intent_missing_on_venue"]
    intent = gateway.ledger.get_intent(outcome.order_link_id)
    assert intent is not None and intent.status == "rejected" and not intent.sent
    # the decision was never executed, so re-running it may send it now
    assert gateway.submit(_buy(1.0)).status == "filled"


def test_rate_limit_waits_for_the_reset_and_retries(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    venue.state.inject("rate_limit", path="/v5/order/create", reset_after_ms=50)
    venue.state.inject("rate_limit", path="/v5/order/create", reset_after_ms=-5_000)  # past
    outcome = gateway.submit(_buy(1.0))
    assert outcome.status == "filled"
    assert creates(venue) == 3
    assert len(venue_orders(venue, outcome.order_link_id)) == 1


def test_clock_skew_resyncs_and_retries_once(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    venue.state.inject("clock_skew", path="/v5/order/create", offset_ms=30_000)
    outcome = gateway.submit(_buy(1.0))
    assert outcome.status == "filled"
    assert creates(venue) == 2
    assert len(venue.state.requests_to("/v5/market/time")) == 1


def test_a_venue_rejection_is_final_and_recorded(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    # one-way mode: sys-a long 1 and sys-b short 2 net to a venue SHORT of 1, so sys-a's
    # reduce-only Sell (it reduces sys-a's own position) would grow the venue short: refused
    assert gateway.submit(_buy(1.0, system="sys-a")).status == "filled"
    assert gateway.submit(_sell(2.0, system="sys-b", leg="entry")).status == "filled"
    outcome = gateway.submit(_sell(1.0, system="sys-a", reduce_only=True))
    assert outcome.status == "rejected" and "retCode" in outcome.reason
    assert creates(venue) == 3  # sent once, not retried
    intent = gateway.ledger.get_intent(outcome.order_link_id)
    assert intent is not None and intent.status == "rejected" and intent.sent
    assert gateway.submit(_sell(1.0, system="sys-a", reduce_only=True)).status == "duplicate"
    assert creates(venue) == 3


def test_110072_counts_as_already_placed(venue: LocalExchangeServer, gateway: OrderGateway) -> None:
    request = _buy(1.0)
    # the order reached the venue (e.g. from a run whose store was lost) but not this store
    gateway.broker.place_order(
        {
            "symbol": SYMBOL,
            "side": "Buy",
            "orderType": "Market",
            "qty": "1.000",
            "orderLinkId": request.order_link_id,
            "positionIdx": 0,
        }
    )
    outcome = gateway.submit(request)
    assert outcome.status == "filled" and "110072" in outcome.reason
    assert len(venue_orders(venue, request.order_link_id)) == 1
    assert gateway.system_position("sys-a", SYMBOL) == pytest.approx(1.0)


def test_limit_order_rests_then_reconciliation_adopts_the_fill(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    outcome = gateway.submit(_buy(2.0, order_type="Limit", price=98.53))
    assert outcome.status == "placed" and outcome.filled_qty == 0
    order = venue_orders(venue, outcome.order_link_id)[0]
    assert order.price == pytest.approx(98.5)  # rounded to the 0.1 tick
    venue.state.advance_to(T0 + 3 * HOUR)  # bar 2 trades down to 97
    report = gateway.reconcile()
    kinds = [r.kind for r in report.records]
    assert kinds == ["intent_updated"] and report.clean
    assert report.fills_synced == 1
    intent = gateway.ledger.get_intent(outcome.order_link_id)
    assert intent is not None and intent.status == "filled"
    assert gateway.system_position("sys-a", SYMBOL) == pytest.approx(2.0)


def test_systems_sharing_a_symbol_reconcile_against_one_venue_position(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    assert gateway.submit(_buy(3.0, system="sys-a")).status == "filled"
    assert gateway.submit(_sell(1.0, system="sys-b", leg="entry")).status == "filled"
    assert _venue_position(venue) == pytest.approx(2.0)  # one-way mode: netted
    assert gateway.system_position("sys-a", SYMBOL) == pytest.approx(3.0)
    assert gateway.system_position("sys-b", SYMBOL) == pytest.approx(-1.0)
    report = gateway.reconcile()
    assert report.clean and report.records == []


def test_a_store_that_disagrees_with_the_venue_adopts_the_venue_and_flags(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    from factory_pipeline.schemas.trading import Fill

    gateway.submit(_buy(3.0, system="sys-a"))
    gateway.submit(_sell(1.0, system="sys-b", leg="entry"))
    ledger: TradingLedger = gateway.ledger
    ledger.add_fills(
        [
            Fill(
                exec_id="ghost-1",
                order_link_id=None,
                order_id=None,
                system_id="sys-a",
                symbol=SYMBOL,
                side="Buy",
                qty=0.5,
                price=100.0,
                fee=0.0,
                exec_time_ms=T0 + HOUR,
            )
        ]
    )
    report = gateway.reconcile()
    mismatch = [r for r in report.records if r.kind == "position_mismatch"]
    assert len(mismatch) == 1
    assert mismatch[0].venue_value == pytest.approx(2.0)
    assert mismatch[0].store_value == pytest.approx(2.5)
    assert mismatch[0].system_ids == ["sys-a", "sys-b"]
    assert sorted(report.flagged_systems) == ["sys-a", "sys-b"]
    assert set(gateway.flagged_systems()) == {"sys-a", "sys-b"}
    assert gateway.reconcile().records == []  # adopted: the next pass is clean


def test_unknown_fill_is_kept_unattributed_and_recorded(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    gateway.broker.place_order(
        {
            "symbol": SYMBOL,
            "side": "Buy",
            "orderType": "Market",
            "qty": "0.500",
            "orderLinkId": "manual-1",
            "positionIdx": 0,
        }
    )
    report = gateway.reconcile()
    assert [r.kind for r in report.records] == ["unattributed_fill"]
    assert report.records[0].order_link_id == "manual-1"
    assert gateway.reconcile().records == []  # recorded once


def test_restart_mid_order_is_reconciled(venue: LocalExchangeServer, db_path: Path) -> None:
    """The intent was committed, the order reached the venue, then the process died."""
    first = make_gateway(venue, db_path)
    request = _buy(1.0)
    rules = first.broker.instrument(SYMBOL)
    intent = first._new_intent(request, 1.0, status="pending", sent=True)
    first.ledger.save_intent(intent)
    first.broker.place_order(first._order_params(intent, rules))  # ... and no reply was read
    restarted = make_gateway(venue, db_path)
    report = restarted.reconcile()
    assert [r.kind for r in report.records] == ["intent_updated"]
    assert report.intents_resolved == 1 and report.fills_synced == 1
    assert restarted.system_position("sys-a", SYMBOL) == pytest.approx(1.0)
    assert restarted.submit(request).status == "duplicate"
    assert creates(venue) == 1


def test_restart_before_the_reply_resumes_by_lookup(
    venue: LocalExchangeServer, db_path: Path
) -> None:
    """Same crash, but the next submit (not reconciliation) finds and settles the order."""
    first = make_gateway(venue, db_path)
    request = _buy(1.0)
    rules = first.broker.instrument(SYMBOL)
    intent = first._new_intent(request, 1.0, status="pending", sent=True)
    first.ledger.save_intent(intent)
    first.broker.place_order(first._order_params(intent, rules))
    outcome = make_gateway(venue, db_path).submit(request)
    assert outcome.status == "filled" and outcome.avg_price == pytest.approx(BUY_FILL)
    assert creates(venue) == 1


def test_cancel_a_resting_order_and_unknown_open_orders_are_recorded(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    resting = gateway.submit(_buy(1.0, leg="limit", order_type="Limit", price=95.0))
    assert resting.status == "placed"
    cancelled = gateway.cancel(resting.order_link_id)
    assert cancelled.intent_status == "cancelled" and cancelled.status == "rejected"
    assert venue_orders(venue, resting.order_link_id)[0].status == "Cancelled"
    gateway.broker.place_order(
        {
            "symbol": SYMBOL,
            "side": "Buy",
            "orderType": "Limit",
            "qty": "1.000",
            "price": "90.0",
            "orderLinkId": "human-order",
            "positionIdx": 0,
        }
    )
    report = gateway.reconcile()
    assert [(r.kind, r.order_link_id) for r in report.records] == [
        ("unknown_open_order", "human-order")
    ]
    assert venue_orders(venue, "human-order")[0].status == "New"  # left alone


def test_undecodable_reply_is_ambiguous_and_resolved(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    venue.state.inject("bad_json", path="/v5/order/create")
    outcome = gateway.submit(_buy(1.0))
    assert outcome.status == "filled"
    assert len(venue_orders(venue, outcome.order_link_id)) == 1
    assert _venue_position(venue) == pytest.approx(1.0)


def test_faults_on_reads_are_retried_within_bounds(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    venue.state.inject("rate_limit", path="/v5/execution/list", reset_after_ms=20)
    venue.state.inject("clock_skew", path="/v5/order/realtime", offset_ms=30_000)
    outcome = gateway.submit(_buy(1.0))
    assert outcome.status == "filled"
    assert gateway.system_position("sys-a", SYMBOL) == pytest.approx(1.0)  # fills recorded
    venue.state.inject("http_error", path="/v5/position/list")
    assert gateway.reconcile().records == []
    assert not gateway.kill_switch.is_tripped()


def test_unreadable_kill_switch_blocks_entries_without_asking_the_venue(
    venue: LocalExchangeServer, gateway: OrderGateway
) -> None:
    with gateway.store.connect() as con:
        con.execute("DROP TABLE trading_killswitch_events")
    before = len(venue.state.requests)
    outcome = gateway.submit(_buy(1.0))
    assert outcome.status == "blocked" and "unreadable" in outcome.reason
    assert len(venue.state.requests) == before


def test_broker_amend_and_wire_formats(venue: LocalExchangeServer, gateway: OrderGateway) -> None:
    resting = gateway.submit(_buy(1.0, leg="limit", order_type="Limit", price=95.0))
    gateway.broker.amend_order(SYMBOL, resting.order_link_id, price="96.5", qty="2.000")
    order = venue_orders(venue, resting.order_link_id)[0]
    assert (order.price, order.qty) == (pytest.approx(96.5), pytest.approx(2.0))
    rules = gateway.broker.instrument(SYMBOL)
    assert (rules.qty_step, rules.min_qty, rules.min_notional, rules.tick_size) == (
        0.001,
        0.001,
        5.0,
        0.1,
    )
    assert gateway.broker.wallet_equity() == pytest.approx(10_000.0)  # nothing filled yet
    assert [o["orderLinkId"] for o in gateway.broker.open_orders()] == [resting.order_link_id]

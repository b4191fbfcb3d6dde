"""One bar close's orders through ``OrderGateway.bar_close``, and the pinned memos they rely on.

Inside the block market orders are acknowledged and settled together at its end; every figure
is checked against what a fresh, unpinned read of the store (or a per-order submit) gives.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from factory_pipeline.exchange.local import LocalExchangeServer
from factory_pipeline.schemas.trading import Fill, OrderIntent
from factory_pipeline.store import Store
from factory_pipeline.trading import KillSwitch, OrderGateway, OrderRequest, TradingLedger
from factory_pipeline.trading.broker import _is_loopback
from factory_pipeline.trading.ledger import with_pending
from factory_pipeline_tests.trading.conftest import (
    HOUR,
    LIMITS,
    SYMBOL,
    T0,
    TAKER,
    creates,
    make_gateway,
)

BUY_FILL = 100.0 * (1 + 10 / 10_000)
DECISION = T0 + HOUR


def _buy(qty: float, system: str, leg: str = "entry") -> OrderRequest:
    return OrderRequest(system, SYMBOL, "Buy", qty, DECISION, leg, 100.0)


def _fresh_positions(db_path: Path) -> dict:
    """Positions read by a new Store object outside any pin (no memo can answer)."""
    return TradingLedger(Store(db_path)).positions()


# --- the bar-close block ------------------------------------------------------------------------


def test_orders_in_a_bar_close_are_acknowledged_then_settled_together(
    venue: LocalExchangeServer, gateway: OrderGateway, db_path: Path
) -> None:
    with gateway.bar_close(DECISION) as settled:
        first = gateway.submit(_buy(1.0, "sys-a"))
        second = gateway.submit(_buy(2.0, "sys-b"))
        assert (first.status, second.status) == ("placed", "placed")
        # acknowledged, not yet settled: the stored intents are still pending
        assert gateway.ledger.get_intent(first.order_link_id).status == "pending"
        assert _fresh_positions(db_path) == {}
        # ...but the system's own position already counts its order on the way
        assert gateway.system_position("sys-b", SYMBOL) == pytest.approx(2.0)
    assert {k: v.status for k, v in settled.items()} == {
        first.order_link_id: "filled",
        second.order_link_id: "filled",
    }
    assert settled[second.order_link_id].avg_price == pytest.approx(BUY_FILL)
    assert settled[second.order_link_id].fee == pytest.approx(2.0 * BUY_FILL * TAKER)
    fresh = _fresh_positions(db_path)
    assert fresh[("sys-a", SYMBOL)].qty == pytest.approx(1.0)
    assert fresh[("sys-b", SYMBOL)].avg_price == pytest.approx(BUY_FILL)
    stored = TradingLedger(Store(db_path)).get_intent(second.order_link_id)
    assert stored.status == "filled" and stored.filled_qty == pytest.approx(2.0)
    # two venue reads settled both orders: no per-order lookups
    assert len(venue.state.requests_to("/v5/order/history")) == 1
    assert len(venue.state.requests_to("/v5/execution/list")) == 1
    assert len(venue.state.requests_to("/v5/order/realtime")) == 0


def test_risk_checks_in_a_bar_close_count_orders_not_yet_settled(
    venue: LocalExchangeServer, db_path: Path
) -> None:
    """max_total_notional 3,000: three 900-notional orders pass (2,700), the fourth (3,600)
    must not, although no fill of the first three is stored when it is checked."""
    gateway = make_gateway(venue, db_path)
    with gateway.bar_close(DECISION) as settled:
        outcomes = [gateway.submit(_buy(9.0, f"sys-{k}")) for k in range(4)]
    assert [o.status for o in outcomes] == ["placed", "placed", "placed", "rejected"]
    assert "max_total_notional_usdt 3600 exceeds" in outcomes[3].reason
    assert creates(venue) == 3
    assert all(settled[o.order_link_id].status == "filled" for o in outcomes[:3])


def test_a_resubmitted_decision_in_a_later_bar_close_sends_nothing(
    venue: LocalExchangeServer, gateway: OrderGateway, db_path: Path
) -> None:
    with gateway.bar_close(DECISION):
        gateway.submit(_buy(1.0, "sys-a"))
    restarted = make_gateway(venue, db_path)
    with restarted.bar_close(DECISION) as settled:
        again = restarted.submit(_buy(1.0, "sys-a"))
    assert again.status == "duplicate" and settled == {}
    assert creates(venue) == 1


def test_settlement_falls_back_to_per_order_lookups_when_the_batch_reads_fail(
    venue: LocalExchangeServer, gateway: OrderGateway, db_path: Path
) -> None:
    with gateway.bar_close(DECISION) as settled:
        outcome = gateway.submit(_buy(1.0, "sys-a"))
        venue.state.inject("http_error", path="/v5/order/history", status=502, count=2)
    assert settled[outcome.order_link_id].status == "filled"
    assert _fresh_positions(db_path)[("sys-a", SYMBOL)].qty == pytest.approx(1.0)
    assert len(venue.state.requests_to("/v5/order/realtime")) >= 1  # looked up by its id


def test_orders_acknowledged_before_an_error_are_still_settled(
    venue: LocalExchangeServer, gateway: OrderGateway, db_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="later system failed"), gateway.bar_close(DECISION):
        gateway.submit(_buy(1.0, "sys-a"))
        raise RuntimeError("a later system failed")
    assert _fresh_positions(db_path)[("sys-a", SYMBOL)].qty == pytest.approx(1.0)


def test_with_pending_counts_an_order_as_filled_at_its_reference_price() -> None:
    intent = OrderIntent(
        order_link_id="tf-x", system_id="s", symbol=SYMBOL, side="Sell", leg="entry",
        decision_time_ms=1, qty_requested=2.0, qty=2.0, order_type="Market",
        reference_price=50.0, status="pending", sent=True, limits_hash="h",
        created_ms=1, updated_ms=1,
    )  # fmt: skip
    out = with_pending({}, [intent])
    assert out[("s", SYMBOL)].qty == -2.0 and out[("s", SYMBOL)].avg_price == 50.0
    assert with_pending(out, []) == out


# --- memos inside a pin ---------------------------------------------------------------------------


def _fill(exec_id: str, t: int, side: str, qty: float, price: float, system: str | None) -> Fill:
    return Fill(
        exec_id=exec_id, order_link_id=f"link-{exec_id}", order_id=f"o-{exec_id}",
        system_id=system, symbol=SYMBOL, side=side, qty=qty, price=price, fee=0.01 * qty,
        exec_time_ms=t, exec_type="Trade",
    )  # fmt: skip


def test_pinned_positions_equal_a_fresh_read_after_every_kind_of_write(db_path: Path) -> None:
    store = Store(db_path)
    ledger = TradingLedger(store)
    with store.pinned():
        assert ledger.positions() == {}
        steps = [
            lambda: ledger.add_fills([_fill("a", 10, "Buy", 1.0, 100.0, "s1")]),
            lambda: ledger.add_fills([_fill("b", 20, "Sell", 0.4, 110.0, "s1")]),
            # out of time order: the memo must be rebuilt, not advanced
            lambda: ledger.add_fills([_fill("c", 15, "Buy", 0.5, 90.0, "s1")]),
            lambda: ledger.add_fills([_fill("d", 30, "Sell", 2.0, 105.0, None)]),
            lambda: ledger.add_fills([_fill("a", 10, "Buy", 1.0, 100.0, "s1")]),  # known exec
        ]
        for step in steps:
            step()
            assert ledger.positions() == _fresh_positions(db_path)
        # the unattributed fill gets its system when its intent arrives
        ledger.save_intent(
            OrderIntent(
                order_link_id="link-d",
                system_id="s2",
                symbol=SYMBOL,
                side="Sell",
                leg="entry",
                decision_time_ms=30,
                qty_requested=2.0,
                qty=2.0,
                order_type="Market",
                reference_price=105.0,
                status="filled",
                sent=True,
                limits_hash="h",
                created_ms=30,
                updated_ms=30,
            )  # fmt: skip
        )
        assert ledger.attribute_fills() == 1
        assert ("s2", SYMBOL) in ledger.positions()
        assert ledger.positions() == _fresh_positions(db_path)


def test_pinned_high_water_marks_follow_new_equity_snapshots(db_path: Path) -> None:
    store = Store(db_path)
    ledger = TradingLedger(store)
    with store.pinned():
        assert ledger.high_water_mark("account", 0, 100) is None
        ledger.add_equity("account", 10, 1_000.0)
        assert ledger.high_water_mark("account", 0, 100) == 1_000.0
        ledger.add_equity("account", 20, 1_200.0)
        ledger.add_equity("account", 150, 5_000.0)  # another day: not in [0, 100)
        ledger.add_equity("system:x", 30, 9_000.0)  # another scope
        assert ledger.high_water_mark("account", 0, 100) == 1_200.0
    assert TradingLedger(Store(db_path)).high_water_mark("account", 0, 100) == 1_200.0


def test_preloaded_intents_answer_duplicate_checks_without_a_query(db_path: Path) -> None:
    store = Store(db_path)
    ledger = TradingLedger(store)
    stored = OrderIntent(
        order_link_id="tf-stored", system_id="s", symbol=SYMBOL, side="Buy", leg="entry",
        decision_time_ms=DECISION, qty_requested=1.0, qty=1.0, order_type="Market",
        reference_price=100.0, status="filled", sent=True, limits_hash="h",
        created_ms=1, updated_ms=1,
    )  # fmt: skip
    ledger.save_intent(stored)
    with store.pinned():
        ledger.preload_intents(DECISION)
        assert ledger.get_intent("tf-stored", decision_time_ms=DECISION) == stored
        assert ledger.get_intent("tf-other", decision_time_ms=DECISION) is None
        new = stored.model_copy(update={"order_link_id": "tf-new", "status": "pending"})
        ledger.save_intent(new)  # known absent: a plain insert
        assert ledger.get_intent("tf-new", decision_time_ms=DECISION) == new
    assert TradingLedger(Store(db_path)).get_intent("tf-new") == new


def test_pinned_kill_switch_state_sees_its_own_trip_and_reset(db_path: Path) -> None:
    store = Store(db_path)
    switch = KillSwitch(store, clock_ms=lambda: 5)
    with store.pinned():
        assert not switch.is_tripped()
        switch.trip("test trip")
        assert switch.is_tripped()
        switch.reset("alice", "checked")
        assert not switch.is_tripped()
    assert KillSwitch(Store(db_path)).state().events == 2


def test_unpinned_reads_memoize_nothing(db_path: Path) -> None:
    store = Store(db_path)
    assert store.pin_cache() is None
    with store.pinned():
        assert store.pin_cache() == {}
        with store.pinned():  # nested pins share the outer memo
            store.pin_cache()["k"] = 1
        assert store.pin_cache() == {"k": 1}
    assert store.pin_cache() is None


def test_the_local_venue_session_ignores_proxy_settings() -> None:
    assert _is_loopback("http://127.0.0.1:8123")
    assert _is_loopback("http://localhost:1")
    assert not _is_loopback("https://api-demo.bybit.com")
    assert LIMITS.max_total_notional_usdt == 3_000.0  # the notional test above relies on it

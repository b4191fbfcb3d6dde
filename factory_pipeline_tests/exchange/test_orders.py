"""Orders, fills, positions and the wallet, through the real pybit client.

Expected figures are worked out by hand from the bars in conftest.BARS: a market order placed at
a bar close fills at the next bar's open moved SLIPPAGE_BPS against the trader, taker fee on the
notional; resting limits fill at their price with the maker fee.
"""

from __future__ import annotations

import pytest
from pybit.exceptions import InvalidRequestError

from factory_pipeline.exchange.local import LocalExchangeServer
from factory_pipeline_tests.exchange.conftest import (
    HOUR,
    MAKER,
    SLIPPAGE_BPS,
    SYMBOL,
    T0,
    TAKER,
    client,
)

SLIP = SLIPPAGE_BPS * 1e-4


def _order(session, **kwargs):  # type: ignore[no-untyped-def]
    params = {"category": "linear", "symbol": SYMBOL}
    params.update(kwargs)
    return session.place_order(**params)["result"]


def _position(session) -> dict:  # type: ignore[no-untyped-def]
    return session.get_positions(category="linear", symbol=SYMBOL)["result"]["list"][0]


def _wallet(session) -> dict:  # type: ignore[no-untyped-def]
    return session.get_wallet_balance(accountType="UNIFIED")["result"]["list"][0]


def _code(info: pytest.ExceptionInfo[InvalidRequestError]) -> int:
    return int(info.value.status_code)


def test_market_round_trip_prices_fees_position_and_wallet(venue: LocalExchangeServer) -> None:
    session = client(venue)
    placed = _order(session, side="Buy", orderType="Market", qty="2", orderLinkId="entry-1")
    buy_price = 100.0 * (1 + SLIP)  # bar 1 opens at 100
    buy_fee = 2 * buy_price * TAKER
    [execution] = session.get_executions(category="linear", symbol=SYMBOL)["result"]["list"]
    assert execution["orderId"] == placed["orderId"]
    assert execution["orderLinkId"] == "entry-1"
    assert float(execution["execPrice"]) == pytest.approx(buy_price)
    assert float(execution["execQty"]) == 2
    assert float(execution["execFee"]) == pytest.approx(buy_fee)
    assert execution["isMaker"] is False
    assert int(execution["execTime"]) == T0 + HOUR
    position = _position(session)
    assert (position["side"], float(position["size"])) == ("Buy", 2.0)
    assert float(position["avgPrice"]) == pytest.approx(buy_price)
    assert float(position["positionIM"]) == pytest.approx(2 * buy_price / 10)

    venue.state.advance_to(T0 + 2 * HOUR)  # bar 1 closed at 101
    position = _position(session)
    assert float(position["markPrice"]) == 101.0
    assert float(position["unrealisedPnl"]) == pytest.approx(2 * (101.0 - buy_price))
    wallet = _wallet(session)
    assert float(wallet["totalWalletBalance"]) == pytest.approx(10_000 - buy_fee)
    assert float(wallet["totalEquity"]) == pytest.approx(10_000 - buy_fee + 2 * (101 - buy_price))

    _order(session, side="Sell", orderType="Market", qty="2", orderLinkId="exit-1")
    sell_price = 101.0 * (1 - SLIP)  # bar 2 opens at 101
    sell_fee = 2 * sell_price * TAKER
    pnl = 2 * (sell_price - buy_price)
    position = _position(session)
    assert float(position["size"]) == 0 and position["side"] == ""
    assert float(position["cumRealisedPnl"]) == pytest.approx(pnl - buy_fee - sell_fee)
    wallet = _wallet(session)
    assert float(wallet["totalWalletBalance"]) == pytest.approx(10_000 + pnl - buy_fee - sell_fee)
    assert float(wallet["totalPerpUPL"]) == 0
    order = session.get_open_orders(category="linear", orderLinkId="exit-1")["result"]["list"][0]
    assert order["orderStatus"] == "Filled"
    assert float(order["avgPrice"]) == pytest.approx(sell_price)
    assert float(order["cumExecFee"]) == pytest.approx(sell_fee)


def test_short_then_partial_reduce_and_flip(venue: LocalExchangeServer) -> None:
    session = client(venue)
    _order(session, side="Sell", orderType="Market", qty="1")
    short_price = 100.0 * (1 - SLIP)
    venue.state.advance_to(T0 + 3 * HOUR)  # next reference: bar 3 open 102
    _order(session, side="Buy", orderType="Market", qty="3")
    cover_price = 102.0 * (1 + SLIP)
    position = _position(session)
    assert (position["side"], float(position["size"])) == ("Buy", 2.0)
    assert float(position["avgPrice"]) == pytest.approx(cover_price)  # the flip opens anew
    fees = (short_price + 3 * cover_price) * TAKER
    expected = 10_000 + (short_price - cover_price) - fees
    assert float(_wallet(session)["totalWalletBalance"]) == pytest.approx(expected)


def test_limit_order_rests_then_fills_as_maker(venue: LocalExchangeServer) -> None:
    session = client(venue)
    placed = _order(
        session, side="Buy", orderType="Limit", qty="1", price="99.6", orderLinkId="limit-1"
    )
    [resting] = session.get_open_orders(category="linear", symbol=SYMBOL)["result"]["list"]
    assert resting["orderStatus"] == "New" and float(resting["leavesQty"]) == 1
    wallet = _wallet(session)
    assert float(wallet["totalInitialMargin"]) == pytest.approx(99.6 / 10)  # order margin
    venue.state.advance_to(T0 + 2 * HOUR)  # bar 1 low 99.5 crosses 99.6
    order = session.get_open_orders(category="linear", orderId=placed["orderId"])["result"]
    assert order["list"][0]["orderStatus"] == "Filled"
    [execution] = session.get_executions(category="linear", symbol=SYMBOL)["result"]["list"]
    assert float(execution["execPrice"]) == 99.6
    assert execution["isMaker"] is True
    assert float(execution["execFee"]) == pytest.approx(99.6 * MAKER)
    assert int(execution["execTime"]) == T0 + 2 * HOUR
    assert session.get_open_orders(category="linear", symbol=SYMBOL)["result"]["list"] == []


def test_limit_order_not_crossed_stays_open_and_marketable_limit_takes(
    venue: LocalExchangeServer,
) -> None:
    session = client(venue)
    _order(session, side="Sell", orderType="Limit", qty="1", price="103.5")
    venue.state.advance_to(T0 + 3 * HOUR)  # highs 102 and 103: not reached
    [still] = session.get_open_orders(category="linear", symbol=SYMBOL)["result"]["list"]
    assert still["orderStatus"] == "New"
    # a buy limit above the reference (bar 3 open 102) is marketable: taker, at the slipped price
    _order(session, side="Buy", orderType="Limit", qty="1", price="110", orderLinkId="take")
    [execution] = session.get_executions(category="linear", orderLinkId="take")["result"]["list"]
    assert float(execution["execPrice"]) == pytest.approx(102.0 * (1 + SLIP))
    assert execution["isMaker"] is False
    post_only = _order(
        session, side="Buy", orderType="Limit", qty="1", price="110", timeInForce="PostOnly"
    )
    order = session.get_open_orders(category="linear", orderId=post_only["orderId"])
    assert order["result"]["list"][0]["orderStatus"] == "Cancelled"


def test_reduce_only(venue: LocalExchangeServer) -> None:
    session = client(venue)
    with pytest.raises(InvalidRequestError) as info:
        _order(session, side="Sell", orderType="Market", qty="1", reduceOnly=True)
    assert _code(info) == 110017  # nothing to reduce
    _order(session, side="Buy", orderType="Market", qty="1")
    with pytest.raises(InvalidRequestError) as info:
        _order(session, side="Buy", orderType="Market", qty="1", reduceOnly=True)
    assert _code(info) == 110017  # would increase
    placed = _order(session, side="Sell", orderType="Market", qty="5", reduceOnly=True)
    order = session.get_open_orders(category="linear", orderId=placed["orderId"])["result"]
    assert float(order["list"][0]["qty"]) == 1  # trimmed to the position
    assert float(_position(session)["size"]) == 0


def test_amend_cancel_and_lookup_of_closed_orders(venue: LocalExchangeServer) -> None:
    session = client(venue)
    _order(session, side="Buy", orderType="Limit", qty="1", price="90", orderLinkId="rest-1")
    session.amend_order(
        category="linear", symbol=SYMBOL, orderLinkId="rest-1", qty="1.5", price="91"
    )
    [order] = session.get_open_orders(category="linear", symbol=SYMBOL)["result"]["list"]
    assert (float(order["qty"]), float(order["price"])) == (1.5, 91.0)
    session.cancel_order(category="linear", symbol=SYMBOL, orderLinkId="rest-1")
    assert session.get_open_orders(category="linear", symbol=SYMBOL)["result"]["list"] == []
    [closed] = session.get_open_orders(category="linear", orderLinkId="rest-1")["result"]["list"]
    assert closed["orderStatus"] == "Cancelled" and closed["cancelType"] == "CancelByUser"
    with pytest.raises(InvalidRequestError) as info:
        session.cancel_order(category="linear", symbol=SYMBOL, orderLinkId="rest-1")
    assert _code(info) == 110001
    with pytest.raises(InvalidRequestError) as info:
        session.amend_order(category="linear", symbol=SYMBOL, orderLinkId="nope", qty="2")
    assert _code(info) == 110001
    history = session.get_order_history(category="linear", symbol=SYMBOL)["result"]["list"]
    assert [h["orderLinkId"] for h in history] == ["rest-1"]


def test_cancel_all(venue: LocalExchangeServer) -> None:
    session = client(venue)
    for i, price in enumerate(("90", "91", "92")):
        _order(session, side="Buy", orderType="Limit", qty="1", price=price, orderLinkId=f"b{i}")
    reply = session.cancel_all_orders(category="linear", symbol=SYMBOL)["result"]
    assert sorted(item["orderLinkId"] for item in reply["list"]) == ["b0", "b1", "b2"]
    assert session.get_open_orders(category="linear", symbol=SYMBOL)["result"]["list"] == []


def test_duplicate_order_link_id_is_110072_and_places_nothing(venue: LocalExchangeServer) -> None:
    session = client(venue)
    _order(session, side="Buy", orderType="Market", qty="1", orderLinkId="same-id")
    with pytest.raises(InvalidRequestError) as info:
        _order(session, side="Buy", orderType="Market", qty="1", orderLinkId="same-id")
    assert _code(info) == 110072
    assert float(_position(session)["size"]) == 1
    assert len(session.get_executions(category="linear")["result"]["list"]) == 1


def test_instrument_minimums_and_balance(venue: LocalExchangeServer) -> None:
    session = client(venue)
    info_list = session.get_instruments_info(category="linear", symbol=SYMBOL)["result"]["list"]
    lot = info_list[0]["lotSizeFilter"]
    assert (lot["minOrderQty"], lot["qtyStep"], lot["minNotionalValue"]) == ("0.001", "0.001", "5")
    cases = [
        ({"qty": "0.0005"}, 10001),  # below minOrderQty
        ({"qty": "0.0015"}, 10001),  # not a multiple of qtyStep
        ({"qty": "0.04"}, 110094),  # 0.04 * 100 = 4 USDT < minNotionalValue 5
        ({"qty": "1000"}, 10001),  # above maxMktOrderQty 500
        ({"qty": "400"}, 110007),  # 400 * 100 / 10 = 4000 margin is fine ...
    ]
    venue.state.accounts["test-key"].cash = 3_000.0  # ... with 3000 USDT it is not
    for extra, code in cases:
        with pytest.raises(InvalidRequestError) as info:
            _order(session, side="Buy", orderType="Market", **extra)
        assert _code(info) == code, extra
    with pytest.raises(InvalidRequestError) as info:
        _order(session, side="Buy", orderType="Limit", qty="1", price="99.55")  # tick 0.10
    assert _code(info) == 10001
    assert session.get_executions(category="linear")["result"]["list"] == []
    _order(session, side="Buy", orderType="Market", qty="0.05")  # 5 USDT: accepted


def test_set_leverage_and_110043(venue: LocalExchangeServer) -> None:
    session = client(venue)
    session.set_leverage(category="linear", symbol=SYMBOL, buyLeverage="5", sellLeverage="5")
    with pytest.raises(InvalidRequestError) as info:
        session.set_leverage(category="linear", symbol=SYMBOL, buyLeverage="5", sellLeverage="5")
    assert _code(info) == 110043
    with pytest.raises(InvalidRequestError) as info:
        session.set_leverage(category="linear", symbol=SYMBOL, buyLeverage="5", sellLeverage="3")
    assert _code(info) == 10001
    _order(session, side="Buy", orderType="Market", qty="1")
    position = _position(session)
    assert float(position["leverage"]) == 5
    assert float(position["positionIM"]) == pytest.approx(100.0 * (1 + SLIP) / 5)


def test_tickers_follow_the_clock(venue: LocalExchangeServer) -> None:
    session = client(venue)
    ticker = session.get_tickers(category="linear", symbol=SYMBOL)["result"]["list"][0]
    assert float(ticker["lastPrice"]) == 100.0  # bar 0 close
    venue.state.set_time(T0 + 4 * HOUR)
    ticker = session.get_tickers(category="linear", symbol=SYMBOL)["result"]["list"][0]
    assert (float(ticker["lastPrice"]), float(ticker["markPrice"])) == (98.0, 98.0)


def test_fee_rate(venue: LocalExchangeServer) -> None:
    rates = client(venue).get_fee_rates(category="linear", symbol=SYMBOL)["result"]["list"]
    assert rates == [{"symbol": SYMBOL, "takerFeeRate": "0.00055", "makerFeeRate": "0.0002"}]


def test_lists_paginate_newest_first_and_filter(venue: LocalExchangeServer) -> None:
    session = client(venue)
    for i in range(5):
        _order(session, side="Buy", orderType="Market", qty="0.1", orderLinkId=f"p{i}")
    seen: list[str] = []
    cursor = ""
    for _ in range(3):
        page = session.get_executions(category="linear", symbol=SYMBOL, limit=2, cursor=cursor)
        seen += [row["orderLinkId"] for row in page["result"]["list"]]
        cursor = page["result"]["nextPageCursor"]
    assert seen == ["p4", "p3", "p2", "p1", "p0"] and cursor == ""
    positions = session.get_positions(category="linear", settleCoin="USDT")["result"]["list"]
    assert [(p["symbol"], float(p["size"])) for p in positions] == [(SYMBOL, 0.5)]
    closed = session.get_open_orders(category="linear", symbol=SYMBOL, openOnly=1)["result"]
    assert len(closed["list"]) == 5  # recent closed (filled) orders
    with pytest.raises(InvalidRequestError) as info:
        session.get_positions(category="linear")
    assert _code(info) == 10001


def test_amending_a_limit_through_the_price_fills_it(venue: LocalExchangeServer) -> None:
    session = client(venue)
    _order(session, side="Buy", orderType="Limit", qty="1", price="95", orderLinkId="chase")
    session.amend_order(category="linear", symbol=SYMBOL, orderLinkId="chase", price="100.5")
    [order] = session.get_open_orders(category="linear", orderLinkId="chase")["result"]["list"]
    assert order["orderStatus"] == "Filled"
    assert float(order["avgPrice"]) == pytest.approx(100.0 * (1 + SLIP))  # reference 100, slipped

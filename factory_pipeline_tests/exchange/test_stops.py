"""Position stop-loss / take-profit on the bar path, trading-stop, funding (hand-derived)."""

from __future__ import annotations

import pytest
from pybit.exceptions import InvalidRequestError

from factory_pipeline.exchange.local import LocalExchangeServer
from factory_pipeline_tests.exchange.conftest import (
    FUNDING_RATE,
    HOUR,
    SLIPPAGE_BPS,
    SYMBOL,
    T0,
    TAKER,
    client,
)

SLIP = SLIPPAGE_BPS * 1e-4


def _entry(session, side: str = "Buy", **kwargs) -> dict:  # type: ignore[no-untyped-def]
    return session.place_order(
        category="linear", symbol=SYMBOL, side=side, orderType="Market", qty="1", **kwargs
    )["result"]


def _closing_fills(session) -> list[dict]:  # type: ignore[no-untyped-def]
    rows = session.get_executions(category="linear", symbol=SYMBOL)["result"]["list"]
    return [r for r in rows if r["stopOrderType"]]


def _size(session) -> float:  # type: ignore[no-untyped-def]
    position = session.get_positions(category="linear", symbol=SYMBOL)["result"]["list"][0]
    return float(position["size"])


def test_take_profit_triggers_at_its_price(venue: LocalExchangeServer) -> None:
    venue.state.set_time(T0 + 5 * HOUR)  # entry at bar 5 open 97
    session = client(venue)
    _entry(session, stopLoss="96", takeProfit="104.5")
    venue.state.advance_to(T0 + 7 * HOUR)
    [fill] = _closing_fills(session)  # bar 5: high 105 >= 104.5, low 96.5 > 96
    assert fill["stopOrderType"] == "TakeProfit"
    assert float(fill["execPrice"]) == pytest.approx(104.5 * (1 - SLIP))
    assert int(fill["execTime"]) == T0 + 6 * HOUR  # stamped at the bar close
    assert float(fill["execFee"]) == pytest.approx(104.5 * (1 - SLIP) * TAKER)
    assert _size(session) == 0


def test_stop_first_when_both_are_touched(venue: LocalExchangeServer) -> None:
    venue.state.set_time(T0 + 7 * HOUR)  # entry at bar 7 open 105
    session = client(venue)
    _entry(session, stopLoss="95.5", takeProfit="105.4")
    venue.state.advance_to(T0 + 8 * HOUR)  # bar 7: high 105.5 and low 94 touch both
    [fill] = _closing_fills(session)
    assert fill["stopOrderType"] == "StopLoss"
    assert float(fill["execPrice"]) == pytest.approx(95.5 * (1 - SLIP))


def test_gap_through_the_stop_fills_at_the_open(venue: LocalExchangeServer) -> None:
    venue.state.set_time(T0 + 8 * HOUR)  # entry at bar 8 open 95
    session = client(venue)
    _entry(session, stopLoss="93.5")
    venue.state.advance_to(T0 + 9 * HOUR)  # bar 8 low 94: not yet
    assert _closing_fills(session) == []
    venue.state.advance_to(T0 + 10 * HOUR)  # bar 9 opens at 93, below the stop
    [fill] = _closing_fills(session)
    assert float(fill["execPrice"]) == pytest.approx(93.0 * (1 - SLIP))


def test_short_stop_and_lazy_processing_on_request(venue: LocalExchangeServer) -> None:
    venue.state.set_time(T0 + 4 * HOUR)  # short at bar 4 open 98
    session = client(venue)
    _entry(session, side="Sell", stopLoss="104", takeProfit="90")
    venue.state.now_ms = T0 + 6 * HOUR  # no explicit advance: the next request processes bars
    [fill] = _closing_fills(session)  # bar 5 high 105 >= 104
    assert (fill["side"], fill["stopOrderType"]) == ("Buy", "StopLoss")
    assert float(fill["execPrice"]) == pytest.approx(104.0 * (1 + SLIP))


def test_trading_stop_sets_moves_and_removes(venue: LocalExchangeServer) -> None:
    session = client(venue)
    with pytest.raises(InvalidRequestError) as info:
        session.set_trading_stop(category="linear", symbol=SYMBOL, stopLoss="95", positionIdx=0)
    assert info.value.status_code == 10001  # no position
    _entry(session)  # bar 1 open 100
    session.set_trading_stop(
        category="linear", symbol=SYMBOL, stopLoss="95", takeProfit="110", positionIdx=0
    )
    venue.state.advance_to(T0 + 3 * HOUR)  # last price 102
    with pytest.raises(InvalidRequestError):
        session.set_trading_stop(category="linear", symbol=SYMBOL, stopLoss="102.5")
    session.set_trading_stop(category="linear", symbol=SYMBOL, stopLoss="97.5")  # breakeven-ish
    position = session.get_positions(category="linear", symbol=SYMBOL)["result"]["list"][0]
    assert (position["stopLoss"], position["takeProfit"]) == ("97.5", "110")
    session.set_trading_stop(category="linear", symbol=SYMBOL, takeProfit="0")
    position = session.get_positions(category="linear", symbol=SYMBOL)["result"]["list"][0]
    assert position["takeProfit"] == "0"
    venue.state.advance_to(T0 + 4 * HOUR)  # bar 3 low 97 <= 97.5
    [fill] = _closing_fills(session)
    assert float(fill["execPrice"]) == pytest.approx(97.5 * (1 - SLIP))
    wallet = session.get_wallet_balance(accountType="UNIFIED")["result"]["list"][0]
    buy, sell = 100 * (1 + SLIP), 97.5 * (1 - SLIP)
    expected = 10_000 + (sell - buy) - (buy + sell) * TAKER
    assert float(wallet["totalWalletBalance"]) == pytest.approx(expected)


def test_funding_is_paid_by_a_long_held_through_a_settlement(venue: LocalExchangeServer) -> None:
    session = client(venue)
    _entry(session)  # bar 1 open 100, held through the 08:00 settlement
    venue.state.advance_to(T0 + 9 * HOUR)
    rows = session.get_executions(category="linear", execType="Funding")["result"]["list"]
    assert len(rows) == 1
    payment = 1 * 95.0 * FUNDING_RATE  # bar 8 opens at 95
    assert float(rows[0]["execFee"]) == pytest.approx(payment)
    wallet = session.get_wallet_balance(accountType="UNIFIED")["result"]["list"][0]
    buy = 100 * (1 + SLIP)
    assert float(wallet["totalWalletBalance"]) == pytest.approx(10_000 - buy * TAKER - payment)

"""Injected faults, seen through the real pybit client: the order's fate is what matters."""

from __future__ import annotations

import time

import pytest
import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError

from factory_pipeline.exchange.local import LocalExchangeServer
from factory_pipeline_tests.exchange.conftest import SYMBOL, client

CREATE = "/v5/order/create"


def _buy(session, link_id: str) -> dict:  # type: ignore[no-untyped-def]
    return session.place_order(
        category="linear",
        symbol=SYMBOL,
        side="Buy",
        orderType="Market",
        qty="1",
        orderLinkId=link_id,
    )["result"]


def _lookup(session, link_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return session.get_open_orders(category="linear", orderLinkId=link_id)["result"]["list"]


def test_http_5xx_does_not_place_the_order(venue: LocalExchangeServer) -> None:
    venue.state.inject("http_error", path=CREATE, status=502)
    session = client(venue)
    with pytest.raises(FailedRequestError) as info:
        _buy(session, "x-5xx")
    assert info.value.status_code == 502
    assert _lookup(session, "x-5xx") == []
    assert _buy(session, "x-5xx")["orderLinkId"] == "x-5xx"  # the resend goes through


def test_accept_then_drop_places_the_order(venue: LocalExchangeServer) -> None:
    venue.state.inject("drop_reply", path=CREATE)
    session = client(venue)
    with pytest.raises(requests.exceptions.ConnectionError):
        _buy(session, "x-drop")
    [order] = _lookup(session, "x-drop")  # it exists: the venue accepted it
    assert order["orderStatus"] == "Filled"
    with pytest.raises(InvalidRequestError) as info:
        _buy(session, "x-drop")  # a blind resend with the same id is refused
    assert info.value.status_code == 110072
    position = session.get_positions(category="linear", symbol=SYMBOL)["result"]["list"][0]
    assert float(position["size"]) == 1.0  # not doubled


def test_delay_past_the_client_timeout_still_places_the_order(venue: LocalExchangeServer) -> None:
    venue.state.inject("delay", path=CREATE, delay_s=0.6)
    session = client(venue, timeout=0.2)
    with pytest.raises(requests.exceptions.ReadTimeout):
        _buy(session, "x-delay")
    patient = client(venue)
    found: list[dict] = []
    for _ in range(50):  # wait for the server thread to finish the delayed request
        found = _lookup(patient, "x-delay")
        if found:
            break
        time.sleep(0.05)
    assert [o["orderStatus"] for o in found] == ["Filled"]


def test_injected_rate_limit_on_a_private_route(venue: LocalExchangeServer) -> None:
    venue.state.inject("rate_limit", path=CREATE, reset_after_ms=100)
    session = client(venue)
    with pytest.raises(InvalidRequestError) as info:
        _buy(session, "x-rl")
    assert info.value.status_code == 10006
    assert "X-Bapi-Limit-Reset-Timestamp" in info.value.resp_headers
    assert _lookup(session, "x-rl") == []
    retrying = client(venue, retry=True, max_retries=2)
    venue.state.inject("rate_limit", path=CREATE, reset_after_ms=100)
    assert _buy(retrying, "x-rl")["orderLinkId"] == "x-rl"


def test_bad_json_and_malformed_replies(venue: LocalExchangeServer) -> None:
    venue.state.inject("bad_json", path="/v5/position/list")
    session = client(venue)
    with pytest.raises(FailedRequestError) as info:
        session.get_positions(category="linear", symbol=SYMBOL)
    assert info.value.status_code == 409  # pybit: could not decode JSON
    venue.state.inject("malformed", path="/v5/market/kline")
    reply = session.get_kline(category="linear", symbol=SYMBOL, interval="60")
    assert reply["result"]["list"] == [["1704067200000", "not-a-number"]]


def test_unknown_fault_kind_is_refused(venue: LocalExchangeServer) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        venue.state.inject("meteor")

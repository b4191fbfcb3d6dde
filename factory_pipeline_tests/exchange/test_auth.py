"""Authentication and rate limits of the local exchange, through the real pybit client."""

from __future__ import annotations

import json
import time

import pytest
import requests
from pybit.exceptions import InvalidRequestError

from factory_pipeline.exchange.local import LocalExchangeServer, sign
from factory_pipeline_tests.exchange.conftest import KEY, SECRET, client


def _ret_code(excinfo: pytest.ExceptionInfo[InvalidRequestError]) -> int:
    return int(excinfo.value.status_code)


def test_signed_request_is_accepted(venue: LocalExchangeServer) -> None:
    reply = client(venue).get_wallet_balance(accountType="UNIFIED")
    assert reply["retCode"] == 0
    account = reply["result"]["list"][0]
    assert float(account["totalWalletBalance"]) == 10_000.0
    assert float(account["coin"][0]["walletBalance"]) == 10_000.0


def test_bad_signature_is_10004(venue: LocalExchangeServer) -> None:
    with pytest.raises(InvalidRequestError) as info:
        client(venue, secret="not-the-secret").get_wallet_balance(accountType="UNIFIED")
    assert _ret_code(info) == 10004


def test_unknown_key_is_10003(venue: LocalExchangeServer) -> None:
    with pytest.raises(InvalidRequestError) as info:
        client(venue, key="someone-else").get_positions(category="linear", symbol="BTCUSDT")
    assert _ret_code(info) == 10003


def test_timestamp_outside_recv_window_is_10002(venue: LocalExchangeServer) -> None:
    venue.state.inject("clock_skew", offset_ms=10_000)  # server 10 s ahead: request too old
    with pytest.raises(InvalidRequestError) as info:
        client(venue).get_wallet_balance(accountType="UNIFIED")
    assert _ret_code(info) == 10002
    venue.state.clock_skew_ms = -3_000  # server 3 s behind: request from the future
    with pytest.raises(InvalidRequestError) as info:
        client(venue).get_wallet_balance(accountType="UNIFIED")
    assert _ret_code(info) == 10002
    venue.state.clock_skew_ms = -500  # within the 1 s tolerance ahead of the server
    assert client(venue).get_wallet_balance(accountType="UNIFIED")["retCode"] == 0


def test_pybit_widens_recv_window_on_10002_and_succeeds(venue: LocalExchangeServer) -> None:
    # 6 s skew: outside the default 5 s window, inside the 7.5 s pybit retries with
    venue.state.inject("clock_skew", count=2, offset_ms=6_000)
    session = client(venue, retry=True, max_retries=2)
    assert session.get_wallet_balance(accountType="UNIFIED")["retCode"] == 0


def test_hand_signed_post_matches_bybit_rule(venue: LocalExchangeServer) -> None:
    body = json.dumps(
        {
            "category": "linear",
            "symbol": "BTCUSDT",
            "side": "Buy",
            "orderType": "Market",
            "qty": "0.1",
        }
    )
    ts = str(int(time.time() * 1000))
    headers = {
        "X-BAPI-API-KEY": KEY,
        "X-BAPI-TIMESTAMP": ts,
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": sign(SECRET, ts, KEY, "5000", body),
        "Content-Type": "application/json",
    }
    reply = requests.post(f"{venue.url}/v5/order/create", data=body, headers=headers, timeout=5)
    assert reply.json()["retCode"] == 0
    headers["X-BAPI-SIGN"] = sign(SECRET, ts, KEY, "5000", body + " ")  # body changed
    reply = requests.post(f"{venue.url}/v5/order/create", data=body, headers=headers, timeout=5)
    assert reply.json()["retCode"] == 10004


def test_rate_limit_10006_with_headers(venue: LocalExchangeServer) -> None:
    venue.state.rate_limit = (3, 60_000)
    session = client(venue)
    for _ in range(3):
        session.get_positions(category="linear", symbol="BTCUSDT")
    with pytest.raises(InvalidRequestError) as info:
        session.get_positions(category="linear", symbol="BTCUSDT")
    assert _ret_code(info) == 10006
    headers = info.value.resp_headers
    assert headers["X-Bapi-Limit"] == "3"
    assert headers["X-Bapi-Limit-Status"] == "0"
    assert int(headers["X-Bapi-Limit-Reset-Timestamp"]) > time.time() * 1000
    # the limit is per key: another account is not affected
    venue.state.add_account("other-key", "other-secret")
    other = client(venue, key="other-key", secret="other-secret")
    assert other.get_positions(category="linear", symbol="BTCUSDT")["retCode"] == 0


def test_rate_limit_is_waited_out_by_pybit(venue: LocalExchangeServer) -> None:
    venue.state.rate_limit = (2, 300)
    session = client(venue, retry=True, max_retries=3)
    replies = [session.get_positions(category="linear", symbol="BTCUSDT") for _ in range(3)]
    assert [r["retCode"] for r in replies] == [0, 0, 0]
    assert len(venue.state.requests_to("/v5/position/list")) == 4  # one 10006 in between

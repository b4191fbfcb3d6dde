"""Bybit v5 request authentication: API key, timestamp window, HMAC-SHA256 signature.

The signed string is ``timestamp + api_key + recv_window + payload`` where the payload is the
raw query string of a GET or the raw JSON body of a POST, exactly as sent. Checks run in
Bybit's order: key (10003), timestamp window (10002: the request must be stamped within
``[server_time - recv_window, server_time + 1000)``), signature (10004). ``server_time`` is the
wall clock (clients stamp requests with theirs) plus the state's ``clock_skew_ms`` and any
injected ``clock_skew`` fault.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from factory_pipeline.exchange.local.protocol import VenueError

if TYPE_CHECKING:
    from factory_pipeline.exchange.local.models import Account
    from factory_pipeline.exchange.local.state import LocalExchangeState

DEFAULT_RECV_WINDOW = 5000


def sign(api_secret: str, timestamp: str, api_key: str, recv_window: str, payload: str) -> str:
    """The hex HMAC-SHA256 signature Bybit expects (also used by tests to sign by hand)."""
    message = f"{timestamp}{api_key}{recv_window}{payload}"
    return hmac.new(api_secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def authenticate(
    state: LocalExchangeState,
    headers: Mapping[str, str],
    payload: str,
    *,
    skew_ms: int = 0,
) -> Account:
    """The account a signed request belongs to; raises :class:`VenueError` when refused."""
    api_key = headers.get("X-BAPI-API-KEY") or ""
    account = state.accounts.get(api_key)
    if account is None:
        raise VenueError(10003, "API key is invalid.")
    raw_ts = headers.get("X-BAPI-TIMESTAMP") or ""
    raw_window = headers.get("X-BAPI-RECV-WINDOW") or str(DEFAULT_RECV_WINDOW)
    try:
        timestamp = int(raw_ts)
        recv_window = int(raw_window)
    except ValueError:
        raise VenueError(
            10002, f"invalid request, please check your timestamp {raw_ts!r} and recv_window"
        ) from None
    server_time = int(time.time() * 1000) + state.clock_skew_ms + skew_ms
    if not server_time - recv_window <= timestamp < server_time + 1000:
        raise VenueError(
            10002,
            "invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{timestamp}],server_timestamp[{server_time}],"
            f"recv_window[{recv_window}]",
        )
    expected = sign(account.api_secret, raw_ts, api_key, raw_window, payload)
    given = headers.get("X-BAPI-SIGN") or ""
    if not hmac.compare_digest(expected, given):
        raise VenueError(10004, f"error sign! origin_string[{raw_ts}{api_key}{raw_window}...]")
    return account

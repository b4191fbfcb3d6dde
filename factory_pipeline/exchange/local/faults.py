"""Injected faults: how the local exchange misbehaves on purpose, for tests and drills.

``state.inject(kind, count=1, path=None, **options)`` queues a :class:`Fault`; the next
``count`` requests whose path matches (``None``: any path) get it, after ``after`` matching
requests have passed untouched. Kinds:

- ``rate_limit``: retCode 10006 with ``X-Bapi-Limit*`` headers (reset ``reset_after_ms`` from
  now on the wall clock; negative imitates a reset time already past).
- ``http_error``: HTTP ``status`` (default 503) with an HTML body; the request is not handled.
- ``delay``: sleep ``delay_s`` seconds, then handle the request normally (a client with a
  shorter timeout gives up while the order is still placed).
- ``drop_reply``: handle the request normally (an order IS placed), then close the connection
  without answering (accept-then-drop).
- ``clock_skew``: the signature check sees the server clock shifted by ``offset_ms`` (default
  +10 s), so a request stamped "now" is outside its recv_window: retCode 10002.
- ``malformed``: a retCode-0 page whose list holds a broken row.
- ``bad_json``: HTTP 200 with a body that is not JSON.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from factory_pipeline.exchange.local.protocol import Reply, error, ok

if TYPE_CHECKING:
    from factory_pipeline.exchange.local.state import LocalExchangeState

FAULT_KINDS = (
    "rate_limit",
    "http_error",
    "delay",
    "drop_reply",
    "clock_skew",
    "malformed",
    "bad_json",
)


@dataclass
class Fault:
    """Answer the next ``count`` requests matching ``path`` (None: any) with ``kind``."""

    kind: str
    count: int = 1
    path: str | None = None
    after: int = 0
    status: int = 503
    delay_s: float = 0.0
    reset_after_ms: int = 50
    offset_ms: int = 10_000

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.count < 1:
            raise ValueError(f"fault count must be >= 1, got {self.count}")


def rate_limit_reply(state: LocalExchangeState, limit: int, remaining: int, reset_ms: int) -> Reply:
    """retCode 10006 the way Bybit sends it (headers tell when the window resets)."""
    return error(
        state,
        10006,
        "Too many visits. Exceeded the API Rate Limit.",
        **{
            "X-Bapi-Limit": str(limit),
            "X-Bapi-Limit-Status": str(remaining),
            "X-Bapi-Limit-Reset-Timestamp": str(reset_ms),
        },
    )


def immediate_reply(state: LocalExchangeState, fault: Fault, path: str) -> Reply | None:
    """The reply that replaces handling for ``fault`` (None: handle the request normally)."""
    if fault.kind == "rate_limit":
        reset = int(time.time() * 1000) + fault.reset_after_ms  # wall clock, like Bybit
        return rate_limit_reply(state, 10, 0, reset)
    if fault.kind == "http_error":
        return Reply(status=fault.status, body=b"<html>upstream error</html>")
    if fault.kind == "bad_json":
        return Reply(status=200, body=b'{"retCode":0,"result":{"list":[')
    if fault.kind == "malformed":
        broken: dict[str, Any] = {
            "list": [["1704067200000", "not-a-number"]],
            "nextPageCursor": "",
        }
        if path in ("/v5/market/funding/history", "/v5/market/open-interest"):
            broken["list"] = [{"fundingRate": "0.0001"}]
        return ok(state, broken)
    return None  # delay, drop_reply and clock_skew change how the request is handled

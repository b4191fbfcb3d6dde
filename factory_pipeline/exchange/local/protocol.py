"""Bybit v5 wire format shared by every route: the reply envelope, route tables, number text.

Bybit answers every REST call with HTTP 200 and ``{"retCode", "retMsg", "result",
"retExtInfo", "time"}``; errors are told apart by ``retCode`` only. Routes register here:
public ones as ``handler(state, query, body)`` (market data, no signature), private ones as
``handler(state, account, params)`` after the server has checked key, timestamp, signature and
the per-key rate limit. Keeping the tables here (not in the server) lets tests and later issues
add routes without touching the HTTP plumbing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from factory_pipeline.exchange.local.state import Account, LocalExchangeState


@dataclass
class Reply:
    """An HTTP answer: status, JSON body (dict) or raw bytes, extra headers."""

    status: int = 200
    body: dict[str, Any] | bytes = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without writing (accept-then-drop fault)


class VenueError(Exception):
    """A request the venue refuses: becomes a reply with ``ret_code`` and ``message``."""

    def __init__(self, ret_code: int, message: str) -> None:
        self.ret_code = ret_code
        self.message = message
        super().__init__(f"{ret_code}: {message}")


Handler = Callable[["LocalExchangeState", dict[str, str], bytes], Reply]
PrivateHandler = Callable[["LocalExchangeState", "Account", dict[str, Any]], dict[str, Any]]

#: Public routes: ``(method, path) -> handler(state, query, body) -> Reply``.
ROUTES: dict[tuple[str, str], Handler] = {}
#: Signed routes: ``(method, path) -> handler(state, account, params) -> result dict``; raise
#: :class:`VenueError` to answer a retCode.
PRIVATE_ROUTES: dict[tuple[str, str], PrivateHandler] = {}
#: Private routes that change state (snapshot written after them).
MUTATING: set[tuple[str, str]] = set()


def register_route(method: str, path: str) -> Callable[[Handler], Handler]:
    """Decorator adding a public handler to :data:`ROUTES`."""

    def wrap(handler: Handler) -> Handler:
        ROUTES[(method, path)] = handler
        return handler

    return wrap


def register_private(
    method: str, path: str, *, mutating: bool = False
) -> Callable[[PrivateHandler], PrivateHandler]:
    """Decorator adding a signed handler to :data:`PRIVATE_ROUTES`."""

    def wrap(handler: PrivateHandler) -> PrivateHandler:
        PRIVATE_ROUTES[(method, path)] = handler
        if mutating:
            MUTATING.add((method, path))
        return handler

    return wrap


def envelope(code: int, message: str, result: dict[str, Any], time_ms: int) -> dict[str, Any]:
    return {
        "retCode": code,
        "retMsg": message,
        "result": result,
        "retExtInfo": {},
        "time": time_ms,
    }


def ok(state: LocalExchangeState, result: dict[str, Any]) -> Reply:
    return Reply(body=envelope(0, "OK", result, state.clock()))


def error(state: LocalExchangeState, code: int, message: str, **headers: str) -> Reply:
    return Reply(body=envelope(code, message, {}, state.clock()), headers=headers)


def num(value: float) -> str:
    """A float as Bybit-style text without exponent noise (``"101.5"``, ``"0"``)."""
    value = float(value)
    if value == 0:
        return "0"
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"

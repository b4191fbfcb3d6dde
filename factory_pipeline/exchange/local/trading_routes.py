"""Signed trading routes: orders, positions, wallet, executions, fee rates, leverage, stops.

Each handler gets the authenticated :class:`Account` and the request parameters (query for GET,
JSON body for POST) and returns Bybit's ``result`` object, or raises
:class:`~factory_pipeline.exchange.local.protocol.VenueError` for a retCode. The order logic
lives in :mod:`~factory_pipeline.exchange.local.matching`; here are the wire shapes, filters
and cursor pagination (offset cursors, newest first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from factory_pipeline.exchange.local import matching
from factory_pipeline.exchange.local.market_routes import decode_cursor, encode_cursor
from factory_pipeline.exchange.local.models import Account, Execution, Order
from factory_pipeline.exchange.local.protocol import VenueError, num, register_private

if TYPE_CHECKING:
    from factory_pipeline.exchange.local.state import LocalExchangeState

T = TypeVar("T")
_RECENT_CLOSED = 500  # Bybit keeps about this many recent closed orders in order/realtime


@register_private("POST", "/v5/order/create", mutating=True)
def create_order(
    state: LocalExchangeState, account: Account, params: dict[str, Any]
) -> dict[str, Any]:
    order = matching.place_order(state, account, params)
    return {"orderId": order.order_id, "orderLinkId": order.order_link_id}


@register_private("POST", "/v5/order/amend", mutating=True)
def amend_order(
    state: LocalExchangeState, account: Account, params: dict[str, Any]
) -> dict[str, Any]:
    order = matching.amend_order(state, account, params)
    return {"orderId": order.order_id, "orderLinkId": order.order_link_id}


@register_private("POST", "/v5/order/cancel", mutating=True)
def cancel_order(
    state: LocalExchangeState, account: Account, params: dict[str, Any]
) -> dict[str, Any]:
    order = matching.cancel_order(state, account, params)
    return {"orderId": order.order_id, "orderLinkId": order.order_link_id}


@register_private("POST", "/v5/order/cancel-all", mutating=True)
def cancel_all(
    state: LocalExchangeState, account: Account, params: dict[str, Any]
) -> dict[str, Any]:
    orders = matching.cancel_all(state, account, params)
    return {
        "list": [{"orderId": o.order_id, "orderLinkId": o.order_link_id} for o in orders],
        "success": "1",
    }


@register_private("POST", "/v5/position/set-leverage", mutating=True)
def set_leverage(
    state: LocalExchangeState, account: Account, params: dict[str, Any]
) -> dict[str, Any]:
    matching.set_leverage(state, account, params)
    return {}


@register_private("POST", "/v5/position/trading-stop", mutating=True)
def trading_stop(
    state: LocalExchangeState, account: Account, params: dict[str, Any]
) -> dict[str, Any]:
    matching.trading_stop(state, account, params)
    return {}


@register_private("GET", "/v5/order/realtime")
def open_orders(
    state: LocalExchangeState, account: Account, params: dict[str, Any]
) -> dict[str, Any]:
    """Open orders; by orderId/orderLinkId any recent order; openOnly=1: recent closed ones."""
    matching._check_category(params)
    by_id = bool(params.get("orderId") or params.get("orderLinkId"))
    if not (by_id or params.get("symbol") or params.get("settleCoin") or params.get("baseCoin")):
        raise VenueError(10001, "params error: symbol, baseCoin or settleCoin is required")
    open_only = str(params.get("openOnly", "0"))
    orders = _newest_first(_filter_orders(state, account, params))
    if open_only == "1":
        orders = [o for o in orders if not o.is_open][:_RECENT_CLOSED]
    elif not by_id:
        open_ids = account.open_ids
        orders = [o for o in orders if o.order_id in open_ids]
    else:
        recent_closed = {
            o.order_id for o in _newest_first(account.orders.values()) if not o.is_open
        }
        orders = [o for o in orders if o.is_open or o.order_id in recent_closed]
    page, cursor = _page(orders, params, default=20, maximum=50)
    return {
        "category": "linear",
        "list": [o.to_wire() for o in page],
        "nextPageCursor": cursor,
    }


@register_private("GET", "/v5/order/history")
def order_history(
    state: LocalExchangeState, account: Account, params: dict[str, Any]
) -> dict[str, Any]:
    matching._check_category(params)
    orders = _newest_first(_filter_orders(state, account, params))
    status = params.get("orderStatus")
    if status:
        orders = [o for o in orders if o.status == status]
    start, end = _int(params, "startTime"), _int(params, "endTime")
    if start is not None:
        orders = [o for o in orders if o.created_time >= start]
    if end is not None:
        orders = [o for o in orders if o.created_time <= end]
    page, cursor = _page(orders, params, default=20, maximum=50)
    return {
        "category": "linear",
        "list": [o.to_wire() for o in page],
        "nextPageCursor": cursor,
    }


@register_private("GET", "/v5/execution/list")
def executions(
    state: LocalExchangeState, account: Account, params: dict[str, Any]
) -> dict[str, Any]:
    matching._check_category(params)
    rows: list[Execution] = list(reversed(account.executions))
    for key, attr in (
        ("symbol", "symbol"),
        ("orderId", "order_id"),
        ("orderLinkId", "order_link_id"),
        ("execType", "exec_type"),
    ):
        if params.get(key):
            rows = [r for r in rows if getattr(r, attr) == params[key]]
    start, end = _int(params, "startTime"), _int(params, "endTime")
    if start is not None:
        rows = [r for r in rows if r.exec_time >= start]
    if end is not None:
        rows = [r for r in rows if r.exec_time <= end]
    page, cursor = _page(rows, params, default=50, maximum=100)
    return {
        "category": "linear",
        "list": [r.to_wire() for r in page],
        "nextPageCursor": cursor,
    }


@register_private("GET", "/v5/position/list")
def positions(
    state: LocalExchangeState, account: Account, params: dict[str, Any]
) -> dict[str, Any]:
    """One entry for ``symbol`` (size 0 when flat); with settleCoin the open positions."""
    matching._check_category(params)
    symbol = params.get("symbol")
    if symbol:
        if symbol not in state.instruments:
            raise VenueError(10001, f"params error: symbol invalid {symbol!r}")
        chosen = [matching.get_position(state, account, symbol)]
    elif params.get("settleCoin") or params.get("baseCoin"):
        base = params.get("baseCoin")
        chosen = [
            p
            for _, p in sorted(account.positions.items())
            if p.size and (not base or state.instruments.get(p.symbol, {}).get("baseCoin") == base)
        ]
    else:
        raise VenueError(10001, "params error: symbol or settleCoin is required")
    rows = [p.to_wire(matching.mark_price(state, p.symbol, p.avg_price)) for p in chosen]
    page, cursor = _page(rows, params, default=20, maximum=200)
    return {"category": "linear", "list": page, "nextPageCursor": cursor}


@register_private("GET", "/v5/account/wallet-balance")
def wallet_balance(
    state: LocalExchangeState, account: Account, params: dict[str, Any]
) -> dict[str, Any]:
    if params.get("accountType") != "UNIFIED":
        raise VenueError(10001, "accountType only support UNIFIED")
    coins = params.get("coin")
    w = matching.wallet(state, account)
    coin = {
        "coin": "USDT",
        "equity": num(w["equity"]),
        "usdValue": num(w["equity"]),
        "walletBalance": num(w["wallet_balance"]),
        "free": "",
        "locked": "0",
        "spotHedgingQty": "0",
        "borrowAmount": "0",
        "availableToWithdraw": num(max(w["available"], 0.0)),
        "availableToBorrow": "",
        "accruedInterest": "0",
        "totalOrderIM": num(w["order_im"]),
        "totalPositionIM": num(w["position_im"]),
        "totalPositionMM": "0",
        "unrealisedPnl": num(w["unrealised"]),
        "cumRealisedPnl": num(w["cum_realised"]),
        "bonus": "0",
        "marginCollateral": True,
        "collateralSwitch": True,
    }
    equity = w["equity"]
    im = w["position_im"] + w["order_im"]
    return {
        "list": [
            {
                "accountType": "UNIFIED",
                "accountLTV": "0",
                "accountIMRate": num(im / equity) if equity > 0 else "0",
                "accountMMRate": "0",
                "totalEquity": num(equity),
                "totalWalletBalance": num(w["wallet_balance"]),
                "totalMarginBalance": num(equity),
                "totalAvailableBalance": num(max(w["available"], 0.0)),
                "totalPerpUPL": num(w["unrealised"]),
                "totalInitialMargin": num(im),
                "totalMaintenanceMargin": "0",
                "coin": [coin] if not coins or "USDT" in str(coins).split(",") else [],
            }
        ]
    }


@register_private("GET", "/v5/account/fee-rate")
def fee_rate(state: LocalExchangeState, account: Account, params: dict[str, Any]) -> dict[str, Any]:
    symbol = params.get("symbol")
    if symbol and symbol not in state.instruments:
        raise VenueError(10001, f"params error: symbol invalid {symbol!r}")
    names = [symbol] if symbol else sorted(state.instruments)
    return {
        "list": [
            {
                "symbol": name,
                "takerFeeRate": num(account.taker_fee),
                "makerFeeRate": num(account.maker_fee),
            }
            for name in names
        ]
    }


# --- helpers ------------------------------------------------------------------------------


def _filter_orders(
    state: LocalExchangeState, account: Account, params: dict[str, Any]
) -> list[Order]:
    orders: list[Order] = list(account.orders.values())
    if params.get("orderId"):
        orders = [o for o in orders if o.order_id == params["orderId"]]
    if params.get("orderLinkId"):
        orders = [o for o in orders if o.order_link_id == params["orderLinkId"]]
    if params.get("symbol"):
        orders = [o for o in orders if o.symbol == params["symbol"]]
    if params.get("baseCoin"):
        base = params["baseCoin"]
        orders = [o for o in orders if state.instruments.get(o.symbol, {}).get("baseCoin") == base]
    return orders


def _newest_first(orders: Callable[[], Any] | Sequence[Order] | Any) -> list[Order]:
    return sorted(orders, key=lambda o: o.seq, reverse=True)


def _page(
    rows: Sequence[T], params: dict[str, Any], *, default: int, maximum: int
) -> tuple[list[T], str]:
    try:
        limit = int(params.get("limit") or default)
    except ValueError:
        raise VenueError(10001, f"params error: limit invalid {params.get('limit')!r}") from None
    if not 1 <= limit <= maximum:
        raise VenueError(10001, f"params error: limit must be in [1, {maximum}]")
    offset = decode_cursor(str(params.get("cursor") or ""))
    page = list(rows[offset : offset + limit])
    more = offset + limit < len(rows)
    return page, encode_cursor(offset + limit) if more else ""


def _int(params: dict[str, Any], key: str) -> int | None:
    raw = params.get(key)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise VenueError(10001, f"params error: {key} invalid {raw!r}") from None

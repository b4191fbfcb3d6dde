"""Order entry, fills, margin and the bar-by-bar processing of resting orders and stops.

Semantics (documented for users in docs/local_exchange.md):

- **Reference price** of an order placed at venue clock ``t``: the open of the first bar opening
  at or after ``t`` (the next bar's open when ``t`` is a bar close); past the last bar, the
  last close.
- **Market** orders fill at once at the reference price moved ``slippage_bps`` against the
  trader (buys up, sells down), taker fee. **Limit** orders that are marketable at the
  reference price fill at once as taker at the better of the limit and the slipped price
  (PostOnly: cancelled; IOC/FOK not marketable: cancelled); otherwise they rest and fill at
  their limit price, maker fee, on the first processed bar (opening at/after placement) whose
  low (buy) or high (sell) reaches them.
- **Position stops** (``stopLoss``/``takeProfit`` set with an order or by trading-stop) are
  checked on every processed bar from the one their position was filled on: a long's stop
  triggers when low <= stopLoss, its take-profit when high >= takeProfit (mirrored for shorts),
  the stop first when both are touched. They fill as market orders at the trigger price (the
  bar open when the bar gapped through it) moved by slippage, taker fee, stamped at the bar
  close.
- **Funding**: a position held before a settlement in the funding history pays
  ``size * bar open * rate`` (longs pay positive rates) at the bar containing the settlement.
- **Margin**: isolated, one-way. Opening quantity needs ``qty * price / leverage`` plus the
  taker fee within the available balance (wallet + unrealised PnL - position and order
  margin), else retCode 110007. No liquidation is simulated.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from factory_pipeline.exchange.local.models import Account, Execution, Order, Position
from factory_pipeline.exchange.local.prices import BarSeries
from factory_pipeline.exchange.local.protocol import VenueError

if TYPE_CHECKING:
    from factory_pipeline.exchange.local.state import LocalExchangeState

_EPS = 1e-9
_LINK_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_TIFS = ("GTC", "IOC", "FOK", "PostOnly")


# --- public entry points ------------------------------------------------------------------


def place_order(state: LocalExchangeState, account: Account, params: dict[str, Any]) -> Order:
    """Validate and enter an order (POST /v5/order/create); market orders fill at once."""
    _check_category(params)
    symbol = _symbol(state, params)
    side = params.get("side")
    if side not in ("Buy", "Sell"):
        raise VenueError(10001, f"params error: side invalid {side!r}")
    order_type = params.get("orderType")
    if order_type not in ("Market", "Limit"):
        raise VenueError(10001, f"params error: orderType invalid {order_type!r}")
    _check_position_idx(params)
    link_id = str(params.get("orderLinkId") or "")
    if link_id and not _LINK_ID.match(link_id):
        raise VenueError(10001, "params error: orderLinkId must be 1-36 chars of [A-Za-z0-9_-]")
    if link_id and link_id in account.link_ids:
        raise VenueError(110072, "OrderLinkedID is duplicate")
    instrument = state.instruments[symbol]
    qty = _positive(params, "qty")
    _check_qty(instrument, qty, market=order_type == "Market")
    price = 0.0
    if order_type == "Limit":
        price = _positive(params, "price")
        _check_price(instrument, price)
    tif = str(params.get("timeInForce") or ("IOC" if order_type == "Market" else "GTC"))
    if tif not in _TIFS:
        raise VenueError(10001, f"params error: timeInForce invalid {tif!r}")
    reduce_only = _bool(params.get("reduceOnly"))
    take_profit = _optional_price(params, "takeProfit")
    stop_loss = _optional_price(params, "stopLoss")

    now = state.clock()
    reference = reference_price(state, symbol, now)
    min_notional = float(instrument["lotSizeFilter"].get("minNotionalValue", 0) or 0)
    if not reduce_only and qty * (price or reference) < min_notional - _EPS:
        raise VenueError(110094, f"Order does not meet minimum order value {min_notional}USDT")
    position = get_position(state, account, symbol)
    direction = 1 if side == "Buy" else -1
    if reduce_only:
        if position.size == 0 or (position.size > 0) == (direction > 0):
            raise VenueError(110017, "Reduce-only rule not satisfied")
        qty = min(qty, abs(position.size))
        take_profit = stop_loss = 0.0
    _check_stops(side, take_profit, stop_loss, price if order_type == "Limit" else reference)
    if not reduce_only:
        margin_price = price if order_type == "Limit" else reference
        opening = _opening_qty(position, direction, qty)
        required = opening * margin_price / position.leverage + qty * margin_price * (
            account.taker_fee
        )
        if required > available_balance(state, account) + _EPS:
            raise VenueError(110007, "ab not enough for new order")

    order_id, seq = state.next_id("order")
    order = Order(
        order_id=order_id,
        order_link_id=link_id,
        symbol=symbol,
        side=side,
        order_type=order_type,
        qty=qty,
        price=price,
        time_in_force=tif,
        reduce_only=reduce_only,
        created_time=now,
        updated_time=now,
        active_from=now,
        take_profit=take_profit,
        stop_loss=stop_loss,
        last_price_on_created=reference,
        seq=seq,
    )
    account.orders[order_id] = order
    account.track(order)
    if link_id:
        account.link_ids[link_id] = order_id
    state.dirty = True
    if order_type == "Market":
        fill_price = slipped(state, reference, side)
        fill(state, account, order, qty, fill_price, maker=False, time_ms=now)
        _attach_stops(state, account, order, active_from=now)
    else:
        _enter_limit(state, account, order, reference, now)
    _ensure_cursor(state, symbol, now)
    return order


def amend_order(state: LocalExchangeState, account: Account, params: dict[str, Any]) -> Order:
    """Change qty / price / takeProfit / stopLoss of an open order (POST /v5/order/amend)."""
    _check_category(params)
    order = find_order(account, params, action="replace")
    instrument = state.instruments[order.symbol]
    changed = False
    if params.get("qty") not in (None, ""):
        qty = _positive(params, "qty")
        _check_qty(instrument, qty, market=False)
        if qty < order.cum_exec_qty - _EPS:
            raise VenueError(10001, "params error: qty below the filled quantity")
        changed |= not math.isclose(qty, order.qty)
        order.qty = qty
    if params.get("price") not in (None, ""):
        if order.order_type != "Limit":
            raise VenueError(10001, "params error: price can only be amended on a limit order")
        price = _positive(params, "price")
        _check_price(instrument, price)
        changed |= not math.isclose(price, order.price)
        order.price = price
    for key, attr in (("takeProfit", "take_profit"), ("stopLoss", "stop_loss")):
        if key in params and params[key] is not None:
            value = _optional_price(params, key)
            changed |= not math.isclose(value, getattr(order, attr))
            setattr(order, attr, value)
    if not changed:
        raise VenueError(10001, "The order remains unchanged as the parameters match")
    now = state.clock()
    order.updated_time = now
    if order.cum_exec_qty >= order.qty - _EPS:
        order.status = "Filled"  # amended down to what was already filled
    account.track(order)
    state.dirty = True
    if order.is_open and order.order_type == "Limit":
        reference = reference_price(state, order.symbol, now)
        if _marketable(order, reference):
            take = _better(order, slipped(state, reference, order.side))
            fill(state, account, order, order.leaves_qty, take, maker=False, time_ms=now)
            _attach_stops(state, account, order, active_from=now)
    return order


def cancel_order(state: LocalExchangeState, account: Account, params: dict[str, Any]) -> Order:
    """Cancel an open order (POST /v5/order/cancel); 110001 when it is gone or closed."""
    _check_category(params)
    order = find_order(account, params, action="cancel")
    _close(state, account, order, "Cancelled", "CancelByUser")
    return order


def cancel_all(state: LocalExchangeState, account: Account, params: dict[str, Any]) -> list[Order]:
    """Cancel every open order of ``symbol`` (or of the settle/base coin)."""
    _check_category(params)
    symbol = params.get("symbol")
    settle, base = params.get("settleCoin"), params.get("baseCoin")
    if not (symbol or settle or base):
        raise VenueError(10001, "params error: symbol, baseCoin or settleCoin is required")
    cancelled = []
    for order in account.open_orders():
        if symbol and order.symbol != symbol:
            continue
        if base and state.instruments.get(order.symbol, {}).get("baseCoin") != base:
            continue
        if settle and settle != "USDT":
            continue
        _close(state, account, order, "Cancelled", "CancelByUser")
        cancelled.append(order)
    return cancelled


def set_leverage(state: LocalExchangeState, account: Account, params: dict[str, Any]) -> None:
    """POST /v5/position/set-leverage: one-way mode needs buyLeverage == sellLeverage."""
    _check_category(params)
    symbol = _symbol(state, params)
    buy, sell = _positive(params, "buyLeverage"), _positive(params, "sellLeverage")
    if not math.isclose(buy, sell):
        raise VenueError(10001, "params error: buyLeverage must equal sellLeverage in one-way mode")
    lf = state.instruments[symbol]["leverageFilter"]
    lo, hi = float(lf["minLeverage"]), float(lf["maxLeverage"])
    if not lo <= buy <= hi:
        raise VenueError(10001, f"params error: leverage {buy} outside [{lo}, {hi}]")
    position = get_position(state, account, symbol)
    if math.isclose(position.leverage, buy):
        raise VenueError(110043, "Set leverage not modified")
    if position.size:
        extra = abs(position.size) * position.avg_price * (1 / buy - 1 / position.leverage)
        if extra > available_balance(state, account) + _EPS:
            raise VenueError(110007, "ab not enough for new leverage")
    position.leverage = buy
    position.updated_time = state.clock()
    state.dirty = True


def trading_stop(state: LocalExchangeState, account: Account, params: dict[str, Any]) -> None:
    """POST /v5/position/trading-stop: set or replace the position's stopLoss/takeProfit.

    A missing field is left as it is; ``"0"`` removes it. Checked against the last price.
    """
    _check_category(params)
    symbol = _symbol(state, params)
    _check_position_idx(params)
    position = get_position(state, account, symbol)
    if position.size == 0:
        raise VenueError(10001, "can not set tp/sl/ts for zero position")
    tp = position.take_profit
    sl = position.stop_loss
    if params.get("takeProfit") not in (None, ""):
        tp = _optional_price(params, "takeProfit")
    if params.get("stopLoss") not in (None, ""):
        sl = _optional_price(params, "stopLoss")
    last = state.last_price(symbol)
    reference = last[0] if last else position.avg_price
    _check_stops(position.side, tp, sl, reference)
    position.take_profit, position.stop_loss = tp, sl
    now = state.clock()
    position.stops_active_from = now
    position.updated_time = now
    state.dirty = True
    _ensure_cursor(state, symbol, now)


def process_until(state: LocalExchangeState, t_ms: int) -> None:
    """Process every bar closed by ``t_ms`` on symbols with resting orders, stops or positions."""
    work = _symbols_with_work(state)
    for symbol in set(work) | set(state.cursors):
        series = state.series(symbol)
        if series is None or series.size == 0:
            continue
        cursor = state.cursors.get(symbol, work.get(symbol, t_ms))
        i = series.first_at_or_after(cursor)
        last = series.last_closed(t_ms)
        if i > last:
            continue
        if symbol in work:
            for j in range(i, last + 1):
                _process_bar(state, series, j)
        state.cursors[symbol] = int(series.open_time[last]) + series.tf_ms
        state.dirty = True


# --- prices, positions, balances ------------------------------------------------------------


def reference_price(state: LocalExchangeState, symbol: str, t_ms: int) -> float:
    """Open of the first bar opening at/after ``t_ms``; past the data, the last close."""
    series = state.series(symbol)
    if series is None or series.size == 0:
        raise VenueError(10001, f"params error: no market price for symbol {symbol}")
    i = series.first_at_or_after(t_ms)
    if i < series.size:
        return float(series.open[i])
    return float(series.close[-1])


def slipped(state: LocalExchangeState, price: float, side: str) -> float:
    factor = state.slippage_bps * 1e-4
    return price * (1 + factor) if side == "Buy" else price * (1 - factor)


def get_position(state: LocalExchangeState, account: Account, symbol: str) -> Position:
    if symbol not in account.positions:
        account.positions[symbol] = Position(symbol=symbol, leverage=state.default_leverage)
    return account.positions[symbol]


def mark_price(state: LocalExchangeState, symbol: str, fallback: float) -> float:
    last = state.last_price(symbol)
    return last[1] if last else fallback


def wallet(state: LocalExchangeState, account: Account) -> dict[str, float]:
    """Wallet figures in USDT: balance, unrealised PnL, margins, equity, available."""
    upl = 0.0
    position_im = 0.0
    for position in account.positions.values():
        if position.size:
            upl += position.unrealised(mark_price(state, position.symbol, position.avg_price))
            position_im += position.initial_margin
    order_im = 0.0
    for order in account.open_orders():
        if not order.reduce_only:
            leverage = get_position(state, account, order.symbol).leverage
            order_im += order.leaves_qty * order.price / leverage
    equity = account.cash + upl
    return {
        "wallet_balance": account.cash,
        "unrealised": upl,
        "equity": equity,
        "position_im": position_im,
        "order_im": order_im,
        "available": equity - position_im - order_im,
        "cum_realised": sum(p.cum_realised for p in account.positions.values()),
    }


def available_balance(state: LocalExchangeState, account: Account) -> float:
    return wallet(state, account)["available"]


def find_order(account: Account, params: dict[str, Any], *, action: str) -> Order:
    """The open order named by orderId or orderLinkId (110001 when missing or closed)."""
    order_id = params.get("orderId")
    link_id = params.get("orderLinkId")
    if not order_id and not link_id:
        raise VenueError(10001, "params error: orderId or orderLinkId is required")
    if not order_id:
        order_id = account.link_ids.get(str(link_id))
    order = account.orders.get(str(order_id)) if order_id else None
    symbol = params.get("symbol")
    if order is None or not order.is_open or (symbol and order.symbol != symbol):
        raise VenueError(110001, f"order not exists or too late to {action}")
    return order


def fill(
    state: LocalExchangeState,
    account: Account,
    order: Order,
    qty: float,
    price: float,
    *,
    maker: bool,
    time_ms: int,
) -> Execution:
    """Execute ``qty`` of ``order`` at ``price``: position, wallet and one execution row."""
    position = get_position(state, account, order.symbol)
    fee_rate = account.maker_fee if maker else account.taker_fee
    direction = 1 if order.side == "Buy" else -1
    signed = direction * qty
    closed = 0.0
    pnl = 0.0
    if position.size == 0 or (position.size > 0) == (signed > 0):
        new_size = _round(position.size + signed)
        if position.size == 0:
            position.created_time = time_ms
            position.cur_realised = 0.0
        position.avg_price = (abs(position.size) * position.avg_price + qty * price) / abs(new_size)
        position.size = new_size
    else:
        closed = min(qty, abs(position.size))
        pnl = closed * (price - position.avg_price) * (1 if position.size > 0 else -1)
        new_size = _round(position.size + signed)
        if new_size == 0 or (new_size > 0) != (position.size > 0):
            position.take_profit = position.stop_loss = 0.0
        if new_size == 0:
            position.avg_price = 0.0
        elif (new_size > 0) != (position.size > 0):  # flipped: the rest opens a new position
            position.avg_price = price
            position.created_time = time_ms
        position.size = new_size
    fee = qty * price * fee_rate
    account.cash += pnl - fee
    position.cum_realised += pnl - fee
    position.cur_realised += pnl - fee
    position.updated_time = time_ms
    position.seq += 1
    order.cum_exec_qty = _round(order.cum_exec_qty + qty)
    order.cum_exec_value += qty * price
    order.cum_exec_fee += fee
    order.status = "Filled" if order.cum_exec_qty >= order.qty - _EPS else "PartiallyFilled"
    order.updated_time = time_ms
    account.track(order)
    exec_id, seq = state.next_id("exec")
    execution = Execution(
        exec_id=exec_id,
        order_id=order.order_id,
        order_link_id=order.order_link_id,
        symbol=order.symbol,
        side=order.side,
        order_type=order.order_type,
        stop_order_type=order.stop_order_type,
        order_price=order.price,
        order_qty=order.qty,
        leaves_qty=order.leaves_qty,
        exec_price=price,
        exec_qty=qty,
        exec_fee=fee,
        fee_rate=fee_rate,
        exec_type="Trade",
        exec_time=time_ms,
        is_maker=maker,
        mark_price=mark_price(state, order.symbol, price),
        closed_size=closed,
        seq=seq,
    )
    account.executions.append(execution)
    state.dirty = True
    if position.size == 0:
        _cancel_reduce_only(state, account, order.symbol, time_ms)
    return execution


# --- bar processing -----------------------------------------------------------------------


def _process_bar(state: LocalExchangeState, series: BarSeries, i: int) -> None:
    open_time = int(series.open_time[i])
    close_time = open_time + series.tf_ms
    o, h, lo = float(series.open[i]), float(series.high[i]), float(series.low[i])
    symbol = series.symbol
    for account in state.accounts.values():
        position = account.positions.get(symbol)
        if position is not None and position.size:
            _apply_funding(state, account, position, series, open_time, o)
            _check_position_stops(state, account, position, open_time, close_time, o, h, lo)
        resting = [
            order
            for order in account.open_orders()
            if order.symbol == symbol
            and order.order_type == "Limit"
            and order.active_from <= open_time
        ]
        for order in sorted(resting, key=lambda item: item.seq):
            if not order.is_open:
                continue  # cancelled by an earlier fill in this bar (reduce-only)
            touched = lo <= order.price if order.side == "Buy" else h >= order.price
            if not touched:
                continue
            qty = order.leaves_qty
            if order.reduce_only:
                position = get_position(state, account, symbol)
                direction = 1 if order.side == "Buy" else -1
                if position.size == 0 or (position.size > 0) == (direction > 0):
                    _close(
                        state, account, order, "Cancelled", "CancelByReduceOnly", time_ms=close_time
                    )
                    continue
                qty = min(qty, abs(position.size))
            fill(state, account, order, qty, order.price, maker=True, time_ms=close_time)
            if order.status == "PartiallyFilled" and order.reduce_only:
                _close(state, account, order, "Cancelled", "CancelByReduceOnly", time_ms=close_time)
            _attach_stops(state, account, order, active_from=close_time)


def _check_position_stops(
    state: LocalExchangeState,
    account: Account,
    position: Position,
    open_time: int,
    close_time: int,
    o: float,
    h: float,
    lo: float,
) -> None:
    if not (position.stop_loss or position.take_profit) or position.stops_active_from > open_time:
        return
    long = position.size > 0
    sl, tp = position.stop_loss, position.take_profit
    if long:
        sl_hit, tp_hit = bool(sl) and lo <= sl, bool(tp) and h >= tp
    else:
        sl_hit, tp_hit = bool(sl) and h >= sl, bool(tp) and lo <= tp
    if not (sl_hit or tp_hit):
        return
    if sl_hit:  # stop first when both are touched
        kind = "StopLoss"
        trigger = min(o, sl) if long else max(o, sl)
    else:
        kind = "TakeProfit"
        trigger = max(o, tp) if long else min(o, tp)
    side = "Sell" if long else "Buy"
    order_id, seq = state.next_id("order")
    order = Order(
        order_id=order_id,
        order_link_id="",
        symbol=position.symbol,
        side=side,
        order_type="Market",
        qty=abs(position.size),
        price=0.0,
        time_in_force="IOC",
        reduce_only=True,
        created_time=close_time,
        updated_time=close_time,
        active_from=close_time,
        stop_order_type=kind,
        last_price_on_created=trigger,
        seq=seq,
    )
    account.orders[order_id] = order
    account.track(order)
    fill(
        state,
        account,
        order,
        order.qty,
        slipped(state, trigger, side),
        maker=False,
        time_ms=close_time,
    )


def _apply_funding(
    state: LocalExchangeState,
    account: Account,
    position: Position,
    series: BarSeries,
    open_time: int,
    price: float,
) -> None:
    if series.funding_time.size == 0:
        return
    lo = int(series.funding_time.searchsorted(open_time, side="left"))
    hi = int(series.funding_time.searchsorted(open_time + series.tf_ms, side="left"))
    for k in range(lo, hi):
        settle = int(series.funding_time[k])
        if position.created_time >= settle or position.size == 0:
            continue
        rate = float(series.funding_rate[k])
        payment = position.size * price * rate
        account.cash -= payment
        position.cum_realised -= payment
        position.cur_realised -= payment
        exec_id, seq = state.next_id("exec")
        account.executions.append(
            Execution(
                exec_id=exec_id,
                order_id="",
                order_link_id="",
                symbol=position.symbol,
                side=position.side,
                order_type="UNKNOWN",
                stop_order_type="",
                order_price=0.0,
                order_qty=0.0,
                leaves_qty=0.0,
                exec_price=price,
                exec_qty=abs(position.size),
                exec_fee=payment,
                fee_rate=rate,
                exec_type="Funding",
                exec_time=settle,
                is_maker=False,
                mark_price=price,
                closed_size=0.0,
                seq=seq,
            )
        )
        state.dirty = True


# --- helpers ------------------------------------------------------------------------------


def _enter_limit(
    state: LocalExchangeState, account: Account, order: Order, reference: float, now: int
) -> None:
    if _marketable(order, reference):
        if order.time_in_force == "PostOnly":
            order.reject_reason = "EC_PostOnlyWillTakeLiquidity"
            _close(state, account, order, "Cancelled", "CancelByUser", time_ms=now)
            return
        take = _better(order, slipped(state, reference, order.side))
        fill(state, account, order, order.qty, take, maker=False, time_ms=now)
        _attach_stops(state, account, order, active_from=now)
    elif order.time_in_force in ("IOC", "FOK"):
        _close(state, account, order, "Cancelled", "CancelByUser", time_ms=now)


def _marketable(order: Order, reference: float) -> bool:
    return reference <= order.price if order.side == "Buy" else reference >= order.price


def _better(order: Order, price: float) -> float:
    return min(order.price, price) if order.side == "Buy" else max(order.price, price)


def _attach_stops(
    state: LocalExchangeState, account: Account, order: Order, *, active_from: int
) -> None:
    if order.reduce_only or not (order.take_profit or order.stop_loss):
        return
    if order.cum_exec_qty <= 0:
        return
    position = get_position(state, account, order.symbol)
    if position.size == 0:
        return
    if order.take_profit:
        position.take_profit = order.take_profit
    if order.stop_loss:
        position.stop_loss = order.stop_loss
    position.stops_active_from = active_from
    _ensure_cursor(state, order.symbol, active_from)


def _close(
    state: LocalExchangeState,
    account: Account,
    order: Order,
    status: str,
    cancel_type: str,
    *,
    time_ms: int | None = None,
) -> None:
    order.status = status
    order.cancel_type = cancel_type
    order.updated_time = state.clock() if time_ms is None else time_ms
    account.track(order)
    state.dirty = True


def _cancel_reduce_only(
    state: LocalExchangeState, account: Account, symbol: str, time_ms: int
) -> None:
    for order in account.open_orders():
        if order.symbol == symbol and order.reduce_only:
            _close(state, account, order, "Cancelled", "CancelByReduceOnly", time_ms=time_ms)


def _ensure_cursor(state: LocalExchangeState, symbol: str, t_ms: int) -> None:
    if symbol not in state.cursors:
        state.cursors[symbol] = t_ms


def _symbols_with_work(state: LocalExchangeState) -> dict[str, int]:
    """Symbol -> earliest time something there needs bars (open limit, position)."""
    work: dict[str, int] = {}
    for account in state.accounts.values():
        for order in account.open_orders():
            if order.order_type == "Limit":
                work[order.symbol] = min(
                    work.get(order.symbol, order.active_from), order.active_from
                )
        for position in account.positions.values():
            if position.size:
                start = position.stops_active_from or position.created_time
                work[position.symbol] = min(work.get(position.symbol, start), start)
    return work


def _opening_qty(position: Position, direction: int, qty: float) -> float:
    if position.size == 0 or (position.size > 0) == (direction > 0):
        return qty
    return max(qty - abs(position.size), 0.0)


def _check_category(params: dict[str, Any]) -> None:
    category = params.get("category")
    if category != "linear":
        raise VenueError(10001, f"params error: category must be linear, got {category!r}")


def _check_position_idx(params: dict[str, Any]) -> None:
    idx = params.get("positionIdx")
    if idx not in (None, "", 0, "0"):
        raise VenueError(10001, "params error: position idx not match position mode (one-way)")


def _symbol(state: LocalExchangeState, params: dict[str, Any]) -> str:
    symbol = params.get("symbol")
    if not symbol:
        raise VenueError(10001, "params error: symbol is required")
    if symbol not in state.instruments:
        raise VenueError(10001, f"params error: symbol invalid {symbol!r}")
    return str(symbol)


def _number(params: dict[str, Any], key: str) -> float:
    raw = params.get(key)
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise VenueError(10001, f"params error: {key} invalid {raw!r}") from None
    if not math.isfinite(value):
        raise VenueError(10001, f"params error: {key} invalid {raw!r}")
    return value


def _positive(params: dict[str, Any], key: str) -> float:
    if params.get(key) in (None, ""):
        raise VenueError(10001, f"params error: {key} is required")
    value = _number(params, key)
    if value <= 0:
        raise VenueError(10001, f"params error: {key} must be positive, got {params[key]!r}")
    return value


def _optional_price(params: dict[str, Any], key: str) -> float:
    if params.get(key) in (None, ""):
        return 0.0
    value = _number(params, key)
    if value < 0:
        raise VenueError(10001, f"params error: {key} must not be negative")
    return value


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("true", "1")
    return bool(value)


def _on_grid(value: float, step: float) -> bool:
    ratio = value / step
    return abs(ratio - round(ratio)) < 1e-6


def _check_qty(instrument: dict[str, Any], qty: float, *, market: bool) -> None:
    lot = instrument["lotSizeFilter"]
    step, minimum = float(lot["qtyStep"]), float(lot["minOrderQty"])
    maximum = float(lot["maxMktOrderQty"] if market else lot["maxOrderQty"])
    if qty < minimum - _EPS:
        raise VenueError(
            10001, f"params error: qty {qty} is below minOrderQty {lot['minOrderQty']}"
        )
    if qty > maximum + _EPS:
        raise VenueError(10001, f"params error: qty {qty} exceeds the maximum {maximum}")
    if not _on_grid(qty, step):
        raise VenueError(10001, f"params error: qty {qty} is not a multiple of qtyStep {step}")


def _check_price(instrument: dict[str, Any], price: float) -> None:
    pf = instrument["priceFilter"]
    tick = float(pf["tickSize"])
    if price < float(pf["minPrice"]) or price > float(pf["maxPrice"]):
        raise VenueError(10001, f"params error: price {price} outside the allowed range")
    if not _on_grid(price, tick):
        raise VenueError(10001, f"params error: price {price} is not a multiple of tickSize {tick}")


def _check_stops(side: str, take_profit: float, stop_loss: float, reference: float) -> None:
    """Bybit refuses stops on the wrong side of the price they are compared with."""
    if side == "Buy":
        if stop_loss and stop_loss >= reference:
            raise VenueError(
                10001,
                f"StopLoss:{stop_loss} set for Buy position should be lower "
                f"than base_price:{reference}",
            )
        if take_profit and take_profit <= reference:
            raise VenueError(
                10001,
                f"TakeProfit:{take_profit} set for Buy position should be "
                f"higher than base_price:{reference}",
            )
    elif side == "Sell":
        if stop_loss and stop_loss <= reference:
            raise VenueError(
                10001,
                f"StopLoss:{stop_loss} set for Sell position should be "
                f"higher than base_price:{reference}",
            )
        if take_profit and take_profit >= reference:
            raise VenueError(
                10001,
                f"TakeProfit:{take_profit} set for Sell position should be "
                f"lower than base_price:{reference}",
            )


def _round(value: float) -> float:
    rounded = round(value, 9)
    return 0.0 if abs(rounded) < _EPS else rounded

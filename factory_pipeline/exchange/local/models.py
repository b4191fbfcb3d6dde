"""The records the local exchange keeps per account: orders, positions, executions.

Plain dataclasses with ``to_wire`` (Bybit's JSON field names, numbers as strings) and
``to_json``/``from_json`` for the snapshot file. Quantities are signed only inside
:class:`Position` (``size`` > 0 long, < 0 short); on the wire Bybit reports ``side`` and a
positive ``size``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from factory_pipeline.exchange.local.protocol import num

OPEN_STATUSES = ("New", "PartiallyFilled", "Untriggered")


@dataclass
class Order:
    order_id: str
    order_link_id: str
    symbol: str
    side: str  # "Buy" | "Sell"
    order_type: str  # "Market" | "Limit"
    qty: float
    price: float  # 0 for market orders
    time_in_force: str
    reduce_only: bool
    created_time: int
    updated_time: int
    active_from: int  # bars opening at/after this (venue clock) may fill a resting order
    take_profit: float = 0.0
    stop_loss: float = 0.0
    status: str = "New"
    cum_exec_qty: float = 0.0
    cum_exec_value: float = 0.0
    cum_exec_fee: float = 0.0
    stop_order_type: str = ""  # "StopLoss" | "TakeProfit" for triggered position stops
    cancel_type: str = "UNKNOWN"
    reject_reason: str = "EC_NoError"
    last_price_on_created: float = 0.0
    seq: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def leaves_qty(self) -> float:
        return max(self.qty - self.cum_exec_qty, 0.0) if self.is_open else 0.0

    @property
    def avg_price(self) -> float:
        return self.cum_exec_value / self.cum_exec_qty if self.cum_exec_qty else 0.0

    def to_wire(self) -> dict[str, Any]:
        leaves = self.leaves_qty
        return {
            "orderId": self.order_id,
            "orderLinkId": self.order_link_id,
            "blockTradeId": "",
            "symbol": self.symbol,
            "price": num(self.price),
            "qty": num(self.qty),
            "side": self.side,
            "isLeverage": "",
            "positionIdx": 0,
            "orderStatus": self.status,
            "cancelType": self.cancel_type,
            "rejectReason": self.reject_reason,
            "avgPrice": num(self.avg_price) if self.cum_exec_qty else "",
            "leavesQty": num(leaves),
            "leavesValue": num(leaves * self.price),
            "cumExecQty": num(self.cum_exec_qty),
            "cumExecValue": num(self.cum_exec_value),
            "cumExecFee": num(self.cum_exec_fee),
            "timeInForce": self.time_in_force,
            "orderType": self.order_type,
            "stopOrderType": self.stop_order_type,
            "orderIv": "",
            "triggerPrice": "",
            "takeProfit": num(self.take_profit) if self.take_profit else "",
            "stopLoss": num(self.stop_loss) if self.stop_loss else "",
            "tpTriggerBy": "LastPrice" if self.take_profit else "",
            "slTriggerBy": "LastPrice" if self.stop_loss else "",
            "triggerDirection": 0,
            "triggerBy": "",
            "lastPriceOnCreated": num(self.last_price_on_created),
            "reduceOnly": self.reduce_only,
            "closeOnTrigger": bool(self.stop_order_type),
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "tpslMode": "Full" if (self.take_profit or self.stop_loss) else "",
            "tpLimitPrice": "",
            "slLimitPrice": "",
            "placeType": "",
            "createdTime": str(self.created_time),
            "updatedTime": str(self.updated_time),
        }


@dataclass
class Position:
    symbol: str
    leverage: float = 10.0
    size: float = 0.0  # signed
    avg_price: float = 0.0
    stop_loss: float = 0.0
    take_profit: float = 0.0
    stops_active_from: int = 0
    cum_realised: float = 0.0  # realised PnL net of fees and funding since the account opened
    cur_realised: float = 0.0  # same, since the position last opened
    created_time: int = 0
    updated_time: int = 0
    seq: int = 0

    @property
    def side(self) -> str:
        return "Buy" if self.size > 0 else "Sell" if self.size < 0 else ""

    @property
    def initial_margin(self) -> float:
        return abs(self.size) * self.avg_price / self.leverage

    def unrealised(self, mark: float) -> float:
        return self.size * (mark - self.avg_price) if self.size else 0.0

    def to_wire(self, mark: float) -> dict[str, Any]:
        size = abs(self.size)
        return {
            "positionIdx": 0,
            "riskId": 1,
            "riskLimitValue": "2000000",
            "symbol": self.symbol,
            "side": self.side,
            "size": num(size),
            "avgPrice": num(self.avg_price),
            "positionValue": num(size * self.avg_price),
            "tradeMode": 1,  # isolated margin
            "autoAddMargin": 0,
            "positionStatus": "Normal",
            "leverage": num(self.leverage),
            "markPrice": num(mark),
            "liqPrice": "",
            "bustPrice": "",
            "positionIM": num(self.initial_margin),
            "positionMM": "0",
            "positionBalance": num(self.initial_margin),
            "takeProfit": num(self.take_profit),
            "stopLoss": num(self.stop_loss),
            "trailingStop": "0",
            "sessionAvgPrice": "",
            "unrealisedPnl": num(self.unrealised(mark)),
            "curRealisedPnl": num(self.cur_realised),
            "cumRealisedPnl": num(self.cum_realised),
            "adlRankIndicator": 2 if size else 0,
            "isReduceOnly": False,
            "mmrSysUpdatedTime": "",
            "leverageSysUpdatedTime": "",
            "tpslMode": "Full",
            "createdTime": str(self.created_time),
            "updatedTime": str(self.updated_time),
            "seq": self.seq,
        }


@dataclass
class Execution:
    exec_id: str
    order_id: str
    order_link_id: str
    symbol: str
    side: str
    order_type: str
    stop_order_type: str
    order_price: float
    order_qty: float
    leaves_qty: float
    exec_price: float
    exec_qty: float
    exec_fee: float
    fee_rate: float
    exec_type: str  # "Trade" | "Funding"
    exec_time: int
    is_maker: bool
    mark_price: float
    closed_size: float
    seq: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderLinkId": self.order_link_id,
            "side": self.side,
            "orderPrice": num(self.order_price),
            "orderQty": num(self.order_qty),
            "leavesQty": num(self.leaves_qty),
            "createType": "CreateByClosing" if self.stop_order_type else "CreateByUser",
            "orderType": self.order_type,
            "stopOrderType": self.stop_order_type,
            "execFee": num(self.exec_fee),
            "execId": self.exec_id,
            "execPrice": num(self.exec_price),
            "execQty": num(self.exec_qty),
            "execType": self.exec_type,
            "execValue": num(self.exec_qty * self.exec_price),
            "execTime": str(self.exec_time),
            "feeCurrency": "USDT",
            "isMaker": self.is_maker,
            "feeRate": num(self.fee_rate),
            "tradeIv": "",
            "markIv": "",
            "markPrice": num(self.mark_price),
            "indexPrice": "",
            "underlyingPrice": "",
            "blockTradeId": "",
            "closedSize": num(self.closed_size),
            "seq": self.seq,
            "extraFees": "",
        }


@dataclass
class Account:
    api_key: str
    api_secret: str
    deposit: float
    cash: float  # wallet balance: deposit + realised PnL - fees - funding paid
    taker_fee: float = 0.00055
    maker_fee: float = 0.0002
    positions: dict[str, Position] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)  # orderId -> Order, in creation order
    link_ids: dict[str, str] = field(default_factory=dict)  # orderLinkId -> orderId
    executions: list[Execution] = field(default_factory=list)
    open_ids: dict[str, None] = field(default_factory=dict)  # open orders, in creation order
    # journal bookkeeping: orders changed and executions added since the last save
    changed_ids: dict[str, None] = field(default_factory=dict, repr=False)
    saved_executions: int = field(default=0, repr=False)

    def track(self, order: Order) -> None:
        """Record a change of ``order`` (call after every change): open index and journal."""
        self.changed_ids[order.order_id] = None
        if order.is_open:
            self.open_ids[order.order_id] = None
        else:
            self.open_ids.pop(order.order_id, None)

    def open_orders(self) -> list[Order]:
        return [self.orders[order_id] for order_id in self.open_ids]

    def to_json(self, *, include_history: bool = True) -> dict[str, Any]:
        if not include_history:
            return {
                "api_key": self.api_key,
                "api_secret": self.api_secret,
                "deposit": self.deposit,
                "cash": self.cash,
                "taker_fee": self.taker_fee,
                "maker_fee": self.maker_fee,
                "positions": [asdict(p) for p in self.positions.values()],
            }
        return {
            "api_key": self.api_key,
            "api_secret": self.api_secret,
            "deposit": self.deposit,
            "cash": self.cash,
            "taker_fee": self.taker_fee,
            "maker_fee": self.maker_fee,
            "positions": [asdict(p) for p in self.positions.values()],
            "orders": [asdict(o) for o in self.orders.values()],
            "executions": [asdict(e) for e in self.executions],
        }

    def delta_json(self) -> dict[str, Any]:
        """What changed since the last save (all positions, changed orders, new executions)."""
        return {
            **self.to_json(include_history=False),
            "orders": [asdict(self.orders[i]) for i in self.changed_ids],
            "executions": [asdict(e) for e in self.executions[self.saved_executions :]],
        }

    def mark_saved(self) -> None:
        self.changed_ids.clear()
        self.saved_executions = len(self.executions)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Account:
        account = cls(
            api_key=data["api_key"],
            api_secret=data["api_secret"],
            deposit=float(data["deposit"]),
            cash=float(data["cash"]),
            taker_fee=float(data["taker_fee"]),
            maker_fee=float(data["maker_fee"]),
        )
        account.apply(data)
        return account

    def apply(self, data: dict[str, Any]) -> None:
        """Apply a snapshot or journal entry: scalars and positions replace, orders upsert,
        executions append."""
        self.cash = float(data["cash"])
        self.taker_fee = float(data["taker_fee"])
        self.maker_fee = float(data["maker_fee"])
        for p in data.get("positions", []):
            self.positions[p["symbol"]] = Position(**_known(Position, p))
        for o in data.get("orders", []):
            order = Order(**_known(Order, o))
            self.orders[order.order_id] = order
            self.track(order)
            if order.order_link_id:
                self.link_ids[order.order_link_id] = order.order_id
        last_seq = self.executions[-1].seq if self.executions else -1
        for e in data.get("executions", []):
            if int(e["seq"]) > last_seq:  # replaying a journal twice must not duplicate fills
                self.executions.append(Execution(**_known(Execution, e)))
        self.mark_saved()


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}

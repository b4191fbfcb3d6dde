"""The order gateway: the only code that sends orders.

Why this shape: every failure mode of order entry is handled here, once, by rule.

1. Every order has a deterministic ``orderLinkId`` (:func:`order_link_id` of system, symbol,
   decision bar and leg). A re-run of the same decision finds the stored intent and sends
   nothing new (``duplicate``).
2. The intent is committed to DuckDB (``status = pending, sent = true``) BEFORE the request
   leaves, so a crash at any point leaves a record that the next submit or reconciliation
   resolves by looking the order up by its orderLinkId.
3. An ambiguous outcome (timeout, connection error, dropped reply, HTTP 5xx, undecodable body)
   is resolved by that lookup; only when the venue does not know the id is the order re-sent,
   with the SAME id, so the venue itself refuses a second copy (110072, which counts as already
   placed and is followed by a lookup).
4. 10006 (rate limit): wait until ``X-Bapi-Limit-Reset-Timestamp`` (bounded by
   ``max_backoff_s``), then retry; 10002 (timestamp outside recv_window): resync the clock offset
   from ``/v5/market/time`` and retry once. pybit's own retries are off (see broker.py).
5. Quantities are rounded DOWN to the step; below the minimum quantity or (for orders that are
   not reduce-only) the minimum notional the order is rejected before sending.
6. Risk checks (risk.py) and the kill switch (killswitch.py) run before every order: while the
   switch is tripped only orders that reduce the system's own position go out.

Semantics in full: docs/trading.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

from factory_pipeline.errors import ExchangeError, RiskLimitError
from factory_pipeline.schemas.trading import Fill, OrderIntent, ReconciliationReport
from factory_pipeline.store.db import Store
from factory_pipeline.trading.broker import (
    AmbiguousVenueError,
    Broker,
    InstrumentRules,
    VenueRejection,
)
from factory_pipeline.trading.killswitch import KillSwitch
from factory_pipeline.trading.ledger import (
    UNATTRIBUTED,
    PositionPnl,
    TradingLedger,
    with_pending,
)
from factory_pipeline.trading.risk import (
    Exposure,
    RiskGuard,
    RiskLimits,
    is_reducing,
    limits_hash,
)

logger = logging.getLogger(__name__)

OutcomeStatus = Literal["filled", "placed", "duplicate", "rejected", "blocked"]

#: Bybit's orderLinkId limit.
MAX_LINK_ID_LEN = 36
RET_DUPLICATE_LINK_ID = 110072
RET_RATE_LIMIT = 10006
RET_TIMESTAMP = 10002
_DAY_MS = 86_400_000
#: How far before the earliest deferred order a bar close's settlement reads the venue (covers
#: a venue clock behind the decision clock).
_SETTLE_LOOKBACK_MS = 5 * 60_000


class InvalidOrderError(ExchangeError):
    """An OrderRequest is malformed (the message names the field)."""


def order_link_id(system_id: str, symbol: str, decision_time_ms: int, leg: str) -> str:
    """Deterministic Bybit ``orderLinkId`` (35 chars of ``[a-z0-9-]``) for one order decision.

    ``"tf-"`` + the first 32 hex digits (128 bits) of SHA-256 over the JSON of the four parts:
    the same decision always gets the same id, different decisions practically never collide.
    """
    payload = json.dumps([system_id, symbol, int(decision_time_ms), leg], separators=(",", ":"))
    return "tf-" + hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class OrderRequest:
    """One order decision of one system (see the trading contract)."""

    system_id: str
    symbol: str
    side: Literal["Buy", "Sell"]
    qty: float
    decision_time_ms: int
    leg: str
    reference_price: float
    order_type: Literal["Market", "Limit"] = "Market"
    price: float | None = None
    reduce_only: bool = False
    stop_loss: float | None = None
    take_profit: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if not self.system_id:
            problems.append("system_id is empty")
        if not self.symbol or not self.symbol.isalnum():
            problems.append(f"symbol {self.symbol!r} is invalid")
        if self.side not in ("Buy", "Sell"):
            problems.append(f"side {self.side!r} must be 'Buy' or 'Sell'")
        if not (self.qty > 0):
            problems.append(f"qty {self.qty!r} must be > 0")
        if not (self.reference_price > 0):
            problems.append(f"reference_price {self.reference_price!r} must be > 0")
        if self.order_type not in ("Market", "Limit"):
            problems.append(f"order_type {self.order_type!r} must be 'Market' or 'Limit'")
        if self.order_type == "Limit" and not (self.price is not None and self.price > 0):
            problems.append("a Limit order needs price > 0")
        if not self.leg:
            problems.append("leg is empty")
        if problems:
            raise InvalidOrderError(
                f"order request {self.system_id}/{self.symbol}: " + "; ".join(problems)
            )

    @property
    def order_link_id(self) -> str:
        return order_link_id(self.system_id, self.symbol, self.decision_time_ms, self.leg)

    @property
    def signed_qty(self) -> float:
        return self.qty if self.side == "Buy" else -self.qty


@dataclass(frozen=True)
class OrderOutcome:
    """What :meth:`OrderGateway.submit` did. ``qty`` is the quantity sent (after rounding)."""

    order_link_id: str
    status: OutcomeStatus
    order_id: str | None = None
    filled_qty: float = 0.0
    avg_price: float | None = None
    fee: float = 0.0
    reason: str = ""
    qty: float = 0.0
    intent_status: str = ""


class OrderGateway:
    """Risk-checked, idempotent order entry over a :class:`Broker`, recorded in a Store.

    ``clock_ms`` is the decision clock (the local exchange's simulated clock in replays; the
    wall clock otherwise): it stamps intents and decides which UTC day the daily loss is
    measured in. ``system_capital`` is the notional capital each system's equity starts from.
    """

    def __init__(
        self,
        broker: Broker,
        store: Store,
        *,
        limits: RiskLimits,
        kill_switch: KillSwitch | None = None,
        clock_ms: Callable[[], int] | None = None,
        system_capital: float = 10_000.0,
        leverage: float | None = None,
        max_send_attempts: int = 3,
        max_rate_limit_waits: int = 3,
        max_backoff_s: float = 2.0,
        fill_wait_s: float = 1.0,
        venue: str = "",
    ) -> None:
        self.broker = broker
        self.store = store
        self.ledger = TradingLedger(store)
        self.limits = limits
        self.guard = RiskGuard(limits)
        self.limits_hash = limits_hash(limits)
        self.clock_ms: Callable[[], int] = clock_ms or _wall_ms
        self.kill_switch = kill_switch or KillSwitch(store, clock_ms=lambda: self.clock_ms())
        self.kill_switch.on_trip.append(self._cancel_all_on_trip)
        self.system_capital = system_capital
        self.leverage = min(leverage if leverage is not None else 1.0, limits.max_leverage)
        self.max_send_attempts = max_send_attempts
        self.max_rate_limit_waits = max_rate_limit_waits
        self.max_backoff_s = max_backoff_s
        self.fill_wait_s = fill_wait_s
        self.venue = venue
        self._leverage_set: set[str] = set()
        #: (monotonic time, decision clock, equity): reused within one bar close for 1 s at most.
        self._equity_cache: tuple[float, int, float] | None = None
        #: Market orders acknowledged inside :meth:`bar_close`, settled when it ends.
        self._deferred: list[OrderIntent] | None = None

    # public API -----------------------------------------------------------------------------
    def submit(self, request: OrderRequest) -> OrderOutcome:
        """Check, store and send one order; never sends a second copy of a decision."""
        with self.store.pinned():
            return self._submit(request)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Hold one store connection for a batch of submits (one bar close); see Store.pinned."""
        with self.store.pinned():
            yield

    @contextmanager
    def bar_close(self, decision_time_ms: int | None = None) -> Iterator[dict[str, OrderOutcome]]:
        """One bar close's orders (decided at ``decision_time_ms``), settled together.

        Inside the block one store connection is held, and a market order returns as soon as
        the venue acknowledges it (outcome ``placed``); its intent was committed before it left,
        as always. Risk checks and positions inside the block count the acknowledged orders
        as filled at their reference price (:func:`ledger.with_pending`). When the block ends,
        the orders are read back with two venue requests per symbol (order history and
        executions) and stored in one commit; an order not final there is settled on its own
        (looked up by its orderLinkId). The yielded dict then maps each deferred orderLinkId
        to its final outcome. A crash before the end leaves sent intents that the next
        reconciliation resolves, as for any interrupted order.
        """
        settled: dict[str, OrderOutcome] = {}
        with self.store.pinned():
            if decision_time_ms is not None:
                self.ledger.preload_intents(decision_time_ms)
            if self._deferred is not None:  # nested: the outer block settles
                yield settled
                return
            self._deferred = []
            try:
                yield settled
            finally:
                deferred, self._deferred = self._deferred, None
                settled.update(self._settle_deferred(deferred))

    def system_position(self, system_id: str, symbol: str) -> float:
        """Signed position (qty) of one system in one symbol, from its stored fills (and, in
        :meth:`bar_close`, its orders acknowledged but not yet settled)."""
        pos = self._positions().get((system_id, symbol))
        return pos.qty if pos is not None else 0.0

    def system_equity(
        self,
        system_id: str,
        marks: dict[str, float] | None = None,
        *,
        positions: dict[tuple[str, str], PositionPnl] | None = None,
    ) -> float:
        """``system_capital`` + realized PnL - fees + unrealized PnL at ``marks`` (default: each
        symbol's last fill price)."""
        equity = self.system_capital
        if positions is None:
            positions = self._positions()
        for (sid, symbol), pos in positions.items():
            if sid != system_id:
                continue
            mark = (marks or {}).get(symbol, pos.last_price)
            equity += pos.realized_pnl - pos.fees + pos.qty * (mark - pos.avg_price)
        return equity

    def sync_fills(self) -> int:
        """Store new venue executions, attributed to systems by orderLinkId; returns the count."""
        with self.store.pinned():
            last = self.ledger.last_exec_time_ms()
            start = last - _DAY_MS if last is not None else None
            rows = self._venue_call(self.broker.executions, start_ms=start)
            return self._store_executions(rows)

    def reconcile(self) -> ReconciliationReport:
        """Compare venue positions, open orders and fills with the store; see reconcile.py."""
        from factory_pipeline.trading.reconcile import reconcile

        with self.store.pinned():
            return reconcile(self)

    def check_data_freshness(
        self, *, last_bar_close_ms: int | None, bar_ms: int, now_ms: int | None = None
    ) -> bool:
        """Trip the kill switch when the last closed bar is stale; True when fresh."""
        return self.kill_switch.check_data_freshness(
            last_bar_close_ms=last_bar_close_ms,
            now_ms=self.clock_ms() if now_ms is None else now_ms,
            bar_ms=bar_ms,
            max_stale_bars=self.limits.max_stale_bars,
        )

    def check_equity(self, marks: dict[str, float] | None = None) -> dict[str, float]:
        """Snapshot account and system equity; trip on the account daily loss limit.

        Returns ``{"account": loss, "<system_id>": loss, ...}``: losses from the UTC-day
        high-water marks (0 at a new high). Mark prices come from the venue unless given.
        """
        with self.store.pinned():
            return self._check_equity(marks)

    def _check_equity(self, marks: dict[str, float] | None) -> dict[str, float]:
        now = self.clock_ms()
        account = self._venue_call(self.broker.wallet_equity)
        self._equity_cache = (time.monotonic(), now, account)
        marks = dict(marks or {})
        positions = self._positions()
        for _, symbol in positions:
            if symbol not in marks:
                try:
                    marks[symbol] = self._venue_call(self.broker.mark_price, symbol)
                except ExchangeError as exc:
                    logger.warning("mark price %s unavailable (%s): using last fill", symbol, exc)
        losses = {"account": self._snapshot_loss("account", account, now)}
        for system_id in sorted({sid for sid, _ in positions if sid != UNATTRIBUTED}):
            equity = self.system_equity(system_id, marks, positions=positions)
            losses[system_id] = self._snapshot_loss(f"system:{system_id}", equity, now)
        self.kill_switch.check_daily_loss(
            loss=losses["account"], limit=self.limits.max_daily_loss_total_usdt, scope="account"
        )
        return losses

    def flagged_systems(self) -> dict[str, list[str]]:
        """System id -> reasons it was flagged by reconciliation."""
        return self.ledger.flags()

    def cancel(self, order_link_id: str) -> OrderOutcome:
        """Cancel a resting order of a stored intent; the intent adopts the venue's final state.

        Allowed while the kill switch is tripped (cancelling reduces risk). An order that filled
        before the cancel arrived ends as ``filled``.
        """
        with self.store.pinned():
            intent = self.ledger.get_intent(order_link_id)
            if intent is None:
                raise InvalidOrderError(f"cancel: no stored order intent {order_link_id!r}")
            if intent.status not in ("placed", "partially_filled", "unknown", "pending"):
                return _outcome(intent)
            try:
                self._venue_call(self.broker.cancel_order, intent.symbol, order_link_id)
            except VenueRejection as exc:
                logger.info("%s: cancel refused (%s); reading the order", order_link_id, exc)
            except ExchangeError as exc:
                return _outcome(intent, reason=f"cancel failed: {exc}")
            return self._settle(intent, None, note="cancel requested")

    # sending --------------------------------------------------------------------------------
    def _submit(self, request: OrderRequest) -> OrderOutcome:
        link_id = request.order_link_id
        existing = self.ledger.get_intent(link_id, decision_time_ms=request.decision_time_ms)
        if existing is not None:
            if existing.status in ("pending", "unknown"):
                return self._resume(existing)
            if existing.sent:
                return _outcome(existing, status="duplicate")
            # stored but never sent (blocked or rejected before sending): decide afresh
        positions = self._positions()
        own = positions.get((request.system_id, request.symbol))
        reducing = is_reducing(own.qty if own is not None else 0.0, request.signed_qty)
        switch = self.kill_switch.state()  # fail-closed: unreadable counts as tripped
        if switch.tripped and not reducing:
            return self._refuse(
                request, None, "blocked", f"kill switch tripped: {switch.reason}", blocked=True
            )
        try:
            rules = self._venue_call(self.broker.instrument, request.symbol)
        except ExchangeError as exc:
            return self._refuse(request, None, "rejected", f"instrument lookup failed: {exc}")
        qty = rules.round_qty(request.qty)
        rounded = replace(request, qty=qty) if qty > 0 else request
        exposure = self._exposure(request, positions)
        if qty <= 0 or qty < rules.min_qty - 1e-12:
            return self._refuse(
                request,
                qty,
                "rejected",
                f"qty {request.qty:g} rounds down to {qty:g}, below the minimum order qty "
                f"{rules.min_qty:g} (step {rules.qty_step:g})",
            )
        if rules.max_qty is not None and qty > rules.max_qty:
            return self._refuse(
                request, qty, "rejected", f"qty {qty:g} above the venue maximum {rules.max_qty:g}"
            )
        notional = qty * request.reference_price
        if not request.reduce_only and notional < rules.min_notional - 1e-9:
            return self._refuse(
                request,
                qty,
                "rejected",
                f"notional {notional:.4f} USDT below the minimum notional {rules.min_notional:g}",
            )
        try:
            self.guard.check(rounded, exposure)
        except RiskLimitError as exc:
            return self._refuse(request, qty, "rejected", f"risk limit: {exc}")
        if not reducing and request.symbol not in self._leverage_set:
            try:
                self._venue_call(self.broker.set_leverage, request.symbol, self.leverage)
                self._leverage_set.add(request.symbol)
            except ExchangeError as exc:
                return self._refuse(request, qty, "rejected", f"set leverage failed: {exc}")
        intent = self._new_intent(request, qty, status="pending", sent=True)
        self.ledger.save_intent(intent)  # committed before the request leaves
        return self._send(intent, rules)

    def _send(self, intent: OrderIntent, rules: InstrumentRules) -> OrderOutcome:
        params = self._order_params(intent, rules)
        resynced = False
        rate_waits = 0
        attempts = 0
        last_error = ""
        while attempts < self.max_send_attempts:
            attempts += 1
            intent = intent.model_copy(
                update={"attempts": intent.attempts + 1, "updated_ms": self.clock_ms()}
            )
            if attempts > 1:
                self.ledger.save_intent(intent)  # the resend is on record before it leaves
            try:
                result = self.broker.place_order(dict(params))
            except VenueRejection as exc:
                if exc.ret_code == RET_DUPLICATE_LINK_ID:
                    self.kill_switch.record_venue_result(True, limit=self._error_limit)
                    logger.info(
                        "%s: venue already has this orderLinkId; looking it up",
                        intent.order_link_id,
                    )
                    return self._settle(intent, None, note="110072 already placed")
                if exc.ret_code == RET_RATE_LIMIT and rate_waits < self.max_rate_limit_waits:
                    rate_waits += 1
                    attempts -= 1  # a 10006 was not processed: it does not use up an attempt
                    self._rate_limit_wait(exc, rate_waits)
                    continue
                if exc.ret_code == RET_TIMESTAMP and not resynced:
                    resynced = True
                    attempts -= 1  # a 10002 was not processed: retry once after the resync
                    try:
                        self._venue_call(self.broker.sync_time)
                    except ExchangeError as sync_exc:
                        logger.error("time resync failed (%s); retrying once as is", sync_exc)
                    continue
                self._venue_failed(str(exc))
                rejected = intent.model_copy(
                    update={"status": "rejected", "reason": str(exc), "updated_ms": self.clock_ms()}
                )
                self.ledger.save_intent(rejected)
                return _outcome(rejected, status="rejected")
            except AmbiguousVenueError as exc:
                last_error = str(exc)
                self._venue_failed(last_error)
                logger.warning("%s: ambiguous send (%s); looking up", intent.order_link_id, exc)
                intent = intent.model_copy(update={"status": "unknown", "reason": last_error})
                self.ledger.save_intent(intent)
                try:
                    found = self._venue_call(
                        self.broker.get_order, intent.symbol, intent.order_link_id
                    )
                except ExchangeError as lookup_exc:
                    last_error = f"{last_error}; lookup failed: {lookup_exc}"
                    continue  # resend with the same id: the venue refuses a duplicate
                if found is not None:
                    return self._settle(intent, found, note=f"resolved after: {exc}")
                continue
            self.kill_switch.record_venue_result(True, limit=self._error_limit)
            order_id = str(result.get("orderId") or "") or None
            placed = intent.model_copy(update={"order_id": order_id})
            if self._deferred is not None and placed.order_type == "Market":
                self._deferred.append(placed)  # acknowledged; settled when the bar close ends
                return _outcome(placed, status="placed")
            return self._settle(placed, None)
        unresolved = intent.model_copy(
            update={
                "status": "unknown",
                "reason": f"unresolved after {attempts} attempt(s): {last_error}",
                "updated_ms": self.clock_ms(),
            }
        )
        self.ledger.save_intent(unresolved)
        return _outcome(unresolved, status="rejected")

    def _resume(self, intent: OrderIntent) -> OrderOutcome:
        """An intent that may have left without a resolved outcome: look it up, else resend."""
        try:
            found = self._venue_call(self.broker.get_order, intent.symbol, intent.order_link_id)
        except ExchangeError as exc:
            return _outcome(intent, status="rejected", reason=f"unresolved, lookup failed: {exc}")
        if found is not None:
            return self._settle(intent, found, note="resolved on resume")
        try:
            rules = self._venue_call(self.broker.instrument, intent.symbol)
        except ExchangeError as exc:
            return _outcome(intent, status="rejected", reason=f"unresolved: {exc}")
        if self.kill_switch.is_tripped():
            pos = self.system_position(intent.system_id, intent.symbol)
            signed = intent.qty if intent.side == "Buy" else -intent.qty
            if not is_reducing(pos, signed):
                blocked = intent.model_copy(
                    update={
                        "status": "blocked",
                        "sent": False,
                        "reason": "kill switch tripped; never reached the venue",
                        "updated_ms": self.clock_ms(),
                    }
                )
                self.ledger.save_intent(blocked)
                return _outcome(blocked, status="blocked")
        logger.info("%s: not on the venue; re-sending with the same id", intent.order_link_id)
        return self._send(intent, rules)

    def _settle(
        self, intent: OrderIntent, order: dict[str, Any] | None, *, note: str = ""
    ) -> OrderOutcome:
        """Read the order's venue state (waiting briefly for a market fill) and store it."""
        deadline = time.monotonic() + self.fill_wait_s
        delay = 0.005
        while True:
            if order is None or (
                intent.order_type == "Market" and order.get("orderStatus") in _WORKING
            ):
                try:
                    order = (
                        self._venue_call(self.broker.get_order, intent.symbol, intent.order_link_id)
                        or order
                    )
                except ExchangeError as exc:
                    logger.warning("%s: order lookup failed: %s", intent.order_link_id, exc)
            working = order is None or order.get("orderStatus") in _WORKING
            if not (intent.order_type == "Market" and working) or time.monotonic() > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        if order is None:
            placed = intent.model_copy(
                update={
                    "status": "unknown",
                    "reason": f"accepted but not visible yet {note}".strip(),
                    "updated_ms": self.clock_ms(),
                }
            )
            self.ledger.save_intent(placed)
            return _outcome(placed, status="placed")
        updated = apply_venue_order(intent, order, self.clock_ms(), note=note)
        fills = self._order_fills(updated) if updated.filled_qty > 0 and updated.order_id else []
        self.ledger.save_settlement(updated, fills)  # intent and its fills in one commit
        return _outcome(updated)

    def _settle_deferred(self, deferred: list[OrderIntent]) -> dict[str, OrderOutcome]:
        """Settle the orders acknowledged in a :meth:`bar_close`: per symbol one order-history
        and one executions request, one commit for all; stragglers one by one."""
        outcomes: dict[str, OrderOutcome] = {}
        by_symbol: dict[str, list[OrderIntent]] = {}
        for intent in deferred:
            by_symbol.setdefault(intent.symbol, []).append(intent)
        for symbol, intents in by_symbol.items():
            start = min(i.created_ms for i in intents) - _SETTLE_LOOKBACK_MS
            try:
                orders = self._venue_call(self.broker.order_history, symbol=symbol, start_ms=start)
                rows = self._venue_call(self.broker.executions, symbol=symbol, start_ms=start)
            except ExchangeError as exc:
                logger.warning("%s: batch settlement reads failed (%s); one by one", symbol, exc)
                orders, rows = [], []
            by_link = {str(o.get("orderLinkId") or ""): o for o in orders}
            settlements: list[tuple[OrderIntent, list[Fill]]] = []
            stragglers: list[OrderIntent] = []
            for intent in intents:
                order = by_link.get(intent.order_link_id)
                if order is None or order.get("orderStatus") in _WORKING:
                    stragglers.append(intent)
                    continue
                updated = apply_venue_order(intent, order, self.clock_ms())
                fills = _fills_of(updated, rows) if updated.order_id else []
                if sum(f.qty for f in fills) < updated.filled_qty - 1e-12:
                    stragglers.append(intent)  # executions not all visible yet
                    continue
                settlements.append((updated, fills))
            self.ledger.save_settlements(settlements)  # all intents and fills in one commit
            for updated, _ in settlements:
                outcomes[updated.order_link_id] = _outcome(updated)
            for intent in stragglers:
                outcomes[intent.order_link_id] = self._settle(intent, None)
        return outcomes

    def _positions(self) -> dict[tuple[str, str], PositionPnl]:
        """Positions from the stored fills, plus the orders acknowledged in a :meth:`bar_close`
        and not settled yet (as filled at their reference price)."""
        positions = self.ledger.positions()
        return with_pending(positions, self._deferred) if self._deferred else positions

    def _order_fills(self, intent: OrderIntent) -> list[Fill]:
        """The order's executions (waiting up to ``fill_wait_s`` for all of them to show)."""
        deadline = time.monotonic() + self.fill_wait_s
        while True:
            try:
                rows = self._venue_call(
                    self.broker.executions, symbol=intent.symbol, order_id=intent.order_id
                )
            except ExchangeError as exc:
                logger.warning(
                    "%s: executions unavailable (%s); sync_fills will catch up",
                    intent.order_link_id,
                    exc,
                )
                return []
            fills = _fills_of(intent, rows)
            if sum(f.qty for f in fills) >= intent.filled_qty - 1e-12:
                return fills
            if time.monotonic() > deadline:
                return fills
            time.sleep(0.01)

    def _store_executions(self, rows: list[dict[str, Any]]) -> int:
        links = self.ledger.intent_systems(r.get("orderLinkId") or "" for r in rows)
        fills = []
        for row in rows:
            fill = execution_to_fill(row, links)
            if fill is not None:
                fills.append(fill)
        return self.ledger.add_fills(fills)

    # helpers --------------------------------------------------------------------------------
    @property
    def _error_limit(self) -> int:
        return self.limits.max_consecutive_venue_errors

    def _venue_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A non-order venue request (a read, or an idempotent write such as set-leverage).

        Bounded retry policy: 10006 -> wait for the limit reset (``max_rate_limit_waits``
        times), 10002 -> resync the clock once, an ambiguous failure -> one retry. Every failed
        request counts towards the consecutive-venue-errors kill-switch rule.
        """
        rate_waits = 0
        resynced = retried = False
        while True:
            try:
                result = fn(*args, **kwargs)
            except VenueRejection as exc:
                self._venue_failed(str(exc))
                if exc.ret_code == RET_RATE_LIMIT and rate_waits < self.max_rate_limit_waits:
                    rate_waits += 1
                    self._rate_limit_wait(exc, rate_waits)
                    continue
                if exc.ret_code == RET_TIMESTAMP and not resynced and fn != self.broker.sync_time:
                    resynced = True
                    try:
                        self.broker.sync_time()
                    except ExchangeError as sync_exc:
                        logger.error("time resync failed (%s); retrying once as is", sync_exc)
                    continue
                raise
            except AmbiguousVenueError as exc:
                self._venue_failed(str(exc))
                if not retried:
                    retried = True
                    continue
                raise
            self.kill_switch.record_venue_result(True, limit=self._error_limit)
            return result

    def _venue_failed(self, detail: str) -> None:
        self.kill_switch.record_venue_result(False, limit=self._error_limit, detail=detail)

    def _rate_limit_wait(self, exc: VenueRejection, attempt: int) -> None:
        now_wall = time.time() * 1000 + getattr(self.broker, "time_offset_ms", 0)
        wait = (exc.reset_ms - now_wall) / 1000 if exc.reset_ms is not None else 0.05 * 2**attempt
        wait = min(max(wait, 0.0), self.max_backoff_s)
        logger.warning("rate limited (10006): waiting %.3f s before retry %d", wait, attempt)
        time.sleep(wait)

    def _exposure(
        self, request: OrderRequest, positions: dict[tuple[str, str], PositionPnl]
    ) -> Exposure:
        system_notional = total_notional = 0.0
        open_positions = 0
        for (sid, symbol), pos in positions.items():
            if abs(pos.qty) < 1e-12:
                continue
            price = request.reference_price if symbol == request.symbol else pos.last_price
            notional = abs(pos.qty) * price
            total_notional += notional
            if sid != UNATTRIBUTED:
                open_positions += 1
            if sid == request.system_id:
                system_notional += notional
        own = positions.get((request.system_id, request.symbol))
        now = self.clock_ms()
        system_equity = self.system_equity(
            request.system_id, {request.symbol: request.reference_price}, positions=positions
        )
        system_loss = self._loss_from_hwm(f"system:{request.system_id}", system_equity, now)
        account_equity = self._account_equity()
        total_loss = (
            self._loss_from_hwm("account", account_equity, now)
            if account_equity is not None
            else 0.0
        )
        return Exposure(
            system_position_qty=own.qty if own is not None else 0.0,
            system_notional=system_notional,
            total_notional=total_notional,
            open_positions=open_positions,
            venue_leverage=self.leverage,
            account_equity=account_equity,
            system_daily_loss=system_loss,
            total_daily_loss=total_loss,
        )

    def _account_equity(self) -> float | None:
        cached = self._equity_cache
        now = self.clock_ms()
        if cached is not None and cached[1] == now and time.monotonic() - cached[0] < 1.0:
            return cached[2]  # same decision time (one bar close), fresh: reuse
        try:
            equity = self._venue_call(self.broker.wallet_equity)
        except ExchangeError as exc:
            logger.warning("wallet equity unavailable: %s", exc)
            return None
        self._equity_cache = (time.monotonic(), now, equity)
        return equity

    def _loss_from_hwm(self, scope: str, equity: float, now_ms: int) -> float:
        day_start = now_ms - now_ms % _DAY_MS
        hwm = self.ledger.high_water_mark(scope, day_start, day_start + _DAY_MS)
        return max(0.0, (hwm if hwm is not None else equity) - equity)

    def _snapshot_loss(self, scope: str, equity: float, now_ms: int) -> float:
        self.ledger.add_equity(scope, now_ms, equity)
        return self._loss_from_hwm(scope, equity, now_ms)

    def _new_intent(
        self, request: OrderRequest, qty: float, *, status: str, sent: bool, reason: str = ""
    ) -> OrderIntent:
        now = self.clock_ms()
        return OrderIntent(
            order_link_id=request.order_link_id,
            system_id=request.system_id,
            symbol=request.symbol,
            side=request.side,
            leg=request.leg,
            decision_time_ms=int(request.decision_time_ms),
            qty_requested=float(request.qty),
            qty=float(qty),
            order_type=request.order_type,
            price=request.price,
            reduce_only=request.reduce_only,
            stop_loss=request.stop_loss,
            take_profit=request.take_profit,
            reference_price=float(request.reference_price),
            status=status,  # type: ignore[arg-type]
            sent=sent,
            reason=reason,
            limits_hash=self.limits_hash,
            created_ms=now,
            updated_ms=now,
        )

    def _refuse(
        self,
        request: OrderRequest,
        qty: float | None,
        status: Literal["rejected", "blocked"],
        reason: str,
        *,
        blocked: bool = False,
    ) -> OrderOutcome:
        logger.info("%s %s: %s (%s)", request.system_id, request.order_link_id, status, reason)
        intent = self._new_intent(
            request,
            qty if qty is not None else request.qty,
            status=status,
            sent=False,
            reason=reason,
        )
        self.ledger.save_intent(intent)
        return _outcome(intent, status="blocked" if blocked else status)

    def _order_params(self, intent: OrderIntent, rules: InstrumentRules) -> dict[str, Any]:
        params: dict[str, Any] = {
            "symbol": intent.symbol,
            "side": intent.side,
            "orderType": intent.order_type,
            "qty": rules.format_qty(intent.qty),
            "orderLinkId": intent.order_link_id,
            "positionIdx": 0,
        }
        if intent.order_type == "Limit" and intent.price is not None:
            params["price"] = rules.format_price(rules.round_price(intent.price))
            params["timeInForce"] = "GTC"
        if intent.reduce_only:
            params["reduceOnly"] = True
        if intent.stop_loss is not None:
            params["stopLoss"] = rules.format_price(rules.round_price(intent.stop_loss))
        if intent.take_profit is not None:
            params["takeProfit"] = rules.format_price(rules.round_price(intent.take_profit))
        return params

    def _cancel_all_on_trip(self, reason: str) -> None:
        logger.error("kill switch: cancelling all open orders (%s)", reason)
        self.broker.cancel_all()


_WORKING = {"New", "PartiallyFilled", "Untriggered", "Created"}

_VENUE_STATUS: dict[str, str] = {
    "New": "placed",
    "Created": "placed",
    "Untriggered": "placed",
    "PartiallyFilled": "partially_filled",
    "Filled": "filled",
    "Cancelled": "cancelled",
    "PartiallyFilledCanceled": "cancelled",
    "Deactivated": "cancelled",
    "Rejected": "rejected",
    "Triggered": "placed",
}


def apply_venue_order(
    intent: OrderIntent, order: dict[str, Any], now_ms: int, *, note: str = ""
) -> OrderIntent:
    """The intent updated with the venue's view of the order (status, fills, fee, order id)."""
    venue_status = str(order.get("orderStatus") or "")
    status = _VENUE_STATUS.get(venue_status, "unknown")
    filled = _float(order.get("cumExecQty"))
    if status == "cancelled" and filled > 0:
        status = "filled" if filled >= intent.qty - 1e-12 else "cancelled"
    avg = _float(order.get("avgPrice")) or None
    reason = intent.reason if status in ("unknown", "rejected") else ""
    if status == "rejected":
        reason = str(order.get("rejectReason") or "rejected by venue")
    if note and status != "rejected":
        reason = note
    return intent.model_copy(
        update={
            "status": status,
            "sent": True,
            "order_id": str(order.get("orderId") or intent.order_id or "") or None,
            "filled_qty": filled,
            "avg_price": avg if filled > 0 else None,
            "fee": _float(order.get("cumExecFee")),
            "reason": reason,
            "updated_ms": now_ms,
        }
    )


def execution_to_fill(row: dict[str, Any], link_systems: dict[str, str]) -> Fill | None:
    """A venue execution row as a :class:`Fill` (None for funding and zero-qty rows)."""
    qty = _float(row.get("execQty"))
    if qty <= 0 or row.get("execType") == "Funding" or not row.get("execId"):
        return None
    link = row.get("orderLinkId") or None
    return Fill(
        exec_id=str(row["execId"]),
        order_link_id=link,
        order_id=str(row.get("orderId") or "") or None,
        system_id=link_systems.get(link) if link else None,
        symbol=str(row["symbol"]),
        side=row["side"],
        qty=qty,
        price=_float(row.get("execPrice")),
        fee=_float(row.get("execFee")),
        exec_time_ms=int(row.get("execTime") or 0),
        exec_type=str(row.get("execType") or "Trade"),
        is_maker=bool(row.get("isMaker", False)),
    )


def _fills_of(intent: OrderIntent, rows: list[dict[str, Any]]) -> list[Fill]:
    """The executions among ``rows`` of the intent's venue order, as its system's fills."""
    links = {intent.order_link_id: intent.system_id}
    return [
        f
        for f in (execution_to_fill(r, links) for r in rows)
        if f is not None and f.order_id == intent.order_id
    ]


def _outcome(
    intent: OrderIntent, status: OutcomeStatus | None = None, reason: str | None = None
) -> OrderOutcome:
    if status is None:
        status = {
            "filled": "filled",
            "partially_filled": "placed",
            "placed": "placed",
            "unknown": "placed",
            "pending": "placed",
            "blocked": "blocked",
        }.get(intent.status, "rejected")  # type: ignore[assignment]
        if intent.status == "cancelled" and intent.filled_qty > 0:
            status = "filled"
    return OrderOutcome(
        order_link_id=intent.order_link_id,
        status=status,  # type: ignore[arg-type]
        order_id=intent.order_id,
        filled_qty=intent.filled_qty,
        avg_price=intent.avg_price,
        fee=intent.fee,
        reason=reason if reason is not None else intent.reason,
        qty=intent.qty,
        intent_status=intent.status,
    )


def _float(value: Any) -> float:
    try:
        return float(value) if value not in (None, "") else 0.0
    except (TypeError, ValueError):
        return 0.0


def _wall_ms() -> int:
    return int(time.time() * 1000)


def utc_day_start_ms(ts_ms: int) -> int:
    """Start (ms) of the UTC day containing ``ts_ms``."""
    return ts_ms - ts_ms % _DAY_MS


__all__ = [
    "InvalidOrderError",
    "OrderGateway",
    "OrderOutcome",
    "OrderRequest",
    "apply_venue_order",
    "execution_to_fill",
    "order_link_id",
    "utc_day_start_ms",
]

"""Reconciliation: the venue is the truth; the store is brought in line and differences recorded.

Why: a crash between "intent stored" and "reply received", a dropped reply, a manual action on
the account or a venue-side event (liquidation, stop trigger) leaves the store and the venue
apart. Run at start and after every run, :func:`reconcile` compares, in this order:

1. intents not final (pending, unknown, placed, partially filled) with the venue's order looked
   up by orderLinkId: found -> the intent adopts the venue state; not found -> a pending/unknown
   intent never reached the venue (status ``rejected``, ``sent`` false: a re-run may send it),
   a placed one is marked ``cancelled``;
2. executions: new venue fills are stored once by execution id, attributed to a system by
   orderLinkId; a fill with an unknown orderLinkId is kept unattributed and recorded;
3. positions per symbol: one-way mode means the systems trading a symbol share ONE venue
   position, so the venue size is compared with the SUM of the systems' stored positions. A
   difference is adopted: an ``adjustment`` fill (unattributed) makes the sum equal the venue,
   and every system holding that symbol is flagged;
4. open orders on the venue whose orderLinkId the store does not know are recorded (and left
   alone: they may be a human's).

Nothing is ignored: every difference is a :class:`ReconciliationRecord` row.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from typing import TYPE_CHECKING

from factory_pipeline.errors import ExchangeError
from factory_pipeline.schemas.trading import Fill, ReconciliationRecord, ReconciliationReport
from factory_pipeline.trading.ledger import UNATTRIBUTED

if TYPE_CHECKING:
    from factory_pipeline.trading.gateway import OrderGateway

logger = logging.getLogger(__name__)

_OPEN_STATUSES = ("pending", "unknown", "placed", "partially_filled")
_QTY_TOL = 1e-9


def reconcile(gateway: OrderGateway) -> ReconciliationReport:
    """One reconciliation pass of ``gateway``'s store against its venue (see module doc)."""
    from factory_pipeline.trading.gateway import apply_venue_order

    ledger = gateway.ledger
    run_ms = gateway.clock_ms()
    records: list[ReconciliationRecord] = []
    flagged: dict[str, str] = {}
    known_ids = {r.record_id for r in ledger.reconciliation_records()}

    # 1. open intents vs venue orders
    resolved = 0
    for intent in ledger.intents(statuses=_OPEN_STATUSES):
        try:
            order = gateway._venue_call(
                gateway.broker.get_order, intent.symbol, intent.order_link_id
            )
        except ExchangeError as exc:
            logger.warning("reconcile: lookup of %s failed: %s", intent.order_link_id, exc)
            continue
        if order is not None:
            updated = apply_venue_order(intent, order, run_ms, note=intent.reason)
            if updated.status != intent.status or updated.filled_qty != intent.filled_qty:
                ledger.save_intent(updated)
                resolved += 1
                records.append(
                    _record(
                        run_ms,
                        "intent_updated",
                        symbol=intent.symbol,
                        order_link_id=intent.order_link_id,
                        system_ids=[intent.system_id],
                        venue_value=updated.filled_qty,
                        store_value=intent.filled_qty,
                        resolution=f"adopted venue state {order.get('orderStatus')}",
                        detail=f"{intent.status} -> {updated.status}",
                    )
                )
            continue
        if intent.status in ("pending", "unknown"):
            new_status, sent = "rejected", False
            resolution = "never reached the venue: marked rejected (not sent)"
        else:
            new_status, sent = "cancelled", True
            resolution = "venue no longer knows the order: marked cancelled"
        ledger.save_intent(
            intent.model_copy(
                update={
                    "status": new_status,
                    "sent": sent,
                    "reason": resolution,
                    "updated_ms": run_ms,
                }
            )
        )
        resolved += 1
        records.append(
            _record(
                run_ms,
                "intent_missing_on_venue",
                symbol=intent.symbol,
                order_link_id=intent.order_link_id,
                system_ids=[intent.system_id],
                resolution=resolution,
                detail=f"was {intent.status}",
            )
        )

    # 2. fills
    fills_synced = 0
    try:
        fills_synced = gateway.sync_fills()
    except ExchangeError as exc:
        logger.warning("reconcile: executions unavailable: %s", exc)
    ledger_attributed = ledger_attribute_fills(gateway)
    if ledger_attributed:
        logger.info("reconcile: attributed %d earlier unattributed fills", ledger_attributed)
    for fill in ledger.fills():
        if fill.system_id is not None or fill.exec_type == "adjustment":
            continue
        record_id = _record_id("unattributed_fill", fill.exec_id)
        if record_id in known_ids:
            continue
        records.append(
            ReconciliationRecord(
                record_id=record_id,
                run_ms=run_ms,
                kind="unattributed_fill",
                symbol=fill.symbol,
                order_link_id=fill.order_link_id,
                venue_value=fill.qty if fill.side == "Buy" else -fill.qty,
                resolution="kept as an unattributed fill (no stored intent has this orderLinkId)",
                detail=f"exec {fill.exec_id} {fill.side} {fill.qty:g} @ {fill.price:g}",
            )
        )

    # 3. positions per symbol (one-way mode: one venue position per symbol)
    try:
        venue_rows = gateway._venue_call(gateway.broker.positions)
    except ExchangeError as exc:
        venue_rows = None
        logger.warning("reconcile: positions unavailable: %s", exc)
    if venue_rows is not None:
        venue: dict[str, tuple[float, float]] = {}
        for row in venue_rows:
            size = float(row.get("size") or 0.0)
            if size == 0:
                continue
            signed = size if row.get("side") == "Buy" else -size
            venue[str(row["symbol"])] = (signed, float(row.get("avgPrice") or 0.0))
        stored: dict[str, float] = defaultdict(float)
        holders: dict[str, list[str]] = defaultdict(list)
        last_price: dict[str, float] = {}
        for (system_id, symbol), pos in ledger.positions().items():
            stored[symbol] += pos.qty
            last_price[symbol] = pos.last_price or last_price.get(symbol, 0.0)
            if abs(pos.qty) > _QTY_TOL and system_id != UNATTRIBUTED:
                holders[symbol].append(system_id)
        for symbol in sorted(set(venue) | set(stored)):
            venue_qty, venue_avg = venue.get(symbol, (0.0, 0.0))
            store_qty = stored.get(symbol, 0.0)
            diff = venue_qty - store_qty
            if abs(diff) <= _QTY_TOL * max(1.0, abs(venue_qty)):
                continue
            systems = sorted(holders.get(symbol, []))
            price = venue_avg or last_price.get(symbol, 0.0)
            adjustment = Fill(
                exec_id=f"adj-{symbol}-{run_ms}-{_short_hash(symbol, run_ms, diff)}",
                order_link_id=None,
                order_id=None,
                system_id=None,
                symbol=symbol,
                side="Buy" if diff > 0 else "Sell",
                qty=abs(diff),
                price=price,
                fee=0.0,
                exec_time_ms=run_ms,
                exec_type="adjustment",
            )
            ledger.add_fills([adjustment])
            for system_id in systems:
                flagged[system_id] = f"position mismatch on {symbol}"
            records.append(
                _record(
                    run_ms,
                    "position_mismatch",
                    symbol=symbol,
                    system_ids=systems,
                    venue_value=venue_qty,
                    store_value=store_qty,
                    resolution=(
                        f"adopted the venue position: unattributed adjustment of {diff:+g} "
                        f"@ {price:g}; systems holding {symbol} flagged"
                    ),
                )
            )

    # 4. open orders the store does not know
    try:
        open_orders = gateway._venue_call(gateway.broker.open_orders)
    except ExchangeError as exc:
        open_orders = []
        logger.warning("reconcile: open orders unavailable: %s", exc)
    link_systems = ledger.intent_systems(o.get("orderLinkId") or "" for o in open_orders)
    for order in open_orders:
        link = order.get("orderLinkId") or ""
        if link in link_systems:
            continue
        record_id = _record_id("unknown_open_order", str(order.get("orderId")))
        if record_id in known_ids:
            continue
        records.append(
            ReconciliationRecord(
                record_id=record_id,
                run_ms=run_ms,
                kind="unknown_open_order",
                symbol=order.get("symbol"),
                order_link_id=link or None,
                venue_value=float(order.get("qty") or 0.0),
                resolution="recorded and left on the venue (not placed by the gateway)",
                detail=f"order {order.get('orderId')} {order.get('side')} {order.get('orderType')}",
            )
        )

    for system_id, reason in flagged.items():
        ledger.flag_system(system_id, run_ms, reason)
    ledger.add_reconciliation(records)
    try:
        gateway.check_equity()
    except ExchangeError as exc:
        logger.warning("reconcile: equity check failed: %s", exc)
    return ReconciliationReport(
        run_ms=run_ms,
        records=records,
        intents_resolved=resolved,
        fills_synced=fills_synced,
        flagged_systems=sorted(flagged),
    )


def ledger_attribute_fills(gateway: OrderGateway) -> int:
    """Attribute stored unattributed fills whose orderLinkId now matches an intent."""
    return gateway.ledger.attribute_fills()


def _record(run_ms: int, kind: str, **fields: object) -> ReconciliationRecord:
    key = _record_id(kind, run_ms, fields.get("symbol"), fields.get("order_link_id"))
    return ReconciliationRecord(record_id=key, run_ms=run_ms, kind=kind, **fields)  # type: ignore[arg-type]


def _record_id(kind: str, *parts: object) -> str:
    return f"{kind}-{_short_hash(*parts)}"


def _short_hash(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]

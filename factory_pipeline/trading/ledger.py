"""The trading ledger: order intents, fills, equity snapshots, reconciliation records, flags.

Why one module: every trading table (migration 6) is read and written here, with short
transactions, so the gateway's invariants ("the intent is committed before the request
leaves", "a fill is counted once, by its execution id") live in one place. Positions and
equity are derived from the fills on read, never stored twice.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

from factory_pipeline.schemas.trading import Fill, OrderIntent, ReconciliationRecord
from factory_pipeline.store.db import Store

_INTENT_COLUMNS = list(OrderIntent.model_fields)
_FILL_COLUMNS = list(Fill.model_fields)

#: Pseudo system that owns position adjustments reconciliation could not attribute.
UNATTRIBUTED = "__unattributed__"


@dataclass(frozen=True)
class PositionPnl:
    """A system's position in one symbol from its fills (average-cost accounting)."""

    qty: float
    avg_price: float
    realized_pnl: float
    fees: float
    last_price: float


class TradingLedger:
    """Typed reads and writes of the trading tables of one :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # intents --------------------------------------------------------------------------------
    def get_intent(self, order_link_id: str) -> OrderIntent | None:
        cols = ", ".join(_INTENT_COLUMNS)
        with self.store.connect() as con:
            rows = con.execute(
                f"SELECT {cols} FROM trading_order_intents WHERE order_link_id = ?",
                [order_link_id],
            ).fetchall()
        return _intent(rows[0]) if rows else None

    def save_intent(self, intent: OrderIntent) -> None:
        """Insert or replace one intent, committed when this returns."""
        with self.store.transaction() as con:
            _write_intent(con, intent)

    def save_settlement(self, intent: OrderIntent, fills: Iterable[Fill]) -> int:
        """The intent's venue state and its new fills, in one commit; returns new fills."""
        with self.store.transaction() as con:
            _write_intent(con, intent)
            return _insert_new_fills(con, fills)

    def intents(
        self, *, statuses: Iterable[str] | None = None, system_id: str | None = None
    ) -> list[OrderIntent]:
        clauses, params = [], []
        if statuses is not None:
            wanted = list(statuses)
            if not wanted:
                return []
            clauses.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        if system_id is not None:
            clauses.append("system_id = ?")
            params.append(system_id)
        sql = f"SELECT {', '.join(_INTENT_COLUMNS)} FROM trading_order_intents"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_ms, order_link_id"
        with self.store.connect() as con:
            rows = con.execute(sql, params).fetchall()
        return [_intent(r) for r in rows]

    def intent_systems(self, order_link_ids: Iterable[str]) -> dict[str, str]:
        ids = list(set(order_link_ids))
        if not ids:
            return {}
        with self.store.connect() as con:
            rows = con.execute(
                "SELECT order_link_id, system_id FROM trading_order_intents "
                f"WHERE order_link_id IN ({', '.join('?' * len(ids))})",
                ids,
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    # fills ----------------------------------------------------------------------------------
    def add_fills(self, fills: Iterable[Fill]) -> int:
        """Insert fills whose exec_id is new; returns how many were new."""
        with self.store.transaction() as con:
            return _insert_new_fills(con, fills)

    def fills(self, *, system_id: str | None = None, symbol: str | None = None) -> list[Fill]:
        clauses, params = [], []
        if system_id is not None:
            clauses.append("system_id = ?")
            params.append(system_id)
        if symbol is not None:
            clauses.append("symbol = ?")
            params.append(symbol)
        sql = f"SELECT {', '.join(_FILL_COLUMNS)} FROM trading_fills"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY exec_time_ms, exec_id"
        with self.store.connect() as con:
            rows = con.execute(sql, params).fetchall()
        return [Fill(**dict(zip(_FILL_COLUMNS, r, strict=True))) for r in rows]

    def last_exec_time_ms(self) -> int | None:
        with self.store.connect() as con:
            row = con.execute(
                "SELECT max(exec_time_ms) FROM trading_fills WHERE exec_type <> 'adjustment'"
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def positions(self) -> dict[tuple[str, str], PositionPnl]:
        """(system_id, symbol) -> position from all fills (unattributed under UNATTRIBUTED)."""
        grouped: dict[tuple[str, str], list[Fill]] = defaultdict(list)
        for fill in self.fills():
            grouped[(fill.system_id or UNATTRIBUTED, fill.symbol)].append(fill)
        return {key: position_from_fills(fills) for key, fills in grouped.items()}

    # equity snapshots -----------------------------------------------------------------------
    def add_equity(self, scope: str, ts_ms: int, equity: float) -> None:
        with self.store.transaction() as con:
            con.execute("INSERT INTO trading_equity VALUES (?, ?, ?)", [scope, ts_ms, equity])

    def high_water_mark(self, scope: str, day_start_ms: int, day_end_ms: int) -> float | None:
        with self.store.connect() as con:
            row = con.execute(
                "SELECT max(equity) FROM trading_equity "
                "WHERE scope = ? AND ts_ms >= ? AND ts_ms < ?",
                [scope, day_start_ms, day_end_ms],
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    # reconciliation and flags ---------------------------------------------------------------
    def add_reconciliation(self, records: Iterable[ReconciliationRecord]) -> None:
        batch = list(records)
        if not batch:
            return
        with self.store.transaction() as con:
            for r in batch:
                con.execute(
                    "INSERT OR REPLACE INTO trading_reconciliations VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        r.record_id,
                        r.run_ms,
                        r.kind,
                        r.symbol,
                        r.order_link_id,
                        json.dumps(r.system_ids),
                        r.venue_value,
                        r.store_value,
                        r.resolution,
                        r.detail,
                    ],
                )

    def reconciliation_records(self) -> list[ReconciliationRecord]:
        with self.store.connect() as con:
            rows = con.execute(
                "SELECT record_id, run_ms, kind, symbol, order_link_id, system_ids, venue_value, "
                "store_value, resolution, detail FROM trading_reconciliations "
                "ORDER BY run_ms, record_id"
            ).fetchall()
        return [
            ReconciliationRecord(
                record_id=r[0],
                run_ms=r[1],
                kind=r[2],
                symbol=r[3],
                order_link_id=r[4],
                system_ids=json.loads(r[5]),
                venue_value=r[6],
                store_value=r[7],
                resolution=r[8],
                detail=r[9],
            )
            for r in rows
        ]

    def flag_system(self, system_id: str, ts_ms: int, reason: str) -> None:
        with self.store.transaction() as con:
            con.execute(
                "INSERT INTO trading_system_flags VALUES (?, ?, ?)", [system_id, ts_ms, reason]
            )

    def flags(self) -> dict[str, list[str]]:
        with self.store.connect() as con:
            rows = con.execute(
                "SELECT system_id, reason FROM trading_system_flags ORDER BY ts_ms"
            ).fetchall()
        out: dict[str, list[str]] = defaultdict(list)
        for system_id, reason in rows:
            out[system_id].append(reason)
        return dict(out)


def position_from_fills(fills: Iterable[Fill]) -> PositionPnl:
    """Average-cost position of a fill sequence: signed qty, entry price, realized PnL, fees.

    A fill that crosses zero realizes the closed part and opens the rest at its own price.
    """
    qty = avg = realized = fees = 0.0
    last = 0.0
    for fill in fills:
        signed = fill.qty if fill.side == "Buy" else -fill.qty
        fees += fill.fee
        last = fill.price
        if qty == 0 or (qty > 0) == (signed > 0):
            new_qty = qty + signed
            avg = (avg * abs(qty) + fill.price * abs(signed)) / abs(new_qty) if new_qty else 0.0
            qty = new_qty
            continue
        closed = min(abs(signed), abs(qty))
        direction = 1.0 if qty > 0 else -1.0
        realized += (fill.price - avg) * closed * direction
        qty += signed
        if abs(qty) < 1e-12:
            qty, avg = 0.0, 0.0
        elif (qty > 0) != (direction > 0):
            avg = fill.price
    return PositionPnl(qty=qty, avg_price=avg, realized_pnl=realized, fees=fees, last_price=last)


def _write_intent(con: duckdb.DuckDBPyConnection, intent: OrderIntent) -> None:
    values = [getattr(intent, c) for c in _INTENT_COLUMNS]
    marks = ", ".join("?" * len(values))
    con.execute("DELETE FROM trading_order_intents WHERE order_link_id = ?", [intent.order_link_id])
    con.execute(
        f"INSERT INTO trading_order_intents ({', '.join(_INTENT_COLUMNS)}) VALUES ({marks})",
        values,
    )


def _insert_new_fills(con: duckdb.DuckDBPyConnection, fills: Iterable[Fill]) -> int:
    batch = list({f.exec_id: f for f in fills}.values())
    if not batch:
        return 0
    ids = [f.exec_id for f in batch]
    known = {
        r[0]
        for r in con.execute(
            f"SELECT exec_id FROM trading_fills WHERE exec_id IN ({', '.join('?' * len(ids))})",
            ids,
        ).fetchall()
    }
    new = [f for f in batch if f.exec_id not in known]
    marks = ", ".join("?" * len(_FILL_COLUMNS))
    for fill in new:
        con.execute(
            f"INSERT INTO trading_fills ({', '.join(_FILL_COLUMNS)}) VALUES ({marks})",
            [getattr(fill, c) for c in _FILL_COLUMNS],
        )
    return len(new)


def _intent(row: tuple) -> OrderIntent:
    return OrderIntent(**dict(zip(_INTENT_COLUMNS, row, strict=True)))

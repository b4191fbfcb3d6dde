"""The trading ledger: order intents, fills, equity snapshots, reconciliation records, flags.

Why one module: every trading table (migration 6) is read and written here, with short
transactions, so the gateway's invariants ("the intent is committed before the request
leaves", "a fill is counted once, by its execution id") live in one place. Positions and
equity are derived from the fills on read, never stored twice.

Inside :meth:`Store.pinned` (one bar close, one order) reads are memoized in the pin's cache:
positions are rebuilt from the fills once and then advanced fill by fill as this ledger stores
new ones, intents and equity high-water marks are kept as written. Every write to these tables
goes through this module, and while pinned no other process can write the file, so the memo
equals a fresh read (tested); a fill that arrives out of time order, or a bulk attribution,
drops the memo and the next read rebuilds it. Unpinned, every read goes to the store.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import duckdb

from factory_pipeline.schemas.trading import Fill, OrderIntent, ReconciliationRecord
from factory_pipeline.store.db import Store

_INTENT_COLUMNS = list(OrderIntent.model_fields)
_FILL_COLUMNS = list(Fill.model_fields)
#: Keys of this module's memos in :meth:`Store.pin_cache`.
_POSITIONS_MEMO = "trading_ledger.positions"
_INTENTS_MEMO = "trading_ledger.intents"
_HWM_MEMO = "trading_ledger.high_water_marks"
_INTENT_TIMES_MEMO = "trading_ledger.intent_decision_times"

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
    def get_intent(
        self, order_link_id: str, *, decision_time_ms: int | None = None
    ) -> OrderIntent | None:
        """The stored intent, or None. ``decision_time_ms`` (the decision the id was derived
        from) lets a pinned read answer None without a query after :meth:`preload_intents`."""
        memo = self._memo(_INTENTS_MEMO)
        if memo is not None and order_link_id in memo:
            return memo[order_link_id]
        loaded = self._memo(_INTENT_TIMES_MEMO)
        if loaded is not None and decision_time_ms is not None and decision_time_ms in loaded:
            return None  # every intent of that decision time is in the memo
        cols = ", ".join(_INTENT_COLUMNS)
        with self.store.connect() as con:
            rows = con.execute(
                f"SELECT {cols} FROM trading_order_intents WHERE order_link_id = ?",
                [order_link_id],
            ).fetchall()
        intent = _intent(rows[0]) if rows else None
        if memo is not None:
            memo[order_link_id] = intent
        return intent

    def preload_intents(self, decision_time_ms: int) -> None:
        """Memoize (when pinned) every intent decided at ``decision_time_ms`` with one query,
        so the duplicate check of each order of that bar close reads no more."""
        memo = self._memo(_INTENTS_MEMO)
        loaded = self._memo(_INTENT_TIMES_MEMO)
        if memo is None or loaded is None or decision_time_ms in loaded:
            return
        with self.store.connect() as con:
            rows = con.execute(
                f"SELECT {', '.join(_INTENT_COLUMNS)} FROM trading_order_intents "
                "WHERE decision_time_ms = ?",
                [int(decision_time_ms)],
            ).fetchall()
        for row in rows:
            intent = _intent(row)
            memo.setdefault(intent.order_link_id, intent)
        loaded[int(decision_time_ms)] = True

    def save_intent(self, intent: OrderIntent) -> None:
        """Insert or replace one intent, committed when this returns."""
        new = self._known_absent(intent)
        with self.store.transaction() as con:
            _write_intent(con, intent, new=new)
        self._intent_written(intent)

    def save_settlement(self, intent: OrderIntent, fills: Iterable[Fill]) -> int:
        """The intent's venue state and its new fills, in one commit; returns new fills."""
        return self.save_settlements([(intent, list(fills))])

    def intents(
        self, *, statuses: Iterable[str] | None = None, system_id: str | None = None
    ) -> list[OrderIntent]:
        wanted = list(statuses) if statuses is not None else None
        if wanted == []:
            return []
        rows = self._select(
            "trading_order_intents", _INTENT_COLUMNS, "created_ms, order_link_id",
            status=wanted, system_id=system_id,
        )  # fmt: skip
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
    def save_settlements(self, settlements: Iterable[tuple[OrderIntent, list[Fill]]]) -> int:
        """Several intents' venue states and their new fills, in one commit; returns new fills."""
        batch = list(settlements)
        if not batch:
            return 0
        intents = list({intent.order_link_id: intent for intent, _ in batch}.values())
        links = [intent.order_link_id for intent in intents]
        with self.store.transaction() as con:
            con.execute(
                "DELETE FROM trading_order_intents "
                f"WHERE order_link_id IN ({', '.join('?' * len(links))})",
                links,
            )
            _insert_rows(con, "trading_order_intents", _INTENT_COLUMNS, intents)
            new = _insert_new_fills(con, [fill for _, fills in batch for fill in fills])
        for intent in intents:
            self._intent_written(intent)
        self._fills_written(new)
        return len(new)

    def add_fills(self, fills: Iterable[Fill]) -> int:
        """Insert fills whose exec_id is new; returns how many were new."""
        with self.store.transaction() as con:
            new = _insert_new_fills(con, fills)
        self._fills_written(new)
        return len(new)

    def attribute_fills(self) -> int:
        """Attribute stored unattributed fills whose orderLinkId now matches an intent (a fill
        that reached the store before its intent did); returns how many were attributed."""
        with self.store.transaction() as con:
            row = con.execute(
                "SELECT count(*) FROM trading_fills f JOIN trading_order_intents i "
                "ON f.order_link_id = i.order_link_id WHERE f.system_id IS NULL"
            ).fetchone()
            count = int(row[0]) if row else 0
            if count:
                con.execute(
                    "UPDATE trading_fills SET system_id = i.system_id "
                    "FROM trading_order_intents i "
                    "WHERE trading_fills.order_link_id = i.order_link_id "
                    "AND trading_fills.system_id IS NULL"
                )
        if count:
            self._forget(_POSITIONS_MEMO)
        return count

    def fills(self, *, system_id: str | None = None, symbol: str | None = None) -> list[Fill]:
        rows = self._select(
            "trading_fills", _FILL_COLUMNS, "exec_time_ms, exec_id",
            system_id=system_id, symbol=symbol,
        )  # fmt: skip
        return [Fill(**dict(zip(_FILL_COLUMNS, r, strict=True))) for r in rows]

    def last_exec_time_ms(self) -> int | None:
        with self.store.connect() as con:
            row = con.execute(
                "SELECT max(exec_time_ms) FROM trading_fills WHERE exec_type <> 'adjustment'"
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def positions(self) -> dict[tuple[str, str], PositionPnl]:
        """(system_id, symbol) -> position from all fills (unattributed under UNATTRIBUTED)."""
        cache = self.store.pin_cache()
        book = cache.get(_POSITIONS_MEMO) if cache is not None else None
        if book is None:
            book = _PositionBook()
            with self.store.connect() as con:
                rows = con.execute(
                    "SELECT system_id, symbol, side, qty, price, fee, exec_time_ms, exec_id "
                    "FROM trading_fills ORDER BY exec_time_ms, exec_id"
                ).fetchall()
            for row in rows:
                book.add(*row)
            if cache is not None:
                cache[_POSITIONS_MEMO] = book
        return book.snapshot()

    # equity snapshots -----------------------------------------------------------------------
    def add_equity(self, scope: str, ts_ms: int, equity: float) -> None:
        with self.store.transaction() as con:
            con.execute("INSERT INTO trading_equity VALUES (?, ?, ?)", [scope, ts_ms, equity])
        memo = self._memo(_HWM_MEMO)
        if memo is not None:
            for key, mark in list(memo.items()):
                if key[0] == scope and key[1] <= ts_ms < key[2]:
                    memo[key] = equity if mark is None else max(mark, equity)

    def high_water_mark(self, scope: str, day_start_ms: int, day_end_ms: int) -> float | None:
        key = (scope, int(day_start_ms), int(day_end_ms))
        memo = self._memo(_HWM_MEMO)
        if memo is not None and key in memo:
            return memo[key]
        with self.store.connect() as con:
            row = con.execute(
                "SELECT max(equity) FROM trading_equity "
                "WHERE scope = ? AND ts_ms >= ? AND ts_ms < ?",
                [scope, day_start_ms, day_end_ms],
            ).fetchone()
        mark = float(row[0]) if row and row[0] is not None else None
        if memo is not None:
            memo[key] = mark
        return mark

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

    def _select(
        self, table: str, columns: list[str], order_by: str, **equal: object
    ) -> list[tuple]:
        """Rows of ``table`` whose columns equal the given values (a list: any of them; None:
        any value), ordered by ``order_by``."""
        clauses, params = [], []
        for column, value in equal.items():
            if value is None:
                continue
            if isinstance(value, list):
                clauses.append(f"{column} IN ({', '.join('?' * len(value))})")
                params.extend(value)
            else:
                clauses.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {', '.join(columns)} FROM {table}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        with self.store.connect() as con:
            return con.execute(f"{sql} ORDER BY {order_by}", params).fetchall()

    # memos (see the module docstring) -------------------------------------------------------
    def _memo(self, key: str) -> dict | None:
        cache = self.store.pin_cache()
        if cache is None:
            return None
        return cache.setdefault(key, {})

    def _forget(self, key: str) -> None:
        cache = self.store.pin_cache()
        if cache is not None:
            cache.pop(key, None)

    def _known_absent(self, intent: OrderIntent) -> bool:
        """True when the memo proves no row with this intent's id is stored."""
        memo = self._memo(_INTENTS_MEMO)
        if memo is None:
            return False
        if intent.order_link_id in memo:
            return memo[intent.order_link_id] is None
        loaded = self._memo(_INTENT_TIMES_MEMO)
        return loaded is not None and intent.decision_time_ms in loaded

    def _intent_written(self, intent: OrderIntent) -> None:
        memo = self._memo(_INTENTS_MEMO)
        if memo is not None:
            memo[intent.order_link_id] = intent

    def _fills_written(self, new: list[Fill]) -> None:
        """Advance the memoized positions by fills just committed (or drop the memo when one
        is older than a fill already counted: average-cost positions depend on the order)."""
        cache = self.store.pin_cache()
        book = cache.get(_POSITIONS_MEMO) if cache is not None else None
        if book is None or not new:
            return
        for f in sorted(new, key=lambda f: (f.exec_time_ms, f.exec_id)):
            if not book.add(
                f.system_id, f.symbol, f.side, f.qty, f.price, f.fee, f.exec_time_ms, f.exec_id
            ):
                cache.pop(_POSITIONS_MEMO, None)
                return


def with_pending(
    positions: dict[tuple[str, str], PositionPnl], intents: Iterable[OrderIntent]
) -> dict[tuple[str, str], PositionPnl]:
    """``positions`` as if each sent, not yet settled intent had filled in full at its reference
    price without a fee: the exposure an order already on its way to the venue will add, so risk
    checks during a bar close count it before its fills are read."""
    out = dict(positions)
    for intent in intents:
        key = (intent.system_id, intent.symbol)
        position = _Position.of(out.get(key))
        position.add(intent.side, intent.qty, intent.reference_price, 0.0)
        out[key] = position.pnl()
    return out


class _Position:
    """Average-cost accounting of one (system, symbol), one fill at a time: signed qty, entry
    price, realized PnL, fees. A fill that crosses zero realizes the closed part and opens the
    rest at its own price."""

    __slots__ = ("qty", "avg", "realized", "fees", "last")

    def __init__(self) -> None:
        self.qty = self.avg = self.realized = self.fees = self.last = 0.0

    @classmethod
    def of(cls, pnl: PositionPnl | None) -> _Position:
        """The running state a :class:`PositionPnl` summarizes (flat for None)."""
        position = cls()
        if pnl is not None:
            position.qty, position.avg = pnl.qty, pnl.avg_price
            position.realized, position.fees, position.last = (
                pnl.realized_pnl,
                pnl.fees,
                pnl.last_price,
            )
        return position

    def add(self, side: str, fill_qty: float, price: float, fee: float) -> None:
        signed = fill_qty if side == "Buy" else -fill_qty
        qty = self.qty
        self.fees += fee
        self.last = price
        if qty == 0 or (qty > 0) == (signed > 0):
            new_qty = qty + signed
            self.avg = (
                (self.avg * abs(qty) + price * abs(signed)) / abs(new_qty) if new_qty else 0.0
            )
            self.qty = new_qty
            return
        closed = min(abs(signed), abs(qty))
        direction = 1.0 if qty > 0 else -1.0
        self.realized += (price - self.avg) * closed * direction
        qty += signed
        if abs(qty) < 1e-12:
            qty, self.avg = 0.0, 0.0
        elif (qty > 0) != (direction > 0):
            self.avg = price
        self.qty = qty

    def pnl(self) -> PositionPnl:
        return PositionPnl(
            qty=self.qty,
            avg_price=self.avg,
            realized_pnl=self.realized,
            fees=self.fees,
            last_price=self.last,
        )


class _PositionBook:
    """Positions of every (system, symbol), advanced fill by fill in (exec time, exec id)
    order: the order :meth:`TradingLedger.positions` reads them in."""

    def __init__(self) -> None:
        self.positions: dict[tuple[str, str], _Position] = {}
        self.last_key: tuple[int, str] | None = None

    def add(
        self,
        system_id: str | None,
        symbol: str,
        side: str,
        qty: float,
        price: float,
        fee: float,
        exec_time_ms: int,
        exec_id: str,
    ) -> bool:
        """Count one fill; False (nothing counted) when it sorts before one already counted."""
        key = (int(exec_time_ms), exec_id)
        if self.last_key is not None and key < self.last_key:
            return False
        self.last_key = key
        owner = (system_id or UNATTRIBUTED, symbol)
        position = self.positions.get(owner)
        if position is None:
            position = self.positions[owner] = _Position()
        position.add(side, qty, price, fee)
        return True

    def snapshot(self) -> dict[tuple[str, str], PositionPnl]:
        return {key: position.pnl() for key, position in self.positions.items()}


def _write_intent(con: duckdb.DuckDBPyConnection, intent: OrderIntent, *, new: bool) -> None:
    """Insert or replace one intent. A stored row is UPDATEd in place (in DuckDB cheaper than
    deleting and re-inserting a keyed row); ``new`` (known absent) goes straight to INSERT."""
    if not new:
        row = con.execute(_UPDATE_INTENT, [*_values(intent, _INTENT_VALUE_COLUMNS)]).fetchone()
        if row is not None and row[0]:
            return
    con.execute(_INSERT_INTENT, _values(intent, _INTENT_COLUMNS))


_INTENT_VALUE_COLUMNS = [c for c in _INTENT_COLUMNS if c != "order_link_id"] + ["order_link_id"]
_UPDATE_INTENT = (
    "UPDATE trading_order_intents SET "
    + ", ".join(f"{c} = ?" for c in _INTENT_VALUE_COLUMNS[:-1])
    + " WHERE order_link_id = ?"
)
_INSERT_INTENT = (
    f"INSERT INTO trading_order_intents ({', '.join(_INTENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_INTENT_COLUMNS))})"
)


def _values(intent: OrderIntent, columns: list[str]) -> list[object]:
    return [getattr(intent, c) for c in columns]


def _insert_new_fills(con: duckdb.DuckDBPyConnection, fills: Iterable[Fill]) -> list[Fill]:
    """Insert the fills whose exec_id is not stored yet; returns them."""
    batch = list({f.exec_id: f for f in fills}.values())
    if not batch:
        return []
    ids = [f.exec_id for f in batch]
    known = {
        r[0]
        for r in con.execute(
            f"SELECT exec_id FROM trading_fills WHERE exec_id IN ({', '.join('?' * len(ids))})",
            ids,
        ).fetchall()
    }
    new = [f for f in batch if f.exec_id not in known]
    _insert_rows(con, "trading_fills", _FILL_COLUMNS, new)
    return new


def _insert_rows(
    con: duckdb.DuckDBPyConnection, table: str, columns: list[str], records: list[Any]
) -> None:
    """One multi-row INSERT of ``records``' ``columns`` (per-statement cost dominates in DuckDB,
    so a batch is one statement, not one per row)."""
    if not records:
        return
    row = f"({', '.join('?' * len(columns))})"
    con.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * len(records))}",
        [getattr(record, c) for record in records for c in columns],
    )


def _intent(row: tuple) -> OrderIntent:
    return OrderIntent(**dict(zip(_INTENT_COLUMNS, row, strict=True)))

"""Test data of the demo evaluation tests: demo systems, backtests and demo round trips written
through the gateway's ledger (the tables the evaluation reads)."""

from __future__ import annotations

import datetime as dt

from factory_pipeline.schemas import BacktestDoc, SystemDoc, SystemStatus
from factory_pipeline.schemas.trading import Fill, OrderIntent, ReconciliationRecord
from factory_pipeline.store import DocumentStore, Store
from factory_pipeline.trading.ledger import TradingLedger

HOUR_MS = 3_600_000


def day_ms(day: dt.date, hour: float = 0.0) -> int:
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return int(start.timestamp() * 1000) + int(hour * HOUR_MS)


def demo_system(store: Store, system_id: str = "sys-a", *, status=SystemStatus.DEMO) -> SystemDoc:
    """A stored system in ``status`` (written directly: the test plays the promotion history)."""
    system = SystemDoc(
        id=system_id,
        name=f"system {system_id}",
        spec_hash=f"hash-{system_id}",
        spec={"entry": {"module": "m"}},
        status=status,
    )
    DocumentStore(store).upsert([system])
    return system


def backtest(
    store: Store,
    system: SystemDoc,
    *,
    expectancy_pct: float = 1.0,
    win_rate: float = 0.5,
    expectancy_r: float = 0.5,
    slippage_bps: float = 2.0,
    trades: float = 100.0,
) -> BacktestDoc:
    doc = BacktestDoc(
        id=f"bt-{system.id}",
        system_id=system.id,
        spec_hash=system.spec_hash,
        symbol="BTCUSDT",
        regime="all",
        partition_key="all|BTCUSDT",
        data_start=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        data_end=dt.datetime(2024, 12, 31, tzinfo=dt.UTC),
        engine_version="test",
        metrics={
            "trades": trades,
            "win_rate": win_rate,
            "expectancy_r": expectancy_r,
            "expectancy_pct": expectancy_pct,
        },
        config={"slippage_bps": slippage_bps},
    )
    DocumentStore(store).upsert([doc])
    return doc


def intent(
    system_id: str,
    link: str,
    side: str,
    qty: float,
    time_ms: int,
    *,
    ref: float,
    status: str = "filled",
    stop: float | None = None,
    reason: str = "",
) -> OrderIntent:
    return OrderIntent(
        order_link_id=link,
        system_id=system_id,
        symbol="BTCUSDT",
        side=side,
        leg="entry",
        decision_time_ms=time_ms,
        qty_requested=qty,
        qty=qty,
        order_type="Market",
        reference_price=ref,
        stop_loss=stop,
        status=status,
        sent=status != "blocked",
        reason=reason,
        created_ms=time_ms,
        updated_ms=time_ms,
    )


def round_trip(
    store: Store,
    system_id: str,
    day: dt.date,
    *,
    entry: float,
    exit: float,
    qty: float = 1.0,
    hour: float = 1.0,
    fee: float = 0.0,
    entry_ref: float | None = None,
    exit_ref: float | None = None,
) -> None:
    """A long bought at ``entry`` at ``hour`` and sold at ``exit`` one hour later that day."""
    round_trips(
        store, system_id, [day], entry=entry, exit=exit, qty=qty, hour=hour, fee=fee,
        entry_ref=entry_ref, exit_ref=exit_ref,
    )  # fmt: skip


def round_trips(
    store: Store,
    system_id: str,
    days: list[dt.date],
    *,
    entry: float,
    exit: float,
    qty: float = 1.0,
    hour: float = 1.0,
    fee: float = 0.0,
    entry_ref: float | None = None,
    exit_ref: float | None = None,
) -> None:
    """One :func:`round_trip` per day, written in one transaction (file stores are slow to
    commit one row at a time)."""
    intents, fills = [], []
    for day in days:
        opened, closed = day_ms(day, hour), day_ms(day, hour + 1)
        for link, side, price, ref, when in (
            (f"{system_id}-{opened}-in", "Buy", entry, entry_ref or entry, opened),
            (f"{system_id}-{opened}-out", "Sell", exit, exit_ref or exit, closed),
        ):
            intents.append(intent(system_id, link, side, qty, when, ref=ref))
            fills.append(
                Fill(
                    exec_id=f"x-{link}",
                    order_link_id=link,
                    order_id=f"o-{link}",
                    system_id=system_id,
                    symbol="BTCUSDT",
                    side=side,
                    qty=qty,
                    price=price,
                    fee=fee,
                    exec_time_ms=when,
                )
            )
    with store.transaction() as con:
        for model, table, rows in (
            (OrderIntent, "trading_order_intents", intents),
            (Fill, "trading_fills", fills),
        ):
            columns = list(model.model_fields)
            con.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                [[getattr(row, c) for c in columns] for row in rows],
            )


def reconciliation_diff(store: Store, system_id: str, time_ms: int, record_id: str) -> None:
    TradingLedger(store).add_reconciliation(
        [
            ReconciliationRecord(
                record_id=record_id,
                run_ms=time_ms,
                kind="position_mismatch",
                symbol="BTCUSDT",
                system_ids=[system_id],
                venue_value=1.0,
                store_value=0.0,
                resolution="adopted venue position",
            )
        ]
    )

"""Versioned DuckDB schema migrations, applied in order when a store is opened.

Append new migrations at the end; never edit one that has shipped. Market tables are columnar
(one row per bar); document tables keep a few typed columns for filtering plus ``doc``, the full
pydantic document as JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DocTable:
    """A document collection: typed columns (name, SQL type) beyond id/version/created_at/doc.

    ``partition_key`` is present on every document table so a materialization can replace the
    rows it produced for one partition.
    """

    name: str
    columns: Sequence[tuple[str, str]] = ()


DOC_TABLES: dict[str, DocTable] = {
    t.name: t
    for t in (
        DocTable(
            "books", [("path", "VARCHAR"), ("content_hash", "VARCHAR"), ("status", "VARCHAR")]
        ),
        DocTable("kb_segments", [("book_id", "VARCHAR"), ("page", "INTEGER")]),
        DocTable("kb_concepts", [("name", "VARCHAR")]),
        DocTable("modules", [("kind", "VARCHAR"), ("name", "VARCHAR"), ("status", "VARCHAR")]),
        DocTable("systems", [("name", "VARCHAR"), ("spec_hash", "VARCHAR"), ("status", "VARCHAR")]),
        DocTable(
            "backtests",
            [
                ("system_id", "VARCHAR"),
                ("spec_hash", "VARCHAR"),
                ("symbol", "VARCHAR"),
                ("regime", "VARCHAR"),
            ],
        ),
        DocTable("backtest_trades", [("backtest_id", "VARCHAR"), ("system_id", "VARCHAR")]),
        DocTable("forecasts", [("system_id", "VARCHAR"), ("symbol", "VARCHAR")]),
        DocTable(
            "status_transitions",
            [("system_id", "VARCHAR"), ("from_status", "VARCHAR"), ("to_status", "VARCHAR")],
        ),
        DocTable("robustness_reports", [("system_id", "VARCHAR"), ("spec_hash", "VARCHAR")]),
        DocTable("demo_evaluations", [("system_id", "VARCHAR"), ("day", "DATE")]),
    )
}


#: The document tables migration 2 created; later tables come with their own migration.
_V2_TABLES: tuple[str, ...] = (
    "books",
    "kb_segments",
    "kb_concepts",
    "modules",
    "systems",
    "backtests",
    "backtest_trades",
    "forecasts",
    "status_transitions",
)


def _doc_table_sql(table: DocTable) -> str:
    typed = "".join(f",\n    {name} {sql_type}" for name, sql_type in table.columns)
    return (
        f"CREATE TABLE {table.name} (\n"
        "    id VARCHAR PRIMARY KEY,\n"
        "    version INTEGER NOT NULL,\n"
        "    created_at TIMESTAMPTZ NOT NULL,\n"
        f"    partition_key VARCHAR{typed},\n"
        "    doc JSON NOT NULL\n"
        ");"
    )


_MARKET_SQL = """
CREATE TABLE ohlcv (
    symbol VARCHAR NOT NULL,
    timeframe VARCHAR NOT NULL,
    open_time BIGINT NOT NULL,
    close_time BIGINT NOT NULL,
    open DOUBLE NOT NULL,
    high DOUBLE NOT NULL,
    low DOUBLE NOT NULL,
    close DOUBLE NOT NULL,
    volume DOUBLE NOT NULL
);
CREATE TABLE ohlcv_resampled (
    symbol VARCHAR NOT NULL,
    timeframe VARCHAR NOT NULL,
    open_time BIGINT NOT NULL,
    close_time BIGINT NOT NULL,
    open DOUBLE NOT NULL,
    high DOUBLE NOT NULL,
    low DOUBLE NOT NULL,
    close DOUBLE NOT NULL,
    volume DOUBLE NOT NULL,
    bar_count INTEGER NOT NULL,
    complete BOOLEAN NOT NULL
);
CREATE TABLE funding (
    symbol VARCHAR NOT NULL,
    funding_time BIGINT NOT NULL,
    rate DOUBLE NOT NULL
);
CREATE TABLE open_interest (
    symbol VARCHAR NOT NULL,
    ts BIGINT NOT NULL,
    open_interest DOUBLE NOT NULL
);
CREATE TABLE mark_price (
    symbol VARCHAR NOT NULL,
    timeframe VARCHAR NOT NULL,
    open_time BIGINT NOT NULL,
    close DOUBLE NOT NULL
);
CREATE TABLE regimes (
    symbol VARCHAR NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    regime VARCHAR NOT NULL,
    score DOUBLE
);
"""

#: (version, description, SQL). Version numbers are contiguous from 1.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "market tables", _MARKET_SQL),
    (2, "document tables", "\n".join(_doc_table_sql(DOC_TABLES[n]) for n in _V2_TABLES)),
]

_LEDGER_AND_CACHE_SQL = """
CREATE TABLE trial_ledger (
    trial_id VARCHAR PRIMARY KEY,
    family VARCHAR NOT NULL,
    system_id VARCHAR,
    config_hash VARCHAR NOT NULL,
    symbol VARCHAR,
    sharpe DOUBLE,
    n_periods INTEGER,
    created_at TIMESTAMPTZ NOT NULL,
    detail JSON
);
CREATE TABLE llm_cache (
    cache_key VARCHAR PRIMARY KEY,
    model VARCHAR NOT NULL,
    prompt_version VARCHAR NOT NULL,
    schema_name VARCHAR NOT NULL,
    response JSON NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    created_at TIMESTAMPTZ NOT NULL
);
"""

MIGRATIONS.append((3, "trial ledger and LLM response cache", _LEDGER_AND_CACHE_SQL))

MIGRATIONS.append(
    (4, "robustness reports", _doc_table_sql(DOC_TABLES["robustness_reports"])),
)

MIGRATIONS.append((5, "demo evaluations", _doc_table_sql(DOC_TABLES["demo_evaluations"])))

_TRADING_SQL = """
CREATE TABLE trading_order_intents (
    order_link_id VARCHAR PRIMARY KEY,
    system_id VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    side VARCHAR NOT NULL,
    leg VARCHAR NOT NULL,
    decision_time_ms BIGINT NOT NULL,
    qty_requested DOUBLE NOT NULL,
    qty DOUBLE NOT NULL,
    order_type VARCHAR NOT NULL,
    price DOUBLE,
    reduce_only BOOLEAN NOT NULL,
    stop_loss DOUBLE,
    take_profit DOUBLE,
    reference_price DOUBLE NOT NULL,
    status VARCHAR NOT NULL,
    sent BOOLEAN NOT NULL,
    order_id VARCHAR,
    filled_qty DOUBLE NOT NULL,
    avg_price DOUBLE,
    fee DOUBLE NOT NULL,
    reason VARCHAR NOT NULL,
    attempts INTEGER NOT NULL,
    limits_hash VARCHAR NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE trading_fills (
    exec_id VARCHAR PRIMARY KEY,
    order_link_id VARCHAR,
    order_id VARCHAR,
    system_id VARCHAR,
    symbol VARCHAR NOT NULL,
    side VARCHAR NOT NULL,
    qty DOUBLE NOT NULL,
    price DOUBLE NOT NULL,
    fee DOUBLE NOT NULL,
    exec_time_ms BIGINT NOT NULL,
    exec_type VARCHAR NOT NULL,
    is_maker BOOLEAN NOT NULL
);
CREATE TABLE trading_equity (
    scope VARCHAR NOT NULL,
    ts_ms BIGINT NOT NULL,
    equity DOUBLE NOT NULL
);
CREATE TABLE trading_reconciliations (
    record_id VARCHAR PRIMARY KEY,
    run_ms BIGINT NOT NULL,
    kind VARCHAR NOT NULL,
    symbol VARCHAR,
    order_link_id VARCHAR,
    system_ids JSON NOT NULL,
    venue_value DOUBLE,
    store_value DOUBLE,
    resolution VARCHAR NOT NULL,
    detail VARCHAR NOT NULL
);
CREATE TABLE trading_system_flags (
    system_id VARCHAR NOT NULL,
    ts_ms BIGINT NOT NULL,
    reason VARCHAR NOT NULL
);
CREATE TABLE trading_killswitch_events (
    event_id BIGINT PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    action VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    actor VARCHAR NOT NULL
);
"""

MIGRATIONS.append((6, "trading: intents, fills, equity, reconciliation, kill switch", _TRADING_SQL))

"""``factory status``: what the factory holds, per stage and status, read from the store."""

from __future__ import annotations

from factory_pipeline.schemas.documents import (
    BacktestDoc,
    Book,
    DemoEvaluationDoc,
    ForecastDoc,
    KbConcept,
    KbSegment,
    ModuleDoc,
    RobustnessDoc,
    StatusTransition,
    SystemDoc,
)
from factory_pipeline.settings import default_settings
from factory_pipeline.store import DocumentStore, Store


def collect_status(store: Store) -> list[tuple[str, str, int]]:
    """(stage, detail, count) rows: market coverage, regimes, documents by status."""
    rows: list[tuple[str, str, int]] = []
    with store.connect() as con:
        for symbol, timeframe, bars in con.execute(
            "SELECT symbol, timeframe, count(*) FROM ohlcv GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall():
            rows.append(("market", f"{symbol} {timeframe} bars", int(bars)))
        for timeframe, bars, incomplete in con.execute(
            "SELECT timeframe, count(*), count(*) FILTER (WHERE NOT complete) "
            "FROM ohlcv_resampled GROUP BY 1 ORDER BY 1"
        ).fetchall():
            rows.append(
                ("market", f"resampled {timeframe} bars ({incomplete} incomplete)", int(bars))
            )
        for regime, windows in con.execute(
            "SELECT regime, count(*) FROM regimes GROUP BY 1 ORDER BY 1"
        ).fetchall():
            rows.append(("regimes", f"{regime} windows", int(windows)))
        for status, orders in con.execute(
            "SELECT status, count(*) FROM trading_order_intents GROUP BY 1 ORDER BY 1"
        ).fetchall():
            rows.append(("trading", f"orders status={status}", int(orders)))
        (fills,) = con.execute("SELECT count(*) FROM trading_fills").fetchall()[0]
        if fills:
            rows.append(("trading", "fills", int(fills)))
    docs = DocumentStore(store)
    for stage, model, column in (
        ("knowledge", Book, "status"),
        ("knowledge", KbSegment, None),
        ("knowledge", KbConcept, None),
        ("modules", ModuleDoc, "status"),
        ("systems", SystemDoc, "status"),
        ("backtests", BacktestDoc, "regime"),
        ("robustness", RobustnessDoc, None),
        ("promotion", StatusTransition, "to_status"),
        ("demo", ForecastDoc, None),
        ("demo", DemoEvaluationDoc, None),
    ):
        if column:
            for value, count in docs.counts_by(model, column).items():
                rows.append((stage, f"{model.collection} {column}={value}", count))
        else:
            count = docs.count(model)
            if count:
                rows.append((stage, model.collection, count))
    return rows


def print_status(store: Store | None = None) -> int:
    settings = default_settings()
    if store is None:
        if not settings.database_path.exists():
            print(f"no store yet at {settings.database_path}: run `factory run` first")
            return 0
        store = Store(settings.database_path)
    rows = collect_status(store)
    if not rows:
        print("the store is empty: run `factory run`")
        return 0
    width = max(len(detail) for _, detail, _ in rows)
    print(f"{'stage':<10} {'what':<{width}} {'count':>10}")
    for stage, detail, count in rows:
        print(f"{stage:<10} {detail:<{width}} {count:>10,}")
    return 0


def decision_lines(store: Store, limit: int = 12) -> list[str]:
    """The promotion outcome in words: counts per status, then promoted and rejected systems
    with the gates they failed (from the audit table)."""
    docs = DocumentStore(store)
    systems = {s.id: s for s in docs.list(SystemDoc)}
    if not systems:
        return ["no systems yet"]
    statuses = docs.counts_by(SystemDoc, "status")
    sane = sum(1 for s in systems.values() if s.sanity.get("passed"))
    lines = [
        f"systems: {len(systems)} ({sane} passed sanity) - "
        + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    ]
    transitions = [
        t for t in docs.list(StatusTransition, order_by="created_at") if t.system_id in systems
    ]
    latest = {t.system_id: t for t in transitions}
    for label, wanted in (
        ("promoted to demo", {"demo"}),
        ("rejected", {"rework_required", "disabled"}),
    ):
        chosen = [t for t in latest.values() if t.to_status.value in wanted]
        lines.append(f"{label}: {len(chosen)}")
        for t in chosen[:limit]:
            failed = [r["rule"] for r in t.rule_results if not r.get("passed")]
            why = f" - failed {', '.join(failed)}" if failed else ""
            lines.append(f"  {systems[t.system_id].name} [{t.to_status.value}]{why}")
        if len(chosen) > limit:
            lines.append(f"  ... and {len(chosen) - limit} more (factory status, or the UI)")
    return lines


def print_decisions(store: Store | None = None) -> int:
    """Print :func:`decision_lines` for the configured store."""
    settings = default_settings()
    if store is None:
        if not settings.database_path.exists():
            print(f"no store yet at {settings.database_path}: run `factory run` first")
            return 0
        store = Store(settings.database_path)
    for line in decision_lines(store):
        print(line)
    return 0

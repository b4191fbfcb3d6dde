"""``factory demo replay --days N``: several days of demo trading against the local exchange.

Prints one progress line per simulated day and a summary per system; returns the exit status.
Errors a user can cause (bad days, a store that cannot be opened) raise FactoryError, which the
``factory`` command prints as one line.
"""

from __future__ import annotations

import datetime as dt

from factory_pipeline.demo.replay import ReplayReport, replay_demo
from factory_pipeline.market.timeframes import DAY_MS
from factory_pipeline.settings import default_settings


def demo_replay_command(days: int) -> int:
    """Run :func:`replay_demo` on the configured profile and print progress and a summary."""
    last_day: list[int] = [-1]

    def progress(step: int, total: int, bar_close_ms: int) -> None:
        day = bar_close_ms // DAY_MS
        if day != last_day[0] or step == total:
            last_day[0] = day
            print(f"  {_iso(bar_close_ms)}  bar {step}/{total}", flush=True)

    print(f"demo replay: last {days} day(s) of stored bars against the local exchange")
    report = replay_demo(default_settings(), days=days, progress=progress)
    print_replay_report(report)
    return 0


def print_replay_report(report: ReplayReport) -> None:
    """The replay's summary: totals, then one line per system."""
    if report.message:
        print(f"demo replay: {report.message} ({report.elapsed_s:.1f} s)")
        return
    print(
        f"demo replay: {_iso(report.start_ms)} .. {_iso(report.end_ms)}, "
        f"{report.bar_closes} bar closes, {len(report.systems)} system(s), "
        f"{report.decisions} decisions, {report.orders} orders, "
        f"{sum(s.fills for s in report.systems.values())} fills in {report.elapsed_s:.1f} s"
    )
    for system_id, s in sorted(report.systems.items()):
        actions = ", ".join(f"{k} {v}" for k, v in sorted(s.actions.items()))
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(s.order_statuses.items())) or "none"
        held = ", ".join(f"{sym} {qty:+g}" for sym, qty in sorted(s.positions.items())) or "flat"
        print(
            f"  {system_id}: {s.decisions} decisions ({actions}); orders: {statuses}; "
            f"fills {s.fills}; equity {s.equity:,.2f} (PnL {s.pnl:+,.2f}); {held}"
        )
    for system_id, reason in sorted(report.refused.items()):
        print(f"  {system_id}: REFUSED: {reason}")
    if report.skipped:
        print(f"  {report.skipped} decision(s) skipped for missing or stale bars")
    recon = "clean" if report.reconciliation_clean else f"{report.reconciliation_records} record(s)"
    print(f"  reconciliation: {recon}; kill switch tripped: {report.kill_switch_tripped}")


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")

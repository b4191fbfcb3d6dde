"""Replay mode: several days of demo trading, offline, against the local exchange.

Why: the embedded default has no live market and no keys, yet ``make run`` should show the demo
stage working end to end. The replay starts the local exchange in-process on the market store's
prices, steps a simulated clock through the last ``days`` days of stored bars and, at every L-bar
close, advances the venue (fills at the next bar's open, resting orders and position stops on the
bar path), syncs fills, and runs :func:`~factory_pipeline.demo.runner.run_bar_close` through the
real order gateway and the real pybit client. It ends with a reconciliation and a report per
system. The same code path as the scheduled runner; only the clock is simulated.

Restart-safe: the venue's state is kept next to the DuckDB file
(``<database>.local_exchange.json``), and forecasts and orderLinkIds are deterministic, so
replaying the same days again sends nothing new (duplicates) and continues where the data goes
further. Semantics: docs/demo_runner.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from factory_pipeline.demo.decisions import decision_window_bars
from factory_pipeline.demo.runner import (
    RunnerCache,
    current_library,
    preloaded_frame_loader,
    run_bar_close,
)
from factory_pipeline.errors import MarketDataError, SpecError
from factory_pipeline.market.frame import MarketFrame
from factory_pipeline.market.timeframes import DAY_MS, timeframe_ms
from factory_pipeline.schemas import SystemDoc, SystemStatus
from factory_pipeline.settings import FactorySettings
from factory_pipeline.store import DocumentStore, Store
from factory_pipeline.store.market import MarketStore
from factory_pipeline.strategy.systems import SystemSpec

log = logging.getLogger(__name__)

#: Cash of the replay's venue account per demo system (the gateway's system capital).
CAPITAL_PER_SYSTEM = 10_000.0


@dataclass
class SystemReplay:
    """One system's replay figures."""

    system_id: str
    decisions: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    orders: int = 0
    order_statuses: dict[str, int] = field(default_factory=dict)
    fills: int = 0
    equity: float = 0.0
    pnl: float = 0.0
    positions: dict[str, float] = field(default_factory=dict)


@dataclass
class ReplayReport:
    """What a replay did. ``message`` explains an empty replay (no demo system, no data)."""

    days: int
    start_ms: int = 0
    end_ms: int = 0
    bar_closes: int = 0
    systems: dict[str, SystemReplay] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    fills: int = 0
    reconciliation_clean: bool | None = None
    reconciliation_records: int = 0
    kill_switch_tripped: bool = False
    elapsed_s: float = 0.0
    message: str = ""

    @property
    def decisions(self) -> int:
        return sum(s.decisions for s in self.systems.values())

    @property
    def orders(self) -> int:
        return sum(s.orders for s in self.systems.values())

    def summary(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "bar_closes": self.bar_closes,
            "systems": len(self.systems),
            "decisions": self.decisions,
            "orders": self.orders,
            "fills": self.fills,
            "refused": dict(self.refused),
            "skipped": self.skipped,
            "reconciliation_clean": self.reconciliation_clean,
            "kill_switch_tripped": self.kill_switch_tripped,
            "elapsed_s": round(self.elapsed_s, 3),
            "message": self.message,
        }


ProgressFn = Callable[[int, int, int], None]


def replay_demo(
    settings: FactorySettings,
    *,
    days: int,
    store: Store | None = None,
    progress: ProgressFn | None = None,
) -> ReplayReport:
    """Replay the last ``days`` days of stored bars for every system in ``demo``.

    ``progress(step, total, bar_close_ms)`` is called after each bar close. Returns a report
    (with ``message`` set and nothing traded when no system is in demo or there is no data).
    """
    if days < 1:
        raise SpecError(f"replay days must be >= 1, got {days}")
    started = time.perf_counter()
    report = ReplayReport(days=days)
    target = store if store is not None else Store(settings.database_path)
    with target.pinned() as fast:
        docs = DocumentStore(fast)
        systems = docs.list(SystemDoc, {"status": SystemStatus.DEMO.value})
        if not systems:
            report.message = "no system is in demo: nothing to replay"
            log.info(report.message)
            report.elapsed_s = time.perf_counter() - started
            return report
        library = current_library(docs)
        plan = _plan(fast, systems, library, days)
        if plan is None:
            report.message = "no stored bars for the demo systems' symbols: nothing to replay"
            report.elapsed_s = time.perf_counter() - started
            return report
        closes, frames, finest = plan
        report.start_ms, report.end_ms = int(closes[0]), int(closes[-1])
        report.systems = {s.id: SystemReplay(system_id=s.id) for s in systems}
        cache = RunnerCache(frame_loader=preloaded_frame_loader(frames), library=library)
        snapshot = None if fast.path == ":memory:" else Path(f"{fast.path}.local_exchange.json")
        _run(settings, fast, report, cache, closes, finest, snapshot, len(systems), progress)
    report.elapsed_s = time.perf_counter() - started
    log.info("replay: %s", report.summary())
    return report


# -- the loop --------------------------------------------------------------------------------


def _run(
    settings: FactorySettings,
    store: Store,
    report: ReplayReport,
    cache: RunnerCache,
    closes: np.ndarray,
    timeframe: str,
    snapshot: Path | None,
    n_systems: int,
    progress: ProgressFn | None,
) -> None:
    from factory_pipeline.exchange.local import LocalExchangeState, run_local_exchange
    from factory_pipeline.exchange.local.state import LOCAL_API_KEY, LOCAL_API_SECRET
    from factory_pipeline.trading import build_gateway

    state = LocalExchangeState.open(snapshot) if snapshot is not None else LocalExchangeState()
    state.use_store(store, timeframe, refresh_s=1e9)
    state.add_account(LOCAL_API_KEY, LOCAL_API_SECRET, usdt=CAPITAL_PER_SYSTEM * n_systems)
    first = int(closes[0])
    if state.now_ms is None or state.now_ms < first:
        state.set_time(first - timeframe_ms(timeframe))
    with run_local_exchange(state, port=0) as server:
        gateway = build_gateway(
            settings, store, stage="demo", base_url=server.url, clock_ms=state.clock
        )
        report.fills += gateway.sync_fills()
        start = gateway.reconcile()  # at start: a restarted replay adopts the venue's state
        report.reconciliation_records += len(start.records)
        total = len(closes)
        for step, close in enumerate(closes, start=1):
            t = int(close)
            if state.clock() < t:
                state.advance_to(t)
            report.fills += gateway.sync_fills()
            gateway.check_equity()  # daily-loss limits from the equity high-water marks
            bar = run_bar_close(store, gateway, bar_close_ms=t, cache=cache)
            _collect(report, bar)
            report.bar_closes += 1
            if progress is not None:
                progress(step, total, t)
        report.fills += gateway.sync_fills()
        recon = gateway.reconcile()
        report.reconciliation_clean = start.clean and recon.clean
        report.reconciliation_records += len(recon.records)
        report.kill_switch_tripped = gateway.kill_switch.is_tripped()
        marks = {s: p[0] for s in state.instruments if (p := state.last_price(s)) is not None}
        for system_id, figures in report.systems.items():
            figures.equity = gateway.system_equity(system_id, marks)
            figures.pnl = figures.equity - gateway.system_capital
            figures.fills = len(gateway.ledger.fills(system_id=system_id))
            figures.positions = {
                symbol: pos.qty
                for (sid, symbol), pos in gateway.ledger.positions().items()
                if sid == system_id and pos.qty != 0.0
            }
    state.save_if_dirty()


def _collect(report: ReplayReport, bar: Any) -> None:
    report.refused.update(bar.refused)
    report.skipped += len(bar.skipped)
    for result in bar.results:
        figures = report.systems.setdefault(result.system_id, SystemReplay(result.system_id))
        figures.decisions += 1
        figures.actions[result.action] = figures.actions.get(result.action, 0) + 1
        figures.orders += len(result.orders)
        for status in result.statuses:
            figures.order_statuses[status] = figures.order_statuses.get(status, 0) + 1


def _plan(
    store: Store, systems: list[SystemDoc], library: Any, days: int
) -> tuple[np.ndarray, dict[tuple[str, str], MarketFrame], str] | None:
    """Bar closes to step through (the finest L timeframe, last ``days`` days of the data every
    demo symbol has) and the frames to decide on (with the decision window before the start)."""
    from factory_pipeline.strategy.signals import compile_system

    market = MarketStore(store)
    needs: dict[tuple[str, str], int] = {}
    for system in systems:
        try:
            spec = SystemSpec.model_validate(system.spec)
            window = decision_window_bars(compile_system(spec, library))
        except (SpecError, ValueError):
            continue  # the runner refuses and records it
        for symbol in spec.symbols:
            key = (symbol, spec.timeframes.L)
            needs[key] = max(needs.get(key, 0), window)
    if not needs:
        return None
    ends = []
    for symbol, tf in needs:
        last = market.last_open_time(symbol, tf)
        if last is not None:
            ends.append(last + timeframe_ms(tf))
    if not ends:
        return None
    end = min(ends)
    start = end - days * DAY_MS
    finest = min((tf for _, tf in needs), key=timeframe_ms)
    step = timeframe_ms(finest)
    closes = np.arange(start - start % step + step, end + 1, step, dtype=np.int64)
    frames: dict[tuple[str, str], MarketFrame] = {}
    for (symbol, tf), window in needs.items():
        tf_ms = timeframe_ms(tf)
        try:
            frames[(symbol, tf)] = market.load_frame(symbol, tf, start - (window + 2) * tf_ms, end)
        except MarketDataError as exc:
            log.warning("replay: %s", exc)
    return closes, frames, finest

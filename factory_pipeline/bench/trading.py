"""Benchmark suite ``trading``: the demo runner at one bar close and order round trips, against
the local exchange through the order gateway and the real pybit client, in one process.

Setup (a temporary DuckDB file): 20 days of synthetic 15m BTCUSDT bars; 20 systems in demo
(RSI(n) reversion for n = 2..21, entry below 45 / above 55 (shifted by one point per group) so
that nearly every flat system enters, exit at RSI 50, 20% of equity per trade), one fresh group
of 20 per measured bar close; the local exchange in-process on the store's
prices; the gateway with the compiled risk ceilings as limits. Store, gateway and exchange share
one pinned DuckDB connection (:meth:`~factory_pipeline.store.db.Store.pinned`), as the replay runs.

Figures (a warm-up bar close first: module compilation and JIT are not timed):

- ``decisions_per_s``: decisions / seconds of :func:`run_bar_close` for the 20 systems at one
  bar close, every order sent and acknowledged by the venue within the call (median of the timed
  bar closes; target >= 20, i.e. 20 systems within one second of the close);
- ``orders_per_bar_close``: orders sent per timed bar close (shows the figure includes orders);
- ``order_roundtrip_ms_p50`` / ``_p95``: one ``place_order`` request through pybit (signing,
  HTTP on 127.0.0.1, the venue's checks and matching, the reply) — the venue acknowledgement;
- ``gateway_submit_ms_p50`` / ``_p95``: one full :meth:`OrderGateway.submit` (risk checks, intent
  committed before sending, the request, the fill lookup and its storage);
- ``load_avg_1m``: the machine's load when the suite started.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from factory_pipeline.market.synthetic import SyntheticSource
from factory_pipeline.store import DocumentStore, Store
from factory_pipeline.store.market import MarketStore

TARGETS: dict[str, tuple[str, float]] = {
    "decisions_per_s": (">=", 20.0),
    "order_roundtrip_ms_p50": ("<=", 25.0),
}

N_SYSTEMS = 20
_BAR_MS = 900_000
_START = dt.date(2024, 3, 1)
_DAYS = 20


def run(quick: bool = False) -> dict[str, float]:
    """Measure the runner and the order round trips; see the module docstring."""
    from factory_pipeline.demo.runner import (
        RunnerCache,
        compile_checked,
        current_library,
        run_bar_close,
    )
    from factory_pipeline.exchange.local import LocalExchangeState, run_local_exchange
    from factory_pipeline.exchange.local.state import LOCAL_API_KEY, LOCAL_API_SECRET
    from factory_pipeline.schemas import SystemDoc
    from factory_pipeline.settings import FactorySettings
    from factory_pipeline.trading import RISK_CEILINGS, OrderRequest, build_gateway

    load_avg = os.getloadavg()[0]
    rounds = 2 if quick else 5
    n_orders = 30 if quick else 100
    quiet = logging.getLogger("factory_pipeline")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="factory-bench-trading-") as folder:
            path = Path(folder) / "bench.duckdb"
            closes, groups = _prepare_store(Store(path), rounds + 1)
            with Store(path).pinned() as store:
                state = LocalExchangeState(rate_limit=None)  # latency, not Bybit's 10/s pacing
                state.use_store(store, "15m", refresh_s=1e9)
                state.add_account(LOCAL_API_KEY, LOCAL_API_SECRET, usdt=1_000_000.0)
                state.set_time(int(closes[0]))
                with run_local_exchange(state, port=0) as server:
                    gateway = build_gateway(
                        FactorySettings(data_dir=Path(folder)), store, stage="demo",
                        base_url=server.url, limits=RISK_CEILINGS, clock_ms=state.clock,
                        fill_wait_s=1.0,
                    )  # fmt: skip
                    docs = DocumentStore(store)
                    cache = RunnerCache(library=current_library(docs))
                    for system in docs.list(SystemDoc):  # compilation is not what is timed
                        key = (system.id, system.spec_hash, id(cache.library))
                        cache.compiled[key] = compile_checked(system, cache.library)
                    rates: list[float] = []
                    orders: list[int] = []
                    for k in range(rounds + 1):
                        close = int(closes[k])
                        state.advance_to(close)
                        gateway.sync_fills()
                        if k > 0:
                            _flatten(gateway, OrderRequest, groups[k - 1], close)
                        _rotate_demo_group(docs, groups, k)
                        report = run_bar_close(
                            store, gateway, bar_close_ms=close, library=cache.library, cache=cache
                        )
                        if k > 0:  # the first bar close warms the JIT and indicator code paths
                            rates.append(report.decisions / report.elapsed_s)
                            orders.append(len(report.orders))
                    roundtrip, submit = _order_roundtrips(
                        gateway, state, OrderRequest, int(closes[rounds + 1]), n_orders
                    )
    finally:
        quiet.setLevel(level)
    return {
        "systems": float(N_SYSTEMS),
        "decisions_per_s": statistics.median(rates),
        "orders_per_bar_close": float(statistics.median(orders)),
        "order_roundtrip_ms_p50": float(np.percentile(roundtrip, 50)),
        "order_roundtrip_ms_p95": float(np.percentile(roundtrip, 95)),
        "gateway_submit_ms_p50": float(np.percentile(submit, 50)),
        "gateway_submit_ms_p95": float(np.percentile(submit, 95)),
        "load_avg_1m": load_avg,
    }


def _prepare_store(store: Store, n_groups: int) -> tuple[np.ndarray, list[list[str]]]:
    """Bars, the module library and ``n_groups`` groups of 20 candidate systems (one group per
    measured bar close, so every measured bar close starts from flat systems that enter);
    returns the bar closes to decide at and the system ids per group."""
    from factory_pipeline.promotion import store_systems
    from factory_pipeline.strategy.modules import load_module_library
    from factory_pipeline.strategy.systems import to_system_doc

    source = SyntheticSource(
        seed=20_261_126, start_date=_START, end_date=_START + dt.timedelta(days=_DAYS - 1)
    )
    start = int(dt.datetime.combine(_START, dt.time(), dt.UTC).timestamp() * 1000)
    end = start + _DAYS * 86_400_000
    market = MarketStore(store)
    market.write_batch(source.fetch("BTCUSDT", "15m", start, end))
    library = load_module_library()
    docs = DocumentStore(store)
    docs.upsert(list(library.values()))
    groups: list[list[str]] = []
    for group in range(n_groups):
        systems = [to_system_doc(_spec(n, group), library) for n in range(2, 2 + N_SYSTEMS)]
        store_systems(docs, systems)
        groups.append([system.id for system in systems])
    frame = market.load_frame("BTCUSDT", "15m")
    return frame.close_time[-40:], groups


def _rotate_demo_group(docs: DocumentStore, groups: list[list[str]], k: int) -> None:
    """Group ``k`` into demo, the previous group out (audited human commands, not timed)."""
    from factory_pipeline.promotion import apply_human_command
    from factory_pipeline.schemas import SystemStatus

    moves = [(system_id, SystemStatus.DEMO) for system_id in groups[k]]
    if k > 0:
        moves += [(system_id, SystemStatus.DISABLED) for system_id in groups[k - 1]]
    for system_id, status in moves:
        apply_human_command(
            docs, system_id, status, actor="bench", reason="trading bench", policy_hash="bench"
        )


def _flatten(gateway, request_type, system_ids: list[str], close_ms: int) -> None:
    """Close the positions of a group leaving demo (so the next group starts from flat and the
    open-positions cap is not what the figure measures); not timed."""
    price = gateway.broker.mark_price("BTCUSDT")
    for system_id in system_ids:
        qty = gateway.system_position(system_id, "BTCUSDT")
        if qty != 0.0:
            gateway.submit(
                request_type(
                    system_id=system_id, symbol="BTCUSDT", side="Sell" if qty > 0 else "Buy",
                    qty=abs(qty), decision_time_ms=close_ms, leg="bench-flat",
                    reference_price=price,
                )
            )  # fmt: skip


def _spec(n: int, group: int):
    from factory_pipeline.strategy.systems import SystemSpec

    return SystemSpec.model_validate(
        {
            "name": f"Bench RSI {n} group {group}",
            "symbols": ["BTCUSDT"],
            "timeframes": {"H": "4h", "M": "1h", "L": "15m"},
            "direction": "both",
            "entry": {
                "module": "entry_rsi_reversion",
                "params": {"n": n, "oversold": 45 - group, "overbought": 55 + group},
            },
            "exits": [{"module": "exit_rsi_middle", "params": {"n": n, "middle": 50}}],
            "risk": {"module": "risk_fixed_fraction", "params": {"fraction": 0.2}},
        }
    )


def _order_roundtrips(
    gateway, state, request_type, close_ms: int, n: int
) -> tuple[list[float], list[float]]:
    """Milliseconds of raw ``place_order`` calls and of full gateway submits (small orders)."""
    state.advance_to(close_ms)
    price = state.last_price("BTCUSDT")[0]
    rules = gateway.broker.instrument("BTCUSDT")
    roundtrip: list[float] = []
    for k in range(n):
        side = "Buy" if k % 2 == 0 else "Sell"
        params = {
            "symbol": "BTCUSDT",
            "side": side,
            "orderType": "Market",
            "qty": rules.format_qty(max(rules.min_qty, 0.001)),
            "orderLinkId": f"bench-rt-{close_ms}-{k}",
        }
        t0 = time.perf_counter()
        gateway.broker.place_order(params)
        roundtrip.append((time.perf_counter() - t0) * 1000.0)
    submit: list[float] = []
    for k in range(n):
        request = request_type(
            system_id="bench-gateway",
            symbol="BTCUSDT",
            side="Buy" if k % 2 == 0 else "Sell",
            qty=0.002,
            decision_time_ms=close_ms + k,
            leg="bench",
            reference_price=price,
        )
        t0 = time.perf_counter()
        gateway.submit(request)
        submit.append((time.perf_counter() - t0) * 1000.0)
    return roundtrip, submit


if __name__ == "__main__":  # pragma: no cover - manual use
    for key, value in run(quick=False).items():
        print(f"{key:26s} {value:,.3f}")
